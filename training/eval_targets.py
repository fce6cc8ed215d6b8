"""Held-out completion targets: which lines to complete, where the cursor goes, and the oracle context.

The cursor rule: the cursor sits at the start of the target line's content, after its indentation, and
the target is the rest of that line. Indentation is what an editor inserts by itself after Enter, so the
model is judged on the code proper; and starting at the content (not mid-identifier) gives every line
kind the same, unbiased starting point. The model sees the file only up to the cursor.

Three kinds of target, sampled round-robin with a seeded RNG so that a run is reproducible:

- `line`: any code line (not blank, not a comment, not part of a docstring or multi-line string);
- `call`: a line that calls a function or class defined in the repository;
- `first_use`: the first line of a file that uses a given symbol defined in another file — the moment
  retrieval should matter most, because nothing earlier in the file shows the symbol.

Every target has at least `MIN_TOKENS` tokens and occurs exactly once in the repository: a line repeated
elsewhere can be copied rather than completed, and a copy in a training file would leak the answer.
The oracle of a target is the chunks defining the repository symbols (from other files) the line uses,
found by resolving each name through the symbol graph from the file's imports and scope.
"""

from __future__ import annotations

import io
import random
import re
import tokenize
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from repolm.config import Progress
from repolm.indexer.code_uses import STRING_LITERAL, LineUses, definition_chunk_ids, file_lines
from repolm.indexer.graph import Symbol
from repolm.indexer.retrieval import Index
from repolm.indexer.secrets import REDACTION_MARKER, redact
from repolm.indexer.store import alive

from .eval_split import EvalSplit

KINDS = ("first_use", "call", "line")
MIN_TOKENS = 5

_TOKEN = re.compile(r"\w+|[^\w\s]")
_COMMENT_MARKS = {"python": ("#",)}
_C_COMMENT_MARKS = ("//", "/*", "*")


@dataclass(frozen=True)
class Target:
    path: str  # repository-relative
    line: int  # 1-based
    column: int  # 0-based: where the line's content starts; the cursor
    kind: str  # first_use | call | line
    expected: str  # the rest of the line after the cursor, trailing whitespace removed
    symbols: tuple[str, ...] = ()  # qualnames of the repository symbols from other files the line uses
    oracle_chunks: tuple[int, ...] = ()  # ids of the chunks defining them (the oracle context)

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "kind": self.kind,
            "expected": self.expected,
            "symbols": list(self.symbols),
            "oracle_chunks": len(self.oracle_chunks),
        }


@dataclass
class FileFacts:
    """What target selection needs to know about one file."""

    eligible: set[int] = field(default_factory=set)  # lines that may be targets (before the dedup rule)
    uses: dict[int, list[Symbol]] = field(default_factory=dict)  # line -> cross-file symbols it uses
    calls: set[int] = field(default_factory=set)  # lines calling a repository function or class


# ---------------------------------------------------------------------------------------------------------
# Lines and cursors


def cursor_prefix(text: str, line: int, column: int) -> str:
    """The file's text before the cursor at 1-based `line`, 0-based `column`."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return text[: start + column]


def cursor_suffix(text: str, end_line: int) -> str:
    """The file's text after 1-based line `end_line`, from its line break on: what an editor has after a
    cursor whose completion fills the line(s) up to there."""
    start = -1
    for _ in range(end_line):
        start = text.find("\n", start + 1)
        if start < 0:
            return ""
    return text[start:]


def editor_position(prefix: str) -> tuple[int, int]:
    """The 0-based (line, character) at the end of `prefix`, counted the way `split_at` counts lines."""
    lines = prefix.splitlines(keepends=True)
    if not prefix or prefix.endswith(("\n", "\r")):
        return len(lines), 0
    return len(lines) - 1, len(lines[-1])


def token_count(code: str) -> int:
    return len(_TOKEN.findall(code))


def eligible_lines(language: str, text: str) -> set[int]:
    """1-based lines that are code: not blank, not comments, not in docstrings or multi-line strings,
    and not redacted (a model should not learn to write the marker, nor be scored on a secret)."""
    lines = file_lines(text)
    marks = _COMMENT_MARKS.get(language, _C_COMMENT_MARKS)
    excluded = _python_string_lines(text) if language == "python" else set()
    return {
        number
        for number, content in enumerate(lines, 1)
        if (stripped := content.strip())
        and not stripped.startswith(marks)
        and number not in excluded
        and token_count(stripped) >= MIN_TOKENS
        and re.search(r"\w", STRING_LITERAL.sub("", stripped))  # not a lone string piece
        and REDACTION_MARKER not in content
    }


def _python_string_lines(text: str) -> set[int]:
    """Lines inside multi-line strings, and lines that are a bare string statement (docstrings)."""
    excluded: set[int] = set()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return excluded  # a file that does not tokenize keeps the plain line rules
    statement_start = True
    for index, token in enumerate(tokens):
        if token.type == tokenize.STRING:
            first, last = token.start[0], token.end[0]
            following = tokens[index + 1].type if index + 1 < len(tokens) else tokenize.ENDMARKER
            bare = statement_start and following in (tokenize.NEWLINE, tokenize.ENDMARKER)
            if last > first or bare:
                excluded.update(range(first, last + 1))
        if token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT):
            statement_start = token.type == tokenize.NEWLINE
    return excluded


# ---------------------------------------------------------------------------------------------------------
# Which repository symbols a line uses


def analyze_file(index: Index, path: str, language: str, text: str) -> FileFacts:
    """Eligible lines, the cross-file symbols each line uses, and the lines calling repository code
    (resolved as `repolm.indexer.code_uses` resolves them)."""
    facts = FileFacts(eligible=eligible_lines(language, text))
    uses = LineUses(index, path, language, text)
    for number in range(1, len(uses.lines) + 1):
        found, calls = uses.at(number)
        if calls:
            facts.calls.add(number)
        if found:
            facts.uses[number] = found
    return facts


# ---------------------------------------------------------------------------------------------------------
# Sampling


def code_files(index: Index) -> dict[str, str]:
    """Indexed source files (path -> language); documentation is never a completion target."""
    rows = index.store.db.execute(
        f"SELECT f.path, f.language FROM files f WHERE {alive('f', index.generation)} ORDER BY f.path"
    )
    return {path: language for path, language in rows if language not in {"markdown", "rst", "text"}}


def read_redacted(root: Path, path: str) -> str | None:
    """A repository file as training and evaluation may use it: its secrets redacted as the index
    redacts them, so that prompts, training rows and reports built from it hold none. None if
    unreadable."""
    try:
        text = (root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return redact(text, path)[0]


def repository_line_counts(root: Path, paths: Iterable[str]) -> Counter[str]:
    """How often each stripped line occurs across the repository's source files."""
    counts: Counter[str] = Counter()
    for path in paths:
        text = read_redacted(root, path)
        if text is not None:
            counts.update(line.strip() for line in file_lines(text) if line.strip())
    return counts


def sample_targets(
    index: Index,
    split: EvalSplit,
    limit: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[Target]:
    """Up to `limit` targets from the evaluation split, balanced over the kinds, reproducible by `seed`."""
    report = progress or (lambda stage, done, total: None)
    files = code_files(index)
    counts = repository_line_counts(index.root, files)
    held_out = split.files(sorted(files))
    candidates: dict[str, list[tuple[str, int]]] = {kind: [] for kind in KINDS}
    facts_of: dict[str, FileFacts] = {}
    lines_of: dict[str, list[str]] = {}
    for done, path in enumerate(held_out, 1):
        report("targets", done - 1, len(held_out))
        text = read_redacted(index.root, path)
        if text is None:
            continue
        try:
            facts = analyze_file(index, path, files[path], text)
        except ValueError:  # a language the code chunker does not parse
            continue
        lines = file_lines(text)
        facts_of[path], lines_of[path] = facts, lines
        usable = sorted(
            n for n in facts.eligible if counts[lines[n - 1].strip()] == 1 and split.allows(path, n)
        )
        first_use: dict[str, int] = {}
        for number in sorted(facts.uses):
            for symbol in facts.uses[number]:
                first_use.setdefault(symbol.qualname, number)
        usable_set = set(usable)
        candidates["line"] += [(path, n) for n in usable]
        candidates["call"] += [(path, n) for n in usable if n in facts.calls]
        candidates["first_use"] += [(path, n) for n in sorted(set(first_use.values())) if n in usable_set]
    report("targets", len(held_out), len(held_out))
    picked = _round_robin(candidates, limit, random.Random(seed))
    return [_target(index, path, n, kind, lines_of[path], facts_of[path]) for kind, path, n in picked]


def _round_robin(
    candidates: dict[str, list[tuple[str, int]]], limit: int, rng: random.Random
) -> list[tuple[str, str, int]]:
    """One from each kind in turn (shuffled per kind); a line picked by one kind is skipped by the rest."""
    queues = {kind: list(candidates[kind]) for kind in KINDS}
    for kind in KINDS:
        rng.shuffle(queues[kind])
    taken: set[tuple[str, int]] = set()
    picked: list[tuple[str, str, int]] = []
    while len(picked) < limit and any(queues.values()):
        for kind in KINDS:
            while queues[kind]:
                place = queues[kind].pop()
                if place not in taken:
                    taken.add(place)
                    picked.append((kind, *place))
                    break
            if len(picked) == limit:
                break
    return sorted(picked, key=lambda item: (item[1], item[2]))


def _target(index: Index, path: str, number: int, kind: str, lines: list[str], facts: FileFacts) -> Target:
    content = lines[number - 1]
    column = len(content) - len(content.lstrip())
    symbols = facts.uses.get(number, [])
    chunks = [chunk for symbol in symbols for chunk in definition_chunk_ids(index, symbol)]
    return Target(
        path,
        number,
        column,
        kind,
        content[column:].rstrip(),
        tuple(s.qualname for s in symbols),
        tuple(dict.fromkeys(chunks)),
    )
