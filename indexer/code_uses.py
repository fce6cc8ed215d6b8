"""Which repository symbols from other files a line of code uses, resolved through the symbol graph.

One resolver for two readers: the evaluation, whose completion targets are lines using repository code
and whose oracle is the chunks defining what a target line uses; and completion retrieval, which offers
the definitions of what the code just above the cursor uses (the next line often uses them again).

A name is resolved only when the file says where it comes from: its head is imported, it is a member
reached through self/cls/this, or it is a bare function name called on that line (not a builtin).
`obj.method()` on a local variable, a literal or a call's result (`"".join`) is skipped: its type is
unknown, and the graph's "defined once in the repository" fallback would match any same-named method.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable

from .code_chunks import parse_code
from .code_source import module_name
from .graph import Symbol
from .languages import language_for_path
from .records import ParsedFile
from .retrieval import Index
from .store import alive

CALLABLE_KINDS = frozenset({"function", "method", "class"})
CONTEXT_LINES = 60  # lines above the cursor whose uses completion retrieval reads, at most

_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
STRING_LITERAL = re.compile(r"""(?<!\w)[bfruBFRU]{0,2}("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+\S+\s+import\b|import\s)")
_RECEIVERS = frozenset({"self", "cls", "this"})
_BUILTINS = frozenset(dir(builtins))


def file_lines(text: str) -> list[str]:
    """Lines as the indexer numbers them (tree-sitter rows: split on "\\n" only)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


class LineUses:
    """The cross-file repository symbols each line of one file uses, resolved on demand.

    Raises ValueError (from the chunker) for a language the code chunker does not parse.
    """

    def __init__(self, index: Index, path: str, language: str, text: str) -> None:
        self.index = index
        self.path = path
        self.language = language
        self.parsed: ParsedFile = parse_code(path, language, text)
        self.lines = file_lines(text)
        self._imported = {imp.alias for imp in self.parsed.imports}
        self._heads = self._imported | _RECEIVERS  # where a dotted expression's head says it comes from
        self._import_lines = {imp.line for imp in self.parsed.imports}
        self._module = module_name(path)
        self._calls: dict[int, list[str]] = {}
        for reference in self.parsed.references:
            expression = reference.expression
            head = expression.split(".")[0]
            bare = "." not in expression  # `.join` in `"".join(...)` is a member, not a bare name
            known = head in self._imported or head in _RECEIVERS or (bare and head not in _BUILTINS)
            if reference.kind == "call" and known:
                self._calls.setdefault(reference.line, []).append(expression)
        self._resolved: dict[tuple[str, str], Symbol | None] = {}

    def at(self, number: int) -> tuple[list[Symbol], bool]:
        """Line `number` (1-based): the symbols from other files it uses, and whether it calls a
        repository function or class (of any file)."""
        content = self.lines[number - 1] if 0 < number <= len(self.lines) else ""
        if number in self._import_lines or _IMPORT_LINE.match(content) or not content.strip():
            return [], False
        code = STRING_LITERAL.sub('""', content.split("#", 1)[0] if self.language == "python" else content)
        called = self._calls.get(number, [])
        expressions = [e for e in _DOTTED.findall(code) if e.split(".")[0] in self._heads]
        if not expressions and not called:
            return [], False
        scope = self._innermost_scope(number)
        found: dict[str, Symbol] = {}
        calls = False
        for expression in dict.fromkeys([*called, *expressions]):
            symbol = _resolve_longest(expression, scope, self._resolve)
            if symbol is None:
                continue
            if expression in called and symbol.kind in CALLABLE_KINDS:
                calls = True
            if symbol.path != self.path:
                found.setdefault(symbol.qualname, symbol)
        return list(found.values()), calls

    def unused_imports(self) -> list[Symbol]:
        """The repository's definitions in other files that the text imports by name and does not use
        yet, in import order (a module imported whole names no definition)."""
        used = {
            name
            for number, content in enumerate(self.lines, 1)
            if number not in self._import_lines and not _IMPORT_LINE.match(content)
            for name in _IDENTIFIER.findall(content)
        }
        found = []
        for imported in self.parsed.imports:
            if imported.alias in used:
                continue
            symbol = self.index.graph.follow_reexports(imported.target)
            if symbol is not None and symbol.path != self.path:
                found.append(symbol)
        return found

    def enclosing_start(self, number: int) -> int:
        """The first line of the outermost definition holding line `number` (1 at module level)."""
        covering = [d.start_line for d in self.parsed.definitions if d.start_line <= number <= d.end_line]
        return min(covering, default=1)

    def _innermost_scope(self, number: int) -> str:
        covering = [d for d in self.parsed.definitions if d.start_line <= number <= d.end_line]
        best = min(covering, key=lambda d: d.end_line - d.start_line, default=None)
        return best.qualname if best else self._module

    def _resolve(self, expression: str, scope: str) -> Symbol | None:
        key = (expression, scope)
        if key not in self._resolved:
            self._resolved[key] = self.index.graph.resolve(expression, self.path, scope)
        return self._resolved[key]


def _resolve_longest(
    expression: str, scope: str, resolve: Callable[[str, str], Symbol | None]
) -> Symbol | None:
    """The longest leading part of a dotted expression that names a symbol (`mod.Class` in `mod.Class.x`)."""
    parts = expression.split(".")
    for end in range(len(parts), 0, -1):
        if end == 1 and parts[0] in _RECEIVERS:
            return None
        symbol = resolve(".".join(parts[:end]), scope)
        if symbol is not None:
            return symbol
    return None


def definition_chunk_ids(index: Index, symbol: Symbol) -> list[int]:
    """The chunk that holds a symbol's definition: the innermost one covering the line of its name."""
    row = index.store.db.execute(
        "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id"
        f" WHERE {alive('f', index.generation)} AND f.path = ? AND c.start_line <= ? AND c.end_line >= ?"
        " ORDER BY c.end_line - c.start_line, c.id LIMIT 1",
        (symbol.path, symbol.name_line, symbol.name_line),
    ).fetchone()
    return [row[0]] if row else []


def used_above(index: Index, path: str, prefix: str) -> list[int]:
    """Chunks defining what the code above the cursor's line uses, nearest line first, then what the file
    imports from the repository and has not used yet, in import order.

    Uses are read from the lines of the outermost definition holding the cursor (at most
    `CONTEXT_LINES`); both come from the text before the cursor with the line being typed left out, as
    `retrieval_query` leaves it out, so that the snippets stay the same while the user types on a line.
    A name imported and not used yet is what a line is likeliest to use first.
    """
    language = language_for_path(path)
    above = prefix[: prefix.rfind("\n") + 1]
    if language is None or not above.strip():
        return []
    try:
        uses = LineUses(index, path, language, above)
    except ValueError:  # a language the code chunker does not parse
        return []
    cursor = above.count("\n") + 1
    last = max(n for n, line in enumerate(uses.lines, 1) if line.strip())  # the text ends its definition
    first = max(uses.enclosing_start(last), cursor - CONTEXT_LINES)
    symbols = [symbol for number in range(cursor - 1, first - 1, -1) for symbol in uses.at(number)[0]]
    symbols += uses.unused_imports()
    found: list[int] = []
    for symbol in symbols:
        found += [c for c in definition_chunk_ids(index, symbol) if c not in found]
    return found
