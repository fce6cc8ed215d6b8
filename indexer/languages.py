"""Which files are code, and the tree-sitter grammar that parses each language.

A language name ("typescript") says how a file is indexed; a grammar name ("tsx") says how it is
parsed. They differ only for TSX files, which are TypeScript with JSX and need their own grammar.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable
from functools import cache

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_rust
import tree_sitter_typescript

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}

CODE_LANGUAGES: frozenset[str] = frozenset(EXTENSIONS.values())

_GRAMMARS: dict[str, Callable[[], object]] = {
    "python": tree_sitter_python.language,
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
    "rust": tree_sitter_rust.language,
    "java": tree_sitter_java.language,
}

# Parsers hold per-parse state, so each thread gets its own; grammars and queries are shared.
_local = threading.local()


def language_for_path(path: str) -> str | None:
    """The code language of a file, from its extension; None for anything that is not code."""
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


def grammar_for(path: str, language: str) -> str:
    """The grammar to parse `path` with: the language's own, except "tsx" for .tsx files."""
    if language == "typescript" and path.lower().endswith(".tsx"):
        return "tsx"
    return language


@cache
def grammar(name: str) -> tree_sitter.Language:
    """The tree-sitter Language for a grammar name (a language name or "tsx")."""
    return tree_sitter.Language(_GRAMMARS[name]())


def parser_for(language: str) -> tree_sitter.Parser:
    """A parser for a language or grammar name, cached per thread."""
    parsers: dict[str, tree_sitter.Parser] = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(language)
    if parser is None:
        parser = parsers[language] = tree_sitter.Parser(grammar(language))
    return parser
