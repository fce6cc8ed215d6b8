"""Relational questions mined from the code graph, for planner training and for evaluation.

Each question is about one entity A (a definition) and has an answer set read off the graph (its
callers, its callees, its subclasses or overriding methods, the doc sections that name it, the tests
that reach it). As in Reasoning on Graphs, the planning target is the set of relation sequences of the
shortest paths from A to the answers. Of those sequences, the few that cover the answer set are kept,
chosen greedily: most answers first, then fewest end points that are not answers (a `raise X(...)` is
also a call, so `calls` and `raises` both reach X in one hop; `raises` says it without the noise), then
the question kind's own relations, then the rarer relations.

The phrasings vary so that a planner learns what a question asks rather than one template's wording;
training and evaluation draw from the same phrasings but from disjoint entities (the file split).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from repolm.indexer.code_graph import CodeGraph, Node, RelationPath
from repolm.prompt import plan_text

MAX_PLANS = 3
_REACH_LIMIT = 1000  # paths followed to count a plan's end points
MAX_ANSWERS = 30  # bigger answer sets make poor questions ("what calls `get`?" in a test-heavy repo)
_CALLABLE = frozenset({"function", "method"})
_TYPES = frozenset({"class", "struct", "interface", "trait", "enum"})


@dataclass(frozen=True)
class QuestionKind:
    name: str
    subjects: frozenset[str]  # node kinds the question can be asked about
    plans: tuple[RelationPath, ...]  # the relation paths whose end points are the answers
    phrasings: tuple[str, ...]

    def answers(self, graph: CodeGraph, entity: str) -> set[str]:
        return {path[-1].target for plan in self.plans for path in graph.follow(entity, plan, _REACH_LIMIT)}


KINDS = (
    QuestionKind(
        "callers",
        _CALLABLE | _TYPES,
        (("called_by",),),
        ("What calls {}?", "Who calls {}?", "Where is {} called from?", "Which functions use {}?"),
    ),
    QuestionKind(
        "callees",
        _CALLABLE,
        (("calls",),),
        ("What does {} call?", "Which functions does {} call?", "What does {} depend on?"),
    ),
    QuestionKind(
        "implementers",
        _TYPES,
        (("inherited_by",),),
        ("What implements {}?", "Which classes inherit from {}?", "What are the subclasses of {}?"),
    ),
    QuestionKind(
        "overrides",
        frozenset({"method"}),
        (("overridden_by",),),
        ("What overrides {}?", "Which methods override {}?", "Where is {} reimplemented?"),
    ),
    QuestionKind(
        "documented",
        _CALLABLE | _TYPES,
        (("documented_in",),),
        ("Where is {} documented?", "Which docs mention {}?", "Where can I read about {}?"),
    ),
    QuestionKind(
        "tests",
        _CALLABLE | _TYPES,
        (("tested_by",), ("called_by", "tested_by")),
        ("Which tests cover {}?", "What tests exercise {}?", "How is {} tested?"),
    ),
    QuestionKind(
        "raises",
        _CALLABLE,
        (("raises",),),
        ("What does {} raise?", "Which exceptions can {} raise?"),
    ),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)


@dataclass(frozen=True)
class GraphQuestion:
    kind: str
    entity: str  # the node id the question is about
    question: str
    answers: frozenset[str]
    plans: tuple[RelationPath, ...]  # the planning target, most answers reached first

    @property
    def plan_text(self) -> str:
        return plan_text(self.plans)


def mention(graph: CodeGraph, node: Node) -> str:
    """How a question names `node`: the shortest dotted suffix of its id that finds it first."""
    parts = node.id.split(".")
    for size in range(min(2, len(parts)), len(parts) + 1):
        written = ".".join(parts[-size:])
        found = graph.find(written)
        if found and found[0].id == node.id:
            return written
    return node.id


def planning_target(
    graph: CodeGraph, entity: str, answers: Iterable[str], preferred: tuple[RelationPath, ...] = ()
) -> tuple[RelationPath, ...]:
    answers = set(answers)
    shortest_for: dict[RelationPath, set[str]] = defaultdict(set)
    hops = max((len(plan) for plan in preferred), default=2)  # an answer is never farther than its plan
    for answer, plans in graph.shortest_relation_paths(entity, answers, hops).items():
        for plan in plans:
            shortest_for[plan].add(answer)
    extra = {
        plan: len({path[-1].target for path in graph.follow(entity, plan, _REACH_LIMIT)} - answers)
        for plan in shortest_for
    }

    def rarity(plan: RelationPath) -> int:
        """Last, ties go to the rarer relations: `tested_by` says more than `called_by` about a test."""
        return sum(graph.relation_sizes[relation] for relation in plan)

    chosen: list[RelationPath] = []
    uncovered = set(answers)
    while uncovered and len(chosen) < MAX_PLANS:
        best = min(
            shortest_for,
            key=lambda p: (-len(shortest_for[p] & uncovered), extra[p], p not in preferred, rarity(p), p),
        )
        if not shortest_for[best] & uncovered:
            break
        chosen.append(best)
        uncovered -= shortest_for.pop(best)
    return tuple(chosen)


def questions(
    graph: CodeGraph,
    allowed: Callable[[Node], bool],
    limit: int,
    seed: int,
    kinds: Iterable[str] = KIND_NAMES,
) -> list[GraphQuestion]:
    """Up to `limit` questions about the entities `allowed` accepts, balanced over kinds; stable per seed."""
    chosen = [kind for kind in KINDS if kind.name in set(kinds)]
    pools: dict[str, list[tuple[Node, set[str]]]] = {kind.name: [] for kind in chosen}
    for node in sorted(graph.nodes.values(), key=lambda n: n.id):
        if not allowed(node):
            continue
        for kind in chosen:
            if node.kind in kind.subjects:
                answers = kind.answers(graph, node.id)
                if 0 < len(answers) <= MAX_ANSWERS:
                    pools[kind.name].append((node, answers))
    rng = random.Random(seed)
    for pool in pools.values():
        rng.shuffle(pool)
    picked: list[GraphQuestion] = []
    while len(picked) < limit and any(pools.values()):
        for kind in chosen:
            if pools[kind.name] and len(picked) < limit:
                node, answers = pools[kind.name].pop()
                phrasing = rng.choice(kind.phrasings).format(mention(graph, node))
                plans = planning_target(graph, node.id, answers, kind.plans)
                picked.append(GraphQuestion(kind.name, node.id, phrasing, frozenset(answers), plans))
    return picked
