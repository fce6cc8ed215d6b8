"""Tree-sitter chunking, definitions, references and imports, one small real file per language."""

from __future__ import annotations

import pytest

from repolm.indexer.code_chunks import parse_code
from repolm.indexer.code_source import module_name
from repolm.indexer.languages import CODE_LANGUAGES, language_for_path, parser_for
from repolm.indexer.records import Import, ParsedFile, Reference, decorators_last

PYTHON = '''\
"""Module doc."""
import os.path as osp
from .x import y as z

LIMIT = 10


# Shapes with an area.
@register(kind="shape")
class Shape(Base, mixins.Named, metaclass=Meta):
    """A shape."""

    sides: int = 0

    def area(self, scale: float = 1.0) -> float:
        """Area, scaled."""
        return compute(self.sides) * osp.join("a", "b")

    sides_doc = "after the method"


def make(kind,
         size):
    return Shape()


if __name__ == "__main__":
    make(1, 2)
'''

JAVASCRIPT = """\
import { helper as h } from './util.js';
const fs = require('fs');

/** Shapes. */
class Shape extends Base {
  constructor(n) {
    super();
    this.n = n;
  }

  area() {
    return h(this.n);
  }
}

export function make(n) {
  return new Shape(n);
}
"""

TYPESCRIPT = """\
import D, { a as b } from '../lib/x';

export interface Named extends Base {
  name(): string;
}

// A point.
export class Point implements Named {
  x: number = 0;

  name(): string {
    return fmt.label(this.x);
  }
}

export type Id = string;

export function origin(): Point {
  return new Point();
}
"""

TSX = """\
import React from 'react';
import { Props } from './types';

interface CardProps extends Props {
  title: string;
}

export class Card extends React.Component<CardProps> {
  render() {
    return <div>{format(this.props.title)}</div>;
  }
}

export const List = (p: Props) => {
  return <ul>{p.items.map(render)}</ul>;
};
"""

GO = """\
package server

import (
	"fmt"
	ex "os/exec"
)

// Server serves requests.
// It is safe for concurrent use.
type Server struct {
	Base
	name string
}

type Handler interface {
	Serve() error
}

func (s *Server) Start(port int) error {
	fmt.Println("start", port)
	return s.run()
}

func New() *Server {
	ex.Command("ls")
	return &Server{}
}
"""

RUST = """\
use std::collections::{HashMap, hash_map::Entry as E};
use super::sib;

/// A connection.
#[derive(Debug)]
pub struct Conn {
    id: u32,
}

impl Display for Conn {
    fn fmt(&self, f: &mut Formatter) -> Result {
        write!(f, "conn")
    }
}

pub fn open() -> Conn {
    Conn::new()
}
"""

JAVA = """\
package com.acme;

import java.util.List;

/** A greeter. */
public class Greeter extends Base implements Runnable {
    private final String name;

    public Greeter(String name) {
        this.name = name;
    }

    public void run() {
        System.out.println(format(name));
    }
}
"""


def _spans(parsed: ParsedFile) -> list[tuple[str, str, int, int]]:
    return [(c.symbol, c.kind, c.start_line, c.end_line) for c in parsed.chunks]


def _refs(parsed: ParsedFile, kind: str) -> list[tuple[str, str, str]]:
    return [(r.name, r.expression, r.scope) for r in parsed.references if r.kind == kind]


def _covered_lines(parsed: ParsedFile) -> list[int]:
    """Lines claimed by chunks, where a container chunk does not claim its members' lines."""
    lines = []
    for chunk in parsed.chunks:
        inner = [
            other
            for other in parsed.chunks
            if other is not chunk
            and other.scope == chunk.symbol
            and chunk.start_line <= other.start_line <= other.end_line <= chunk.end_line
        ]
        for line in range(chunk.start_line, chunk.end_line + 1):
            if not any(o.start_line <= line <= o.end_line for o in inner):
                lines.append(line)
    return lines


def _assert_every_line_once(parsed: ParsedFile, text: str) -> None:
    covered = _covered_lines(parsed)
    content = [i for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    assert sorted(set(covered) & set(content)) == content  # nothing lost
    duplicated = {line for line in covered if covered.count(line) > 1} & set(content)
    assert not duplicated


def test_the_embedder_reads_signature_and_docstring_before_decorators() -> None:
    source = (
        "@pytest.mark.parametrize(\n"
        '    "value, expected",\n'
        "    ((1, 2), (3, 4)),\n"
        ")\n"
        "def test_double(value, expected):\n"
        '    """Doubles small numbers."""\n'
        "    assert value * 2 == expected\n"
    )
    (chunk,) = [c for c in parse_code("tests/test_math.py", "python", source).chunks if c.kind == "function"]
    assert chunk.text.startswith("@pytest")  # the chunk itself, and what is shown, keep the source order
    assert chunk.embedding_text.splitlines() == [
        "tests/test_math.py tests.test_math.test_double",
        "def test_double(value, expected):",
        '    """Doubles small numbers."""',
        "    assert value * 2 == expected",
        "@pytest.mark.parametrize(",
        '    "value, expected",',
        "    ((1, 2), (3, 4)),",
        ")",
    ]
    java = '/** Adds. */\n@Override\n@SuppressWarnings({"x"})\npublic int add(int a) { return a; }\n'
    moved = '/** Adds. */\npublic int add(int a) { return a; }\n@Override\n@SuppressWarnings({"x"})\n'
    assert decorators_last(java) == moved
    assert decorators_last("#[derive(Debug)]\npub struct S;") == "pub struct S;\n#[derive(Debug)]\n"
    unclosed = "@route(\ndef f(): pass\n"
    assert decorators_last(unclosed) == unclosed


def test_the_first_chunk_of_a_documented_definition_carries_its_docstring_as_summary() -> None:
    body = "".join(f"        total += step({i})\n" for i in range(30))
    source = (
        "class Ledger:\n"
        '    """Keeps the accounts."""\n'
        "\n"
        "    def balance(self, steps):\n"
        '        """Sum of every step,\n\n        oldest first."""\n'
        f"        total = 0\n{body}        return total\n"
        "\n"
        "    def reset(self):\n"
        "        self.total = 0\n"
    )
    chunks = parse_code("ledger.py", "python", source, max_chunk_lines=10).chunks
    summaries = [(c.symbol, c.summary) for c in chunks]
    balance = [s for symbol, s in summaries if symbol == "ledger.Ledger.balance"]
    assert len(balance) > 1 and balance[0] == "Sum of every step,\n\noldest first." and not any(balance[1:])
    assert ("ledger.Ledger", "Keeps the accounts.") in summaries
    assert ("ledger.Ledger.reset", "") in summaries
    assert [c.summary_hash == "" for c in chunks] == [not c.summary for c in chunks]
    (add,) = parse_code(
        "calc.js", "javascript", "/** Adds two numbers. */\nfunction add(a, b) { return a + b; }\n"
    ).chunks
    assert add.summary == "Adds two numbers."


# ---------------------------------------------------------------- one sample per language


def test_python_chunks() -> None:
    parsed = parse_code("pkg/sub/shapes.py", "python", PYTHON)
    assert _spans(parsed) == [
        ("pkg.sub.shapes", "module", 1, 5),
        ("pkg.sub.shapes.Shape", "class", 8, 19),
        ("pkg.sub.shapes.Shape.area", "method", 15, 17),
        ("pkg.sub.shapes.make", "function", 22, 24),
        ("pkg.sub.shapes", "module", 27, 28),
    ]
    shape = parsed.chunks[1]
    assert shape.scope == "pkg.sub.shapes"
    # The class chunk keeps its comment, decorator, docstring and fields, and a stub for the method.
    assert shape.text.splitlines() == [
        "# Shapes with an area.",
        '@register(kind="shape")',
        "class Shape(Base, mixins.Named, metaclass=Meta):",
        '    """A shape."""',
        "",
        "    sides: int = 0",
        "",
        "    def area(self, scale: float = 1.0) -> float: ...",
        "",
        '    sides_doc = "after the method"',
    ]
    assert "compute" not in shape.text
    assert parsed.chunks[2].scope == "pkg.sub.shapes.Shape"
    assert parsed.chunks[2].text.startswith("    def area(")
    _assert_every_line_once(parsed, PYTHON)


def test_python_definitions_docstrings_and_signatures() -> None:
    parsed = parse_code("pkg/sub/shapes.py", "python", PYTHON)
    by_name = {d.qualname: d for d in parsed.definitions}
    assert set(by_name) == {
        "pkg.sub.shapes.LIMIT",
        "pkg.sub.shapes.Shape",
        "pkg.sub.shapes.Shape.area",
        "pkg.sub.shapes.make",
    }
    shape = by_name["pkg.sub.shapes.Shape"]
    assert (shape.kind, shape.start_line, shape.end_line) == ("class", 9, 19)
    assert (shape.name_line, shape.name_col) == (10, 6)
    assert shape.signature == "class Shape(Base, mixins.Named, metaclass=Meta):"
    assert shape.docstring == "A shape."
    assert shape.bases == ("Base", "mixins.Named")
    area = by_name["pkg.sub.shapes.Shape.area"]
    assert (area.kind, area.scope, area.name_line, area.name_col) == ("method", "pkg.sub.shapes.Shape", 15, 8)
    assert area.signature == "def area(self, scale: float = 1.0) -> float:"
    assert area.docstring == "Area, scaled."
    make = by_name["pkg.sub.shapes.make"]
    assert make.signature == "def make(kind,\n         size):"
    assert make.docstring == ""
    limit = by_name["pkg.sub.shapes.LIMIT"]
    assert (limit.kind, limit.start_line, limit.name_col) == ("variable", 5, 0)


def test_python_references_and_imports() -> None:
    parsed = parse_code("pkg/sub/shapes.py", "python", PYTHON)
    assert _refs(parsed, "call") == [
        ("register", "register", "pkg.sub.shapes"),  # the decorator runs outside the class
        ("compute", "compute", "pkg.sub.shapes.Shape.area"),
        ("join", "osp.join", "pkg.sub.shapes.Shape.area"),
        ("Shape", "Shape", "pkg.sub.shapes.make"),
        ("make", "make", "pkg.sub.shapes"),
    ]
    assert _refs(parsed, "inherit") == [
        ("Base", "Base", "pkg.sub.shapes.Shape"),
        ("Named", "mixins.Named", "pkg.sub.shapes.Shape"),
    ]
    assert _refs(parsed, "import") == [
        ("path", "os.path", "pkg.sub.shapes"),
        ("y", "pkg.sub.x.y", "pkg.sub.shapes"),
    ]
    assert parsed.imports == [Import("osp", "os.path", 2), Import("z", "pkg.sub.x.y", 3)]
    compute = next(r for r in parsed.references if r.name == "compute")
    assert (compute.line, compute.col) == (17, 15)
    assert parsed.syntax_errors == 0


def test_javascript() -> None:
    parsed = parse_code("web/shape.js", "javascript", JAVASCRIPT)
    assert _spans(parsed) == [
        ("web.shape", "module", 1, 2),
        ("web.shape.Shape", "class", 4, 14),
        ("web.shape.Shape.constructor", "method", 6, 9),
        ("web.shape.Shape.area", "method", 11, 13),
        ("web.shape.make", "function", 16, 18),
    ]
    shape = next(d for d in parsed.definitions if d.qualname == "web.shape.Shape")
    assert (shape.docstring, shape.bases, shape.signature) == (
        "Shapes.",
        ("Base",),
        "class Shape extends Base",
    )
    make = next(d for d in parsed.definitions if d.name == "make")
    assert (make.signature, make.name_line, make.name_col) == ("export function make(n)", 16, 16)
    assert ("h", "h", "web.shape.Shape.area") in _refs(parsed, "call")
    assert ("Shape", "Shape", "web.shape.make") in _refs(parsed, "call")  # `new Shape(n)`
    assert _refs(parsed, "inherit") == [("Base", "Base", "web.shape.Shape")]
    assert parsed.imports == [Import("h", "web.util.helper", 1), Import("fs", "fs", 2)]
    _assert_every_line_once(parsed, JAVASCRIPT)


def test_typescript() -> None:
    parsed = parse_code("src/app/point.ts", "typescript", TYPESCRIPT)
    assert _spans(parsed) == [
        ("app.point", "module", 1, 1),
        ("app.point.Named", "interface", 3, 5),
        ("app.point.Point", "class", 7, 14),
        ("app.point.Point.name", "method", 11, 13),
        ("app.point.Id", "type", 16, 16),
        ("app.point.origin", "function", 18, 20),
    ]
    defs = {d.qualname: d for d in parsed.definitions}
    assert defs["app.point.Named.name"].kind == "method"  # a signature: no chunk of its own
    assert defs["app.point.Point"].docstring == "A point."
    assert defs["app.point.Point"].bases == ("Named",)
    assert defs["app.point.Named"].bases == ("Base",)
    assert defs["app.point.Point"].signature == "export class Point implements Named"
    assert ("label", "fmt.label", "app.point.Point.name") in _refs(parsed, "call")
    assert ("Point", "Point", "app.point.origin") in _refs(parsed, "call")
    # '../lib/x' from src/app/ is src/lib/x, whose module name drops the leading src/.
    assert parsed.imports == [Import("D", "lib.x.default", 1), Import("b", "lib.x.a", 1)]
    _assert_every_line_once(parsed, TYPESCRIPT)


def test_tsx_uses_the_tsx_grammar() -> None:
    parsed = parse_code("src/ui/card.tsx", "typescript", TSX)
    assert parsed.syntax_errors == 0  # JSX would be errors under the plain TypeScript grammar
    assert _spans(parsed) == [
        ("ui.card", "module", 1, 2),
        ("ui.card.CardProps", "interface", 4, 6),
        ("ui.card.Card", "class", 8, 12),
        ("ui.card.Card.render", "method", 9, 11),
        ("ui.card.List", "function", 14, 16),
    ]
    assert all(c.language == "typescript" for c in parsed.chunks)
    assert _refs(parsed, "call") == [
        ("format", "format", "ui.card.Card.render"),
        ("map", "p.items.map", "ui.card.List"),
    ]
    assert _refs(parsed, "inherit") == [
        ("Props", "Props", "ui.card.CardProps"),
        ("Component", "React.Component", "ui.card.Card"),
    ]
    assert parsed.imports == [Import("React", "react.default", 1), Import("Props", "ui.types.Props", 2)]


def test_go() -> None:
    parsed = parse_code("cmd/server/main.go", "go", GO)
    assert _spans(parsed) == [
        ("cmd.server.main", "module", 1, 6),
        ("cmd.server.main.Server", "struct", 8, 13),
        ("cmd.server.main.Handler", "interface", 15, 17),
        ("cmd.server.main.Server.Start", "method", 19, 22),
        ("cmd.server.main.New", "function", 24, 27),
    ]
    defs = {d.qualname: d for d in parsed.definitions}
    server = defs["cmd.server.main.Server"]
    assert server.docstring == "Server serves requests.\nIt is safe for concurrent use."
    assert (server.signature, server.bases, server.name_col) == ("type Server struct", ("Base",), 5)
    start = defs["cmd.server.main.Server.Start"]
    assert (start.kind, start.scope) == ("method", "cmd.server.main.Server")
    assert start.signature == "func (s *Server) Start(port int) error"
    assert _refs(parsed, "call") == [
        ("Println", "fmt.Println", "cmd.server.main.Server.Start"),
        ("run", "s.run", "cmd.server.main.Server.Start"),
        ("Command", "ex.Command", "cmd.server.main.New"),
    ]
    assert parsed.imports == [Import("fmt", "fmt", 4), Import("ex", "os.exec", 5)]
    _assert_every_line_once(parsed, GO)


def test_rust() -> None:
    parsed = parse_code("src/net/conn.rs", "rust", RUST)
    assert _spans(parsed) == [
        ("net.conn", "module", 1, 2),
        ("net.conn.Conn", "struct", 4, 8),
        ("net.conn.Conn", "impl", 10, 14),
        ("net.conn.Conn.fmt", "method", 11, 13),
        ("net.conn.open", "function", 16, 18),
    ]
    defs = [(d.qualname, d.kind, d.bases) for d in parsed.definitions]
    assert ("net.conn.Conn", "impl", ("Display",)) in defs
    assert ("net.conn.Conn.fmt", "method", ()) in defs
    conn = next(d for d in parsed.definitions if d.kind == "struct")
    assert (conn.docstring, conn.signature) == ("A connection.", "pub struct Conn")
    assert _refs(parsed, "call") == [
        ("write", "write", "net.conn.Conn.fmt"),
        ("new", "Conn.new", "net.conn.open"),
    ]
    assert parsed.imports == [
        Import("HashMap", "std.collections.HashMap", 1),
        Import("E", "std.collections.hash_map.Entry", 1),
        Import("sib", "net.sib", 2),  # super:: of net/conn.rs is net
    ]
    _assert_every_line_once(parsed, RUST)


def test_java() -> None:
    parsed = parse_code("src/com/acme/Greeter.java", "java", JAVA)
    assert _spans(parsed) == [
        ("com.acme.Greeter", "module", 1, 3),
        ("com.acme.Greeter.Greeter", "class", 5, 16),
        ("com.acme.Greeter.Greeter.Greeter", "method", 9, 11),
        ("com.acme.Greeter.Greeter.run", "method", 13, 15),
    ]
    greeter = next(d for d in parsed.definitions if d.kind == "class")
    assert greeter.bases == ("Base", "Runnable")
    assert greeter.docstring == "A greeter."
    assert greeter.signature == "public class Greeter extends Base implements Runnable"
    assert _refs(parsed, "call") == [
        ("println", "System.out.println", "com.acme.Greeter.Greeter.run"),
        ("format", "format", "com.acme.Greeter.Greeter.run"),
    ]
    assert parsed.imports == [Import("List", "java.util.List", 3)]
    class_chunk = parsed.chunks[1]
    assert "private final String name;" in class_chunk.text
    assert "this.name = name" not in class_chunk.text
    assert class_chunk.text.endswith("    public void run() { ... }\n}")
    _assert_every_line_once(parsed, JAVA)


# ---------------------------------------------------------------- splitting long definitions


def _long_function(statements: int) -> str:
    body = "".join(f"        total += step({i})\n" for i in range(statements))
    header = "class Calc:\n    def run(self,\n            steps):\n"
    return f"{header}        total = 0\n{body}        return total\n"


def test_long_function_is_split_on_statements_with_the_signature_repeated() -> None:
    text = _long_function(40)  # the method spans lines 2..45
    parsed = parse_code("calc.py", "python", text, max_chunk_lines=10)
    pieces = [c for c in parsed.chunks if c.symbol == "calc.Calc.run"]
    assert len(pieces) == 5
    assert [(p.start_line, p.end_line) for p in pieces] == [(2, 11), (12, 21), (22, 31), (32, 41), (42, 45)]
    assert all(p.kind == "method" and p.scope == "calc.Calc" for p in pieces)
    assert pieces[0].text.startswith("    def run(self,\n            steps):\n        total = 0\n")
    for piece in pieces[1:]:
        lines = piece.text.split("\n")
        assert lines[:3] == ["    def run(self,", "            steps):", "        ..."]
        assert lines[3:] == text.split("\n")[piece.start_line - 1 : piece.end_line]
    body_lines = [n for p in pieces for n in range(p.start_line, p.end_line + 1)]
    assert sorted(body_lines) == list(range(2, 46))  # every line of the method exactly once
    assert parsed.chunks[0].symbol == "calc.Calc" and parsed.chunks[0].text.count("\n") == 1


def test_a_single_long_statement_is_split_on_its_children() -> None:
    inner = "".join(f"        x{i} = {i}\n" for i in range(30))
    text = f"def f(a):\n    if a:\n{inner}    return a\n"
    parsed = parse_code("m.py", "python", text, max_chunk_lines=8)
    pieces = [c for c in parsed.chunks if c.symbol == "m.f"]
    assert all(p.end_line - p.start_line + 1 <= 8 for p in pieces)
    lines = sorted(n for p in pieces for n in range(p.start_line, p.end_line + 1))
    assert lines == list(range(1, 34))
    for piece in pieces[1:]:
        assert piece.text.startswith("def f(a):\n")
        # each piece starts on a statement of the `if` body, never mid-line
        assert text.split("\n")[piece.start_line - 1].strip().startswith(("x", "return"))


def test_long_brace_function_keeps_the_closing_brace_in_the_last_piece() -> None:
    body = "".join(f"    step({i});\n" for i in range(20))
    text = f"function run(n) {{\n{body}}}\n"
    parsed = parse_code("run.js", "javascript", text, max_chunk_lines=8)
    pieces = [c for c in parsed.chunks if c.symbol == "run.run"]
    assert [(p.start_line, p.end_line) for p in pieces] == [(1, 8), (9, 16), (17, 22)]
    assert pieces[1].text.split("\n")[:2] == ["function run(n) {", "    ..."]
    assert pieces[-1].text.endswith("    step(19);\n}")


def test_long_module_block_is_split() -> None:
    text = "".join(f"NAME_{i} = {i}\n" for i in range(25))
    parsed = parse_code("consts.py", "python", text, max_chunk_lines=10)
    assert _spans(parsed) == [
        ("consts", "module", 1, 10),
        ("consts", "module", 11, 20),
        ("consts", "module", 21, 25),
    ]
    assert len([d for d in parsed.definitions if d.kind == "variable"]) == 25


# ---------------------------------------------------------------- robustness


def test_syntax_errors_still_chunk() -> None:
    text = "def broken(:\n    return 1\n\nclass Fine:\n    def ok(self):\n        return call()\n"
    parsed = parse_code("bad.py", "python", text)
    assert parsed.syntax_errors >= 1
    symbols = [c.symbol for c in parsed.chunks]
    assert "bad.Fine" in symbols and "bad.Fine.ok" in symbols
    _assert_every_line_once(parsed, text)
    assert ("call", "call", "bad.Fine.ok") in _refs(parsed, "call")


@pytest.mark.parametrize("language", ["python", "javascript", "typescript", "go", "rust", "java"])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n   \n",
        "# only a comment\n// another\n/* block */\n",
        "\x00\x01\ufffd\udc80 garbage ))) {{{ <<< ''' \"\"\" \n" * 20,
        "f(" * 3000 + ")" * 3000,
        "{" * 2000 + "}" * 2000,
        "".join("    " * i + "def f():\n" for i in range(300)),
        "class A { void m() { if (x) { while (y) { z(); } } } }\r\nclass B {}\r\n",
    ],
)
def test_never_raises(language: str, text: str, caplog: pytest.LogCaptureFixture) -> None:
    parsed = parse_code("weird/file.x", language, text)
    assert not caplog.records  # handled by the structural path, not the plain-windows fallback
    content = [i for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    covered = {n for c in parsed.chunks for n in range(c.start_line, c.end_line + 1)}
    assert set(content) <= covered


def test_empty_file_has_nothing() -> None:
    assert parse_code("e.py", "python", "") == ParsedFile()


# ---------------------------------------------------------------- positions and names


def test_non_ascii_columns_are_characters() -> None:
    text = 'naïve = "héllo"; y = greet(ü=1)\ndef ünïcode(): return bär()\n'
    parsed = parse_code("u.py", "python", text)
    greet = next(r for r in parsed.references if r.name == "greet")
    assert (greet.line, greet.col) == (1, text.split("\n")[0].index("greet"))
    bar = next(r for r in parsed.references if r.name == "bär")
    assert (bar.line, bar.col, bar.scope) == (2, 22, "u.ünïcode")
    fn = next(d for d in parsed.definitions if d.kind == "function")
    assert (fn.name, fn.name_line, fn.name_col) == ("ünïcode", 2, 4)
    y = next(d for d in parsed.definitions if d.name == "y")
    assert y.name_col == 17


def test_crlf_text_keeps_lines_and_strips_carriage_returns() -> None:
    parsed = parse_code("w.go", "go", "package w\r\n\r\nfunc A() {\r\n\tb()\r\n}\r\n")
    assert _spans(parsed) == [("w", "module", 1, 1), ("w.A", "function", 3, 5)]
    assert "\r" not in parsed.chunks[1].text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pkg/sub/mod.py", "pkg.sub.mod"),
        ("pkg/__init__.py", "pkg"),
        ("src/pkg/mod.py", "pkg.mod"),
        ("lib/util.ts", "util"),
        ("cmd/server/main.go", "cmd.server.main"),
        ("web/components/index.tsx", "web.components"),
        ("types/api.d.ts", "types.api"),
        ("docs/index.py", "docs.index"),
    ],
)
def test_module_name(path: str, expected: str) -> None:
    assert module_name(path) == expected


@pytest.mark.parametrize(
    ("source", "targets"),
    [
        ("from .x import y", ["pkg.sub.x.y"]),
        ("from .. import q", ["pkg.q"]),
        ("from ..a.b import c as d", ["pkg.a.b.c"]),
        ("from . import *", ["pkg.sub"]),
        ("import a.b", ["a"]),
        ("import a.b as c", ["a.b"]),
    ],
)
def test_python_relative_imports_resolve_against_the_module(source: str, targets: list[str]) -> None:
    parsed = parse_code("pkg/sub/mod.py", "python", source + "\n")
    assert [i.target for i in parsed.imports] == targets


def test_python_relative_import_in_a_package_init() -> None:
    parsed = parse_code("pkg/sub/__init__.py", "python", "from .x import y\nfrom .. import z\n")
    assert parsed.imports == [Import("y", "pkg.sub.x.y", 1), Import("z", "pkg.z", 2)]


def test_javascript_require_and_namespace_imports() -> None:
    text = "import * as ns from './lib/n';\nconst { a, b: c } = require('../m');\n"
    parsed = parse_code("app/src/main.js", "javascript", text)
    assert parsed.imports == [
        Import("ns", "app.src.lib.n", 1),
        Import("a", "app.m.a", 2),
        Import("c", "app.m.b", 2),
    ]


def test_rust_use_forms() -> None:
    text = "use crate::a::b;\nuse self::inner::{self, Thing as T};\nuse std::io::*;\n"
    parsed = parse_code("src/net/mod.rs", "rust", text)
    assert parsed.imports == [
        Import("b", "a.b", 1),
        Import("inner", "net.inner", 2),
        Import("T", "net.inner.Thing", 2),
        Import("*", "std.io", 3),
    ]


def test_languages_registry() -> None:
    assert {"python", "javascript", "typescript", "go", "rust", "java"} == CODE_LANGUAGES
    assert [language_for_path(p) for p in ("a.pyi", "b.mjs", "c.tsx", "d.cts", "e.rs", "F.java", "g.md")] == [
        "python",
        "javascript",
        "typescript",
        "typescript",
        "rust",
        "java",
        None,
    ]
    assert parser_for("go") is parser_for("go")
    assert parser_for("tsx").language != parser_for("typescript").language


def test_reference_positions_point_at_the_name() -> None:
    text = "function f() {\n  a.b\n   .c();\n}\n"
    parsed = parse_code("p.js", "javascript", text)
    assert parsed.references == [Reference("c", "a.b.c", "call", "p.f", 3, 4)]
