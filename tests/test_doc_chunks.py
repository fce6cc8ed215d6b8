"""Documentation chunks: heading paths, exact line spans, splitting, RST styles, plain-text windows."""

from __future__ import annotations

import pytest

from repolm.indexer.doc_chunks import doc_language, parse_doc
from repolm.indexer.records import Chunk

GUIDE_MD = """\
Intro before any heading.

# Guide

Welcome.

## Install

```sh
# not a heading: a shell comment in a fence
pip install repolm
```

### From source

Build it.

## Usage ##

Run it.
"""


def spans(chunks: list[Chunk]) -> list[tuple[str, str, int, int]]:
    return [(c.symbol, c.scope, c.start_line, c.end_line) for c in chunks]


def assert_every_line_covered(text: str, chunks: list[Chunk]) -> None:
    covered = {line for c in chunks for line in range(c.start_line, c.end_line + 1)}
    for number, line in enumerate(text.split("\n"), 1):
        assert not line.strip() or number in covered, f"line {number} lost: {line!r}"


def test_markdown_nested_headings_have_exact_paths_and_spans() -> None:
    chunks = parse_doc("docs/guide.md", GUIDE_MD)
    assert spans(chunks) == [
        ("guide", "docs/guide.md", 1, 1),
        ("Guide", "docs/guide.md", 3, 5),
        ("Guide > Install", "Guide", 7, 12),
        ("Guide > Install > From source", "Guide > Install", 14, 16),
        ("Guide > Usage", "Guide", 18, 20),
    ]
    assert {(c.language, c.kind) for c in chunks} == {("markdown", "section")}
    assert chunks[2].text.startswith("## Install\n\n```sh\n# not a heading")
    assert_every_line_covered(GUIDE_MD, chunks)


def test_hash_line_in_code_fence_is_not_a_heading() -> None:
    symbols = [c.symbol for c in parse_doc("a.md", GUIDE_MD)]
    assert not any("not a heading" in symbol for symbol in symbols)


def test_setext_headings_and_sibling_levels() -> None:
    text = "Title\n=====\n\ntext\n\nPart\n----\n\nmore\n\n# Next\n"
    assert spans(parse_doc("x.markdown", text)) == [
        ("Title", "x.markdown", 1, 4),
        ("Title > Part", "Title", 6, 9),
        ("Next", "x.markdown", 11, 11),
    ]


def test_long_section_splits_between_paragraphs_with_heading_repeated() -> None:
    paragraphs = [f"Paragraph {n} line {i}." for n in range(8) for i in range(4)]
    body = "\n\n".join("\n".join(paragraphs[n * 4 : n * 4 + 4]) for n in range(8))
    text = f"# Top\n\n## Long\n\n{body}\n"
    chunks = parse_doc("long.md", text, max_chunk_lines=12)
    pieces = [c for c in chunks if c.symbol == "Top > Long"]
    assert len(pieces) > 1
    for piece in pieces:
        assert piece.text.startswith("## Long\n")
        assert piece.text.count("\n") + 1 <= 12
    for piece in pieces[1:]:  # each later piece starts at a paragraph, not inside one
        assert text.split("\n")[piece.start_line - 1].endswith("line 0.")
    assert [c.start_line for c in pieces] == sorted(c.start_line for c in pieces)
    assert_every_line_covered(text, chunks)


def test_split_avoids_cutting_a_fenced_block() -> None:
    code = "\n".join(["```python", *(f"x{i} = {i}" for i in range(4)), "", "y = 2", "```"])
    text = "# Doc\n\n" + "\n\n".join(["intro"] * 3) + "\n\n" + code + "\n\nafter\n"
    chunks = parse_doc("f.md", text, max_chunk_lines=10)
    for chunk in chunks:
        assert chunk.text.count("```") in (0, 2), chunk.text
    assert_every_line_covered(text, chunks)


RST = """\
.. _topics-http:

==============
HTTP Requests
==============

Overview text.

Request objects
===============

Attributes.

``path``
--------

The path.

Response objects
================

Body.

Subclasses
----------

Some.
"""


def test_rst_overline_and_underline_styles_define_levels() -> None:
    chunks = parse_doc("docs/ref/request-response.rst", RST)
    assert spans(chunks) == [
        ("request-response", "docs/ref/request-response.rst", 1, 1),
        ("HTTP Requests", "docs/ref/request-response.rst", 3, 7),
        ("HTTP Requests > Request objects", "HTTP Requests", 9, 12),
        ("HTTP Requests > Request objects > ``path``", "HTTP Requests > Request objects", 14, 17),
        ("HTTP Requests > Response objects", "HTTP Requests", 19, 22),
        ("HTTP Requests > Response objects > Subclasses", "HTTP Requests > Response objects", 24, 27),
    ]
    assert {c.language for c in chunks} == {"rst"}


def test_django_style_txt_is_rst() -> None:
    assert doc_language("docs/topics/http/views.txt", RST) == "rst"
    chunks = parse_doc("docs/topics/http/views.txt", RST)
    assert chunks[1].symbol == "HTTP Requests" and chunks[1].language == "rst"


def test_rst_literal_block_is_not_a_heading_and_not_split() -> None:
    text = "Title\n=====\n\nExample::\n\n    code\n    ----\n\n    more code\n\nEnd.\n"
    assert [c.symbol for c in parse_doc("a.rst", text)] == ["Title"]


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("README.md", "", "markdown"),
        ("docs/page.mdx", "", "markdown"),
        ("docs/index.rest", "", "rst"),
        ("notes.txt", "just words\nand more\n", "text"),
        ("README", "plain\n", "text"),
        ("LICENSE", "MIT\n", "text"),
        ("docs/readme.text", "x\n", "text"),
        ("CMakeLists.txt", "project(x)\n", None),
        ("src/main.py", "# Title\n", None),
        ("Makefile", "all:\n", None),
    ],
)
def test_doc_language(path: str, text: str, expected: str | None) -> None:
    assert doc_language(path, text) == expected


def test_plain_text_paragraph_windows() -> None:
    paragraphs = ["\n".join(f"p{n} l{i}" for i in range(3)) for n in range(6)]
    text = "\n\n".join(paragraphs) + "\n"
    chunks = parse_doc("NOTES.txt", text, max_chunk_lines=16)  # windows of up to 8 lines
    assert spans(chunks) == [
        ("NOTES ¶1", "NOTES.txt", 1, 7),
        ("NOTES ¶2", "NOTES.txt", 9, 15),
        ("NOTES ¶3", "NOTES.txt", 17, 23),
    ]
    assert {(c.language, c.kind) for c in chunks} == {("text", "paragraph")}
    assert_every_line_covered(text, chunks)


def test_long_paragraph_is_cut_into_windows() -> None:
    text = "\n".join(f"line {i}" for i in range(25))
    chunks = parse_doc("LICENSE", text, max_chunk_lines=20)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 10), (11, 20), (21, 25)]


@pytest.mark.parametrize("path", ["empty.md", "empty.rst", "empty.txt", "README"])
def test_empty_and_blank_files(path: str) -> None:
    assert parse_doc(path, "") == []
    assert parse_doc(path, "\n\n   \n") == []


@pytest.mark.parametrize(
    "text",
    [
        "#\n\n##\n",
        "```\nunclosed fence\n# x\n",
        "====\n\n====\n",
        "\x00\ufffd\r\n# Title\r\nbody\r\n",
        "- # heading in list\n> # heading in quote\n",
        "Title\n=====\n" * 50,
    ],
)
def test_odd_inputs_never_raise_and_lose_nothing(text: str) -> None:
    for path in ("a.md", "a.rst", "a.txt"):
        chunks = parse_doc(path, text, max_chunk_lines=4)
        assert_every_line_covered(text, chunks)
