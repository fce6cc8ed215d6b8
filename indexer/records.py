"""Plain records passed between the indexer's steps (files → chunks → stores).

Everything here is immutable and free of I/O so that chunkers, stores and tests can share it.
Lines are 1-based and inclusive; columns are 0-based character offsets within the line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# Chunk languages that are documentation rather than code.
DOC_LANGUAGES = frozenset({"markdown", "rst", "text"})
# Part of the embedder's cache key: raised whenever `Chunk.embedding_text` changes, so that the next
# `repolm index` re-embeds the chunks of files that did not change as well (2: decorators last).
EMBEDDING_TEXT_VERSION = 2
# How a decorator, annotation or attribute line starts (Python, Java, TypeScript: `@`; Rust: `#[`), and
# how a comment line does (a comment above a definition stays where it is).
_DECORATOR_STARTS = ("@", "#[")
_COMMENT_STARTS = ("#", "//", "/*", "*")
_OPENING, _CLOSING = "([{", ")]}"


def content_hash(text: str) -> str:
    """Stable key for caches (embeddings, file change detection)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One retrievable unit: a definition (or a piece of a long one), a doc section or a text window."""

    path: str  # repository-relative, POSIX separators
    language: str  # "python", "javascript", "typescript", "go", "rust", "java", "markdown", "rst", "text"
    start_line: int
    end_line: int
    symbol: str  # qualified name ("pkg.mod.Class.method") or, for docs, the heading path ("Guide > Install")
    kind: str  # function, method, class, interface, struct, enum, type, module, section, paragraph
    scope: str  # qualified name of the enclosing definition; the module's name at top level
    text: str
    # What the definition says it does (its docstring or doc comment), on the first chunk of a documented
    # definition; empty elsewhere. Hybrid search matches questions against it as well as the whole chunk.
    summary: str = ""

    @property
    def embedding_text(self) -> str:
        """What the embedder reads: where the chunk lives and what it is called help as much as its body.

        The embedder reads only the first `embedding_max_tokens` tokens, so leading decorators go after
        the code: a pytest parametrize table would otherwise fill the window before the signature and
        docstring, which say what the definition is for.
        """
        text = self.text if self.language in DOC_LANGUAGES else decorators_last(self.text)
        return f"{self.path} {self.symbol}\n{text}"

    @property
    def hash(self) -> str:
        """The embedding cache's key: a hash of exactly what the embedder reads."""
        return content_hash(self.embedding_text)

    @property
    def summary_hash(self) -> str:
        """The embedding cache's key for the summary's vector; empty when there is no summary."""
        return content_hash(self.summary) if self.summary else ""


def decorators_last(text: str) -> str:
    """`text` with the decorators above its definition moved to its end, the other lines in order.

    A decorator runs from its `@` (or `#[`) line until its brackets close; comments and blank lines
    among the decorators stay in place. Text whose decorator never closes is returned as it is.
    """
    lines = text.splitlines(keepends=True)
    moved: list[str] = []
    kept: list[str] = []
    depth = 0
    for number, line in enumerate(lines):
        stripped = line.strip()
        if depth == 0 and not stripped.startswith(_DECORATOR_STARTS):
            if stripped and not stripped.startswith(_COMMENT_STARTS):
                if not moved:
                    return text
                tail = "".join(moved)
                return "".join(kept + lines[number:]) + ("" if text.endswith("\n") else "\n") + tail
            kept.append(line)
            continue
        moved.append(line)
        depth += sum(stripped.count(c) for c in _OPENING) - sum(stripped.count(c) for c in _CLOSING)
    return text


@dataclass(frozen=True)
class Definition:
    """A named definition found by static analysis."""

    name: str  # the bare identifier
    qualname: str  # module-qualified ("pkg.mod.Class.method")
    kind: str  # function, method, class, interface, struct, enum, type, variable
    scope: str  # qualname of the enclosing definition or module
    start_line: int
    end_line: int
    name_line: int  # where the identifier itself is (for go-to-definition)
    name_col: int
    signature: str = ""  # the header line(s) up to the body
    docstring: str = ""
    bases: tuple[str, ...] = ()  # base classes / implemented interfaces as written


@dataclass(frozen=True)
class Reference:
    """A use of a name: a call, an import or an inheritance edge."""

    name: str  # the last identifier ("b" in "a.b()")
    expression: str  # the dotted text as written ("a.b")
    kind: str  # "call" | "import" | "inherit"
    scope: str  # qualname of the enclosing definition or module
    line: int
    col: int


@dataclass(frozen=True)
class Import:
    """A name bound by an import statement: `alias` in this file stands for `target`."""

    alias: str  # local name ("np", "join")
    target: str  # dotted path of what it names ("numpy", "os.path.join")
    line: int


@dataclass
class ParsedFile:
    """What a chunker extracts from one file."""

    chunks: list[Chunk] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    syntax_errors: int = 0  # error nodes seen; the file still indexes
