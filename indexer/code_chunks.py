"""Source files → chunks, definitions, references and imports, with tree-sitter.

One parse per file. Definitions and references are found with tree-sitter queries, so the
matching runs in C; Python only visits the definition nodes (tens per file) and the captured
references. Per-language differences live in `_SPECS`: node type names, queries and an import
reader; the chunking itself is the same for every language and works on line numbers.

Chunks: each definition gets one (a class chunk holds its header, docstring and fields, with a
one-line stub per method, whose body is in the method's own chunk); the lines between top-level
definitions become "module" chunks. Anything longer than `max_chunk_lines` is split on statement
boundaries, and each continuation piece repeats the signature so it still reads on its own.
"""

from __future__ import annotations

import inspect
import logging
import posixpath
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property
from itertools import accumulate
from typing import NamedTuple

from repolm.indexer.languages import EXTENSIONS, grammar, grammar_for, parser_for
from repolm.indexer.records import Chunk, Definition, Import, ParsedFile, Reference
from tree_sitter import Node, Query, QueryCursor

logger = logging.getLogger(__name__)

# Kinds whose functions are methods and whose members with bodies get chunks of their own.
_TYPE_KINDS = frozenset({"class", "interface", "struct", "enum", "trait", "impl"})
# Rust `mod x { }` and TypeScript namespaces: their members get chunks but stay functions.
_CONTAINER_KINDS = _TYPE_KINDS | {"module"}
# Captures in a definitions query are named after the kind; when two patterns match one node
# (a Go `type_spec` with a struct is also a plain type) the earlier kind here wins.
_KIND_ORDER = ("function", "class", "interface", "struct", "enum", "trait", "impl", "module", "type")

_MAX_SPLIT_DEPTH = 24  # how deep a long statement is split on its children before line windows
_MAX_NAME_DEPTH = 8
_DOTTED = re.compile(r"[\w$#]+(?:\.[\w$#]+)*\Z")
_TAIL_NAME = re.compile(r"[\w$#]+\Z")
_GO_VERSION = re.compile(r"v\d+\Z")
# `index.js` is its directory's module, as `__init__.py` is.
_JS_EXTENSIONS = frozenset(e for e, lang in EXTENSIONS.items() if lang in ("javascript", "typescript"))


@dataclass(frozen=True)
class _Spec:
    """What differs between languages."""

    definitions: str  # query; captures named after kinds, plus @variable on top-level names
    references: str  # query; @call (callee ending in the name), @call.named (has a name field), @inherit
    imports: str  # query; @import nodes handed to `read_imports`
    read_imports: Callable[[_File, Node], list[_Imp]]
    comments: frozenset[str]
    attached: frozenset[str] = frozenset()  # siblings that precede a definition (decorators, attributes)
    # Parents wrapping a single definition: True when they are part of its signature (`export`).
    wrappers: dict[str, bool] = field(default_factory=dict)
    blocks: frozenset[str] = frozenset()  # body node types whose named children are statements
    flatten: frozenset[str] = frozenset()  # statement lists nested in a block (Go)
    colon_header: bool = False  # Python: the header ends at the ':' before the body


@dataclass(frozen=True)
class _Imp:
    """One name an import statement binds ("*" for wildcard imports)."""

    alias: str
    target: str
    pos: int  # byte offset of the imported name, for the reference
    expression: str = ""  # what the reference names when it is not the target (`import a.b` binds `a`)


class _RawRef(NamedTuple):
    pos: int  # byte offset of the name
    row: int
    byte_col: int
    name: str
    expression: str
    kind: str


@dataclass(eq=False)
class _Def:
    node: Node
    kind: str
    name: str
    name_node: Node
    outer: Node  # the node with its wrappers (decorators, `export`, `type ( )`)
    first_row: int  # 0-based; includes attached comments and attributes
    last_row: int
    comments: list[Node]
    body: Node | None
    signature: tuple[int, int, int]  # see _signature_span
    parent: _Def | None = None
    qualname: str = ""
    scope: str = ""
    chunked: bool = False
    members: list[_Def] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)


class _File:
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


def _first_named(node: Node) -> Node | None:
    """The first named child, or None (Node.named_child raises when there is none)."""
    return node.named_child(0) if node.named_child_count else None


def _qualify(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _end_row(node: Node) -> int:
    """Last row with content: a node ending just after a newline (Rust line comments) ends above."""
    end = node.end_point
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row


# ---------------------------------------------------------------- imports, per language


def _python_package(path: str, module: str) -> list[str]:
    parts = module.split(".") if module else []
    is_package = posixpath.basename(path).startswith("__init__.")
    return parts if is_package else parts[:-1]


def _python_imports(f: _File, node: Node) -> list[_Imp]:
    def dotted(n: Node | None) -> str:
        return "".join(f.text(n).split()) if n is not None else ""

    out: list[_Imp] = []
    if node.type == "import_statement":
        for n in node.children_by_field_name("name"):
            if n.type == "aliased_import":
                name = n.child_by_field_name("name")
                target = dotted(name)
                out.append(_Imp(dotted(n.child_by_field_name("alias")), target, n.start_byte))
            else:
                # `import a.b` binds `a`; the reference still names the whole path.
                path = dotted(n)
                top = path.split(".")[0]
                out.append(_Imp(top, top, n.start_byte, path))
        return out
    base = "__future__" if node.type == "future_import_statement" else _python_from(f, node)
    for n in node.children_by_field_name("name"):
        if n.type == "aliased_import":
            name = dotted(n.child_by_field_name("name"))
            out.append(_Imp(dotted(n.child_by_field_name("alias")), _qualify(base, name), n.start_byte))
        else:
            name = dotted(n)
            out.append(_Imp(name.split(".")[-1], _qualify(base, name), n.start_byte))
    out.extend(_Imp("*", base, n.start_byte) for n in node.named_children if n.type == "wildcard_import")
    return out


def _python_from(f: _File, node: Node) -> str:
    """The module of `from X import ...`, with relative imports resolved against this file."""
    module = node.child_by_field_name("module_name")
    if module is None:
        return ""
    if module.type != "relative_import":
        return "".join(f.text(module).split())
    dots, rest = 0, ""
    for child in module.named_children:
        if child.type == "import_prefix":
            dots = len(f.text(child).strip())
        else:
            rest = "".join(f.text(child).split())
    package = _python_package(f.path, f.module)
    package = package[: max(len(package) - (dots - 1), 0)]
    return ".".join([*package, rest] if rest else package)


def _string_content(f: _File, node: Node | None) -> str:
    return f.text(node).strip()[1:-1] if node is not None else ""


def _js_target(f: _File, source: str) -> str:
    """Dotted target of an import specifier: relative paths resolve like module_name."""
    if source.startswith("."):
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(f.path), source))
        parts = [p for p in resolved.split("/") if p not in ("..", ".")]
        if parts and parts[-1] == "index":
            parts.pop()
        return module_name("/".join(parts))
    return source.replace("/", ".")


def _js_imports(f: _File, node: Node) -> list[_Imp]:
    if node.type == "variable_declarator":
        return _js_require(f, node)
    base = _js_target(f, _string_content(f, node.child_by_field_name("source")))
    out: list[_Imp] = []
    for clause in node.named_children:
        if clause.type != "import_clause":
            continue
        for part in clause.named_children:
            if part.type == "identifier":
                out.append(_Imp(f.text(part), f"{base}.default", part.start_byte))
            elif part.type == "namespace_import":
                out.extend(_Imp(f.text(n), base, n.start_byte) for n in part.named_children)
            elif part.type == "named_imports":
                for spec in part.named_children:
                    name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                    if name is not None:
                        bound = f.text(alias if alias is not None else name)
                        out.append(_Imp(bound, f"{base}.{f.text(name)}", name.start_byte))
    return out


def _js_require(f: _File, node: Node) -> list[_Imp]:
    """`const x = require('./m')` and `const {a, b: c} = require('./m')`."""
    call = node.child_by_field_name("value")
    function = call.child_by_field_name("function") if call is not None else None
    if function is None or f.text(function) != "require":
        return []
    args = call.child_by_field_name("arguments")
    source = next((a for a in args.named_children if a.type == "string"), None) if args else None
    if source is None:
        return []
    base = _js_target(f, _string_content(f, source))
    name = node.child_by_field_name("name")
    if name is None:
        return []
    if name.type == "identifier":
        return [_Imp(f.text(name), base, name.start_byte)]
    out: list[_Imp] = []
    for prop in name.named_children if name.type == "object_pattern" else ():
        if prop.type == "shorthand_property_identifier_pattern":
            out.append(_Imp(f.text(prop), f"{base}.{f.text(prop)}", prop.start_byte))
        elif prop.type == "pair_pattern":
            key, value = prop.child_by_field_name("key"), prop.child_by_field_name("value")
            if key is not None and value is not None:
                out.append(_Imp(f.text(value), f"{base}.{f.text(key)}", key.start_byte))
    return out


def _go_imports(f: _File, node: Node) -> list[_Imp]:
    source = _string_content(f, node.child_by_field_name("path"))
    if not source:
        return []
    parts = source.split("/")
    name = node.child_by_field_name("name")
    if name is not None:
        alias = f.text(name)
        if alias == "_":
            return []  # imported for side effects only: binds nothing
        alias = "*" if alias == "." else alias
    else:
        # Major-version suffixes ("example.com/x/v2") are not the package name.
        last_two = parts[-2:]
        alias = last_two[0] if len(last_two) == 2 and _GO_VERSION.match(last_two[1]) else parts[-1]
    return [_Imp(alias, ".".join(parts), node.start_byte)]


def _rust_imports(f: _File, node: Node) -> list[_Imp]:
    argument = node.child_by_field_name("argument")
    found: list[tuple[str, list[str], int]] = []
    if argument is not None:
        _rust_use_tree(f, argument, [], found, 0)
    current = f.module.split(".") if f.module else []
    if current and current[-1] in ("mod", "lib", "main"):
        current.pop()  # mod.rs / lib.rs / main.rs are their directory's module
    return [_Imp(alias, ".".join(_rust_resolve(parts, current)), pos) for alias, parts, pos in found]


def _rust_use_tree(f: _File, node: Node, prefix: list[str], out: list, depth: int) -> None:
    """Flatten `use a::{b, c::d as e, f::*}` into (bound name, path parts, position)."""
    if depth > _MAX_NAME_DEPTH:
        return
    kind = node.type
    if kind == "use_as_clause":
        path, alias = node.child_by_field_name("path"), node.child_by_field_name("alias")
        if path is not None and alias is not None:
            out.append((f.text(alias), prefix + _rust_path(f, path), path.start_byte))
    elif kind == "scoped_use_list":
        path, items = node.child_by_field_name("path"), node.child_by_field_name("list")
        inner = prefix + (_rust_path(f, path) if path is not None else [])
        if items is not None:
            _rust_use_tree(f, items, inner, out, depth + 1)
    elif kind == "use_list":
        for child in node.named_children:
            _rust_use_tree(f, child, prefix, out, depth + 1)
    elif kind == "use_wildcard":
        path = _first_named(node)
        out.append(("*", prefix + (_rust_path(f, path) if path is not None else []), node.start_byte))
    elif kind in ("identifier", "scoped_identifier", "self", "crate", "super"):
        parts = prefix + _rust_path(f, node)
        if len(parts) > 1 and parts[-1] == "self":
            parts = parts[:-1]  # `use a::{self}` binds `a`
        if parts:
            out.append((parts[-1], parts, node.start_byte))


def _rust_path(f: _File, node: Node) -> list[str]:
    return [p for p in "".join(f.text(node).split()).split("::") if p]


def _rust_resolve(parts: list[str], current: list[str]) -> list[str]:
    """Approximate: `crate::` is the repository root, `self::`/`super::` are relative to this file."""
    if parts and parts[0] == "crate":
        return parts[1:]
    if parts and parts[0] in ("self", "super"):
        base = list(current)
        rest = parts[1:] if parts[0] == "self" else parts
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
        return base + rest
    return parts


def _java_imports(f: _File, node: Node) -> list[_Imp]:
    path = next((n for n in node.named_children if n.type in ("scoped_identifier", "identifier")), None)
    if path is None:
        return []
    target = "".join(f.text(path).split())
    if any(n.type == "asterisk" for n in node.named_children):
        return [_Imp("*", target, path.start_byte)]
    return [_Imp(target.split(".")[-1], target, path.start_byte)]


# ---------------------------------------------------------------- per-language tables

_JS_DEFINITIONS = """
[(function_declaration) (generator_function_declaration)] @function
(class_body (method_definition) @function)
(variable_declarator value: [(arrow_function) (function_expression) (generator_function)]) @function
(class_declaration) @class
(program [(lexical_declaration {var}) (variable_declaration {var})])
(program (export_statement declaration: [(lexical_declaration {var}) (variable_declaration {var})]))
""".format(var="(variable_declarator name: (identifier) @variable)")
_JS_CALLS = """
(call_expression function: [(identifier) (member_expression)] @call)
(new_expression constructor: [(identifier) (member_expression)] @call)
"""
_JS_IMPORTS = """
(import_statement) @import
(variable_declarator value: (call_expression function: (identifier) arguments: (arguments (string)))) @import
"""
_TS_TYPES = "[(type_identifier) (nested_type_identifier)]"
_JS_COMMON = {
    "read_imports": _js_imports,
    "comments": frozenset({"comment"}),
    "attached": frozenset({"decorator"}),
    "wrappers": {"export_statement": True, "lexical_declaration": True, "variable_declaration": True},
    "blocks": frozenset({"statement_block", "class_body", "interface_body", "enum_body", "object_type"}),
}
_TS = _Spec(
    definitions=_JS_DEFINITIONS
    + """
(public_field_definition value: [(arrow_function) (function_expression)]) @function
[(function_signature) (method_signature) (abstract_method_signature)] @function
(abstract_class_declaration) @class
(interface_declaration) @interface
(enum_declaration) @enum
(type_alias_declaration) @type
(internal_module) @module
""",
    references=_JS_CALLS
    + f"""
(extends_clause value: [(identifier) (member_expression)] @inherit)
(implements_clause {_TS_TYPES} @inherit)
(implements_clause (generic_type name: {_TS_TYPES} @inherit))
(extends_type_clause type: {_TS_TYPES} @inherit)
(extends_type_clause type: (generic_type name: {_TS_TYPES} @inherit))
""",
    imports=_JS_IMPORTS,
    **_JS_COMMON,
)
_JAVA_TYPES = "[(type_identifier) (scoped_type_identifier)]"
_RUST_CALLEE = "[(identifier) (scoped_identifier) (field_expression)]"
_SPECS: dict[str, _Spec] = {
    "python": _Spec(
        definitions="""
(function_definition) @function
(class_definition) @class
(type_alias_statement) @type
(module (expression_statement (assignment left: (identifier) @variable)))
""",
        references="""
(call function: [(identifier) (attribute)] @call)
(class_definition superclasses: (argument_list [(identifier) (attribute)] @inherit))
""",
        imports="[(import_statement) (import_from_statement) (future_import_statement)] @import",
        read_imports=_python_imports,
        comments=frozenset({"comment"}),
        wrappers={"decorated_definition": False},
        blocks=frozenset({"block"}),
        colon_header=True,
    ),
    "javascript": _Spec(
        definitions=_JS_DEFINITIONS
        + "(field_definition value: [(arrow_function) (function_expression)]) @function",
        references=_JS_CALLS + "(class_heritage [(identifier) (member_expression)] @inherit)",
        imports=_JS_IMPORTS,
        **_JS_COMMON,
    ),
    "typescript": _TS,
    "tsx": _TS,
    "go": _Spec(
        definitions="""
[(function_declaration) (method_declaration)] @function
(type_spec type: (struct_type)) @struct
(type_spec type: (interface_type)) @interface
[(type_spec) (type_alias)] @type
(source_file (var_declaration (var_spec name: (identifier) @variable)))
(source_file (var_declaration (var_spec_list (var_spec name: (identifier) @variable))))
(source_file (const_declaration (const_spec name: (identifier) @variable)))
""",
        references="""
(call_expression function: [(identifier) (selector_expression)] @call)
(field_declaration_list (field_declaration !name type: [(type_identifier) (qualified_type)] @inherit))
(interface_type (type_elem [(type_identifier) (qualified_type)] @inherit))
""",
        imports="(import_spec) @import",
        read_imports=_go_imports,
        comments=frozenset({"comment"}),
        wrappers={"type_declaration": True},
        blocks=frozenset({"block", "field_declaration_list", "interface_type"}),
        flatten=frozenset({"statement_list"}),
    ),
    "rust": _Spec(
        definitions="""
[(function_item) (function_signature_item)] @function
[(struct_item) (union_item)] @struct
(enum_item) @enum
(trait_item) @trait
(impl_item) @impl
(type_item) @type
(mod_item body: (_)) @module
(source_file [(const_item name: (identifier) @variable) (static_item name: (identifier) @variable)])
""",
        references=f"""
(call_expression function: {_RUST_CALLEE} @call)
(call_expression function: (generic_function function: {_RUST_CALLEE} @call))
(macro_invocation macro: [(identifier) (scoped_identifier)] @call)
(impl_item trait: [(type_identifier) (scoped_type_identifier)] @inherit)
(impl_item trait: (generic_type type: [(type_identifier) (scoped_type_identifier)] @inherit))
(trait_item bounds: (trait_bounds [(type_identifier) (scoped_type_identifier)] @inherit))
""",
        imports="(use_declaration) @import",
        read_imports=_rust_imports,
        comments=frozenset({"line_comment", "block_comment"}),
        attached=frozenset({"attribute_item"}),
        blocks=frozenset({"block", "declaration_list", "field_declaration_list", "enum_variant_list"}),
    ),
    "java": _Spec(
        definitions="""
[(method_declaration) (constructor_declaration)] @function
[(class_declaration) (record_declaration)] @class
[(interface_declaration) (annotation_type_declaration)] @interface
(enum_declaration) @enum
""",
        references=f"""
(method_invocation name: (identifier)) @call.named
(object_creation_expression type: {_JAVA_TYPES} @call)
(object_creation_expression type: (generic_type {_JAVA_TYPES} @call))
(superclass {_JAVA_TYPES} @inherit)
(superclass (generic_type {_JAVA_TYPES} @inherit))
(super_interfaces (type_list {_JAVA_TYPES} @inherit))
(super_interfaces (type_list (generic_type {_JAVA_TYPES} @inherit)))
(extends_interfaces (type_list {_JAVA_TYPES} @inherit))
(extends_interfaces (type_list (generic_type {_JAVA_TYPES} @inherit)))
""",
        imports="(import_declaration) @import",
        read_imports=_java_imports,
        comments=frozenset({"line_comment", "block_comment"}),
        blocks=frozenset(
            {"block", "class_body", "interface_body", "enum_body", "constructor_body", "annotation_type_body"}
        ),
    ),
}

# Where a definition keeps its body and its name when it is not the "body"/"name" field.
_BODY_PATH: dict[str, tuple[str, ...]] = {
    "variable_declarator": ("value", "body"),
    "public_field_definition": ("value", "body"),
    "field_definition": ("value", "body"),
    "type_spec": ("type",),
}
_NAME_FIELD: dict[str, str] = {
    "field_definition": "property",
    "impl_item": "type",
    "type_alias_statement": "left",
}


@dataclass(frozen=True)
class _Queries:
    # One query for definitions, references and imports: each query run is a walk of the whole
    # tree, which costs about as much as all the matching.
    everything: Query
    errors: Query  # ERROR nodes (unparsable text) and MISSING ones (a token the parser had to invent)


@cache
def _queries(grammar_name: str) -> _Queries:
    spec, language = _SPECS[grammar_name], grammar(grammar_name)
    everything = "\n".join((spec.definitions, spec.references, spec.imports))
    return _Queries(Query(language, everything), Query(language, "(ERROR) @error (MISSING) @error"))


# ---------------------------------------------------------------- definitions


def _leaf_name(node: Node | None) -> Node | None:
    """The identifier inside a name-ish node (`Foo<T>` → `Foo`, `a::Foo` → `Foo`, `*Foo` → `Foo`)."""
    for _ in range(_MAX_NAME_DEPTH):
        if node is None or node.named_child_count == 0:
            return node
        inner = node.child_by_field_name("name")
        if inner is None:
            inner = node.child_by_field_name("type")
        node = inner if inner is not None else node.named_child(0)
    return node


def _body(node: Node) -> Node | None:
    body: Node | None = node
    for name in _BODY_PATH.get(node.type, ("body",)):
        body = body.child_by_field_name(name) if body is not None else None
    if body is not None and body.type == "struct_type":
        body = body.named_children[-1] if body.named_child_count else None  # Go: the field list
    return body


def _single_child(parent: Node, node: Node) -> bool:
    """Whether `node` is the only child of its type (one declarator, one type spec)."""
    return sum(1 for c in parent.named_children if c.type == node.type) == 1


def _outer(spec: _Spec, node: Node) -> Node:
    outer = node
    while (
        (parent := outer.parent) is not None and parent.type in spec.wrappers and _single_child(parent, outer)
    ):
        outer = parent
    return outer


def _attached(spec: _Spec, outer: Node) -> list[Node]:
    """Comments, decorators and attributes directly above a definition, each on its own line."""
    found: list[Node] = []
    first = outer
    kinds = spec.comments | spec.attached
    prev = first.prev_named_sibling
    while prev is not None and prev.type in kinds and _end_row(prev) >= first.start_point.row - 1:
        before = prev.prev_sibling
        if before is not None and _end_row(before) >= prev.start_point.row:
            break  # a trailing comment of the statement above
        found.append(prev)
        first = prev
        prev = prev.prev_named_sibling
    found.reverse()
    return found


def _collect_definitions(
    f: _File, spec: _Spec, captures: dict[str, list[Node]]
) -> tuple[list[_Def], list[Node]]:
    """Definition nodes in source order (variables apart), named, without nesting yet."""
    seen: set[tuple[int, int]] = set()
    defs: list[_Def] = []
    for kind in _KIND_ORDER:
        for node in captures.get(kind, ()):
            key = (node.start_byte, node.end_byte)
            if key in seen:
                continue
            seen.add(key)
            name_node = _leaf_name(node.child_by_field_name(_NAME_FIELD.get(node.type, "name")))
            name = f.text(name_node).strip() if name_node is not None else ""
            if len(name.split()) != 1:
                continue  # anonymous (`export default class {}`): its lines go to a module chunk
            outer = _outer(spec, node)
            attached = _attached(spec, outer)
            first = attached[0] if attached else outer
            comments = [n for n in attached if n.type in spec.comments]
            body = _body(node)
            signature = _signature_span(spec, node, outer, body)
            first_row, last_row = first.start_point.row, _end_row(outer)
            defs.append(
                _Def(node, kind, name, name_node, outer, first_row, last_row, comments, body, signature)
            )
    defs.sort(key=lambda d: (d.node.start_byte, -d.node.end_byte))
    variables = [
        n for n in captures.get("variable", ()) if (n.parent.start_byte, n.parent.end_byte) not in seen
    ]
    return defs, variables


def _nest(f: _File, defs: list[_Def]) -> None:
    """Parents, qualified names, method kinds and which definitions get chunks of their own."""
    stack: list[_Def] = []
    for d in defs:
        while stack and stack[-1].node.end_byte <= d.node.start_byte:
            stack.pop()
        parent = stack[-1] if stack else None
        d.parent = parent
        d.scope = parent.qualname if parent is not None else f.module
        if d.kind == "function" and parent is not None and parent.kind in _TYPE_KINDS:
            d.kind = "method"
        if d.node.type == "method_declaration" and f.language == "go":
            _go_receiver(f, d)
        d.qualname = _qualify(d.scope, d.name)
        # Bodiless members (interface methods) and members sharing the container's first row stay
        # in the container's chunk.
        d.chunked = parent is None or (
            parent.chunked
            and parent.kind in _CONTAINER_KINDS
            and d.first_row > parent.node.start_point.row
            and d.body is not None
        )
        if d.chunked and parent is not None:
            parent.members.append(d)
        stack.append(d)


def _go_receiver(f: _File, d: _Def) -> None:
    """Go methods are declared outside their type; qualify them as `module.Type.method`."""
    receiver = d.node.child_by_field_name("receiver")
    param = _first_named(receiver) if receiver is not None else None
    type_node = _leaf_name(param.child_by_field_name("type")) if param is not None else None
    if type_node is not None:
        d.kind = "method"
        d.scope = _qualify(f.module, f.text(type_node))


def _signature_span(spec: _Spec, node: Node, outer: Node, body: Node | None) -> tuple[int, int, int]:
    """(start byte, end byte, last row) of the header: up to the body's `:` (Python) or `{`."""
    start = node
    while start != outer and spec.wrappers.get(start.parent.type, False):
        start = start.parent
    if body is None:
        return start.start_byte, node.end_byte, _end_row(node)
    if spec.colon_header:
        colon = body.prev_sibling
        while colon is not None and colon.type in spec.comments:  # comments above the first statement
            colon = colon.prev_sibling
        if colon is not None and colon.type == ":":
            return start.start_byte, colon.end_byte, colon.end_point.row
    else:
        # The brace opens the body, or follows a keyword (Go `interface {`).
        for i in range(min(body.child_count, 2)):
            brace = body.child(i)
            if brace.type == "{":
                return start.start_byte, brace.start_byte, brace.start_point.row
    return start.start_byte, body.start_byte, body.start_point.row


def _docstring(f: _File, spec: _Spec, d: _Def) -> str:
    if spec.colon_header:
        body = d.body
        first = _first_named(body) if body is not None and body.type == "block" else None
        if first is not None and first.type == "expression_statement" and first.named_child_count == 1:
            string = _first_named(first)
            if string.type == "string":
                return _clean_string(f.text(string))
        return ""
    return "\n".join(_clean_comment(f.text(c)) for c in d.comments).strip()


def _clean_string(raw: str) -> str:
    raw = raw.lstrip("rRbBuUfF")
    quote = raw[:3] if raw[:3] in ('"""', "'''") else raw[:1]
    return inspect.cleandoc(raw[len(quote) : len(raw) - len(quote)])


def _clean_comment(raw: str) -> str:
    lines = []
    for line in raw.strip().split("\n"):
        s = line.strip()
        for marker in ("///", "//!", "//", "/**", "/*!", "/*", "#"):
            if s.startswith(marker):
                s = s[len(marker) :]
                break
        else:
            if s.startswith("*") and not s.startswith("*/"):
                s = s[1:]
        lines.append(s.removesuffix("*/").strip())
    return "\n".join(lines).strip()


def _definition(f: _File, spec: _Spec, d: _Def) -> Definition:
    sig_start, sig_end, _ = d.signature
    name_row = d.name_node.start_point.row
    return Definition(
        name=d.name,
        qualname=d.qualname,
        kind=d.kind,
        scope=d.scope,
        start_line=d.outer.start_point.row + 1,
        end_line=d.last_row + 1,
        name_line=name_row + 1,
        name_col=f.col(name_row, d.name_node.start_point.column),
        signature=f.slice(sig_start, sig_end).strip(),
        docstring=_docstring(f, spec, d),
        bases=tuple(d.bases),
    )


def _variable(f: _File, root: Node, name_node: Node) -> Definition:
    statement = name_node
    while statement.parent is not None and statement.parent != root:
        statement = statement.parent
    row = name_node.start_point.row
    name = f.text(name_node)
    return Definition(
        name=name,
        qualname=_qualify(f.module, name),
        kind="variable",
        scope=f.module,
        start_line=statement.start_point.row + 1,
        end_line=_end_row(statement) + 1,
        name_line=row + 1,
        name_col=f.col(row, name_node.start_point.column),
        signature=f.lines[row].strip(),
    )


# ---------------------------------------------------------------- references and imports


def _raw_references(f: _File, captures: dict[str, list[Node]]) -> list[_RawRef]:
    """Calls and inheritance edges; the captured nodes end with the name they use."""
    found = []
    for capture, kind in (("call", "call"), ("call.named", "call"), ("inherit", "inherit")):
        for node in captures.get(capture, ()):
            end_node = node.child_by_field_name("name") if capture == "call.named" else node
            end = end_node.end_byte
            raw = f.slice(node.start_byte, end)
            if _DOTTED.match(raw):  # the common case: `f` or `a.b.f`
                expression, name = raw, raw.rpartition(".")[2]
            else:
                tail = _TAIL_NAME.search(raw)
                if tail is None:
                    continue
                name = tail.group()
                expression = "".join(raw.split()).replace("::", ".").replace("?.", ".")
                if not _DOTTED.match(expression):
                    expression = name  # `f(x).g` or `a[0].g`: only the name is meaningful
            name_bytes = len(name.encode("utf-8", "surrogatepass"))
            row, col = end_node.end_point
            found.append(_RawRef(end - name_bytes, row, col - name_bytes, name, expression, kind))
    return found


def _read_imports(f: _File, spec: _Spec, captures: dict[str, list[Node]]) -> list[_Imp]:
    found: list[_Imp] = []
    for node in captures.get("import", ()):
        found.extend(spec.read_imports(f, node))
    found.sort(key=lambda imp: imp.pos)
    return found


def _innermost(defs: list[_Def], positions: list[int]) -> list[_Def | None]:
    """The innermost definition around each (sorted) byte offset, in one sweep."""
    out: list[_Def | None] = []
    stack: list[_Def] = []
    i = 0
    for pos in positions:
        while i < len(defs) and defs[i].node.start_byte <= pos:
            while stack and stack[-1].node.end_byte <= defs[i].node.start_byte:
                stack.pop()
            stack.append(defs[i])
            i += 1
        while stack and stack[-1].node.end_byte <= pos:
            stack.pop()
        out.append(stack[-1] if stack else None)
    return out


def _references(f: _File, defs: list[_Def], raw: list[_RawRef], imports: list[_Imp]) -> list[Reference]:
    for imp in imports:
        if imp.alias != "*":
            expression = imp.expression or imp.target
            row, byte_col = f.row_col(imp.pos)
            raw.append(_RawRef(imp.pos, row, byte_col, expression.split(".")[-1], expression, "import"))
    raw.sort(key=lambda r: r.pos)
    refs = []
    for r, owner in zip(raw, _innermost(defs, [r.pos for r in raw]), strict=True):
        if r.kind == "inherit" and owner is not None:
            owner.bases.append(r.expression)
        scope = owner.qualname if owner is not None else f.module
        refs.append(Reference(r.name, r.expression, r.kind, scope, r.row + 1, f.col(r.row, r.byte_col)))
    return refs


# ---------------------------------------------------------------- chunks


@dataclass(frozen=True)
class _Segment:
    """Rows [start, end] that a split never cuts; `member` when they are a nested chunk's."""

    start: int
    end: int
    member: _Def | None = None

    @property
    def cost(self) -> int:
        return 1 if self.member is not None else self.end - self.start + 1


def _statement_breaks(node: Node, max_rows: int, out: list[int], depth: int = 0) -> None:
    """Rows where a piece may start: each statement, and inside statements too long to keep whole."""
    out.append(node.start_point.row)
    if node.end_point.row - node.start_point.row >= max_rows and depth < _MAX_SPLIT_DEPTH:
        for child in node.named_children:
            _statement_breaks(child, max_rows, out, depth + 1)


def _segments(lo: int, hi: int, breaks: Iterable[int], members: list[_Def], max_rows: int) -> list[_Segment]:
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


def _trim(f: _File, start: int, end: int) -> tuple[int, int]:
    while start < end and f.blank(start):
        start += 1
    while end > start and f.blank(end):
        end -= 1
    return start, end


def _stub(f: _File, spec: _Spec, member: _Def) -> str:
    """One line standing for a member in its container's chunk: its signature and `...`."""
    sig_start, sig_end, _ = member.signature
    indent = _indent(f.lines[member.node.start_point.row])
    signature = " ".join(f.slice(sig_start, sig_end).split())[:200]
    if member.body is None:
        return indent + signature
    return f"{indent}{signature} ..." if spec.colon_header else f"{indent}{signature} {{ ... }}"


def _render(f: _File, spec: _Spec, piece: list[_Segment]) -> str:
    lines: list[str] = []
    for segment in piece:
        if segment.member is not None:
            lines.append(_stub(f, spec, segment.member))
        else:
            lines.extend(f.lines[segment.start : segment.end + 1])
    return "\n".join(lines)


def _body_units(spec: _Spec, body: Node | None) -> list[Node]:
    if body is None:
        return []
    if body.type not in spec.blocks:
        return [body]  # an expression body (`x => x + 1`)
    units = []
    for child in body.named_children:
        units.extend(child.named_children if child.type in spec.flatten else (child,))
    return units


def _definition_chunks(f: _File, spec: _Spec, d: _Def, max_rows: int) -> list[Chunk]:
    lo, hi, body = d.first_row, d.last_row, d.body
    summary = _docstring(f, spec, d)
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


def _module_chunks(f: _File, root: Node, top: list[_Def], max_rows: int) -> list[Chunk]:
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
    if grammar_name not in _SPECS:
        raise ValueError(f"not a code language: {language!r}")
    f = _File(path, language, text)
    max_rows = max(max_chunk_lines, 1)
    try:
        return _parse(f, grammar_name, max_rows)
    except Exception as exc:
        # One pathological file must not stop a repository's indexing: it keeps plain windows.
        logger.warning("%s: structural parse failed (%s); indexing it as text windows", path, exc)
        return _fallback(f, max_rows)


def _fallback(f: _File, max_rows: int) -> ParsedFile:
    chunks = []
    for start in range(0, len(f.lines), max_rows):
        start, end = _trim(f, start, min(start + max_rows, len(f.lines)) - 1)
        if not f.blank(start):
            text = "\n".join(f.lines[start : end + 1])
            chunks.append(Chunk(f.path, f.language, start + 1, end + 1, f.module, "module", f.module, text))
    return ParsedFile(chunks=chunks, syntax_errors=1)


def _parse(f: _File, grammar_name: str, max_rows: int) -> ParsedFile:
    spec, queries = _SPECS[grammar_name], _queries(grammar_name)
    tree = parser_for(grammar_name).parse(f.data)
    root = tree.root_node
    captures = QueryCursor(queries.everything).captures(root)

    defs, variables = _collect_definitions(f, spec, captures)
    _nest(f, defs)
    imports = _read_imports(f, spec, captures)
    references = _references(f, defs, _raw_references(f, captures), imports)

    top = [d for d in defs if d.parent is None]
    chunks = _module_chunks(f, root, top, max_rows)
    for d in top:
        chunks.extend(_definition_chunks(f, spec, d, max_rows))
    chunks.sort(key=lambda c: (c.start_line, c.end_line))

    definitions = [_definition(f, spec, d) for d in defs]
    definitions.extend(_variable(f, root, n) for n in variables)
    errors = len(QueryCursor(queries.errors).captures(root).get("error", ())) if root.has_error else 0
    return ParsedFile(
        chunks=chunks,
        definitions=definitions,
        references=references,
        imports=[Import(imp.alias, imp.target, f.row_col(imp.pos)[0] + 1) for imp in imports],
        syntax_errors=errors,
    )
