"""Retriever fine-tuning on a real index of the RAFT fixture: real pairs, the real embedding model trained
for a few steps, real re-embedding, the real gate, promotion, the server's switch and rollback."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from raft_fixture import HELD_OUT_FILE, write_fixture_repo

from repolm.assist import engine as engine_module
from repolm.config import load_config
from repolm.indexer.builder import update_index
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index
from repolm.indexer.store import Store
from repolm.training.eval_split import is_held_out
from repolm.training.registry import Registry, RetrieverManifest
from repolm.training.retriever import (
    RetrieverOptions,
    activate_retriever,
    judge_candidate,
    model_folder,
    retriever_registry,
    rollback_retriever,
)
from repolm.training.retriever_gate import decide_retriever
from repolm.training.retriever_pairs import Pair, mine_pairs
from repolm.training.retriever_train import RetrieverTrainConfig, train_retriever

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"  # in the fixture's lib/store.py
QUICK = RetrieverTrainConfig(max_steps=3, batch_size=8, learning_rate=2e-4)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, embedder):
    root = write_fixture_repo(tmp_path_factory.mktemp("retriever") / "repo")
    config = load_config(root)
    update_index(root, config, embedder=embedder)
    index = Index.open(root, config, embedder)
    try:
        pairs, stats = mine_pairs(index)
    finally:
        index.close()
    return root, config, pairs, stats


def _candidate(root: Path, config, name: str, pairs: list[Pair], base: Embedder) -> RetrieverManifest:
    """A retriever trained for a few steps into the registry, as `train_candidate` registers one."""
    registry = retriever_registry(root, config)
    folder = model_folder(registry, name)
    folder.mkdir(parents=True, exist_ok=True)
    train_retriever(base.path, pairs, folder, base.max_tokens, QUICK)
    manifest = RetrieverManifest(name, str(base.path), Embedder(str(folder)).name, 1, None, "")
    registry.write_manifest(manifest)
    return manifest


def _scrambled(pairs: list[Pair]) -> list[Pair]:
    """Every query paired with some other query's positive: training on these makes retrieval worse."""
    positives = [p.positive for p in pairs]
    random.Random(0).shuffle(positives)
    return [
        dataclasses.replace(p, positive=q, negative=p.positive) for p, q in zip(pairs, positives, strict=True)
    ]


def test_pairs_come_from_training_files_only_and_hold_no_secret(repo):
    _, _, pairs, stats = repo
    assert stats.held_out_files == 1 and stats.pairs == len(pairs)
    assert {"first_use", "call", "docstring", "question"} <= set(stats.by_kind)
    for pair in pairs:
        for path in (pair.path, pair.positive_path, pair.negative_path):
            assert not path or not is_held_out(path)
        texts = (pair.query, pair.positive, pair.negative)
        assert not any(HELD_OUT_FILE in text or "nightly_job_total" in text for text in texts)
        assert not any(SECRET in text for text in texts)
        assert pair.positive != pair.negative
    completion = [p for p in pairs if p.kind in ("first_use", "call")]
    assert all(p.positive_path != p.path for p in completion)  # the definition lives in another file


def test_a_few_steps_give_a_model_that_loads_and_changes_rankings(repo, embedder, tmp_path):
    root, config, pairs, _ = repo
    out = tmp_path / "model"
    out.mkdir()
    result = train_retriever(embedder.path, pairs, out, embedder.max_tokens, QUICK)
    assert result.steps == 3 and result.final_loss > 0
    tuned = Embedder(str(out))
    assert tuned.name != embedder.name
    queries = sorted({p.query for p in pairs})
    before = [embedder.encode_query(q) for q in queries]
    after = [tuned.encode_query(q) for q in queries]
    assert any(abs(float(a @ a) - 1) < 1e-3 for a in after)  # normalised vectors, as served
    index = Index.open(root, config, embedder)
    try:
        ranked_before = [[c for c, _ in index.dense.search(v, 5)] for v in before]
        ranked_after = [[c for c, _ in index.dense.search(v, 5)] for v in after]
    finally:
        index.close()
    assert ranked_before != ranked_after


def test_a_worse_retriever_is_not_promoted(repo, embedder):
    root, config, pairs, _ = repo
    registry = retriever_registry(root, config)
    manifest = _candidate(root, config, "worse", _scrambled(pairs), embedder)
    report = judge_candidate(root, config, registry, manifest, RetrieverOptions(), log=lambda line: None)
    assert not report.promoted and registry.active() is None
    assert report.gate["method"] == "paired_bootstrap" and report.gate["n"] > 0
    assert (registry.path("worse") / "eval.json").is_file()
    assert registry.manifest("worse")["gate"]["promote"] is False
    assert Embedder.for_repo(root, config).name == embedder.name  # serving still uses the base model


def test_the_gate_is_paired_and_wants_better_somewhere_worse_nowhere():
    def result(completion: list[int | None], questions: list[int | None]) -> dict:
        return {
            "completion": {"n": len(completion), "mrr": 0.0, "ranks": completion},
            "docstring": {"n": 0, "mrr": None, "ranks": []},
            "question": {"n": len(questions), "mrr": 0.0, "ranks": questions},
        }

    base = result([None] * 30 + [5] * 30, [1] * 40)
    better = result([1] * 30 + [5] * 30, [1] * 40)
    assert decide_retriever(better, base, ("new", "base")).promote
    assert not decide_retriever(base, better, ("new", "base")).promote
    worse_questions = result([1] * 30 + [5] * 30, [None] * 40)
    decision = decide_retriever(worse_questions, base, ("new", "base"))
    assert (
        not decision.promote and "question MRR" in decision.reason and "worse beyond noise" in decision.reason
    )
    # Completions no different (graph context finds their code either way), questions better: promoted;
    # questions better at the cost of completions: refused.
    sharper = result([None] * 30 + [5] * 30, [1] * 40)
    vaguer = result([None] * 30 + [5] * 30, [3] * 40)
    decision = decide_retriever(sharper, vaguer, ("new", "base"))
    assert decision.promote and "question MRR" in decision.reason and ": better" in decision.reason
    assert not decide_retriever(result([None] * 60, [1] * 40), vaguer, ("new", "base")).promote
    # Better MRR on questions, but half of them drop out of the first five: still refused.
    fifth = result([None] * 30 + [5] * 30, [5] * 40)
    top_or_sixth = result([1] * 30 + [5] * 30, [1] * 20 + [6] * 20)
    decision = decide_retriever(top_or_sixth, fifth, ("new", "base"))
    assert decision.differences["question_mrr"]["ci_low"] > 0 and not decision.promote


def test_promotion_switches_the_server_and_rollback_reuses_the_vectors(repo, embedder, monkeypatch):
    root, config, pairs, _ = repo
    registry = retriever_registry(root, config)
    manifest = _candidate(root, config, "tuned", pairs, embedder)
    monkeypatch.setattr(engine_module, "ADAPTER_CHECK_SECONDS", 0.0)
    engine = engine_module.Engine(root, config)
    assert engine.index().query_embedder.name == embedder.name

    activate_retriever(root, config, registry, manifest.name)
    assert Registry.retrievers(config.index_path(root)).active() == "tuned"
    served = engine.index()
    assert served.query_embedder.name == manifest.vector_key  # switched without a restart
    assert len(served.dense) == served.chunk_count  # every chunk has a vector under the new model
    update_index(root, config)  # an update under the new model prunes nothing that a rollback needs

    assert rollback_retriever(root, config, registry) is None
    store = Store.open(config.index_path(root))
    try:
        assert store.count_without_vector(store.current_generation, embedder.name) == (0, 0)
    finally:
        store.close()
    summary = update_index(root, config)
    assert summary.embedded == 0 and summary.summaries_embedded == 0  # nothing was re-embedded
    assert engine.index().query_embedder.name == embedder.name
