"""The language server: the LSP edge over the assist cores (`repolm.assist`)."""
