"""The symbol graph: definitions and the references between them, as far as static analysis allows.

References are stored as written (name, dotted expression, enclosing scope) and resolved when asked,
so an edit to one file never leaves stale resolutions in another. Resolution tries, in order: the
file's own imports (following re-exports a few hops), `self`/`this`/`cls` inside a class (its members
and its bases' in the repository, nothing else), a definition in the same file, and finally a name
defined exactly once in the repository. A name a Python file imports from another project (`t.Dict`
after `import typing as t`) stops at the imports. A member of a receiver the parser cannot name
(`.join` in `"".join(...)`) takes the last step only when no builtin type has a member of that name:
`"".join` is `str.join`, not the repository's one `join` method.
"""

from __future__ import annotations

import builtins
import io
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from .store import Store, alive

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RECEIVERS = {"self", "cls", "this"}
_REEXPORT_HOPS = 3
_FEW = 4  # candidates of a name looked up by their parents (more would be ambiguous anyway)
# Members of the builtin types (and files) that literals, containers and call results usually are.
_BUILTIN_TYPES = (*(t for t in vars(builtins).values() if isinstance(t, type)), io.TextIOWrapper, io.BytesIO)
_BUILTIN_MEMBERS = frozenset(name for kind in _BUILTIN_TYPES for name in dir(kind))


@dataclass(frozen=True)
class Symbol:
    qualname: str
    name: str
    kind: str
    path: str
    start_line: int
    end_line: int
    name_line: int
    name_col: int
    signature: str
    docstring: str
    bases: tuple[str, ...]


@dataclass(frozen=True)
class Use:
    """A place that refers to a symbol."""

    path: str
    line: int
    col: int
    scope: str  # the definition the use sits in
    expression: str
    kind: str  # call | import | inherit


_SYMBOL_COLUMNS = (
    "d.qualname, d.name, d.kind, f.path, d.start_line, d.end_line, d.name_line, d.name_col, d.signature,"
    " d.docstring, d.bases"
)


class SymbolGraph:
    def __init__(self, store: Store, generation: int) -> None:
        self.store = store
        self.generation = generation
        self._alive = alive("f", generation)
        self._imports_of = lru_cache(maxsize=4096)(self._load_imports)
        self._python_package_here = lru_cache(maxsize=1024)(self._has_python_package)

    # -- lookups -----------------------------------------------------------------------------------

    def symbols(self, condition: str, params: tuple[object, ...]) -> list[Symbol]:
        rows = self.store.db.execute(
            f"SELECT {_SYMBOL_COLUMNS} FROM definitions d JOIN files f ON f.id = d.file_id"
            f" WHERE {self._alive} AND {condition} ORDER BY f.path, d.start_line",
            params,
        )
        return [_symbol(row) for row in rows]

    def by_qualname(self, qualname: str) -> Symbol | None:
        found = self.symbols("d.qualname = ?", (qualname,))
        return found[0] if found else None

    def by_name(self, name: str) -> list[Symbol]:
        return self.symbols("d.name = ?", (name,))

    def in_file(self, path: str) -> list[Symbol]:
        return self.symbols("f.path = ?", (path,))

    def enclosing(self, path: str, line: int) -> Symbol | None:
        """The innermost definition whose span covers `line`."""
        found = self.symbols("f.path = ? AND d.start_line <= ? AND d.end_line >= ?", (path, line, line))
        return min(found, key=lambda s: s.end_line - s.start_line, default=None)

    # -- resolution --------------------------------------------------------------------------------

    def resolve(self, expression: str, path: str, scope: str = "") -> Symbol | None:
        """The definition a dotted expression written in `path` (inside `scope`) refers to."""
        if expression.startswith("."):  # a member of an unnamed receiver (`f(x).g`, `"".join`)
            name = expression.rpartition(".")[2]
            candidates = [] if name in _BUILTIN_MEMBERS else self.by_name(name)
            return candidates[0] if len(candidates) == 1 else None
        parts = expression.split(".")
        head, rest = parts[0], parts[1:]
        imports = self._imports_of(path)
        if head in imports:
            found = self.follow_reexports(".".join([imports[head], *rest]))
            if found:
                return found
            if path.endswith(".py") and not self._python_package_here(imports[head].split(".")[0]):
                return None  # `t.Dict` after `import typing as t` is typing's, whatever this repo defines
        if head in _RECEIVERS:
            # A member the class (or a base in the repository) does not define is an attribute, or
            # inherited from another project: any same-named definition elsewhere would be a guess.
            return self._member_of_enclosing_class(scope, rest) if rest and scope else None
        name = parts[-1]
        if len(parts) == 1:
            local = [s for s in self.by_name(name) if s.path == path]
            if local:
                return _innermost_visible(local, scope)
        candidates = self.by_name(name)
        if len(parts) > 1:
            # `module.func` or `Class.method`: prefer candidates whose qualname ends with what is written.
            suffix = "." + ".".join(parts[-2:])
            narrowed = [s for s in candidates if s.qualname.endswith(suffix)]
            candidates = narrowed or candidates
        if len(candidates) <= _FEW:  # a definition inside another file's function is no one else's name
            candidates = [s for s in candidates if not self._inside_function(s)]
        return candidates[0] if len(candidates) == 1 else None

    def definition_at(self, path: str, line: int, col: int, text: str) -> Symbol | None:
        """Go-to-definition for the identifier at (line, col) of `text`, the file's current content."""
        lines = text.splitlines()
        if not 1 <= line <= len(lines):
            return None
        expression = dotted_expression_at(lines[line - 1], col)
        if not expression:
            return None
        for symbol in self.in_file(path):
            if symbol.name_line == line and symbol.name_col <= col <= symbol.name_col + len(symbol.name):
                return symbol
        scope = self.enclosing(path, line)
        return self.resolve(expression, path, scope.qualname if scope else "")

    # -- relations ---------------------------------------------------------------------------------

    def callers(self, qualname: str) -> list[Use]:
        return self._uses_resolving_to(qualname, "call")

    def subclasses(self, qualname: str) -> list[Symbol]:
        found = [self.by_qualname(use.scope) for use in self._uses_resolving_to(qualname, "inherit")]
        return [s for s in found if s is not None]

    def importers(self, qualname: str) -> list[Use]:
        """Files that import the module or symbol `qualname` (or something inside it)."""
        rows = self.store.db.execute(
            "SELECT f.path, i.line, i.alias, i.target FROM imports i JOIN files f ON f.id = i.file_id"
            f" WHERE {self._alive} AND (i.target = ? OR i.target LIKE ? ESCAPE '\\') ORDER BY f.path, i.line",
            (qualname, _like_prefix(qualname)),
        )
        return [Use(path, line, 0, "", target, "import") for path, line, _alias, target in rows]

    def callees(self, qualname: str) -> list[Symbol]:
        symbol = self.by_qualname(qualname)
        if symbol is None:
            return []
        rows = self.store.db.execute(
            "SELECT r.expression, r.scope FROM refs r JOIN files f ON f.id = r.file_id"
            f" WHERE {self._alive} AND f.path = ? AND r.kind = 'call'"
            " AND (r.scope = ? OR r.scope LIKE ? ESCAPE '\\')"
            " ORDER BY r.line, r.col",
            (symbol.path, qualname, _like_prefix(qualname)),
        )
        seen: dict[str, Symbol] = {}
        for expression, scope in rows:
            target = self.resolve(expression, symbol.path, scope)
            if target is not None and target.qualname != qualname:
                seen.setdefault(target.qualname, target)
        return list(seen.values())

    def _uses_resolving_to(self, qualname: str, kind: str) -> list[Use]:
        name = qualname.rsplit(".", 1)[-1]
        rows = self.store.db.execute(
            "SELECT f.path, r.line, r.col, r.scope, r.expression FROM refs r JOIN files f ON f.id = r.file_id"
            f" WHERE {self._alive} AND r.name = ? AND r.kind = ? ORDER BY f.path, r.line, r.col",
            (name, kind),
        )
        uses = []
        for path, line, col, scope, expression in rows:
            target = self.resolve(expression, path, scope)
            if target is not None and target.qualname == qualname:
                uses.append(Use(path, line, col, scope, expression, kind))
        return uses

    # -- helpers -----------------------------------------------------------------------------------

    def _inside_function(self, symbol: Symbol) -> bool:
        parent = self.by_qualname(symbol.qualname.rpartition(".")[0])
        return parent is not None and parent.kind in {"function", "method"}

    def _has_python_package(self, package: str) -> bool:
        """Whether a Python file of the repository is a module or sits in a folder of that name, at any
        depth (paths, not module names: `lib/` is stripped from those, yet may be a package)."""
        pattern = _like(package)
        row = self.store.db.execute(
            f"SELECT 1 FROM files f WHERE {self._alive} AND f.language = 'python' AND (f.path = ?"
            " OR f.path LIKE ? ESCAPE '\\' OR f.path LIKE ? ESCAPE '\\' OR f.path LIKE ? ESCAPE '\\')"
            " LIMIT 1",
            (f"{package}.py", f"{pattern}/%", f"%/{pattern}/%", f"%/{pattern}.py"),
        ).fetchone()
        return row is not None

    def _load_imports(self, path: str) -> dict[str, str]:
        rows = self.store.db.execute(
            f"SELECT i.alias, i.target FROM imports i JOIN files f ON f.id = i.file_id WHERE {self._alive}"
            " AND f.path = ?",
            (path,),
        )
        return dict(rows.fetchall())

    def follow_reexports(self, qualname: str) -> Symbol | None:
        """Look a qualified name up, following `from x import y` re-exports in package modules."""
        for _ in range(_REEXPORT_HOPS):
            found = self.by_qualname(qualname)
            if found or "." not in qualname:
                return found
            module, name = qualname.rsplit(".", 1)
            rows = self.store.db.execute(
                "SELECT i.target FROM imports i JOIN files f ON f.id = i.file_id"
                f" WHERE {self._alive} AND f.module = ? AND i.alias = ?",
                (module, name),
            ).fetchone()
            if rows is None or rows[0] == qualname:
                return None
            qualname = rows[0]
        return None

    def _member_of_enclosing_class(self, scope: str, rest: list[str]) -> Symbol | None:
        owner = scope
        while owner:
            symbol = self.by_qualname(owner)
            if symbol is not None and symbol.kind in {
                "class",
                "struct",
                "interface",
                "trait",
                "impl",
                "enum",
            }:
                return self.by_qualname(".".join([owner, *rest])) or self._inherited(symbol, rest)
            owner = owner.rpartition(".")[0]
        return None

    def _inherited(self, cls: Symbol, rest: list[str]) -> Symbol | None:
        for base in cls.bases:
            parent = self.resolve(base, cls.path, cls.qualname.rpartition(".")[0])
            if parent is not None:
                found = self.by_qualname(".".join([parent.qualname, *rest]))
                if found:
                    return found
        return None


def dotted_expression_at(line_text: str, col: int) -> str:
    """The dotted name ending with the identifier under `col` ("os.path.join" on "join"), with a leading
    dot when it is a member of something unnamed (".join" on `"".join`), as references store it."""
    for match in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*", line_text):
        if match.start() <= col <= match.end():
            marker = "." if line_text[: match.start()].rstrip().endswith(".") else ""
            parts = [p.strip() for p in match.group().split(".")]
            offset = match.start()
            for index, part in enumerate(parts):
                end = line_text.find(part, offset) + len(part)
                if col <= end:
                    return marker + ".".join(parts[: index + 1])
                offset = end
            return marker + ".".join(parts)
    return ""


def _innermost_visible(candidates: list[Symbol], scope: str) -> Symbol:
    """Among same-file definitions of a name, the one declared in the nearest enclosing scope."""

    def depth(symbol: Symbol) -> int:
        owner = symbol.qualname.rpartition(".")[0]
        return len(owner) if scope == owner or scope.startswith(owner + ".") else -1

    return max(candidates, key=depth)


def _like(text: str) -> str:
    """`text` for a LIKE pattern escaped with a backslash: its own `%` and `_` match only themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(qualname: str) -> str:
    return _like(qualname) + ".%"


def _symbol(row: tuple) -> Symbol:
    return Symbol(*row[:10], bases=tuple(json.loads(row[10])))
