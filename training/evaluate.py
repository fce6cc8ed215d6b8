"""Offline evaluation: held-out completions through the real completion core, arm by arm, model by model.

Every completion goes through `repolm.assist.completion.Completer`, the code behind the editor's
completions, so the figures are what users get; arms differ only in the `search` callable injected:

- `in_file`: no retrieval, the model sees the file before the cursor;
- `bm25` / `dense` / `hybrid`: the index searched with that mode, exactly as the engine searches (same
  per-file cap, documentation chunks left out). The target file is excluded whole: its text before the
  cursor is already the prompt's prefix, and nothing at or after the cursor may reach the model;
- `oracle`: the chunks defining the repository symbols the target line uses (an upper bound).

One deviation from serving, documented in docs/EVAL_SCHEMA.md: block completions (a cursor on the first
line of a new block) are capped at the single-line token limit. Only the first line is scored, and
greedy decoding produces the same first line either way; the cap only saves decoding time.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from repolm.assist.completion import Completer, CompletionRequest
from repolm.assist.engine import code_hits
from repolm.config import Config, Progress, ServeConfig
from repolm.indexer.builder import update_index
from repolm.indexer.code_graph import CodeGraph
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index
from repolm.model import LoadedModel, load_model
from repolm.prompt import Document

from . import metrics
from .eval_explain import evaluate_explanations
from .eval_graph import evaluate_graph
from .eval_split import EvalSplit, git_commit
from .eval_targets import Target, cursor_prefix, cursor_suffix, editor_position, read_redacted, sample_targets
from .gate import GATE_ARM, GATE_METRIC

SCHEMA_VERSION = 1
ARMS = ("in_file", "bm25", "dense", "hybrid", "oracle")
RETRIEVAL_ARMS = ("bm25", "dense", "hybrid")
SCORES = ("exact_match", "edit_similarity", "identifier_f1")  # per target, each with a bootstrap CI
RANKED = 10  # hits kept per query for acc@k and MRR
BASE_MODEL = "base"


@dataclass(frozen=True)
class EvalOptions:
    split: EvalSplit
    arms: tuple[str, ...] = ARMS
    limit: int = 200
    seed: int = 0
    adapters: dict[str, str] = field(default_factory=dict)  # name -> PEFT adapter folder
    explain_limit: int = 10
    graph_limit: int = 0  # relational questions answered from the code graph and by plain retrieval
    with_base: bool = True  # False: only the adapters (adding them to an earlier run with the same seed)


@dataclass
class Outcome:
    """One completion of one target in one arm by one model."""

    prediction: str
    exact_match: float
    edit_similarity: float
    identifier_f1: float
    latency_ms: float
    rank: int | None  # of the first oracle chunk in the retrieval ranking (None: not retrieved)
    documents: list[str]  # path:start-end of the snippets the prompt carried


class IndexSearch:
    """`Completer`'s search for one retrieval mode; remembers the last ranking for acc@k and MRR."""

    def __init__(self, index: Index, mode: str, serve: ServeConfig) -> None:
        self.index = index
        self.mode = mode
        self.serve = serve
        self.ranking: list[int] = []

    def __call__(self, query: str, path: str, prefix: str, k: int) -> list[Document]:
        # The server's own request, only deeper so that the ranking can be scored.
        code = code_hits(self.index, query, path, max(k, RANKED), self.serve, self.mode, prefix)
        self.ranking = [hit.chunk_id for hit in code[:RANKED]]
        return [Document.from_chunk(hit.chunk) for hit in code[:k]]


class OracleSearch:
    """Returns the current target's oracle chunks, whatever the query."""

    def __init__(self) -> None:
        self.documents: list[Document] = []

    def __call__(self, query: str, path: str, prefix: str, k: int) -> list[Document]:
        return self.documents[:k]


def eval_serve_config(config: ServeConfig) -> ServeConfig:
    """The serving settings, with block completions capped at the single-line limit (see the docstring)."""
    return dataclasses.replace(config, completion_enabled=True, block_max_tokens=config.completion_max_tokens)


def complete_target(
    completer: Completer, model: LoadedModel, target: Target, text: str
) -> tuple[str, float, tuple[Document, ...]]:
    """The first line the completer inserts at the target's cursor, its latency (ms) and its snippets."""
    prefix = cursor_prefix(text, target.line, target.column)
    line, character = editor_position(prefix)
    after = cursor_suffix(text, target.line)  # the editor's text after the line (a FIM template reads it)
    # Each completion starts cold: the KV cache of the previous prompt (often the same snippets in
    # another arm) would make latencies depend on the order of the runs, and the snippets kept from
    # the previous target would make its retrieval depend on it.
    model._prompt_caches.clear()
    completer.clear_cache()
    started = time.perf_counter()
    completion = completer.complete(CompletionRequest(target.path, prefix + after, line, character))
    latency = (time.perf_counter() - started) * 1000
    return completion.text.split("\n", 1)[0], latency, completion.documents


def run_arm(
    completer: Completer,
    model: LoadedModel,
    targets: Sequence[Target],
    texts: dict[str, str],
    oracle_docs: dict[Target, list[Document]],
    search: IndexSearch | OracleSearch | None,
    tick: Callable[[], None],
) -> list[Outcome]:
    outcomes = []
    for target in targets:
        if isinstance(search, OracleSearch):
            search.documents = oracle_docs[target]
        if isinstance(search, IndexSearch):
            search.ranking = []
        prediction, latency, documents = complete_target(completer, model, target, texts[target.path])
        rank = None
        if isinstance(search, IndexSearch):
            rank = metrics.first_relevant_rank(search.ranking, frozenset(target.oracle_chunks))
        outcomes.append(
            Outcome(
                prediction,
                metrics.exact_match(prediction, target.expected),
                metrics.edit_similarity(prediction, target.expected),
                metrics.identifier_f1(prediction, target.expected),
                round(latency, 1),
                rank,
                [f"{d.path}:{d.start_line}-{d.end_line}" for d in documents],
            )
        )
        tick()
    return outcomes


def paired_difference(top: Sequence[Outcome], bottom: Sequence[Outcome], seed: int) -> dict:
    """Per score: `top` minus `bottom`, target by target, with a bootstrap 95% CI over targets.

    Both arms complete the same targets, so the per-target difference is less noisy than the two
    arms' own intervals suggest: this is what says whether retrieval helps beyond noise.
    """
    return {
        name: metrics.bootstrap(
            [getattr(a, name) - getattr(b, name) for a, b in zip(top, bottom, strict=True)], seed
        ).to_json()
        for name in SCORES
    }


def summarize_arm(arm: str, targets: Sequence[Target], outcomes: Sequence[Outcome], seed: int) -> dict:
    """n, the three scores with bootstrap CIs, retrieval quality and latency percentiles of one arm."""
    summary: dict[str, object] = {"n": len(outcomes)}
    for name in SCORES:
        summary[name] = metrics.bootstrap([getattr(o, name) for o in outcomes], seed).to_json()
    # Targets where the model ended the line at once: the editor shows nothing there.
    summary["empty"] = sum(1 for o in outcomes if not o.prediction.strip())
    summary["retrieval"] = None
    if arm in RETRIEVAL_ARMS:
        ranks = [o.rank for o, t in zip(outcomes, targets, strict=True) if t.oracle_chunks]
        summary["retrieval"] = {
            "n": len(ranks),
            "acc@1": metrics.mean([metrics.hit_at(r, 1) for r in ranks]),
            "acc@5": metrics.mean([metrics.hit_at(r, 5) for r in ranks]),
            "mrr": metrics.mean([metrics.reciprocal_rank(r) for r in ranks]),
        }
    p50, p95 = metrics.percentiles([o.latency_ms for o in outcomes])
    summary["latency_ms"] = {"p50": metrics.rounded(p50), "p95": metrics.rounded(p95)}
    by_kind: dict[str, dict[str, object]] = {}
    for kind in sorted({t.kind for t in targets}):
        chosen = [o for o, t in zip(outcomes, targets, strict=True) if t.kind == kind]
        by_kind[kind] = {"n": len(chosen), "exact_match": metrics.mean([o.exact_match for o in chosen])}
    summary["by_kind"] = by_kind
    return summary


def _oracle_supplies(target: Target, text: str, documents: Sequence[Document]) -> list[str]:
    """Identifiers of the target line that its oracle chunks hold and the code before the cursor lacks."""
    before = cursor_prefix(text, target.line, target.column)
    return metrics.supplied_identifiers(target.expected, before, [d.text for d in documents])


def evaluate(
    root: Path,
    config: Config,
    options: EvalOptions,
    load: Callable[[str | None], LoadedModel],
    index: Index,
    progress: Progress | None = None,
) -> dict:
    """The whole evaluation as the JSON document described in docs/EVAL_SCHEMA.md.

    `load(adapter)` returns the model with that adapter (None: the base); the caller decides how models
    are loaded, so tests and the CLI share this function.
    """
    report = progress or (lambda stage, done, total: None)
    targets = sample_targets(index, options.split, options.limit, options.seed, report)
    texts = {path: read_redacted(root, path) or "" for path in {t.path for t in targets}}
    stored = index.store.chunks_by_id(sorted({c for t in targets for c in t.oracle_chunks}))
    oracle_docs = {
        t: [Document.from_chunk(stored[c].chunk) for c in t.oracle_chunks if c in stored] for t in targets
    }
    serve = eval_serve_config(config.serve)
    models: dict[str, str | None] = {BASE_MODEL: None} if options.with_base else {}
    models |= options.adapters
    if not models:
        raise ValueError("nothing to evaluate: no base model and no adapters")
    total = len(models) * len(options.arms) * len(targets)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        report("complete", done, total)

    code_graph = CodeGraph.build(index) if options.graph_limit > 0 else None  # shared by the models
    results: dict[str, dict] = {}
    records = [
        {**t.to_json(), "oracle_supplies": _oracle_supplies(t, texts[t.path], oracle_docs[t]), "models": {}}
        for t in targets
    ]
    for name, adapter in models.items():
        model = load(adapter)
        arms: dict[str, dict] = {}
        outcomes_by_arm: dict[str, list[Outcome]] = {}
        for arm in options.arms:
            search = _search_for(arm, index, serve)
            completer = Completer(model, serve, search)
            outcomes = run_arm(completer, model, targets, texts, oracle_docs, search, tick)
            outcomes_by_arm[arm] = outcomes
            arms[arm] = summarize_arm(arm, targets, outcomes, options.seed)
            for record, outcome in zip(records, outcomes, strict=True):
                record["models"].setdefault(name, {})[arm] = dataclasses.asdict(outcome)
        explain = None
        if options.explain_limit > 0:
            explain = evaluate_explanations(
                index, model, serve, options.split, options.explain_limit, options.seed, report
            )
        graph = None
        if code_graph is not None:
            graph = evaluate_graph(
                index, code_graph, model, options.split, options.graph_limit, options.seed, report
            )
        results[name] = {
            "adapter": adapter,
            "arms": arms,
            "oracle_gap_closure": gap_closure(arms),
            "hybrid_over_in_file": _ratio(arms, "hybrid", "in_file"),
            "hybrid_minus_in_file": (
                paired_difference(outcomes_by_arm["hybrid"], outcomes_by_arm["in_file"], options.seed)
                if {"hybrid", "in_file"} <= outcomes_by_arm.keys()
                else None
            ),
            "explain": explain,
            "graph": graph,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "repo": {"root": str(root), "commit": git_commit(root), "index_generation": index.generation},
        "split": options.split.describe(),
        "seed": options.seed,
        "limit": options.limit,
        "arms": list(options.arms),
        "settings": {
            "completion_budget": serve.completion_budget,
            "completion_snippets": serve.completion_snippets,
            "completion_max_tokens": serve.completion_max_tokens,
            "per_file_cap": serve.completion_per_file_cap,
            "context_weight": serve.completion_context_weight,
            "search": dataclasses.asdict(config.search),
        },
        "targets": {
            "n": len(targets),
            "by_kind": {k: sum(t.kind == k for t in targets) for k in sorted({t.kind for t in targets})},
            "with_oracle": sum(bool(t.oracle_chunks) for t in targets),
            "oracle_supplies": sum(bool(r["oracle_supplies"]) for r in records),
        },
        "models": results,
        "gate": {name: _gate_mean(result["arms"]) for name, result in results.items()},
        "records": records,
    }


def gap_closure(arms: dict[str, dict]) -> float | None:
    """(hybrid − in_file) / (oracle − in_file) of exact match: the oracle gain that retrieval achieves."""
    hybrid, in_file, oracle = (_em(arms, arm) for arm in ("hybrid", "in_file", "oracle"))
    if hybrid is None or in_file is None or oracle is None or oracle == in_file:
        return None
    return round((hybrid - in_file) / (oracle - in_file), 4)


def _search_for(arm: str, index: Index, serve: ServeConfig) -> IndexSearch | OracleSearch | None:
    if arm in RETRIEVAL_ARMS:
        return IndexSearch(index, arm, serve)
    if arm == "oracle":
        return OracleSearch()
    if arm == "in_file":
        return None
    raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def _gate_mean(arms: dict[str, dict]) -> float | None:
    """The gate metric's mean in the gate arm (training/gate.py), what the retrain gate compares."""
    return arms[GATE_ARM][GATE_METRIC]["mean"] if GATE_ARM in arms else None


def _em(arms: dict[str, dict], arm: str) -> float | None:
    return arms[arm]["exact_match"]["mean"] if arm in arms else None


def _ratio(arms: dict[str, dict], top: str, bottom: str) -> float | None:
    a, b = _em(arms, top), _em(arms, bottom)
    return None if a is None or not b else round(a / b, 4)


def adapter_loader(base: str | None = None, threads: int = 0) -> Callable[[str | None], LoadedModel]:
    """Loads the base model once; each call then swaps the requested adapter in (None: the plain base).

    `threads` > 0 overrides the runtime's one-thread-per-core: on a machine shared with other jobs,
    fewer threads than cores keeps them from waiting on each other (the evaluation runs several times
    faster on a busy machine).
    """
    loaded: LoadedModel | None = None

    def load(adapter: str | None) -> LoadedModel:
        nonlocal loaded
        if loaded is None:
            loaded = load_model(base=base, adapter=adapter)
            if threads > 0:
                torch.set_num_threads(threads)
        else:
            loaded.set_adapter(adapter)
        return loaded

    return load


def run_evaluation(
    root: Path, config: Config, options: EvalOptions, progress: Progress | None = None, threads: int = 0
) -> dict:
    """Bring the index up to date, then evaluate: what `repolm eval` does."""
    embedder = Embedder.for_repo(root, config)  # one for the update and the queries: a load costs seconds
    update_index(root, config, embedder, progress)
    index = Index.open(root, config, embedder)
    load = adapter_loader(config.serve.model or None, threads)
    try:
        return evaluate(root, config, options, load, index, progress)
    finally:
        index.close()
