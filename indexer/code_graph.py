"""The code knowledge graph: symbols, files, doc sections and tests joined by typed relations.

Built from one generation of the index (the symbol graph's resolved references plus the doc chunks) and
held in memory, it answers two questions Reasoning on Graphs needs: which edges leave a node under a
relation (to follow a planned relation path) and which relation sequences are the shortest from one
node to another (to mine planning targets). Every relation has an inverse, so a path may walk either
way ("called_by" follows a call edge backwards).

Nodes are keyed by id: a definition's qualified name, a file's repository path, or `path#heading` for
a doc section. Edges carry the place that shows them: the call site, the import, the `raise`, the
definition or the doc section, so every step of a shown path can be checked in the source.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from .graph import Symbol, SymbolGraph
from .records import DOC_LANGUAGES, Chunk
from .store import alive

if TYPE_CHECKING:
    from .retrieval import Index

# relation → its inverse; the forward names read "source RELATION target".
INVERSES = {
    "defines": "defined_in",
    "calls": "called_by",
    "imports": "imported_by",
    "inherits": "inherited_by",
    "overrides": "overridden_by",
    "raises": "raised_by",
    "returns": "returned_by",
    "documented_in": "documents",
    "tested_by": "tests",
}
INVERSES |= {inverse: forward for forward, inverse in list(INVERSES.items())}
RELATIONS = tuple(INVERSES)
# What each relation leads to from a symbol `{}`, in words: a model that was never trained on relation
# names (the plain base model) chooses among plans by these (repolm.assist.plan).
DESCRIPTIONS = {
    "calls": "the functions {} calls",
    "called_by": "the functions that call {}",
    "imports": "the modules {} imports",
    "imported_by": "the files that import {}",
    "inherits": "the classes {} inherits from",
    "inherited_by": "the subclasses of {}",
    "overrides": "the method {} overrides",
    "overridden_by": "the methods that override {}",
    "raises": "the exceptions {} raises",
    "raised_by": "the functions that raise {}",
    "returns": "the class {} returns",
    "returned_by": "the functions that return {}",
    "defines": "the definitions inside {}",
    "defined_in": "the file or class that defines {}",
    "documented_in": "the docs that mention {}",
    "documents": "the code {} documents",
    "tested_by": "the tests that call {}",
    "tests": "the code {} tests",
}

_CLASS_KINDS = frozenset({"class", "struct", "interface", "trait", "enum"})
_CALLABLE_KINDS = frozenset({"function", "method"})
_RAISE = re.compile(r"\b(?:raise|throw new|throw)\s+([A-Za-z_][\w.]*)")
_RETURN_ANNOTATION = re.compile(r"->\s*['\"]?([A-Za-z_][\w.]*)")
# Names a doc section refers to as code: ``x``, `x`, :role:`x` or :role:`title <x>`.
_DOC_CODE = re.compile(r"`+(?::?[\w.:]*:`)?(?:[^`<]*<)?~?([A-Za-z_][\w.]*)(?:\(\))?>?`+")
_TEST_FILE = re.compile(r"(^|/)(tests?|__tests__|spec)/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # a definition's kind, "test", "file" or "doc"
    name: str
    path: str
    line: int
    end_line: int = 0  # a definition's last line (0 for files and doc sections): `file:line` finds it


@dataclass(frozen=True)
class Edge:
    source: str
    relation: str
    target: str
    path: str  # where the edge shows in the source
    line: int

    def reversed(self) -> Edge:
        return Edge(self.target, INVERSES[self.relation], self.source, self.path, self.line)


RelationPath = tuple[str, ...]
GraphPath = tuple[Edge, ...]


def chunk_node_id(chunk: Chunk) -> str:
    """The node a retrieved chunk stands for: its definition, or its doc section."""
    if chunk.language in DOC_LANGUAGES:
        return f"{chunk.path}#{chunk.symbol or chunk.start_line}"
    return chunk.symbol


def is_test_file(path: str) -> bool:
    return bool(_TEST_FILE.search(path))


def is_test(symbol: Symbol) -> bool:
    return (
        is_test_file(symbol.path)
        and symbol.kind in _CALLABLE_KINDS
        and symbol.name.lower().startswith("test")
    )


class CodeGraph:
    def __init__(self, nodes: Iterable[Node], edges: Iterable[Edge]) -> None:
        self.nodes = {node.id: node for node in nodes}
        self._out: dict[str, dict[str, list[Edge]]] = defaultdict(lambda: defaultdict(list))
        self.relation_sizes: Counter[str] = Counter()
        seen: set[tuple[str, str, str]] = set()
        for edge in edges:
            if (edge.source, edge.relation, edge.target) in seen or edge.source == edge.target:
                continue
            seen.add((edge.source, edge.relation, edge.target))
            for directed in (edge, edge.reversed()):
                self._out[directed.source][directed.relation].append(directed)
                self.relation_sizes[directed.relation] += 1

    @classmethod
    def build(cls, index: Index) -> CodeGraph:
        return _Builder(index).graph()

    # -- lookups -----------------------------------------------------------------------------------

    def edges(self, source: str, relation: str) -> list[Edge]:
        return list(self._out.get(source, {}).get(relation, ()))

    def has_edge(self, edge: Edge) -> bool:
        return edge in self._out.get(edge.source, {}).get(edge.relation, ())

    def relations_of(self, source: str) -> list[str]:
        return sorted(self._out.get(source, {}))

    def enclosing(self, path: str, line: int) -> Node | None:
        """The innermost definition in `path` whose lines hold `line` (1-based)."""
        spans = [n for n in self.nodes.values() if n.path == path and n.line <= line <= n.end_line]
        return max(spans, key=lambda n: (n.line, -n.end_line), default=None)

    def edge_count(self) -> int:
        return sum(self.relation_sizes.values()) // 2

    def find(self, name: str) -> list[Node]:
        """The nodes a name written in a question may mean: the exact id, else ids ending in `.name`."""
        if name in self.nodes:
            return [self.nodes[name]]
        suffix = [
            n for n in self.nodes.values() if n.kind not in {"file", "doc"} and n.id.endswith("." + name)
        ]
        return sorted(suffix, key=lambda n: (n.kind == "test", len(n.id), n.id))

    # -- RoG: retrieval along a plan, and planning targets -------------------------------------------

    def follow(self, start: str, plan: RelationPath, limit: int = 50) -> list[GraphPath]:
        """Every path from `start` whose relations are `plan`, in a stable order; at most `limit`."""
        paths: list[GraphPath] = [()]
        for relation in plan:
            extended = []
            for path in paths:
                at = path[-1].target if path else start
                visited = {start, *(edge.target for edge in path)}
                extended += [(*path, e) for e in self.edges(at, relation) if e.target not in visited]
            paths = extended[:limit]
            if not paths:
                return []
        return paths

    def relation_paths(self, start: str, max_hops: int) -> list[RelationPath]:
        """Every relation sequence of up to `max_hops` that `follow` finds a path for from `start`: what a
        planner constrained to the graph may choose from. Sorted, shorter first.

        A sequence's frontier keeps one walk per end node; `follow`'s no-revisit rule then reads that
        walk's nodes, which is exact up to two hops (the walk to an end node is then start, end node)."""
        found: list[RelationPath] = []
        frontier: dict[RelationPath, dict[str, frozenset[str]]] = {(): {start: frozenset({start})}}
        for _ in range(max_hops):
            reached: dict[RelationPath, dict[str, frozenset[str]]] = defaultdict(dict)
            for sequence, ends in frontier.items():
                for node, visited in ends.items():
                    for relation, edges in self._out.get(node, {}).items():
                        walks = reached[(*sequence, relation)]
                        for edge in edges:
                            if edge.target not in visited:
                                walks.setdefault(edge.target, visited | {edge.target})
            frontier = {sequence: walks for sequence, walks in reached.items() if walks}
            found += sorted(frontier)
        return found

    def shortest_relation_paths(
        self, start: str, goals: Iterable[str], max_hops: int = 2
    ) -> dict[str, list[RelationPath]]:
        """For each goal reached within `max_hops`, the relation sequences of all shortest paths to it.

        One breadth-first search for all goals, stopped as soon as every goal is reached."""
        missing, found = set(goals), {}
        frontier: dict[str, set[RelationPath]] = {start: {()}}
        seen = {start}
        for _ in range(max_hops):
            if not missing or not frontier:
                break
            reached: dict[str, set[RelationPath]] = defaultdict(set)
            for node, sequences in frontier.items():
                for relation, edges in self._out.get(node, {}).items():
                    for edge in edges:
                        if edge.target not in seen:
                            reached[edge.target] |= {(*s, relation) for s in sequences}
            for goal in missing & reached.keys():
                found[goal] = sorted(reached[goal])
            missing -= reached.keys()
            seen |= reached.keys()
            frontier = reached
        return found


def describe(plan: RelationPath, name: str) -> str:
    """A relation path from `name` in words, the last relation first: ("called_by", "tested_by") from
    `f` is "the tests that call the functions that call f"."""
    text = name
    for relation in plan:
        text = DESCRIPTIONS[relation].format(text)
    return text


def valid(graph: CodeGraph, path: GraphPath) -> bool:
    """A path may be shown only when it is connected and every edge is in the graph."""
    return all(graph.has_edge(edge) for edge in path) and all(
        a.target == b.source for a, b in itertools.pairwise(path)
    )


class _Builder:
    """Materialises one generation's graph: definitions, resolved references, doc mentions, tests."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.symbols: SymbolGraph = index.graph
        self.condition = alive("f", index.generation)
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.definitions = self.symbols.symbols("1 = 1", ())
        self.by_qualname = {s.qualname: s for s in self.definitions}
        self.names: dict[str, list[Symbol]] = defaultdict(list)
        self.members: dict[str, list[Symbol]] = defaultdict(list)  # a class's own methods and fields
        for symbol in self.definitions:
            self.names[symbol.name].append(symbol)
            self.members[symbol.qualname.rpartition(".")[0]].append(symbol)

    def graph(self) -> CodeGraph:
        self._definitions()
        self._references()
        self._imports()
        self._overrides()
        self._bodies()
        self._docs()
        return CodeGraph(self.nodes, self.edges)

    def _owner(self, scope: str, path: str) -> str:
        """The node a reference made in `scope` belongs to: its definition, or the file at module level."""
        return scope if scope in self.by_qualname else path

    def _definitions(self) -> None:
        files = {s.path for s in self.definitions}
        files |= set(self.index.store.alive_files(self.index.generation))
        self.nodes += [Node(path, "file", PurePosixPath(path).name, path, 1) for path in sorted(files)]
        for symbol in self.definitions:
            kind = "test" if is_test(symbol) else symbol.kind
            node = Node(symbol.qualname, kind, symbol.name, symbol.path, symbol.name_line, symbol.end_line)
            self.nodes.append(node)
            parent = symbol.qualname.rpartition(".")[0]
            owner = parent if parent in self.by_qualname else symbol.path
            self.edges.append(Edge(owner, "defines", symbol.qualname, symbol.path, symbol.name_line))

    def _references(self) -> None:
        rows = self.index.store.db.execute(
            "SELECT f.path, r.expression, r.kind, r.scope, r.line"
            " FROM refs r JOIN files f ON f.id = r.file_id"
            f" WHERE {self.condition} AND r.kind IN ('call', 'inherit') ORDER BY f.path, r.line, r.col"
        )
        for path, expression, kind, scope, line in rows.fetchall():
            target = self.symbols.resolve(expression, path, scope)
            if target is None:
                continue
            source = self._owner(scope, path)
            if kind == "inherit":
                self.edges.append(Edge(source, "inherits", target.qualname, path, line))
                continue
            self.edges.append(Edge(source, "calls", target.qualname, path, line))
            caller = self.by_qualname.get(source)
            if caller is not None and is_test(caller) and not is_test(target):
                self.edges.append(Edge(target.qualname, "tested_by", source, path, line))

    def _imports(self) -> None:
        rows = self.index.store.db.execute(
            "SELECT f.path, i.target, i.line FROM imports i JOIN files f ON f.id = i.file_id"
            f" WHERE {self.condition} ORDER BY f.path, i.line"
        )
        modules = dict(
            self.index.store.db.execute(
                f"SELECT f.module, f.path FROM files f WHERE {self.condition}"
            ).fetchall()
        )
        for path, target, line in rows.fetchall():
            symbol = self.symbols.follow_reexports(target)
            found = symbol.qualname if symbol else modules.get(target)
            if found and found != path:
                self.edges.append(Edge(path, "imports", found, path, line))

    def _overrides(self) -> None:
        for symbol in self.definitions:
            if symbol.kind not in _CLASS_KINDS:
                continue
            for base in symbol.bases:
                parent = self.symbols.resolve(base, symbol.path, symbol.qualname.rpartition(".")[0])
                if parent is None:
                    continue
                for method in self.members.get(symbol.qualname, ()):
                    overridden = self.by_qualname.get(f"{parent.qualname}.{method.name}")
                    if overridden is not None:
                        edge = Edge(
                            method.qualname, "overrides", overridden.qualname, method.path, method.name_line
                        )
                        self.edges.append(edge)

    def _bodies(self) -> None:
        """`raise X` in a body and `-> X` in a signature, when X resolves to a definition in the repo."""
        lines_of: dict[str, list[str]] = {}
        for symbol in self.definitions:
            if symbol.kind not in _CALLABLE_KINDS:
                continue
            returned = _RETURN_ANNOTATION.search(symbol.signature)
            if returned:
                target = self.symbols.resolve(returned.group(1), symbol.path, symbol.qualname)
                if target is not None and target.kind in _CLASS_KINDS:
                    self.edges.append(
                        Edge(symbol.qualname, "returns", target.qualname, symbol.path, symbol.name_line)
                    )
            if symbol.path not in lines_of:
                lines_of[symbol.path] = self._file_lines(symbol.path)
            lines = lines_of[symbol.path]
            for number in range(symbol.start_line, min(symbol.end_line, len(lines)) + 1):
                for match in _RAISE.finditer(lines[number - 1]):
                    target = self.symbols.resolve(match.group(1), symbol.path, symbol.qualname)
                    innermost = self.symbols.enclosing(symbol.path, number)
                    if target is not None and innermost is not None and innermost.qualname == symbol.qualname:
                        self.edges.append(
                            Edge(symbol.qualname, "raises", target.qualname, symbol.path, number)
                        )

    def _file_lines(self, path: str) -> list[str]:
        try:
            return (self.index.root / path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def _docs(self) -> None:
        """A doc section documents a definition it names as code, when the name means one definition."""
        for stored in self.index.store.alive_chunks(self.index.generation):
            chunk = stored.chunk
            if chunk.language not in DOC_LANGUAGES:
                continue
            node = chunk_node_id(chunk)
            mentioned = {self._mentioned(m.group(1)) for m in _DOC_CODE.finditer(chunk.text)} - {None}
            if not mentioned:
                continue
            self.nodes.append(Node(node, "doc", chunk.symbol or chunk.path, chunk.path, chunk.start_line))
            self.edges += [
                Edge(q, "documented_in", node, chunk.path, chunk.start_line) for q in sorted(mentioned)
            ]

    def _mentioned(self, written: str) -> str | None:
        if written in self.by_qualname:
            return written
        parts = written.split(".")
        candidates = [s for s in self.names.get(parts[-1], []) if s.qualname.endswith(".".join(parts[-2:]))]
        if len(candidates) != 1 and len(parts) == 1:
            candidates = [
                s for s in self.names.get(parts[-1], []) if s.kind in _CLASS_KINDS | _CALLABLE_KINDS
            ]
        return candidates[0].qualname if len(candidates) == 1 and len(parts[-1]) > 2 else None
