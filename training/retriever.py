"""`repolm retrain` (its retriever step) and `repolm retrain --retriever-only`: pairs → fine-tuned
retriever → the index re-embedded beside the current vectors → paired retrieval gate → promotion.

The retriever in use is the registry's active one (else the embedded MiniLM; `[index] embedding_model`
overrides both, and then nothing here changes what serving uses). Vectors are cached under the model's
content hash, so a candidate's vectors sit beside those in use: serving switches when the active link
moves, and a rollback finds the previous model's vectors still there, because every activation pins
the active and the previous model's vectors against pruning (`Store.pin_vectors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repolm.config import RETRIEVER_MODEL, Config, Progress
from repolm.indexer.builder import embed_generation
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index
from repolm.indexer.store import Store

from .eval_retrieval import RetrievalEvalOptions, evaluate_retrieval
from .eval_split import EvalSplit, git_commit
from .registry import Registry, RetrieverManifest
from .retriever_gate import decide_retriever
from .retriever_pairs import PairConfig, mine_pairs, pairs_hash
from .retriever_train import RetrieverTrainConfig, train_retriever

EVAL_FILE = "eval.json"
BASE_RETRIEVER = "base"  # the incumbent's name when no fine-tuned retriever is active

Log = Callable[[str], None]


@dataclass(frozen=True)
class RetrieverOptions:
    name: str = ""  # default: retriever-<UTC timestamp>
    pairs: PairConfig = field(default_factory=PairConfig)
    train: RetrieverTrainConfig = field(default_factory=RetrieverTrainConfig)
    eval_limit: int = 200  # completion targets sampled from the held-out files
    eval_definitions: int = 200  # held-out definitions asked about (docstring and question queries)


@dataclass
class RetrieverReport:
    promoted: bool
    name: str
    reason: str
    active_before: str | None
    active_after: str | None
    gate: dict[str, Any]
    seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def retriever_registry(root: Path, config: Config) -> Registry:
    return Registry.retrievers(config.index_path(root))


def model_folder(registry: Registry, name: str) -> Path:
    return registry.path(name) / RETRIEVER_MODEL


def train_candidate(
    root: Path,
    config: Config,
    registry: Registry,
    options: RetrieverOptions,
    log: Log = print,
    progress: Progress | None = None,
) -> tuple[RetrieverManifest, dict[str, float]]:
    """Mine pairs from the training split and fine-tune the retriever in use on them, into the registry
    (not activated). Returns the manifest and the seconds each stage took."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    index = Index.open(root, config)
    try:
        base = index.query_embedder
        generation = index.generation
        pairs, stats = mine_pairs(index, options.pairs, progress)
    finally:
        index.close()
    seconds["pairs"] = round(time.perf_counter() - started, 1)
    log(f"retriever pairs: {stats.pairs} ({', '.join(f'{k} {v}' for k, v in sorted(stats.by_kind.items()))})")
    name = options.name or registry.new_name("retriever")
    folder = model_folder(registry, name)
    folder.mkdir(parents=True, exist_ok=True)
    result = train_retriever(base.path, pairs, folder, base.max_tokens, options.train, progress)
    seconds["train"] = result.seconds
    log(f"trained retriever {name}: {result.steps} steps in {result.seconds:.0f}s, loss {result.final_loss}")
    manifest = RetrieverManifest(
        name=name,
        base_model=str(base.path),
        vector_key=Embedder.from_config(config.index, str(folder)).name,
        index_generation=generation,
        git_commit=git_commit(root),
        pairs_hash=pairs_hash(pairs),
        pairs=stats.to_json(),
        train=result.to_json(),
    )
    registry.write_manifest(manifest)
    return manifest, seconds


def evaluate_retrievers(
    root: Path,
    config: Config,
    candidate: Embedder,
    options: RetrieverOptions,
    progress: Progress | None = None,
) -> tuple[dict, dict, float]:
    """Embed the index under `candidate` (beside the vectors in use), then evaluate both retrievers on
    the held-out files: (candidate's results, incumbent's results, seconds spent embedding)."""
    started = time.perf_counter()
    embed_generation(root, config, candidate, progress)
    embedding = round(time.perf_counter() - started, 1)
    eval_options = RetrievalEvalOptions(
        EvalSplit("file"), options.eval_limit, options.eval_definitions, config.train.seed
    )
    results = []
    for embedder in (candidate, None):
        index = Index.open(root, config, embedder)
        try:
            results.append(evaluate_retrieval(index, eval_options, config.serve, progress=progress))
        finally:
            index.close()
    return results[0], results[1], embedding


def activate_retriever(
    root: Path, config: Config, registry: Registry, name: str | None, progress: Progress | None = None
) -> None:
    """Serve `name` (None: the embedded model): the published generation gets its vectors (only those
    missing: an index update may have come since the evaluation), the active and the previous model's
    vectors are pinned, then the link moves and running servers switch at their next request."""
    before = Embedder.for_repo(root, config)
    after = Embedder.from_config(config.index, str(model_folder(registry, name)) if name else "")
    embed_generation(root, config, after, progress)
    _pin(root, config, before, after)
    registry.activate(name)


def rollback_retriever(root: Path, config: Config, registry: Registry) -> str | None:
    """Serve the previously active retriever again, from the vectors it left in the index (pinned when
    it was replaced): nothing is re-embedded. Returns its name (None: the embedded model)."""
    before = Embedder.for_repo(root, config)
    previous = registry.rollback()
    _pin(root, config, before, Embedder.for_repo(root, config))
    return previous


def _pin(root: Path, config: Config, *embedders: Embedder) -> None:
    store = Store.open(config.index_path(root))
    try:
        store.pin_vectors([embedder.name for embedder in embedders])
    finally:
        store.close()


def retrain_retriever(
    root: Path,
    config: Config,
    options: RetrieverOptions,
    registry: Registry,
    log: Log = print,
    progress: Progress | None = None,
) -> RetrieverReport:
    """Train a candidate, evaluate it against the retriever in use, promote it only if the gate says
    so; the caller holds the retrain lock and has brought the index up to date."""
    manifest, seconds = train_candidate(root, config, registry, options, log, progress)
    return judge_candidate(root, config, registry, manifest, options, seconds, log, progress)


def judge_candidate(
    root: Path,
    config: Config,
    registry: Registry,
    manifest: RetrieverManifest,
    options: RetrieverOptions,
    seconds: dict[str, float] | None = None,
    log: Log = print,
    progress: Progress | None = None,
) -> RetrieverReport:
    """Evaluate a trained candidate against the retriever in use, record both and the gate's decision in
    its folder, and activate it only if the gate promotes it."""
    seconds = dict(seconds or {})
    before = registry.active()
    candidate = Embedder.from_config(config.index, str(model_folder(registry, manifest.name)))
    ours, theirs, seconds["embedding"] = evaluate_retrievers(root, config, candidate, options, progress)
    folder = registry.path(manifest.name)
    evaluation = {"candidate": ours, "incumbent": theirs, "incumbent_name": before or BASE_RETRIEVER}
    (folder / EVAL_FILE).write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
    decision = decide_retriever(ours, theirs, (manifest.name, before or BASE_RETRIEVER), config.train.seed)
    manifest.eval_metrics = {
        side: {family: {k: v for k, v in r.items() if k != "ranks"} for family, r in result.items()}
        for side, result in (("candidate", ours), ("incumbent", theirs))
    }
    manifest.gate = decision.to_json()
    registry.write_manifest(manifest)
    if decision.promote:
        activate_retriever(root, config, registry, manifest.name, progress)
    log(decision.reason)
    return RetrieverReport(
        decision.promote,
        manifest.name,
        decision.reason,
        before,
        registry.active(),
        decision.to_json(),
        seconds,
    )
