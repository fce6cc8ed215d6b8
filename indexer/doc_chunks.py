"""Documentation chunking: Markdown and reStructuredText by section, other prose by paragraph windows.

A section chunk runs from its heading to the next heading of any level, so every line lands in
exactly one chunk; its symbol is the heading path ("Guide > Install > From source") and its scope
the parent path. Sections longer than `max_chunk_lines` are cut at blank lines outside code blocks,
and every piece repeats the heading so it still says what it is about when retrieved alone.

Markdown headings come from the tree-sitter-markdown block grammar (so `# comment` inside a fenced
block is code, not a heading); RST headings follow docutils' rule that a heading's level is the
order in which its adornment style (character, with or without overline) first appears.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

import tree_sitter_markdown
from tree_sitter import Language, Node, Parser

from .records import Chunk

_MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdx"})
_RST_EXTENSIONS = frozenset({".rst", ".rest"})
_TEXT_EXTENSIONS = frozenset({".txt", ".text"})
# Extension-less prose files found at repository roots.
_TEXT_NAMES = frozenset(
    {
        "readme",
        "license",
        "licence",
        "copying",
        "authors",
        "contributors",
        "changes",
        "changelog",
        "news",
        "history",
        "notice",
        "install",
        "todo",
        "thanks",
        "patents",
        "maintainers",
        "contributing",
        "security",
    }
)
_NOT_DOCS = frozenset({"cmakelists.txt"})  # .txt files that are code
# Configuration read as plain text: settings are knowledge too, and `.env` files are where secrets
# hide, which is why redaction must see them.
_CONFIG_EXTENSIONS = frozenset({".env", ".ini", ".cfg", ".conf", ".toml", ".yaml", ".yml", ".properties"})

# docutils accepts any non-alphanumeric printable ASCII character as a section adornment.
_ADORNMENT_CHARS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ATX_CLOSING = re.compile(r"(?:^|\s+)#+\s*$")


_Style = tuple[str, bool]  # an RST adornment: its character, whether it has an overline


@dataclass(frozen=True)
class _Heading:
    start: int  # 0-based index of the heading's first line (the overline, for RST)
    size: int  # lines the heading occupies (2 for a setext or underlined title, 3 with an overline)
    level: int  # smaller is outer
    title: str


def doc_language(path: str, text: str) -> str | None:
    """The parser for `path`: "markdown", "rst", "text", or None when it is not documentation.

    `.txt` and extension-less README-like files are RST when they contain an RST section title
    (Django writes its docs as `.txt` files in RST), plain text otherwise.
    """
    return _classify(path, _lines(text))[0]


def parse_doc(path: str, text: str, max_chunk_lines: int = 60) -> list[Chunk]:
    """Chunks of one documentation file; a file that is not documentation is chunked as plain text."""
    max_chunk_lines = max(2, max_chunk_lines)
    lines = _lines(text)
    try:
        language, rst_headings = _classify(path, lines)
        if language == "markdown":
            headings, breaks = _markdown_structure(text, lines)
        elif language == "rst":
            headings, breaks = rst_headings, _rst_break_quality(lines)
        else:
            return _paragraph_windows(path, lines, max_chunk_lines)
        return _section_chunks(path, language, lines, headings, breaks, max_chunk_lines)
    except Exception:  # a grammar or heuristic bug must not cost the file its place in the index
        return _paragraph_windows(path, lines, max_chunk_lines)


def _classify(path: str, lines: list[str]) -> tuple[str | None, list[_Heading]]:
    """The language, with the RST headings when finding them was how it was decided (or the rule)."""
    name = PurePosixPath(path).name.lower()
    suffix = PurePosixPath(name).suffix
    if suffix in _MARKDOWN_EXTENSIONS:
        return "markdown", []
    if suffix in _RST_EXTENSIONS:
        return "rst", _rst_headings(lines)
    if name in _NOT_DOCS:
        return None, []
    if suffix in _TEXT_EXTENSIONS or (not suffix and name in _TEXT_NAMES):
        headings = _rst_headings(lines)
        return ("rst" if headings else "text"), headings
    if suffix in _CONFIG_EXTENSIONS or name.startswith(".env"):
        return "text", []
    return None, []


def _lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines() also splits on form feeds and U+2028, which editors and
    # tree-sitter do not count as line breaks, so line numbers would drift.
    return [line.rstrip("\r") for line in text.split("\n")]


# --- Markdown -------------------------------------------------------------------------------------


@cache
def _markdown_language() -> Language:
    return Language(tree_sitter_markdown.language())


def _markdown_structure(text: str, lines: list[str]) -> tuple[list[_Heading], list[int]]:
    """Headings of the document's own outline and, per line, how good a place it is to cut before."""
    # A parser per call: parsers are cheap to make and not safe to share between threads.
    tree = Parser(_markdown_language()).parse(text.encode("utf-8", "replace"))
    headings: list[_Heading] = []
    code_blocks: list[tuple[int, int]] = []
    _collect(tree.root_node, headings, code_blocks)
    inside_code = [False] * (len(lines) + 1)
    for first, last in code_blocks:
        for index in range(first + 1, min(last, len(lines) - 1) + 1):
            inside_code[index] = True
    breaks = [
        _break_quality(index > 0 and not lines[index - 1].strip(), not inside_code[index])
        for index in range(len(lines))
    ]
    return headings, breaks


def _collect(node: Node, headings: list[_Heading], code_blocks: list[tuple[int, int]]) -> None:
    # Only sections nest the outline; a heading inside a list item or block quote is content.
    for child in node.children:
        if child.type == "section":
            _collect(child, headings, code_blocks)
        elif child.type in ("atx_heading", "setext_heading"):
            headings.append(_markdown_heading(child))
        elif child.type in ("fenced_code_block", "indented_code_block"):
            code_blocks.append((child.start_point.row, _last_row(child)))


def _markdown_heading(node: Node) -> _Heading:
    if node.type == "atx_heading":
        marker = node.child(0)  # atx_h1_marker ... atx_h6_marker
        level = int(marker.type[5]) if marker is not None and marker.type[5:6].isdigit() else 1
        content = node.child_by_field_name("heading_content") or _first_of_type(node, "inline")
        title = _ATX_CLOSING.sub("", _node_text(content)).strip()
    else:
        underline = _first_of_type(node, "setext_h1_underline")
        level = 1 if underline else 2
        title = " ".join(_node_text(_first_of_type(node, "paragraph")).split())
    start = node.start_point.row
    return _Heading(start, _last_row(node) - start + 1, level, title)


def _first_of_type(node: Node, node_type: str) -> Node | None:
    return next((child for child in node.children if child.type == node_type), None)


def _node_text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _last_row(node: Node) -> int:
    """The last line a block covers (its end point sits at column 0 of the next line)."""
    end = node.end_point
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row


# --- reStructuredText -----------------------------------------------------------------------------


def _rst_headings(lines: list[str]) -> list[_Heading]:
    headings: list[_Heading] = []
    styles: list[_Style] = []  # adornment styles in order of first appearance = levels
    index, previous_end = 0, -1
    while index < len(lines) - 1:
        found = _rst_heading_at(lines, index, previous_end)
        if found is None:
            index += 1
            continue
        style, size, title = found
        if style not in styles:
            styles.append(style)
        headings.append(_Heading(index, size, styles.index(style), title))
        index += size
        previous_end = index
    return headings


def _rst_heading_at(lines: list[str], index: int, previous_end: int) -> tuple[_Style, int, str] | None:
    """(style, lines used, title) when a section title starts at `index`."""
    line = lines[index]
    over = _adornment(line)
    if over and index + 2 < len(lines):
        title = lines[index + 1].strip()
        under = lines[index + 2].rstrip()
        if title and not _adornment(title) and under == line.rstrip() and len(under) >= len(title):
            return (over, True), 3, title
    # An underlined title is not indented and follows a blank line (or the start, or another title).
    starts_block = index == 0 or index == previous_end or not lines[index - 1].strip()
    if over or not starts_block or not line.strip() or line[0].isspace():
        return None
    under_char = _adornment(lines[index + 1])
    if under_char and len(lines[index + 1].rstrip()) >= len(line.rstrip()):
        return (under_char, False), 2, line.strip()
    return None


def _adornment(line: str) -> str | None:
    """The character of a line made of one repeated punctuation character (2+), else None."""
    stripped = line.rstrip()
    if len(stripped) < 2 or stripped[0] not in _ADORNMENT_CHARS:
        return None
    return stripped[0] if stripped.count(stripped[0]) == len(stripped) else None


def _rst_break_quality(lines: list[str]) -> list[int]:
    # Literal blocks and directive bodies are indented: a cut before an indented line splits one.
    return [
        _break_quality(index > 0 and not lines[index - 1].strip(), not line[:1].isspace())
        for index, line in enumerate(lines)
    ]


# --- sections -------------------------------------------------------------------------------------


def _break_quality(after_blank: bool, outside_code: bool) -> int:
    """2: between paragraphs; 1: between paragraphs in code, or between lines of prose; 0: in code."""
    return int(after_blank) + int(outside_code)


def _section_chunks(
    path: str, language: str, lines: list[str], headings: list[_Heading], breaks: list[int], max_lines: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    first = headings[0].start if headings else len(lines)
    preamble = _trim(lines, 0, first - 1)
    if preamble:
        chunks += _pieces(path, language, lines, preamble, (), _stem(path), path, breaks, max_lines)
    outline: list[_Heading] = []
    for position, heading in enumerate(headings):
        while outline and outline[-1].level >= heading.level:
            outline.pop()
        outline.append(heading)
        end = headings[position + 1].start - 1 if position + 1 < len(headings) else len(lines) - 1
        span = _trim(lines, heading.start, end)
        if span:
            titles = [h.title or "(untitled)" for h in outline]
            scope = " > ".join(titles[:-1]) or path
            head = tuple(lines[heading.start : heading.start + heading.size])
            chunks += _pieces(path, language, lines, span, head, " > ".join(titles), scope, breaks, max_lines)
    return chunks


def _pieces(
    path: str,
    language: str,
    lines: list[str],
    span: tuple[int, int],
    head: tuple[str, ...],
    symbol: str,
    scope: str,
    breaks: list[int],
    max_lines: int,
) -> list[Chunk]:
    """One chunk per piece of a section; pieces after the first start with the heading repeated."""
    chunks: list[Chunk] = []
    for piece in _split(span, max_lines, len(head), breaks.__getitem__):
        trimmed = _trim(lines, *piece)
        if trimmed is None:
            continue
        start, end = trimmed
        body = _join(lines, start, end)
        text = "\n".join([*head, body]) if chunks else body
        chunks.append(Chunk(path, language, start + 1, end + 1, symbol, "section", scope, text))
    return chunks


def _split(
    span: tuple[int, int], max_lines: int, head_size: int, quality: Callable[[int], int]
) -> Iterator[tuple[int, int]]:
    """Cut [start, end] into pieces of at most max_lines (later ones leave room for the heading).

    Each cut is the latest best-quality line boundary in the back three quarters of the window, so
    pieces stay large and cut between paragraphs, outside code blocks, where the text allows.
    """
    start, end = span
    limit = max_lines
    while end - start + 1 > limit:
        cut = _best_cut(start, limit, quality)
        yield start, cut - 1
        start = cut
        limit = max(1, max_lines - head_size)
    yield start, end


def _best_cut(start: int, limit: int, quality: Callable[[int], int]) -> int:
    best, best_quality = start + limit, -1
    for cut in range(start + limit, start + max(1, limit // 4), -1):
        grade = quality(cut)
        if grade > best_quality:
            best, best_quality = cut, grade
            if grade == 2:
                break
    return best


def _trim(lines: list[str], start: int, end: int) -> tuple[int, int] | None:
    """[start, end] without leading and trailing blank lines; None when nothing is left."""
    while start <= end and not lines[start].strip():
        start += 1
    while end >= start and not lines[end].strip():
        end -= 1
    return (start, end) if start <= end else None


def _stem(path: str) -> str:
    return PurePosixPath(path).stem or PurePosixPath(path).name or path


# --- plain text -----------------------------------------------------------------------------------


def _paragraph_windows(path: str, lines: list[str], max_lines: int) -> list[Chunk]:
    """Runs of whole paragraphs up to max_lines / 2 lines; a longer paragraph is cut on its own."""
    target = max(1, max_lines // 2)
    stem = _stem(path)
    windows: list[tuple[int, int]] = []
    for start, end in _paragraphs(lines):
        if windows and end - windows[-1][0] + 1 <= target:
            windows[-1] = (windows[-1][0], end)
            continue
        windows += [(piece, min(end, piece + target - 1)) for piece in range(start, end + 1, target)]
    return [
        Chunk(
            path, "text", start + 1, end + 1, f"{stem} ¶{number}", "paragraph", path, _join(lines, start, end)
        )
        for number, (start, end) in enumerate(windows, 1)
    ]


def _join(lines: list[str], start: int, end: int) -> str:
    return "\n".join(lines[start : end + 1])


def _paragraphs(lines: list[str]) -> Iterator[tuple[int, int]]:
    start = None
    for index, line in enumerate(lines):
        if line.strip():
            start = index if start is None else start
        elif start is not None:
            yield start, index - 1
            start = None
    if start is not None:
        yield start, len(lines) - 1
