"""Import resolution, per language: the names an import statement binds and the dotted modules they name.

Relative imports are resolved against the importing file (Python's dots, JavaScript's `./m`, Rust's
`self::`/`super::`), so that references through an import reach the definition they mean.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from tree_sitter import Node

from repolm.indexer.code_source import MAX_NAME_DEPTH, SourceFile, first_named, module_name, qualify

_GO_VERSION = re.compile(r"v\d+\Z")


@dataclass(frozen=True)
class BoundName:
    """One name an import statement binds ("*" for wildcard imports)."""

    alias: str
    target: str
    pos: int  # byte offset of the imported name, for the reference
    expression: str = ""  # what the reference names when it is not the target (`import a.b` binds `a`)


def _python_package(path: str, module: str) -> list[str]:
    parts = module.split(".") if module else []
    is_package = posixpath.basename(path).startswith("__init__.")
    return parts if is_package else parts[:-1]


def python_imports(f: SourceFile, node: Node) -> list[BoundName]:
    def dotted(n: Node | None) -> str:
        return "".join(f.text(n).split()) if n is not None else ""

    out: list[BoundName] = []
    if node.type == "import_statement":
        for n in node.children_by_field_name("name"):
            if n.type == "aliased_import":
                name = n.child_by_field_name("name")
                target = dotted(name)
                out.append(BoundName(dotted(n.child_by_field_name("alias")), target, n.start_byte))
            else:
                # `import a.b` binds `a`; the reference still names the whole path.
                path = dotted(n)
                top = path.split(".")[0]
                out.append(BoundName(top, top, n.start_byte, path))
        return out
    base = "__future__" if node.type == "future_import_statement" else _python_from(f, node)
    for n in node.children_by_field_name("name"):
        if n.type == "aliased_import":
            name = dotted(n.child_by_field_name("name"))
            out.append(BoundName(dotted(n.child_by_field_name("alias")), qualify(base, name), n.start_byte))
        else:
            name = dotted(n)
            out.append(BoundName(name.split(".")[-1], qualify(base, name), n.start_byte))
    out.extend(BoundName("*", base, n.start_byte) for n in node.named_children if n.type == "wildcard_import")
    return out


def _python_from(f: SourceFile, node: Node) -> str:
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


def _string_content(f: SourceFile, node: Node | None) -> str:
    return f.text(node).strip()[1:-1] if node is not None else ""


def _js_target(f: SourceFile, source: str) -> str:
    """Dotted target of an import specifier: relative paths resolve like module_name."""
    if source.startswith("."):
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(f.path), source))
        parts = [p for p in resolved.split("/") if p not in ("..", ".")]
        if parts and parts[-1] == "index":
            parts.pop()
        return module_name("/".join(parts))
    return source.replace("/", ".")


def js_imports(f: SourceFile, node: Node) -> list[BoundName]:
    if node.type == "variable_declarator":
        return _js_require(f, node)
    base = _js_target(f, _string_content(f, node.child_by_field_name("source")))
    out: list[BoundName] = []
    for clause in node.named_children:
        if clause.type != "import_clause":
            continue
        for part in clause.named_children:
            if part.type == "identifier":
                out.append(BoundName(f.text(part), f"{base}.default", part.start_byte))
            elif part.type == "namespace_import":
                out.extend(BoundName(f.text(n), base, n.start_byte) for n in part.named_children)
            elif part.type == "named_imports":
                for spec in part.named_children:
                    name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                    if name is not None:
                        bound = f.text(alias if alias is not None else name)
                        out.append(BoundName(bound, f"{base}.{f.text(name)}", name.start_byte))
    return out


def _js_require(f: SourceFile, node: Node) -> list[BoundName]:
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
        return [BoundName(f.text(name), base, name.start_byte)]
    out: list[BoundName] = []
    for prop in name.named_children if name.type == "object_pattern" else ():
        if prop.type == "shorthand_property_identifier_pattern":
            out.append(BoundName(f.text(prop), f"{base}.{f.text(prop)}", prop.start_byte))
        elif prop.type == "pair_pattern":
            key, value = prop.child_by_field_name("key"), prop.child_by_field_name("value")
            if key is not None and value is not None:
                out.append(BoundName(f.text(value), f"{base}.{f.text(key)}", key.start_byte))
    return out


def go_imports(f: SourceFile, node: Node) -> list[BoundName]:
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
    return [BoundName(alias, ".".join(parts), node.start_byte)]


def rust_imports(f: SourceFile, node: Node) -> list[BoundName]:
    argument = node.child_by_field_name("argument")
    found: list[tuple[str, list[str], int]] = []
    if argument is not None:
        _rust_use_tree(f, argument, [], found, 0)
    current = f.module.split(".") if f.module else []
    if current and current[-1] in ("mod", "lib", "main"):
        current.pop()  # mod.rs / lib.rs / main.rs are their directory's module
    return [BoundName(alias, ".".join(_rust_resolve(parts, current)), pos) for alias, parts, pos in found]


def _rust_use_tree(f: SourceFile, node: Node, prefix: list[str], out: list, depth: int) -> None:
    """Flatten `use a::{b, c::d as e, f::*}` into (bound name, path parts, position)."""
    if depth > MAX_NAME_DEPTH:
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
        path = first_named(node)
        out.append(("*", prefix + (_rust_path(f, path) if path is not None else []), node.start_byte))
    elif kind in ("identifier", "scoped_identifier", "self", "crate", "super"):
        parts = prefix + _rust_path(f, node)
        if len(parts) > 1 and parts[-1] == "self":
            parts = parts[:-1]  # `use a::{self}` binds `a`
        if parts:
            out.append((parts[-1], parts, node.start_byte))


def _rust_path(f: SourceFile, node: Node) -> list[str]:
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


def java_imports(f: SourceFile, node: Node) -> list[BoundName]:
    path = next((n for n in node.named_children if n.type in ("scoped_identifier", "identifier")), None)
    if path is None:
        return []
    target = "".join(f.text(path).split())
    if any(n.type == "asterisk" for n in node.named_children):
        return [BoundName("*", target, path.start_byte)]
    return [BoundName(target.split(".")[-1], target, path.start_byte)]
