"""RAFT dataset, fine-tuning, evaluation and the adapter registry."""
