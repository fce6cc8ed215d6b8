"""The plain-Python cores behind every feature, shared by the language server, the CLI and training:
completion, explain, ask, and the workspace state (`Engine`) they run in. No protocol types here."""
