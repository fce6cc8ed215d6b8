"""The code knowledge graph and graph-grounded answers (RoG) on a fixture repository."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import write_tree
from transformers import AutoTokenizer

from repolm.assist.ask import answer, render_path
from repolm.assist.plan import MAX_HOPS, Planner, RankedPlan, Scorer, plan_lines, rank_described
from repolm.config import Config
from repolm.indexer.builder import update_index
from repolm.indexer.code_graph import INVERSES, RELATIONS, CodeGraph, Edge, Node, RelationPath, valid
from repolm.indexer.retrieval import Index
from repolm.model import resolve_base
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


def ranking(*written: str) -> Planner:
    """A planner that puts these plans (written as the planner writes them) first, as one plan, and the
    other options after them: it pins what `answer` does with a ranking, whatever ranks."""
    wanted = [tuple(plan.split(" > ")) for plan in written]

    def plan(question: str, name: str, options: Sequence[RelationPath]) -> list[RankedPlan]:
        chosen = [path for path in wanted if path in options]
        first = [RankedPlan(path, 0.0, ends=n == len(chosen) - 1) for n, path in enumerate(chosen)]
        return first + [RankedPlan(option, -1.0) for option in options if option not in chosen]

    return plan


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


def random_graph(seed: int) -> CodeGraph:
    """A small graph of random edges: any relation, cycles, parallel edges and dead ends."""
    rng = random.Random(seed)
    kinds = ("function", "class", "test")
    nodes = [
        Node(f"m.n{i}", rng.choice(kinds), f"n{i}", "m.py", i + 1, i + 1) for i in range(rng.randint(2, 9))
    ]
    edges = [
        Edge(rng.choice(nodes).id, rng.choice(RELATIONS), rng.choice(nodes).id, "m.py", 1)
        for _ in range(rng.randint(0, 25))
    ]
    return CodeGraph(nodes, edges)


def random_scores(rng: random.Random) -> Scorer:
    """Any preferences a model may have over the options."""

    def score(prompt_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        return [rng.uniform(-40.0, 0.0) for _ in continuations]

    return score


def random_planner(rng: random.Random) -> Planner:
    """A planner that ranks made-up relation paths first, then some of the options, ending anywhere."""

    def plan(question: str, name: str, options: Sequence[RelationPath]) -> list[RankedPlan]:
        made_up = [tuple(rng.choice(RELATIONS) for _ in range(rng.randint(1, 3))) for _ in range(4)]
        picks = [*made_up, *rng.sample(list(options), min(3, len(options)))]
        return [RankedPlan(path, -float(n), ends=rng.random() < 0.4) for n, path in enumerate(picks)]

    return plan


def test_constrained_plans_hold_only_relation_paths_present_from_the_subject() -> None:
    """Over random graphs (fixed seeds) and any preferences of a model (random scores): the options are
    exactly the relation paths `follow` finds from the subject; both ways of planning choose among them
    only; and an answer follows only options that lead somewhere, shows only valid paths, and ignores
    whatever else a planner returns."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(None), local_files_only=True)
    sequences = [(relation,) for relation in RELATIONS] + list(itertools.product(RELATIONS, repeat=2))
    for seed in range(25):
        graph, rng = random_graph(seed), random.Random(seed)
        score = random_scores(rng)
        for subject in graph.nodes:
            options = graph.relation_paths(subject, MAX_HOPS)
            assert set(options) == {s for s in sequences if graph.follow(subject, s)}
            assert len(options) == len(set(options))
            if options:
                lines = plan_lines(score, tokenizer, [1, 2, 3], options)
                described = rank_described(score, tokenizer, "What calls it?", "it", options)
                for ranked in (lines, described):
                    assert sorted(r.plan for r in ranked) == sorted(options)
            result = answer(graph, f"What about {subject}?", random_planner(rng))
            assert result.subject is not None and result.subject.id == subject
            assert set(result.plans) <= set(options)
            assert all(valid(graph, path) and path[0].source == subject for path in result.paths)


def test_a_member_of_an_unnamed_receiver_resolves_past_builtin_types_only(tmp_path: Path, embedder) -> None:
    # `", ".join(...)` is str.join, not the repository's one `join` method; `open_url(x).fetch()` can only
    # be the repository's one `fetch`.
    root = write_tree(
        tmp_path / "urls",
        {
            "urls/model.py": (
                "class URL:\n    def join(self, other):\n        return other\n\n"
                "    def fetch(self):\n        return self\n\n\n"
                "def open_url(text):\n    return URL()\n"
            ),
            "urls/build.py": (
                "from urls.model import URL, open_url\n"
                "\n"
                "\n"
                "def render(parts):\n"
                '    text = ", ".join(parts)\n'
                "    page = open_url(text).fetch()\n"
                "    return URL.join(page, text)\n"
            ),
        },
    )
    update_index(root, Config(), embedder=embedder)
    index = Index.open(root, Config(), embedder=embedder)
    try:
        symbols = index.graph
        assert [use.line for use in symbols.callers("urls.model.URL.join")] == [7]
        assert [use.line for use in symbols.callers("urls.model.URL.fetch")] == [6]
        text = (root / "urls/build.py").read_text()
        assert symbols.definition_at("urls/build.py", 5, text.splitlines()[4].index("join"), text) is None
        fetch = symbols.definition_at("urls/build.py", 6, text.splitlines()[5].index("fetch"), text)
        assert fetch is not None and fetch.qualname == "urls.model.URL.fetch"
        graph = CodeGraph.build(index)
    finally:
        index.close()
    assert targets(graph, "urls.build.render", "calls") >= {"urls.model.URL.join", "urls.model.URL.fetch"}
    assert [edge.line for edge in graph.edges("urls.model.URL.join", "called_by")] == [7]


def test_a_symbol_nothing_calls_is_answered_from_the_graph(graph: CodeGraph) -> None:
    result = answer(graph, "What calls test_total_area?", ranking("called_by"))
    assert result.subject is not None and result.subject.id == "tests.test_geometry.test_total_area"
    assert result.nowhere == "called_by"
    assert result.answer.startswith("Nothing calls tests.test_geometry.test_total_area in the code graph.")
    assert all(valid(graph, path) for path in result.paths)
    assert result.to_json(graph)["nowhere"] == "called_by"


def test_unknown_names_get_the_nearest_known_ones(graph: CodeGraph) -> None:
    typo = answer(graph, "What calls make_sqare?", ranking("called_by"))
    assert typo.subject is None and typo.paths == ()
    assert typo.nearest[0] == "geometry.shapes.make_square"
    assert typo.answer.startswith("`make_sqare`: no such symbol in this repository. Nearest:")
    assert "geometry.shapes.make_square (geometry/shapes.py:27)" in typo.answer
    plain = answer(graph, "Who calls frobnicate?", ranking("called_by"))
    assert plain.subject is None and "`frobnicate`: no such symbol" in plain.answer
    nowhere = answer(graph, "What calls geometry/shapes.py:2?", ranking("called_by"))
    assert nowhere.subject is None and nowhere.answer.startswith(
        "`geometry/shapes.py:2`: no definition there."
    )
    assert nowhere.nearest[0] == "geometry.shapes.ShapeError"
    assert answer(graph, "Who calls it?", ranking("called_by")).answer.startswith(
        "The question names no symbol"
    )


def test_a_subject_given_as_path_and_line(graph: CodeGraph) -> None:
    inside = answer(graph, "What calls geometry/shapes.py:28?", ranking("called_by"))
    assert inside.subject is not None and inside.subject.id == "geometry.shapes.make_square"
    assert inside.entities == ("geometry.report.total_area",)
    method = answer(graph, "What overrides ./geometry/shapes.py:10?", ranking("overridden_by"))
    assert method.subject is not None and method.subject.id == "geometry.shapes.Shape.area"
    assert method.entities == ("geometry.shapes.Square.area",)


def test_answers_show_only_valid_paths(graph: CodeGraph) -> None:
    result = answer(graph, "Which tests cover shapes.check?", ranking("tested_by", "called_by > tested_by"))
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
    unknown = answer(graph, "What calls nothing_here?", ranking("called_by"))
    assert unknown.subject is None and unknown.paths == ()


def test_the_reasoning_step_reads_the_paths_as_located_sources(graph: CodeGraph) -> None:
    seen = []

    def reasoner(question: str, documents) -> str:
        seen.extend(documents)
        return "make_square is called by total_area (geometry/report.py:4)."

    result = answer(graph, "What calls make_square?", ranking("called_by"), reasoner)
    (document,) = seen
    assert (document.path, document.start_line) == ("geometry/report.py", 4)
    assert document.text.startswith("geometry.shapes.make_square --called_by--> geometry.report.total_area")
    assert (
        result.answer.startswith("make_square is called by total_area")
        and "Following called_by" in result.answer
    )
    silent = answer(graph, "What calls make_square?", ranking("called_by"), lambda q, d: "  ")
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
    # The plain base model, untrained, plans among the paths the graph has and gets the caller right.
    assert document["plans"] == ["called_by"] and document["entities"] == ["geometry.report.total_area"]


def test_the_base_model_answers_caller_questions_end_to_end(tmp_path: Path, embedder) -> None:
    """Real index, real graph, the real base model with no adapter: callers asked four ways, and a
    symbol nothing calls (a test, which calls what it tests). With no adapter active, the answer is the
    one read off the graph (`[serve] ask_reasoning = "adapter"`): no written answer comes first."""
    from repolm.assist.engine import Engine

    root = write_tree(tmp_path, FILES)
    update_index(root, Config(), embedder=embedder)
    engine = Engine(root, Config())
    callers = {
        "What calls make_square?": ("geometry.report.total_area",),
        "Who calls check?": ("geometry.shapes.make_square", "tests.test_geometry.test_check_accepts_zero"),
        "Where is shapes.check called from?": (
            "geometry.shapes.make_square",
            "tests.test_geometry.test_check_accepts_zero",
        ),
        "What calls geometry/shapes.py:28?": ("geometry.report.total_area",),
    }
    for question, expected in callers.items():
        result, graph = engine.ask(question)
        assert result.plans == (("called_by",),) and result.entities == expected, question
        assert result.paths and all(valid(graph, path) for path in result.paths)
        assert result.answer.startswith("Following called_by from "), result.answer
    nothing, _ = engine.ask("What calls test_total_area?")
    assert nothing.answer.startswith("Nothing calls tests.test_geometry.test_total_area in the code graph.")


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
