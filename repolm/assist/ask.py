"""Graph-grounded answers (Reasoning on Graphs): plan relation paths, follow them, answer from the paths.

The question's subject is resolved in the graph first (a name, a qualified name or `path:line`); a name
the graph does not know gets the nearest names it does. The planner is the model (base plus the active
adapter, if any), constrained to the graph (`plan`): it ranks only relation paths that lead somewhere
from the subject, and the mirror images of those that lead nowhere, so that "nothing calls f" is read
off the graph, not guessed. Each plan is followed from the subject; only paths whose every edge exists
are kept. The answer's entities are their end
points, so every claim comes with a path a developer can follow; the model then writes the answer from
those paths (RoG's reasoning step), and what it writes is verified against them like any explanation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

from repolm.config import ServeConfig
from repolm.indexer.code_graph import (
    INVERSES,
    CodeGraph,
    Edge,
    GraphPath,
    Node,
    RelationPath,
    valid,
)
from repolm.indexer.secrets import redact
from repolm.model import Served, generate
from repolm.prompt import PLAN_SEPARATOR, Document, PromptRequest, build_prompt

from .explain import verify
from .plan import MAX_HOPS, Planner

MAX_PATHS = 50
_NAME = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*")
_LOCATION = re.compile(r"([\w./-]+\.\w+):(\d+)")
_SHOWN = 8  # answers named in the sentence; the JSON has all of them
NEAREST = 5  # names offered for one the graph does not know
_NEAREST_CUTOFF = 60  # rapidfuzz WRatio below which a name is no suggestion
# The words relational questions are made of: a question that names no known symbol is about one of
# its other words.
_QUESTION_WORDS = frozenset(
    re.findall(
        r"\w+",
        """a an the what which who whom where when how why does do is are was were of in on from to by for
        with about call calls called calling caller callers use uses used using test tests tested cover
        covers exercise exercises raise raises raised throw throws implement implements implemented
        inherit inherits inherited subclass subclasses override overrides overridden reimplemented
        document documented docs doc mention mentions read can i me function functions method methods
        class classes symbol depend depends return returns import imports define defines defined it its
        this that they them""",
    )
)
# How an answer says that a relation leads nowhere from the subject; others get a generic sentence.
_NOTHING = {
    "called_by": "Nothing calls {}",
    "calls": "{} calls nothing this repository defines",
    "tested_by": "No test reaches {}",
    "inherited_by": "Nothing inherits from {}",
    "overridden_by": "Nothing overrides {}",
    "documented_in": "No doc section names {}",
    "raises": "{} raises nothing this repository defines",
    "imported_by": "Nothing imports {}",
}

Reasoner = Callable[[str, Sequence[Document]], str]
MAX_REASONED_PATHS = 8  # paths the reasoning step reads (the prompt budget holds them)
# What a hover shows about a symbol without a question: how it is used, tested, documented, extended.
SYMBOL_PLANS: tuple[RelationPath, ...] = (
    ("called_by",),
    ("tested_by",),
    ("documented_in",),
    ("inherited_by",),
    ("overridden_by",),
    ("raises",),
)


@dataclass(frozen=True)
class GraphAnswer:
    question: str
    subject: Node | None
    plans: tuple[RelationPath, ...]
    paths: tuple[GraphPath, ...]
    entities: tuple[str, ...]  # answers, the best supported first
    answer: str
    nearest: tuple[str, ...] = ()  # when the question names no known symbol: the names nearest to it
    nowhere: str = ""  # a relation ranked above its inverse, which was followed, that leads nowhere

    def to_json(self, graph: CodeGraph) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "entities": list(self.entities),
            "paths": [[step_json(graph, edge) for edge in path] for path in self.paths],
            "subject": self.subject.id if self.subject else None,
            "plans": [PLAN_SEPARATOR.join(plan) for plan in self.plans],
            "nearest": list(self.nearest),
            "nowhere": self.nowhere or None,
        }


def step_json(graph: CodeGraph, edge: Edge) -> dict[str, Any]:
    """One step: where it leads, located at the target's definition (or doc section, or file)."""
    target = graph.nodes.get(edge.target)
    return {
        "source": edge.source,
        "relation": edge.relation,
        "target": edge.target,
        "path": target.path if target else edge.path,
        "line": target.line if target else edge.line,
    }


def render_path(graph: CodeGraph, path: GraphPath) -> str:
    """`a --calls--> b (b.py:12) --tested_by--> t (test_b.py:40)`."""
    steps = [path[0].source] if path else []
    for edge in path:
        step = step_json(graph, edge)
        steps.append(f"--{edge.relation}--> {edge.target} ({step['path']}:{step['line']})")
    return " ".join(steps)


def subject_of(graph: CodeGraph, question: str) -> Node | None:
    """The definition the question is about: the one enclosing a `path:line` it gives, else the longest
    name in it that the graph knows."""
    for path, line in _locations(question):
        found = graph.enclosing(path, line)
        if found is not None:
            return found
    written = sorted(set(_NAME.findall(question)), key=lambda name: (-name.count("."), -len(name), name))
    for name in written:
        found = [node for node in graph.find(name) if node.kind not in {"file", "doc"}]
        if found:
            return found[0]
    return None


def _locations(question: str) -> list[tuple[str, int]]:
    """The `path:line` places a question gives, paths relative to the repository root."""
    return [(path.removeprefix("./"), int(line)) for path, line in _LOCATION.findall(question)]


def unknown_name(question: str) -> str | None:
    """The name a question asks about when the graph knows none of its names: a `path:line`, else the
    last name that looks like code (dotted, with an underscore or inner capital, or in backticks), else
    the last word that is not one relational questions are made of."""
    if located := _locations(question):
        return "{}:{}".format(*located[-1])
    quoted = re.findall(r"`([^`]+)`", question)
    names = _NAME.findall(question)
    code = [n for n in names if "." in n or "_" in n or any(c.isupper() for c in n[1:])]
    words = [n for n in names if n.lower() not in _QUESTION_WORDS]
    return next((found[-1] for found in (quoted, code, words) if found), None)


def nearest_names(graph: CodeGraph, name: str, limit: int = NEAREST) -> tuple[str, ...]:
    """The definitions whose names (or qualified names, for a dotted one) are closest to `name`."""
    definitions = [node for node in graph.nodes.values() if node.kind not in {"file", "doc"}]
    if ":" in name:  # a `path:line`: the definitions of that file, nearest line first
        path, _, line = name.rpartition(":")
        found = sorted((n for n in definitions if n.path == path), key=lambda n: abs(n.line - int(line)))
        return tuple(node.id for node in found[:limit])
    written = {node.id: node.id if "." in name else node.name for node in definitions}
    matches = process.extract(name, written, scorer=fuzz.WRatio, limit=limit, score_cutoff=_NEAREST_CUTOFF)
    return tuple(node_id for _, _, node_id in matches)


def symbol_paths(graph: CodeGraph, qualname: str, limit: int) -> list[str]:
    """Up to `limit` valid one-hop paths from a symbol, taking turns over `SYMBOL_PLANS`, rendered."""
    found = [[p for p in graph.follow(qualname, plan, limit) if valid(graph, p)] for plan in SYMBOL_PLANS]
    taken: list[str] = []
    for turn in range(limit):
        taken += [render_path(graph, paths[turn]) for paths in found if turn < len(paths)]
    return taken[:limit]


def path_documents(graph: CodeGraph, paths: Sequence[GraphPath]) -> list[Document]:
    """The paths as numbered sources for the reasoning step, each located where it ends."""
    documents = []
    for path in paths[:MAX_REASONED_PATHS]:
        end = step_json(graph, path[-1])
        documents.append(Document(end["path"], end["line"], end["line"], render_path(graph, path) + "\n"))
    return documents


def model_reasoner(model: Served, config: ServeConfig) -> Reasoner:
    """RoG's reasoning step: the model answers from the retrieved paths in the explain contract. Only
    what the verifier finds in them (quotes, `path:line` citations) is kept, and an answer that cites
    none of the paths is not shown at all."""

    def reason(question: str, documents: Sequence[Document]) -> str:
        request = PromptRequest("explain", documents, question=question)
        prompt = build_prompt(request, model.tokenizer, config.explain_budget)
        generation = generate(
            model,
            prompt.input_ids,
            max_new_tokens=config.explain_max_tokens,
            draft_tokens=config.draft_tokens,
            int8=config.int8_decoding,
            prompt_caches=config.prompt_caches,
        )
        text = verify(generation.text, prompt.documents).text.strip()
        cited = any(f"{d.path}:{d.start_line}" in text for d in prompt.documents)
        return text if cited else ""

    return reason


def answer(
    graph: CodeGraph, question: str, planner: Planner, reasoner: Reasoner | None = None
) -> GraphAnswer:
    """Resolve, plan, follow, and answer; with a `reasoner`, the model's verified words come before the
    summary.

    The planner ranks the relation paths that lead somewhere from the subject, and the relations whose
    inverse leads somewhere but which lead nowhere themselves ("called_by" from a function that calls
    but is never called). Only the former are followed. A small model's commonest slip is a relation's
    direction; when it ranks the direction that leads nowhere above the one it follows, the answer
    opens with that fact of the graph ("Nothing calls f") before following the other."""
    question = redact(question, "")[0]  # what the user typed goes to the planner's and reasoner's prompts
    subject = subject_of(graph, question)
    if subject is None:
        return _no_subject(graph, question)
    leading = graph.relation_paths(subject.id, MAX_HOPS)
    nowhere = [(INVERSES[p[0]],) for p in leading if len(p) == 1 and (INVERSES[p[0]],) not in leading]
    options = [*leading, *nowhere]
    ranked = [r for r in planner(question, subject.name, options) if r.plan in options]
    chosen = ranked[: next((n + 1 for n, r in enumerate(ranked) if r.ends), len(ranked))]
    plans = tuple(r.plan for r in chosen if r.plan in leading)
    if not plans:
        plans = next(((r.plan,) for r in ranked if r.plan in leading), ())
    order = [r.plan for r in ranked]
    followed = plans[0] if plans else ()
    mirror = (INVERSES[followed[0]],) if len(followed) == 1 else ()
    preferred = mirror in nowhere and mirror in order and order.index(mirror) < order.index(followed)
    empty = mirror[0] if preferred else ""
    paths: list[GraphPath] = []
    for plan in plans:
        paths += [path for path in graph.follow(subject.id, plan, MAX_PATHS) if valid(graph, path)]
    support = Counter(path[-1].target for path in paths)
    entities = tuple(sorted(support, key=lambda entity: (-support[entity], _first(paths, entity))))
    text = _sentence(graph, subject, plans, entities)
    if empty:
        text = f"{_nothing(empty, subject)} {text}"
    if reasoner is not None and paths:
        written = reasoner(question, path_documents(graph, paths))
        if any(ch.isalnum() for ch in written):
            text = f"{written}\n\n{text}"
    return GraphAnswer(question, subject, plans, tuple(paths), entities, text, nowhere=empty)


def _no_subject(graph: CodeGraph, question: str) -> GraphAnswer:
    name = unknown_name(question)
    if name is None:
        text = "The question names no symbol, so the code graph cannot answer it."
        return GraphAnswer(question, None, (), (), (), text)
    nearest = nearest_names(graph, name)
    where = "no definition there" if ":" in name else "no such symbol in this repository"
    text = f"`{name}`: {where}."
    if nearest:
        text += " Nearest: " + ", ".join(f"{node} ({_where(graph, node)})" for node in nearest) + "."
    return GraphAnswer(question, None, (), (), (), text, nearest)


def _nothing(relation: str, subject: Node) -> str:
    """That `relation` leads nowhere from the subject, as the code graph shows."""
    return (
        _NOTHING.get(relation, f"No {relation} edge leaves {{}}").format(subject.id) + " in the code graph."
    )


def _first(paths: list[GraphPath], entity: str) -> int:
    return next(i for i, path in enumerate(paths) if path[-1].target == entity)


def _sentence(
    graph: CodeGraph, subject: Node, plans: tuple[RelationPath, ...], entities: tuple[str, ...]
) -> str:
    if not plans:
        return f"No relation path leads anywhere from {subject.id} in the code graph."
    tried = ", ".join(PLAN_SEPARATOR.join(plan) for plan in plans)
    if not entities:
        return f"No path from {subject.id} follows {tried} in the code graph."
    named = [f"{entity} ({_where(graph, entity)})" for entity in entities[:_SHOWN]]
    more = f" and {len(entities) - _SHOWN} more" if len(entities) > _SHOWN else ""
    return f"Following {tried} from {subject.id}: {', '.join(named)}{more}."


def _where(graph: CodeGraph, entity: str) -> str:
    node = graph.nodes.get(entity)
    return f"{node.path}:{node.line}" if node else entity
