"""The index: discovery, chunking, symbol graph, lexical and dense stores, hybrid retrieval."""
