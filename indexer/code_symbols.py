"""The definitions and references of one parsed file, from the captures of its language's queries.

Python only visits the definition nodes (tens per file) and the captured references: the matching
itself runs in C. Definitions are nested into qualified names (methods in their class, Go methods on
their receiver's type); references are attributed to the innermost definition around them.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from tree_sitter import Node

from repolm.indexer.code_imports import BoundName
from repolm.indexer.code_source import MAX_NAME_DEPTH, SourceFile, end_row, first_named, qualify
from repolm.indexer.code_specs import BODY_PATH, NAME_FIELD, LanguageSpec
from repolm.indexer.records import Definition, Reference

# Kinds whose functions are methods and whose members with bodies get chunks of their own.
_TYPE_KINDS = frozenset({"class", "interface", "struct", "enum", "trait", "impl"})
# Rust `mod x { }` and TypeScript namespaces: their members get chunks but stay functions.
_CONTAINER_KINDS = _TYPE_KINDS | {"module"}
# Captures in a definitions query are named after the kind; when two patterns match one node
# (a Go `type_spec` with a struct is also a plain type) the earlier kind here wins.
_KIND_ORDER = ("function", "class", "interface", "struct", "enum", "trait", "impl", "module", "type")

_DOTTED = re.compile(r"[\w$#]+(?:\.[\w$#]+)*\Z")
_TAIL_NAME = re.compile(r"[\w$#]+\Z")


class _RawRef(NamedTuple):
    pos: int  # byte offset of the name
    row: int
    byte_col: int
    name: str
    expression: str
    kind: str


@dataclass(eq=False)
class DefinitionNode:
    """A definition's tree-sitter node and what the steps learn about it: its rows, its header, its place
    among the other definitions; chunking reads it too."""

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
    parent: DefinitionNode | None = None
    qualname: str = ""
    scope: str = ""
    chunked: bool = False
    members: list[DefinitionNode] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- definitions


def _leaf_name(node: Node | None) -> Node | None:
    """The identifier inside a name-ish node (`Foo<T>` → `Foo`, `a::Foo` → `Foo`, `*Foo` → `Foo`)."""
    for _ in range(MAX_NAME_DEPTH):
        if node is None or node.named_child_count == 0:
            return node
        inner = node.child_by_field_name("name")
        if inner is None:
            inner = node.child_by_field_name("type")
        node = inner if inner is not None else node.named_child(0)
    return node


def _body(node: Node) -> Node | None:
    body: Node | None = node
    for name in BODY_PATH.get(node.type, ("body",)):
        body = body.child_by_field_name(name) if body is not None else None
    if body is not None and body.type == "struct_type":
        body = body.named_children[-1] if body.named_child_count else None  # Go: the field list
    return body


def _single_child(parent: Node, node: Node) -> bool:
    """Whether `node` is the only child of its type (one declarator, one type spec)."""
    return sum(1 for c in parent.named_children if c.type == node.type) == 1


def _outer(spec: LanguageSpec, node: Node) -> Node:
    outer = node
    while (
        (parent := outer.parent) is not None and parent.type in spec.wrappers and _single_child(parent, outer)
    ):
        outer = parent
    return outer


def _attached(spec: LanguageSpec, outer: Node) -> list[Node]:
    """Comments, decorators and attributes directly above a definition, each on its own line."""
    found: list[Node] = []
    first = outer
    kinds = spec.comments | spec.attached
    prev = first.prev_named_sibling
    while prev is not None and prev.type in kinds and end_row(prev) >= first.start_point.row - 1:
        before = prev.prev_sibling
        if before is not None and end_row(before) >= prev.start_point.row:
            break  # a trailing comment of the statement above
        found.append(prev)
        first = prev
        prev = prev.prev_named_sibling
    found.reverse()
    return found


def collect_definitions(
    f: SourceFile, spec: LanguageSpec, captures: dict[str, list[Node]]
) -> tuple[list[DefinitionNode], list[Node]]:
    """Definition nodes in source order (variables apart), named, without nesting yet."""
    seen: set[tuple[int, int]] = set()
    defs: list[DefinitionNode] = []
    for kind in _KIND_ORDER:
        for node in captures.get(kind, ()):
            key = (node.start_byte, node.end_byte)
            if key in seen:
                continue
            seen.add(key)
            name_node = _leaf_name(node.child_by_field_name(NAME_FIELD.get(node.type, "name")))
            name = f.text(name_node).strip() if name_node is not None else ""
            if len(name.split()) != 1:
                continue  # anonymous (`export default class {}`): its lines go to a module chunk
            outer = _outer(spec, node)
            attached = _attached(spec, outer)
            first = attached[0] if attached else outer
            comments = [n for n in attached if n.type in spec.comments]
            body = _body(node)
            signature = _signature_span(spec, node, outer, body)
            first_row, last_row = first.start_point.row, end_row(outer)
            defs.append(
                DefinitionNode(
                    node, kind, name, name_node, outer, first_row, last_row, comments, body, signature
                )
            )
    defs.sort(key=lambda d: (d.node.start_byte, -d.node.end_byte))
    variables = [
        n for n in captures.get("variable", ()) if (n.parent.start_byte, n.parent.end_byte) not in seen
    ]
    return defs, variables


def nest_definitions(f: SourceFile, defs: list[DefinitionNode]) -> None:
    """Parents, qualified names, method kinds and which definitions get chunks of their own."""
    stack: list[DefinitionNode] = []
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
        d.qualname = qualify(d.scope, d.name)
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


def _go_receiver(f: SourceFile, d: DefinitionNode) -> None:
    """Go methods are declared outside their type; qualify them as `module.Type.method`."""
    receiver = d.node.child_by_field_name("receiver")
    param = first_named(receiver) if receiver is not None else None
    type_node = _leaf_name(param.child_by_field_name("type")) if param is not None else None
    if type_node is not None:
        d.kind = "method"
        d.scope = qualify(f.module, f.text(type_node))


def _signature_span(spec: LanguageSpec, node: Node, outer: Node, body: Node | None) -> tuple[int, int, int]:
    """(start byte, end byte, last row) of the header: up to the body's `:` (Python) or `{`."""
    start = node
    while start != outer and spec.wrappers.get(start.parent.type, False):
        start = start.parent
    if body is None:
        return start.start_byte, node.end_byte, end_row(node)
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


def docstring_of(f: SourceFile, spec: LanguageSpec, d: DefinitionNode) -> str:
    if spec.colon_header:
        body = d.body
        first = first_named(body) if body is not None and body.type == "block" else None
        if first is not None and first.type == "expression_statement" and first.named_child_count == 1:
            string = first_named(first)
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


def definition_record(f: SourceFile, spec: LanguageSpec, d: DefinitionNode) -> Definition:
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
        docstring=docstring_of(f, spec, d),
        bases=tuple(d.bases),
    )


def variable_record(f: SourceFile, root: Node, name_node: Node) -> Definition:
    statement = name_node
    while statement.parent is not None and statement.parent != root:
        statement = statement.parent
    row = name_node.start_point.row
    name = f.text(name_node)
    return Definition(
        name=name,
        qualname=qualify(f.module, name),
        kind="variable",
        scope=f.module,
        start_line=statement.start_point.row + 1,
        end_line=end_row(statement) + 1,
        name_line=row + 1,
        name_col=f.col(row, name_node.start_point.column),
        signature=f.lines[row].strip(),
    )


# ---------------------------------------------------------------- references and imports


def raw_references(f: SourceFile, captures: dict[str, list[Node]]) -> list[_RawRef]:
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
                    # `f(x).g`, `a[0].g`, `"".join`: a member of a receiver we cannot name, marked by
                    # its leading dot so that resolution never takes it for a bare function name.
                    expression = "." + name
            name_bytes = len(name.encode("utf-8", "surrogatepass"))
            row, col = end_node.end_point
            found.append(_RawRef(end - name_bytes, row, col - name_bytes, name, expression, kind))
    return found


def read_imports(f: SourceFile, spec: LanguageSpec, captures: dict[str, list[Node]]) -> list[BoundName]:
    found: list[BoundName] = []
    for node in captures.get("import", ()):
        found.extend(spec.read_imports(f, node))
    found.sort(key=lambda imp: imp.pos)
    return found


def _innermost(defs: list[DefinitionNode], positions: list[int]) -> list[DefinitionNode | None]:
    """The innermost definition around each (sorted) byte offset, in one sweep."""
    out: list[DefinitionNode | None] = []
    stack: list[DefinitionNode] = []
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


def find_references(
    f: SourceFile, defs: list[DefinitionNode], raw: list[_RawRef], imports: list[BoundName]
) -> list[Reference]:
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
