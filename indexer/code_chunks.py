"""Source files → chunks, definitions, references and imports, with tree-sitter.

One parse per file: one run of the language's queries (`code_specs`) gives the definitions and
references (`code_symbols`) and the imports (`code_imports`). The chunking here is the same for every
language and works on line numbers.

Chunks: each definition gets one (a class chunk holds its header, docstring and fields, with a
one-line stub per method, whose body is in the method's own chunk); the lines between top-level
definitions become "module" chunks. Anything longer than `max_chunk_lines` is split on statement
boundaries, and each continuation piece repeats the signature so it still reads on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from tree_sitter import Node, QueryCursor

from repolm.indexer.code_source import SourceFile
from repolm.indexer.code_specs import SPECS, LanguageSpec, queries_for
from repolm.indexer.code_symbols import (
    DefinitionNode,
    collect_definitions,
    definition_record,
    docstring_of,
    find_references,
    nest_definitions,
    raw_references,
    read_imports,
    variable_record,
)
from repolm.indexer.languages import grammar_for, parser_for
from repolm.indexer.records import Chunk, Import, ParsedFile

logger = logging.getLogger(__name__)

_MAX_SPLIT_DEPTH = 24  # how deep a long statement is split on its children before line windows


@dataclass(frozen=True)
class _Segment:
    """Rows [start, end] that a split never cuts; `member` when they are a nested chunk's."""

    start: int
    end: int
    member: DefinitionNode | None = None

    @property
    def cost(self) -> int:
        return 1 if self.member is not None else self.end - self.start + 1


def _statement_breaks(node: Node, max_rows: int, out: list[int], depth: int = 0) -> None:
    """Rows where a piece may start: each statement, and inside statements too long to keep whole."""
    out.append(node.start_point.row)
    if node.end_point.row - node.start_point.row >= max_rows and depth < _MAX_SPLIT_DEPTH:
        for child in node.named_children:
            _statement_breaks(child, max_rows, out, depth + 1)


def _segments(
    lo: int, hi: int, breaks: Iterable[int], members: list[DefinitionNode], max_rows: int
) -> list[_Segment]:
    """Cut rows [lo, hi] at the breaks; members stay whole; over-long stretches become windows."""
    cuts = {b for b in breaks if lo < b <= hi}
    for m in members:
        cuts.add(m.first_row)
        cuts.add(m.last_row + 1)
    for m in members:
        cuts.difference_update(range(m.first_row + 1, m.last_row + 1))
    ordered = sorted(c for c in cuts if lo < c <= hi)
    member_at = {m.first_row: m for m in members}
    segments = []
    for start, end in zip([lo, *ordered], [c - 1 for c in ordered] + [hi], strict=True):
        member = member_at.get(start)
        if member is not None:
            segments.append(_Segment(start, end, member))
        else:
            segments.extend(_Segment(s, min(s + max_rows - 1, end)) for s in range(start, end + 1, max_rows))
    return segments


def _group(segments: list[_Segment], max_rows: int) -> list[list[_Segment]]:
    """Greedily pack consecutive segments into pieces of at most max_rows rows."""
    pieces: list[list[_Segment]] = []
    cost = 0
    for segment in segments:
        if pieces and cost + segment.cost <= max_rows:
            pieces[-1].append(segment)
            cost += segment.cost
        else:
            pieces.append([segment])
            cost = segment.cost
    return pieces


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _trim(f: SourceFile, start: int, end: int) -> tuple[int, int]:
    while start < end and f.blank(start):
        start += 1
    while end > start and f.blank(end):
        end -= 1
    return start, end


def _stub(f: SourceFile, spec: LanguageSpec, member: DefinitionNode) -> str:
    """One line standing for a member in its container's chunk: its signature and `...`."""
    sig_start, sig_end, _ = member.signature
    indent = _indent(f.lines[member.node.start_point.row])
    signature = " ".join(f.slice(sig_start, sig_end).split())[:200]
    if member.body is None:
        return indent + signature
    return f"{indent}{signature} ..." if spec.colon_header else f"{indent}{signature} {{ ... }}"


def _render(f: SourceFile, spec: LanguageSpec, piece: list[_Segment]) -> str:
    lines: list[str] = []
    for segment in piece:
        if segment.member is not None:
            lines.append(_stub(f, spec, segment.member))
        else:
            lines.extend(f.lines[segment.start : segment.end + 1])
    return "\n".join(lines)


def _body_units(spec: LanguageSpec, body: Node | None) -> list[Node]:
    if body is None:
        return []
    if body.type not in spec.blocks:
        return [body]  # an expression body (`x => x + 1`)
    units = []
    for child in body.named_children:
        units.extend(child.named_children if child.type in spec.flatten else (child,))
    return units


def _definition_chunks(f: SourceFile, spec: LanguageSpec, d: DefinitionNode, max_rows: int) -> list[Chunk]:
    lo, hi, body = d.first_row, d.last_row, d.body
    summary = docstring_of(f, spec, d)
    own_rows = hi - lo + 1 - sum(m.last_row - m.first_row for m in d.members)
    if own_rows <= max_rows and not d.members:
        text = "\n".join(f.lines[lo : hi + 1])
        return [Chunk(f.path, f.language, lo + 1, hi + 1, d.qualname, d.kind, d.scope, text, summary)]
    # A definition without a body (a long type alias) repeats only its first line.
    header_end = d.signature[2] if body is not None else d.node.start_point.row
    breaks: list[int] = []
    if own_rows > max_rows:
        units = _body_units(spec, body) if body is not None else d.node.named_children
        for unit in units:
            _statement_breaks(unit, max_rows, breaks)
    segments = _segments(lo, hi, (b for b in breaks if b > header_end), d.members, max_rows)
    # The header always travels with the first statement.
    head = 0
    while head + 1 < len(segments) and segments[head].end < header_end:
        head += 1
    merged = _Segment(lo, segments[head].end) if head else None
    if merged is not None:
        segments = [merged, *segments[head + 1 :]]
    signature_row = d.node.start_point.row
    signature = f.lines[signature_row : header_end + 1]
    chunks = []
    for index, piece in enumerate(_group(segments, max_rows)):
        start, end = piece[0].start, piece[-1].end
        if index == 0:
            text = _render(f, spec, piece)
        else:
            follows_header = start <= header_end + 1
            start, end = _trim(f, start, end)
            # "..." marks the statements left out between the signature and this piece.
            elided = [] if follows_header else [_indent(f.lines[start]) + "..."]
            text = "\n".join([*signature, *elided, _render(f, spec, piece)])
        own = summary if index == 0 else ""
        chunks.append(Chunk(f.path, f.language, start + 1, end + 1, d.qualname, d.kind, d.scope, text, own))
    for member in d.members:
        chunks.extend(_definition_chunks(f, spec, member, max_rows))
    return chunks


def _module_chunks(f: SourceFile, root: Node, top: list[DefinitionNode], max_rows: int) -> list[Chunk]:
    """Lines outside the top-level definitions, in runs split at top-level statements."""
    covered = bytearray(len(f.lines))
    for d in top:
        covered[d.first_row : d.last_row + 1] = b"\x01" * (d.last_row - d.first_row + 1)
    runs: list[tuple[int, int]] = []
    row = 0
    while row < len(f.lines):
        if covered[row] or f.blank(row):
            row += 1
            continue
        start = row
        while row < len(f.lines) and not covered[row]:
            row += 1
        runs.append(_trim(f, start, row - 1))
    breaks: list[int] | None = None
    chunks = []
    for lo, hi in runs:
        segments = [_Segment(lo, hi)]
        if hi - lo + 1 > max_rows:
            if breaks is None:
                breaks = []
                for child in root.named_children:
                    _statement_breaks(child, max_rows, breaks)
            segments = _segments(lo, hi, breaks, [], max_rows)
        for piece in _group(segments, max_rows):
            start, end = _trim(f, piece[0].start, piece[-1].end)
            if f.blank(start):
                continue
            text = "\n".join(f.lines[start : end + 1])
            chunks.append(Chunk(f.path, f.language, start + 1, end + 1, f.module, "module", f.module, text))
    return chunks


# ---------------------------------------------------------------- entry point


def parse_code(path: str, language: str, text: str, max_chunk_lines: int = 80) -> ParsedFile:
    """Chunks, definitions, references and imports of one source file; never raises on bad input."""
    grammar_name = grammar_for(path, language)
    if grammar_name not in SPECS:
        raise ValueError(f"not a code language: {language!r}")
    f = SourceFile(path, language, text)
    max_rows = max(max_chunk_lines, 1)
    try:
        return _parse(f, grammar_name, max_rows)
    except Exception as exc:
        # One pathological file must not stop a repository's indexing: it keeps plain windows.
        logger.warning("%s: structural parse failed (%s); indexing it as text windows", path, exc)
        return _fallback(f, max_rows)


def _fallback(f: SourceFile, max_rows: int) -> ParsedFile:
    chunks = []
    for start in range(0, len(f.lines), max_rows):
        start, end = _trim(f, start, min(start + max_rows, len(f.lines)) - 1)
        if not f.blank(start):
            text = "\n".join(f.lines[start : end + 1])
            chunks.append(Chunk(f.path, f.language, start + 1, end + 1, f.module, "module", f.module, text))
    return ParsedFile(chunks=chunks, syntax_errors=1)


def _parse(f: SourceFile, grammar_name: str, max_rows: int) -> ParsedFile:
    spec, queries = SPECS[grammar_name], queries_for(grammar_name)
    tree = parser_for(grammar_name).parse(f.data)
    root = tree.root_node
    captures = QueryCursor(queries.everything).captures(root)

    defs, variables = collect_definitions(f, spec, captures)
    nest_definitions(f, defs)
    imports = read_imports(f, spec, captures)
    references = find_references(f, defs, raw_references(f, captures), imports)

    top = [d for d in defs if d.parent is None]
    chunks = _module_chunks(f, root, top, max_rows)
    for d in top:
        chunks.extend(_definition_chunks(f, spec, d, max_rows))
    chunks.sort(key=lambda c: (c.start_line, c.end_line))

    definitions = [definition_record(f, spec, d) for d in defs]
    definitions.extend(variable_record(f, root, n) for n in variables)
    errors = len(QueryCursor(queries.errors).captures(root).get("error", ())) if root.has_error else 0
    return ParsedFile(
        chunks=chunks,
        definitions=definitions,
        references=references,
        imports=[Import(imp.alias, imp.target, f.row_col(imp.pos)[0] + 1) for imp in imports],
        syntax_errors=errors,
    )
