"""One source file as the code parser reads it: bytes for tree-sitter, lines for chunks, and the dotted
module name its path gives, with the small node helpers every parsing step uses."""

from __future__ import annotations

import posixpath
from bisect import bisect_right
from functools import cached_property
from itertools import accumulate

from tree_sitter import Node

from repolm.indexer.languages import EXTENSIONS

MAX_NAME_DEPTH = 8  # how deep a name is looked for inside name-like nodes
# `index.js` is its directory's module, as `__init__.py` is.
_JS_EXTENSIONS = frozenset(e for e, lang in EXTENSIONS.items() if lang in ("javascript", "typescript"))


class SourceFile:
    """The text in the forms the steps need: bytes for tree-sitter, lines for chunks."""

    def __init__(self, path: str, language: str, text: str) -> None:
        self.path = path
        self.language = language
        self.module = module_name(path)
        self.data = text.encode("utf-8", "surrogatepass")
        # tree-sitter counts rows by "\n" only, so str.splitlines (which also splits on \x0c,
        # \u2028, ...) would disagree with it.
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.removesuffix("\r") for line in lines]
        self.lines = lines
        self.ascii = text.isascii()

    @cached_property
    def line_starts(self) -> list[int]:
        """Byte offset of each row's start (computed in C: map/accumulate, no Python loop)."""
        return list(accumulate(map((1).__add__, map(len, self.data.split(b"\n"))), initial=0))

    def slice(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", "replace")

    def text(self, node: Node) -> str:
        return self.slice(node.start_byte, node.end_byte)

    def col(self, row: int, byte_col: int) -> int:
        """A byte column as a character column (records count characters)."""
        if self.ascii:
            return byte_col
        start = self.line_starts[row]
        return len(self.data[start : start + byte_col].decode("utf-8", "replace"))

    def row_col(self, byte: int) -> tuple[int, int]:
        """0-based row and byte column of a byte offset."""
        row = bisect_right(self.line_starts, byte) - 1
        return row, byte - self.line_starts[row]

    def blank(self, row: int) -> bool:
        return not self.lines[row].strip()


def module_name(path: str) -> str:
    """Dotted module name of a repository-relative path: "src/pkg/mod.py" → "pkg.mod"."""
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "."]
    if len(parts) > 1 and parts[0] in ("src", "lib"):
        parts = parts[1:]
    if not parts:
        return ""
    stem, ext = posixpath.splitext(parts[-1])
    if ext.lower() in EXTENSIONS:
        parts[-1] = stem.removesuffix(".d")  # TypeScript declarations: x.d.ts
    if parts[-1] == "__init__" or (parts[-1] == "index" and ext.lower() in _JS_EXTENSIONS):
        parts.pop()
    return ".".join(parts)


def first_named(node: Node) -> Node | None:
    """The first named child, or None (Node.named_child raises when there is none)."""
    return node.named_child(0) if node.named_child_count else None


def qualify(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def end_row(node: Node) -> int:
    """Last row with content: a node ending just after a newline (Rust line comments) ends above."""
    end = node.end_point
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row
