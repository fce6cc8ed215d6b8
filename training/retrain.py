"""`repolm train` and `repolm retrain`: index → RAFT dataset → LoRA → evaluation → gated promotion.

`retrain` is meant for cron. It holds the registry lock for the whole run, brings the index up to date
(incremental), fine-tunes the retriever first (`[train] retriever`; its own gate on held-out retrieval,
see training/retriever.py) so that the adapter's dataset is retrieved as serving will retrieve, then
trains a candidate adapter, evaluates it against the active adapter (or the base model) on the
evaluation split, and promotes it only if the gate says it is better beyond noise. Exit codes (of the
adapter's decision; with `retriever_only`, of the retriever's):

    0  promoted            3  trained and evaluated, not promoted (the active adapter stays)
    1  error               4  busy: another retrain (or an index update) holds the lock
    2  usage error (CLI)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repolm.config import TASKS, Config, Progress
from repolm.engine_lora import publish
from repolm.indexer.builder import IndexBusyError, update_index
from repolm.indexer.retrieval import Index
from repolm.model import DEFAULT_BASE, resolve_base

from .eval_split import EvalSplit, git_commit
from .evaluate import BASE_MODEL, SCORES, EvalOptions, adapter_loader, evaluate
from .finetune import Profile, TrainResult, launched, profile, run_job, write_job
from .gate import GATE_ARM, GateDecision, decide
from .raft_dataset import build_dataset, format_stats, write_jsonl
from .raft_examples import RaftConfig, TrainingSplit
from .registry import BusyError, Manifest, Registry
from .retriever import RetrieverOptions, retrain_retriever, retriever_registry
from .teacher import teacher_from_settings

EXIT_PROMOTED = 0
EXIT_ERROR = 1
EXIT_NOT_PROMOTED = 3
EXIT_BUSY = 4

DATASET_FILE = "dataset.jsonl"
EVAL_FILE = "eval.json"
REPORT_FILE = "retrain_report.json"

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    profile: str = "auto"
    mode: str = "raft"  # raft | plain (the control)
    name: str = ""  # default: <mode>-<UTC timestamp>
    max_steps: int | None = None  # overrides the profile
    eval_limit: int | None = None  # completion targets the gate is measured on (default: the profile's)
    eval_arms: tuple[str, ...] = ("in_file", GATE_ARM)
    retriever: RetrieverOptions | None = None  # None: no retriever step (`[train] retriever = false`)
    retriever_only: bool = False


@dataclass
class RetrainReport:
    exit_code: int
    name: str = ""
    promoted: bool = False
    reason: str = ""
    active_before: str | None = None
    active_after: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    adapter_dir: str = ""
    retriever: dict[str, Any] | None = None  # the retriever step's RetrieverReport, when it ran

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def configured_profile(config: Config, name: str) -> Profile:
    """The named profile with the `[train]` section's RAFT settings applied (only its tasks are built)."""
    chosen = profile(name)
    settings = config.train
    raft = dataclasses.replace(
        chosen.raft,
        oracle_probability=settings.oracle_probability,
        distractors=settings.distractors,
        seed=settings.seed,
        **{f"{task}_examples": 0 for task in TASKS if task not in settings.tasks},
    )
    train = dataclasses.replace(chosen.train, base=config.serve.model or None, seed=settings.seed)
    return dataclasses.replace(chosen, raft=raft, train=train)


def train_adapter(
    root: Path,
    config: Config,
    options: TrainOptions,
    registry: Registry,
    log: Log = print,
    progress: Progress | None = None,
) -> tuple[Manifest, TrainResult]:
    """Build the dataset (RAFT) or collect the files (plain) and train a new adapter into the registry."""
    chosen = configured_profile(config, options.profile)
    train_config = chosen.train
    if options.max_steps is not None:
        train_config = dataclasses.replace(train_config, max_steps=options.max_steps)
    name = options.name or registry.new_name(options.mode)
    folder = registry.create(name)
    index = Index.open(root, config)
    try:
        generation = index.generation
        if options.mode == "plain":
            # The control sees exactly the files RAFT may use, as plain text.
            files = TrainingSplit(index, chosen.raft, config.serve).files
            log(f"plain LoRA control on {len(files)} training files")
            dataset_hash, stats = _files_hash(files), {"files": len(files)}
            job = write_job(folder, train_config, root=root, paths=files)
        else:
            dataset_hash, stats = _build(index, config, chosen.raft, folder / DATASET_FILE, log, progress)
            job = write_job(folder, train_config, dataset=folder / DATASET_FILE)
    finally:
        index.close()
    if config.train.launch:  # several processes (GPUs, machines) under the configured launcher
        log(f"training under {config.train.launch}")
        result = launched(job, config.train.launch)
    else:
        result = run_job(job)
    log(
        f"trained {name}: {result.steps} steps, {result.tokens_per_second} tokens/s, loss {result.final_loss}"
    )
    manifest = Manifest(
        name=name,
        base_model=config.serve.model or DEFAULT_BASE,
        mode=options.mode,
        index_generation=generation,
        git_commit=git_commit(root),
        dataset_hash=dataset_hash,
        profile=options.profile,
        train={k: v for k, v in result.to_json().items() if k != "config"},
        dataset=stats,
    )
    registry.write_manifest(manifest)
    return manifest, result


def _build(
    index: Index, config: Config, raft: RaftConfig, out: Path, log: Log, progress: Progress | None
) -> tuple[str, dict[str, Any]]:
    from transformers import AutoTokenizer

    settings = config.train
    teacher = teacher_from_settings(
        settings.teacher_base_url, settings.teacher_model, settings.teacher_api_key_env
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(config.serve.model or None), local_files_only=True)
    examples, stats = build_dataset(index, tokenizer, raft, config.serve, teacher, progress)
    log(format_stats(stats))
    if not examples:
        raise ValueError("the training split produced no examples (is the repository too small?)")
    return write_jsonl(examples, out), stats.to_json()


def _files_hash(files: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def evaluate_candidate(
    root: Path,
    config: Config,
    registry: Registry,
    candidate: str,
    options: TrainOptions,
    progress: Progress | None,
) -> tuple[dict, str]:
    """Evaluate base, the active adapter and the candidate on the evaluation split; (eval JSON, incumbent)."""
    active = registry.active()
    adapters = {candidate: str(registry.path(candidate))}
    if active and active != candidate:
        adapters[active] = str(registry.path(active))
    seed = config.train.seed
    limit = options.eval_limit or profile(options.profile).eval_limit
    eval_options = EvalOptions(EvalSplit("file"), options.eval_arms, limit, seed, adapters, explain_limit=0)
    index = Index.open(root, config)
    try:
        result = evaluate(
            root, config, eval_options, adapter_loader(config.serve.model or None), index, progress
        )
    finally:
        index.close()
    return result, active if active and active != candidate else BASE_MODEL


def retrain(
    root: Path, config: Config, options: TrainOptions, log: Log = print, progress: Progress | None = None
) -> RetrainReport:
    registry = Registry(config.index_path(root))
    try:
        with registry.lock():
            return _retrain_locked(root, config, options, registry, log, progress)
    except (BusyError, IndexBusyError) as error:
        return RetrainReport(EXIT_BUSY, reason=str(error), active_before=registry.active())


def _retrain_locked(
    root: Path, config: Config, options: TrainOptions, registry: Registry, log: Log, progress: Progress | None
) -> RetrainReport:
    before = registry.active()
    summary = update_index(root, config, progress=progress)
    log(f"index up to date (generation {summary.generation})")
    retriever = _retriever_step(root, config, options, log, progress)
    if options.retriever_only:
        if retriever is None:
            raise ValueError("[index] embedding_model names a fixed model: there is no retriever to train")
        code = EXIT_PROMOTED if retriever["promoted"] else EXIT_NOT_PROMOTED
        return RetrainReport(
            code,
            retriever["name"],
            retriever["promoted"],
            retriever["reason"],
            before,
            before,
            retriever=retriever,
        )
    manifest, _ = train_adapter(root, config, options, registry, log, progress)
    evaluation, incumbent = evaluate_candidate(root, config, registry, manifest.name, options, progress)
    folder = registry.path(manifest.name)
    (folder / EVAL_FILE).write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
    decision = decide(evaluation, manifest.name, incumbent, seed=config.train.seed)
    manifest.eval_metrics = eval_metrics(evaluation, manifest.name)
    manifest.gate = decision.to_json()
    registry.write_manifest(manifest)
    if decision.promote:
        activate_adapter(root, config, registry, manifest.name)
    report = _report(decision, manifest.name, before, registry.active(), str(folder))
    report.retriever = retriever
    (folder / REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report


def activate_adapter(root: Path, config: Config, registry: Registry, name: str | None) -> None:
    """Make `name` (None: the base model) the active adapter. With `[model] engine_lora` the engine loads
    it first: an engine that refuses raises EngineError and leaves the registry as it was."""
    registry.require(name)
    if config.model.loads_adapters:
        publish(config.model, root, name, registry.path(name) if name else None)
    registry.activate(name)


def rollback_adapter(root: Path, config: Config, registry: Registry) -> str | None:
    """Re-activate the previous adapter (None: the base model), on the engine first as `activate_adapter`."""
    if config.model.loads_adapters:
        target = registry.rollback_target()
        publish(config.model, root, target, registry.path(target) if target else None)
    return registry.rollback()


def _retriever_step(
    root: Path, config: Config, options: TrainOptions, log: Log, progress: Progress | None
) -> dict[str, Any] | None:
    """Fine-tune, gate and maybe promote the retriever; None when there is none to train: the step is
    off, or `[index] embedding_model` pins a model that a promotion would not replace."""
    if options.retriever is None or config.index.embedding_model:
        return None
    registry = retriever_registry(root, config)
    return retrain_retriever(root, config, options.retriever, registry, log, progress).to_json()


def eval_metrics(evaluation: dict, name: str) -> dict[str, Any]:
    """The manifest's summary: each score per arm (mean and CI) for this adapter."""
    arms = evaluation.get("models", {}).get(name, {}).get("arms", {})
    metrics: dict[str, Any] = {
        f"{arm}_{score}": a[score]["mean"] for arm, a in arms.items() for score in SCORES if score in a
    }
    metrics["arms"] = {arm: {score: a[score] for score in SCORES if score in a} for arm, a in arms.items()}
    metrics["n"] = evaluation.get("targets", {}).get("n")
    metrics["split"] = evaluation.get("split")
    return metrics


def _report(
    decision: GateDecision, name: str, before: str | None, after: str | None, folder: str
) -> RetrainReport:
    if decision.promote:
        reason = f"promoted {name}: {decision.reason}"
    else:
        reason = f"kept {before or 'the base model'} active: {decision.reason}"
    return RetrainReport(
        EXIT_PROMOTED if decision.promote else EXIT_NOT_PROMOTED,
        name=name,
        promoted=decision.promote,
        reason=reason,
        active_before=before,
        active_after=after,
        gate=decision.to_json(),
        adapter_dir=folder,
    )
