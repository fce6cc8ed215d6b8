"""repolm: a code assistant that learns one codebase."""
