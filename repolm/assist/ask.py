"""Graph-grounded answers (Reasoning on Graphs): plan relation paths, follow them, answer from the paths.

The planner is the model (base plus the active adapter, fine-tuned on planning examples mined from the
graph); it writes relation paths, one per line. Relations the graph does not know are ignored, as are
paths that contain one. Each remaining plan is followed from the question's entity through the graph;
only paths whose every edge exists are kept. The answer's entities are their end points, so every claim
comes with a path a developer can follow; the model then writes the answer from those paths (RoG's
reasoning step), and what it writes is verified against them like any explanation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from repolm.config import ServeConfig
from repolm.indexer.code_graph import (
    INVERSES,
    RELATIONS,
    CodeGraph,
    Edge,
    GraphPath,
    Node,
    RelationPath,
    valid,
)
from repolm.indexer.secrets import redact
from repolm.model import LoadedModel, generate
from repolm.prompt import PLAN_BUDGET, PLAN_SEPARATOR, Document, PromptRequest, build_prompt

from .explain import verify

MAX_PLANS = 3
MAX_PATHS = 50
PLAN_MAX_TOKENS = 32
_NAME = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*")
_SHOWN = 8  # answers named in the sentence; the JSON has all of them

Planner = Callable[[str], str]
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

    def to_json(self, graph: CodeGraph) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "entities": list(self.entities),
            "paths": [[step_json(graph, edge) for edge in path] for path in self.paths],
            "subject": self.subject.id if self.subject else None,
            "plans": [PLAN_SEPARATOR.join(plan) for plan in self.plans],
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


def parse_plan(text: str) -> tuple[RelationPath, ...]:
    """Relation paths from the planner's text: one per line; a path naming an unknown relation is dropped."""
    plans: list[RelationPath] = []
    for line in text.splitlines():
        relations = tuple(part.strip() for part in line.split(PLAN_SEPARATOR.strip()))
        if relations and all(relation in INVERSES for relation in relations) and relations not in plans:
            plans.append(relations)
    return tuple(plans[:MAX_PLANS])


def subject_of(graph: CodeGraph, question: str) -> Node | None:
    """The definition the question is about: the longest name in it that the graph knows."""
    written = sorted(set(_NAME.findall(question)), key=lambda name: (-name.count("."), -len(name), name))
    for name in written:
        found = [node for node in graph.find(name) if node.kind not in {"file", "doc"}]
        if found:
            return found[0]
    return None


def symbol_paths(graph: CodeGraph, qualname: str, limit: int) -> list[str]:
    """Up to `limit` valid one-hop paths from a symbol, taking turns over `SYMBOL_PLANS`, rendered."""
    found = [[p for p in graph.follow(qualname, plan, limit) if valid(graph, p)] for plan in SYMBOL_PLANS]
    taken: list[str] = []
    for turn in range(limit):
        taken += [render_path(graph, paths[turn]) for paths in found if turn < len(paths)]
    return taken[:limit]


def model_planner(model: LoadedModel) -> Planner:
    def plan(question: str) -> str:
        request = PromptRequest("plan", (), question=question, relations=RELATIONS)
        prompt = build_prompt(request, model.tokenizer, PLAN_BUDGET)
        return generate(model, prompt.input_ids, max_new_tokens=PLAN_MAX_TOKENS).text

    return plan


def path_documents(graph: CodeGraph, paths: Sequence[GraphPath]) -> list[Document]:
    """The paths as numbered sources for the reasoning step, each located where it ends."""
    documents = []
    for path in paths[:MAX_REASONED_PATHS]:
        end = step_json(graph, path[-1])
        documents.append(Document(end["path"], end["line"], end["line"], render_path(graph, path) + "\n"))
    return documents


def model_reasoner(model: LoadedModel, config: ServeConfig) -> Reasoner:
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
    """Plan, follow, and answer; with a `reasoner`, the model's verified words come before the summary."""
    question = redact(question, "")[0]  # what the user typed goes to the planner's and reasoner's prompts
    subject = subject_of(graph, question)
    if subject is None:
        text = "The question names no symbol this repository defines, so the code graph cannot answer it."
        return GraphAnswer(question, None, (), (), (), text)
    plans = parse_plan(planner(question))
    paths: list[GraphPath] = []
    for plan in plans:
        paths += [path for path in graph.follow(subject.id, plan, MAX_PATHS) if valid(graph, path)]
    support = Counter(path[-1].target for path in paths)
    entities = tuple(sorted(support, key=lambda entity: (-support[entity], _first(paths, entity))))
    text = _sentence(graph, subject, plans, entities)
    if reasoner is not None and paths:
        written = reasoner(question, path_documents(graph, paths))
        if any(ch.isalnum() for ch in written):
            text = f"{written}\n\n{text}"
    return GraphAnswer(question, subject, plans, tuple(paths), entities, text)


def _first(paths: list[GraphPath], entity: str) -> int:
    return next(i for i, path in enumerate(paths) if path[-1].target == entity)


def _sentence(
    graph: CodeGraph, subject: Node, plans: tuple[RelationPath, ...], entities: tuple[str, ...]
) -> str:
    if not plans:
        return f"The planner gave no relation path the code graph knows for {subject.id}: no answer."
    tried = ", ".join(PLAN_SEPARATOR.join(plan) for plan in plans)
    if not entities:
        return f"No path from {subject.id} follows {tried} in the code graph."
    named = [f"{entity} ({_where(graph, entity)})" for entity in entities[:_SHOWN]]
    more = f" and {len(entities) - _SHOWN} more" if len(entities) > _SHOWN else ""
    return f"Following {tried} from {subject.id}: {', '.join(named)}{more}."


def _where(graph: CodeGraph, entity: str) -> str:
    node = graph.nodes.get(entity)
    return f"{node.path}:{node.line}" if node else entity
