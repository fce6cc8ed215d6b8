"""Graph questions in `repolm eval`: Reasoning-on-Graphs answers against plain retrieval.

Questions come from `graph_questions` about entities defined in the evaluation split only (the planner
was trained on the training split's). Each is answered twice:

- **graph**: the model plans relation paths, choosing among those that exist from the question's entity
  (`repolm.assist.plan`); the paths are followed from the entity, and the answer is their end points
  (what `repolm ask` shows), best supported first;
- **retrieval**: the hybrid retriever's top hits for the question, read as entities (the definitions
  and doc sections a retrieval-grounded explanation would be built from), the subject itself left out.

Scores per question, as RoG reports them on WebQSP and CWQ: Hits@1 (the first answer is right) and F1
over the answer set. Also reported: the share of shown paths that are valid (every edge in the graph,
connected), the share of questions whose plan includes a target relation path, and latency.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from repolm.assist.ask import answer
from repolm.assist.plan import model_planner
from repolm.config import Progress
from repolm.indexer.code_graph import CodeGraph, chunk_node_id, valid
from repolm.indexer.retrieval import Index
from repolm.model import LoadedModel

from . import metrics
from .eval_split import EvalSplit
from .graph_questions import GraphQuestion, questions

RETRIEVAL_K = 5
METHODS = ("graph", "retrieval")
RELATIONAL = frozenset({"callers", "implementers", "overrides", "tests"})


def set_f1(predicted: Sequence[str], gold: frozenset[str]) -> float:
    found = set(predicted)
    if not found or not gold:
        return 0.0
    overlap = len(found & gold)
    if not overlap:
        return 0.0
    precision, recall = overlap / len(found), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def hits_at_1(predicted: Sequence[str], gold: frozenset[str]) -> float:
    return float(bool(predicted) and predicted[0] in gold)


def retrieval_entities(index: Index, question: GraphQuestion) -> list[str]:
    hits = index.search(question.question, k=RETRIEVAL_K)
    entities = []
    for hit in hits:
        entity = chunk_node_id(hit.chunk)
        if entity != question.entity and entity not in entities:
            entities.append(entity)
    return entities


def evaluate_graph(
    index: Index,
    graph: CodeGraph,
    model: LoadedModel,
    split: EvalSplit,
    limit: int,
    seed: int,
    progress: Progress,
) -> dict:
    """Graph questions answered by `model` and by plain retrieval; `graph` is built once per run."""
    asked = questions(graph, lambda node: split.allows(node.path, node.line), limit, seed)
    planner = model_planner(model)
    records = []
    for done, question in enumerate(asked):
        progress("graph", done, len(asked))
        started = time.perf_counter()
        result = answer(graph, question.question, planner)
        graph_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        plain = retrieval_entities(index, question)
        retrieval_ms = (time.perf_counter() - started) * 1000
        records.append(
            {
                "kind": question.kind,
                "question": question.question,
                "entity": question.entity,
                "answers": sorted(question.answers),
                "target_plans": [list(plan) for plan in question.plans],
                "planned": [list(plan) for plan in result.plans],
                "nowhere": result.nowhere,
                "paths": len(result.paths),
                "valid_paths": sum(valid(graph, path) for path in result.paths),
                "graph": _scores(list(result.entities), question.answers, graph_ms),
                "retrieval": _scores(plain, question.answers, retrieval_ms),
            }
        )
    return summarize(records, seed)


def _scores(predicted: list[str], gold: frozenset[str], latency_ms: float) -> dict:
    return {
        "predicted": predicted,
        "hits@1": hits_at_1(predicted, gold),
        "f1": round(set_f1(predicted, gold), 4),
        "latency_ms": round(latency_ms, 2),
    }


def summarize(records: list[dict], seed: int) -> dict:
    relational = [r for r in records if r["kind"] in RELATIONAL]
    methods = {}
    for method in METHODS:
        p50, p95 = metrics.percentiles([r[method]["latency_ms"] for r in records])
        methods[method] = {
            "hits@1": metrics.bootstrap([r[method]["hits@1"] for r in records], seed).to_json(),
            "f1": metrics.bootstrap([r[method]["f1"] for r in records], seed).to_json(),
            "relational_f1": metrics.bootstrap([r[method]["f1"] for r in relational], seed).to_json(),
            "latency_ms": {"p50": metrics.rounded(p50), "p95": metrics.rounded(p95)},
            "by_kind": {
                kind: {
                    "n": len(chosen := [r for r in records if r["kind"] == kind]),
                    "hits@1": metrics.mean([r[method]["hits@1"] for r in chosen]),
                    "f1": metrics.mean([r[method]["f1"] for r in chosen]),
                }
                for kind in sorted({r["kind"] for r in records})
            },
        }
    shown = sum(r["paths"] for r in records)
    return {
        "n": len(records),
        "relational_n": len(relational),
        "methods": methods,
        "path_validity": round(sum(r["valid_paths"] for r in records) / shown, 4) if shown else None,
        "paths_shown": shown,
        "plan_hit": metrics.mean([float(any(p in r["target_plans"] for p in r["planned"])) for r in records]),
        # Questions (all with answers) whose top-ranked relation leads nowhere from the subject: the
        # answer then opens with that (true) fact before following the best relation that leads somewhere.
        "nowhere_first": metrics.mean([float(bool(r.get("nowhere"))) for r in records]),
        "records": records,
    }
