"""The code knowledge graph and graph-grounded answers (RoG) on a fixture repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tree

from repolm.assist.ask import answer, parse_plan, render_path
from repolm.config import Config
from repolm.indexer.builder import update_index
from repolm.indexer.code_graph import INVERSES, CodeGraph, Edge, valid
from repolm.indexer.retrieval import Index
from repolm.training.eval_graph import hits_at_1, set_f1
from repolm.training.graph_questions import planning_target, questions

SHAPES = '''"""Shapes and their areas."""


class ShapeError(ValueError):
    """A shape with impossible dimensions."""


class Shape:
    def area(self) -> float:
        raise NotImplementedError


class Square(Shape):
    def __init__(self, side: float) -> None:
        self.side = side

    def area(self) -> float:
        return self.side * self.side


def check(side: float) -> float:
    if side < 0:
        raise ShapeError("negative side")
    return side


def make_square(side: float) -> Square:
    return Square(check(side))
'''

REPORT = """from geometry.shapes import make_square


def total_area(sides):
    return sum(make_square(side).area() for side in sides)
"""

TESTS = """from geometry.shapes import check
from geometry.report import total_area


def test_check_accepts_zero():
    assert check(0) == 0


def test_total_area():
    assert total_area([1, 2]) == 5
"""

FILES = {
    "geometry/__init__.py": "",
    "geometry/shapes.py": SHAPES,
    "geometry/report.py": REPORT,
    "tests/test_geometry.py": TESTS,
    "docs/guide.md": "# Guide\n\n## Areas\n\nCall `total_area` on sides; `Square.area` does the rest.\n",
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory, embedder) -> CodeGraph:
    root = write_tree(tmp_path_factory.mktemp("geometry"), FILES)
    update_index(root, Config(), embedder=embedder)
    index = Index.open(root, Config(), embedder=embedder)
    try:
        return CodeGraph.build(index)
    finally:
        index.close()


def targets(graph: CodeGraph, node: str, relation: str) -> set[str]:
    return {edge.target for edge in graph.edges(node, relation)}


def test_relations_of_the_fixture(graph: CodeGraph) -> None:
    shapes = "geometry.shapes"
    assert targets(graph, "geometry/shapes.py", "defines") >= {f"{shapes}.Shape", f"{shapes}.make_square"}
    assert targets(graph, f"{shapes}.Square", "defines") == {
        f"{shapes}.Square.__init__",
        f"{shapes}.Square.area",
    }
    assert targets(graph, f"{shapes}.make_square", "calls") == {f"{shapes}.Square", f"{shapes}.check"}
    assert targets(graph, f"{shapes}.make_square", "called_by") == {"geometry.report.total_area"}
    assert targets(graph, f"{shapes}.Square", "inherits") == {f"{shapes}.Shape"}
    assert targets(graph, f"{shapes}.Square.area", "overrides") == {f"{shapes}.Shape.area"}
    assert targets(graph, f"{shapes}.check", "raises") == {f"{shapes}.ShapeError"}
    assert targets(graph, f"{shapes}.make_square", "returns") == {f"{shapes}.Square"}
    assert targets(graph, "geometry/report.py", "imports") == {f"{shapes}.make_square"}
    assert targets(graph, "geometry.report.total_area", "documented_in") == {"docs/guide.md#Guide > Areas"}
    assert targets(graph, f"{shapes}.Square.area", "documented_in") == {"docs/guide.md#Guide > Areas"}
    assert targets(graph, f"{shapes}.check", "tested_by") == {"tests.test_geometry.test_check_accepts_zero"}
    assert graph.nodes["tests.test_geometry.test_total_area"].kind == "test"
    # Every edge can be walked back under its inverse relation.
    for relation in INVERSES:
        for source in list(graph.nodes):
            for edge in graph.edges(source, relation):
                assert graph.has_edge(Edge(edge.target, INVERSES[relation], source, edge.path, edge.line))


def test_following_a_plan_and_mining_its_target(graph: CodeGraph) -> None:
    shapes = "geometry.shapes"
    paths = graph.follow(f"{shapes}.make_square", ("called_by", "tested_by"))
    assert [[e.target for e in p] for p in paths] == [
        ["geometry.report.total_area", "tests.test_geometry.test_total_area"]
    ]
    assert all(valid(graph, path) for path in paths)
    assert graph.follow(f"{shapes}.make_square", ("inherited_by",)) == []
    assert render_path(graph, paths[0]).startswith(
        f"{shapes}.make_square --called_by--> geometry.report.total_area (geometry/report.py:4)"
    )
    # RoG's target: the relation sequences of all shortest paths from the entity to the answer.
    test = "tests.test_geometry.test_total_area"
    assert graph.shortest_relation_paths(f"{shapes}.make_square", [test, "nowhere"]) == {
        test: [("called_by", "called_by"), ("called_by", "tested_by")]
    }
    # `raise ShapeError(...)` is also a call: of the two one-hop sequences, the one without noise wins.
    assert planning_target(graph, f"{shapes}.check", {f"{shapes}.ShapeError"}) == (("raises",),)


def test_invalid_planned_relations_are_ignored(graph: CodeGraph) -> None:
    assert parse_plan("called_by\ncalls > bogus\nnot a plan\ncalls\ncalled_by") == (
        ("called_by",),
        ("calls",),
    )
    result = answer(graph, "What calls make_square?", lambda question: "callers_of\ncalled_by > frobnicates")
    assert result.plans == () and result.paths == () and "no relation path" in result.answer


def test_answers_show_only_valid_paths(graph: CodeGraph) -> None:
    result = answer(graph, "Which tests cover shapes.check?", lambda q: "tested_by\ncalled_by > tested_by")
    assert result.subject is not None and result.subject.id == "geometry.shapes.check"
    assert result.entities == ("tests.test_geometry.test_check_accepts_zero",)
    assert result.paths and all(valid(graph, path) for path in result.paths)
    document = result.to_json(graph)
    assert set(document) >= {"answer", "entities", "paths"}
    step = document["paths"][0][0]
    assert step == {
        "source": "geometry.shapes.check",
        "relation": "tested_by",
        "target": "tests.test_geometry.test_check_accepts_zero",
        "path": "tests/test_geometry.py",
        "line": 5,
    }
    # A path with an edge the graph lacks is never valid.
    forged = (Edge("geometry.shapes.check", "tested_by", "tests.test_geometry.test_total_area", "x", 1),)
    assert not valid(graph, forged)
    unknown = answer(graph, "What calls nothing_here?", lambda q: "called_by")
    assert unknown.subject is None and unknown.paths == ()


def test_the_reasoning_step_reads_the_paths_as_located_sources(graph: CodeGraph) -> None:
    seen = []

    def reasoner(question: str, documents) -> str:
        seen.extend(documents)
        return "make_square is called by total_area (geometry/report.py:4)."

    result = answer(graph, "What calls make_square?", lambda q: "called_by", reasoner)
    (document,) = seen
    assert (document.path, document.start_line) == ("geometry/report.py", 4)
    assert document.text.startswith("geometry.shapes.make_square --called_by--> geometry.report.total_area")
    assert (
        result.answer.startswith("make_square is called by total_area")
        and "Following called_by" in result.answer
    )
    silent = answer(graph, "What calls make_square?", lambda q: "called_by", lambda q, d: "  ")
    assert silent.answer.startswith("Following called_by")


def test_questions_stay_in_their_split_and_score(graph: CodeGraph) -> None:
    asked = questions(graph, lambda node: node.path == "geometry/shapes.py", limit=50, seed=0)
    assert asked and all(graph.nodes[q.entity].path == "geometry/shapes.py" for q in asked)
    kinds = {q.kind for q in asked}
    assert {"callers", "callees", "implementers", "overrides", "raises", "tests", "documented"} <= kinds
    for question in asked:
        assert question.plans, question
        reached = {p[-1].target for plan in question.plans for p in graph.follow(question.entity, plan)}
        assert question.answers <= reached
    assert set_f1(["a", "b"], frozenset({"b", "c"})) == pytest.approx(0.5)
    assert set_f1([], frozenset({"b"})) == 0.0
    assert hits_at_1(["b", "a"], frozenset({"b"})) == 1.0 and hits_at_1(["a"], frozenset({"b"})) == 0.0


def test_ask_cli_prints_the_json_contract(tmp_path: Path, embedder) -> None:
    root = write_tree(tmp_path, FILES)
    update_index(root, Config(), embedder=embedder)
    run = subprocess.run(
        [sys.executable, "-m", "repolm.cli", "ask", "What calls make_square?", "--repo", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert (
        set(document) >= {"answer", "entities", "paths"}
        and document["subject"] == "geometry.shapes.make_square"
    )
    graph_nodes = {"geometry.report.total_area", "geometry.shapes.make_square"}
    for path in document["paths"]:
        assert all(set(step) == {"source", "relation", "target", "path", "line"} for step in path)
        assert path[0]["source"] in graph_nodes


def test_explain_shows_checked_graph_paths(tmp_path: Path, embedder) -> None:
    from repolm.assist.engine import Engine

    root = write_tree(tmp_path, FILES)
    update_index(root, Config(), embedder=embedder)
    engine = Engine(root, Config())
    symbol = engine.symbol_named("geometry.shapes.check")
    assert symbol is not None
    explanation = engine.explain(symbol, with_model=False)
    assert explanation.paths[:2] == (
        "geometry.shapes.check --called_by--> geometry.shapes.make_square (geometry/shapes.py:27)",
        "geometry.shapes.check --tested_by--> tests.test_geometry.test_check_accepts_zero"
        " (tests/test_geometry.py:5)",
    )
    assert "Graph paths:" in explanation.markdown() and explanation.to_json()["paths"] == list(
        explanation.paths
    )
