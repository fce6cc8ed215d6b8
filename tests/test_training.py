"""LoRA training on CPU (tiny runs), resume after a kill under `accelerate launch`, registry and gate."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from raft_fixture import write_fixture_repo

import repolm.training
from repolm.config import ServeConfig, load_config
from repolm.training.finetune import CHECKPOINTS, RESULT_FILE, TrainConfig, train_raft
from repolm.training.gate import decide
from repolm.training.raft_dataset import RaftConfig, build_dataset, write_jsonl
from repolm.training.registry import BusyError, Manifest, Registry, RegistryError
from repolm.training.retrain import EXIT_BUSY, TrainOptions, retrain

TINY = TrainConfig(
    max_steps=2,
    batch_size=1,
    gradient_accumulation=1,
    max_length=200,
    lora_r=4,
    learning_rate=5e-3,
    warmup_steps=0,
    save_steps=1,
    logging_steps=1,
    progress=False,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, embedder) -> tuple[Path, Path]:
    from transformers import AutoTokenizer

    from repolm.indexer.builder import update_index
    from repolm.indexer.retrieval import Index
    from repolm.model import ensure_converted

    root = write_fixture_repo(tmp_path_factory.mktemp("train") / "repo")
    config = load_config(root)
    update_index(root, config, embedder=embedder)
    index = Index.open(root, config, embedder)
    tokenizer = AutoTokenizer.from_pretrained(ensure_converted(), local_files_only=True)
    small = RaftConfig(completion_examples=12, explain_examples=4, plan_examples=4)
    examples, _ = build_dataset(
        index, tokenizer, small, ServeConfig(completion_budget=128, explain_budget=192)
    )
    index.close()
    path = root / "raft.jsonl"
    write_jsonl(examples, path)
    return root, path


def test_cpu_training_produces_an_adapter_the_running_server_swaps_in(dataset, monkeypatch):
    """A trained adapter changes the model's output, and a server already running picks it up once it is
    promoted (the registry's `active` link), without a restart."""
    import torch

    from repolm.assist import engine as engine_module

    root, path = dataset
    config = load_config(root)
    registry = Registry(config.index_path(root))
    adapter = registry.path("tiny")
    result = train_raft(path, adapter, TINY)
    assert result.steps == 2 and result.device == "cpu" and result.tokens_per_second > 0
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    curve = json.loads((adapter / "loss_curve.json").read_text())
    assert [p["step"] for p in curve] == [1, 2]
    assert (adapter / "loss_curve.png").is_file()

    engine = engine_module.Engine(root, config)
    loaded = engine.model()
    assert loaded.adapter is None  # nothing is active yet: the plain base model serves
    ids = torch.tensor(
        [loaded.tokenizer("def add(a, b):\n    return", add_special_tokens=False)["input_ids"]]
    )
    with torch.inference_mode():
        before = loaded.model(input_ids=ids).logits
    registry.activate("tiny")
    monkeypatch.setattr(engine_module, "ADAPTER_CHECK_SECONDS", 0.0)
    assert engine.model() is loaded and Path(loaded.adapter).resolve() == adapter.resolve()
    with torch.inference_mode():
        after = loaded.model(input_ids=ids).logits
    assert (after - before).abs().max().item() > 1e-3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_in_either_precision_gives_an_adapter_that_loads(dataset, tmp_path, precision):
    import torch

    from repolm.model import load_model

    _, path = dataset
    result = train_raft(path, tmp_path / precision, dataclasses.replace(TINY, precision=precision))
    assert result.steps == 2 and result.precision == precision and result.final_loss is not None
    base, tuned = load_model(device="cpu"), load_model(device="cpu", adapter=str(tmp_path / precision))
    ids = torch.tensor([base.tokenizer("def add(a, b):\n    return", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        difference = (tuned.model(input_ids=ids).logits - base.model(input_ids=ids).logits).abs().max()
    assert difference.item() > 1e-3


def test_training_stops_when_its_minutes_run_out_and_keeps_an_adapter(dataset, tmp_path):
    _, path = dataset
    budget = dataclasses.replace(TINY, max_steps=50, max_minutes=1e-6, save_steps=50)
    result = train_raft(path, tmp_path / "timed", budget)
    assert result.steps == 1 and result.stopped_by_time
    assert (tmp_path / "timed" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "timed" / CHECKPOINTS / "checkpoint-1").is_dir()


SHIPPED_CONFIG = Path(repolm.training.__file__).parent / "accelerate" / "fsdp.yaml"


def _launch(dataset: Path, output: Path, processes: int = 1, config: Path | None = None) -> list[str]:
    arguments = ["--dataset", str(dataset), "--output", str(output), "--max-steps", "3", "--save-steps", "1"]
    arguments += ["--batch-size", "1", "--max-length", "200"]
    launcher = ["launch", *(["--config_file", str(config)] if config else ["--cpu"])]
    launcher += ["--num_processes", str(processes), "-m", "repolm.training.finetune"]
    return [str(Path(sys.executable).with_name("accelerate")), *launcher, *arguments]


def test_two_processes_under_the_shipped_accelerate_config_train_one_adapter(dataset, tmp_path):
    """The FSDP config repolm ships, launched as on several GPUs, here on two CPU processes: accelerate
    runs them data-parallel (gloo), as it does wherever FSDP has no GPU to shard over."""
    import torch

    from repolm.model import load_model

    _, path = dataset
    output = tmp_path / "adapter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        _launch(path, output, 2, SHIPPED_CONFIG), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((output / RESULT_FILE).read_text())
    assert result["steps"] == 3 and result["processes"] == 2
    assert result["distributed"] == ("FSDP" if torch.cuda.is_available() else "MULTI_CPU")
    assert result["sharded"] == (result["distributed"] == "FSDP")
    assert (output / "adapter_model.safetensors").is_file()
    assert load_model(device="cpu", adapter=str(output)).adapter == output


def test_training_resumes_from_its_checkpoint_after_a_kill(dataset, tmp_path):
    _, path = dataset
    output = tmp_path / "adapter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = _launch(path, output)
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    checkpoint = output / CHECKPOINTS / "checkpoint-1" / "trainer_state.json"
    deadline = time.monotonic() + 180
    while not checkpoint.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # the whole launcher tree, as an interrupted job would die
    first.wait()
    assert checkpoint.is_file(), first.stderr.read().decode()[-2000:] if first.stderr else ""
    assert not (output / RESULT_FILE).exists()

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((output / RESULT_FILE).read_text())
    assert result["resumed_from_step"] >= 1
    assert result["steps"] == 3


def _evaluation(candidate: list[float], incumbent: list[float], guard: float = 0.0) -> dict:
    """An evaluation JSON whose per-target edit similarities are given; identifier F1 moves with them
    (shifted by `guard` for the candidate), exact match is 0 throughout."""
    from repolm.training.metrics import bootstrap

    def scores(value: float, shift: float = 0.0) -> dict[str, float]:
        return {"edit_similarity": value, "identifier_f1": value + shift, "exact_match": 0.0}

    def arm(values: list[float]) -> dict:
        return {"hybrid": {"n": len(values), "edit_similarity": bootstrap(values).to_json()}}

    records = [
        {"models": {"new": {"hybrid": scores(c, guard)}, "old": {"hybrid": scores(i)}}}
        for c, i in zip(candidate, incumbent, strict=True)
    ]
    return {
        "models": {"new": {"arms": arm(candidate)}, "old": {"arms": arm(incumbent)}},
        "records": records,
    }


def test_gate_decides_on_paired_edit_similarity_with_an_identifier_guard():
    old = [0.3, 0.5, 0.4, 0.6] * 10
    worse = decide(_evaluation([v - 0.1 for v in old], old), "new", "old")
    assert not worse.promote and worse.difference < 0 and "not promoted" in worse.reason
    noisy = decide(_evaluation([v + (0.1 if i % 2 else -0.1) for i, v in enumerate(old)], old), "new", "old")
    assert not noisy.promote and noisy.ci_low < 0 < noisy.ci_high
    # Better on every target by a little: unpaired intervals would overlap, the paired one does not.
    better = decide(_evaluation([v + 0.03 for v in old], old), "new", "old")
    assert better.promote and better.ci_low > 0 and better.method == "paired_bootstrap"
    assert better.metric == "edit_similarity" and "decided on edit similarity" in better.reason
    assert better.differences["exact_match"]["mean"] == 0.0 and "exact match" in better.reason
    # The same gain in edit similarity, but naming the wrong things: refused.
    misnamed = decide(_evaluation([v + 0.03 for v in old], old, guard=-0.3), "new", "old")
    assert not misnamed.promote and "identifier f1" in misnamed.reason and "worse" in misnamed.reason
    unpaired = _evaluation([v + 0.3 for v in old], old)
    del unpaired["records"]
    fallback = decide(unpaired, "new", "old")
    assert fallback.method == "ci_vs_mean" and fallback.promote


def _fake_adapter(registry: Registry, name: str) -> None:
    (registry.create(name) / "adapter_config.json").write_text("{}")


def test_registry_activates_atomically_and_rolls_back(tmp_path):
    registry = Registry(tmp_path / ".repolm")
    for name in ("a", "b"):
        _fake_adapter(registry, name)
    assert registry.active() is None
    registry.activate("a")
    registry.activate("b")
    assert registry.active() == "b"
    assert (registry.root / "active").resolve() == registry.path("b").resolve()
    assert (registry.root / "ACTIVE").read_text().strip() == "b"
    assert registry.rollback_target() == "a" and registry.active() == "b"  # a look changes nothing
    assert registry.rollback() == "a" and registry.active() == "a"
    assert registry.rollback_target() is None
    assert registry.rollback() is None and registry.active() is None
    assert not (registry.root / "active").exists()
    with pytest.raises(RegistryError):
        registry.rollback_target()
    with pytest.raises(RegistryError):
        registry.rollback()
    with pytest.raises(RegistryError):
        registry.activate("missing")
    assert [row["name"] for row in registry.listing()] == ["a", "b"]
    registry.write_manifest(Manifest("a", "base", "raft", 1, None, "hash", train={"steps": 2}))
    written = registry.manifest("a")
    assert written["name"] == "a" and written["train"] == {"steps": 2}
    assert datetime.datetime.fromisoformat(written["created"]).tzinfo is not None


def test_a_second_retrain_is_refused_while_one_holds_the_lock(tmp_path):
    root = write_fixture_repo(tmp_path / "repo")
    config = load_config(root)
    registry = Registry(config.index_path(root))
    with registry.lock():
        with pytest.raises(BusyError), registry.lock():
            pass
        report = retrain(root, config, TrainOptions(), log=lambda message: None)
    assert report.exit_code == EXIT_BUSY and "another retrain" in report.reason


def test_train_cli_json_prints_the_manifest_alone(tmp_path):
    """`--json` is for scripts: the trainer's own log lines must not reach stdout."""
    root = write_fixture_repo(tmp_path / "repo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "repolm.cli"]
    subprocess.run([*cli, "index", str(root)], env=env, check=True, capture_output=True, timeout=600)
    run = subprocess.run(
        [
            *cli,
            "train",
            "--repo",
            str(root),
            "--name",
            "one",
            "--max-steps",
            "1",
            "--tasks",
            "plan",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads(run.stdout)
    assert manifest["name"] == "one" and manifest["train"]["steps"] == 1
    assert set(manifest["dataset"]["by_task"]) == {"plan"}
    assert manifest["train"]["processes"] == 1


def test_train_runs_its_training_step_under_the_configured_launcher(tmp_path):
    """`[train] launch`: the dataset is built here, the adapter trained by the processes the launcher
    starts (two CPU processes here, GPUs or machines in a team); a failing launcher is one clear error."""
    root = write_fixture_repo(tmp_path / "repo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "repolm.cli"]
    subprocess.run([*cli, "index", str(root)], env=env, check=True, capture_output=True, timeout=600)
    accelerate = Path(sys.executable).with_name("accelerate")
    two = f"{accelerate} launch --config_file {SHIPPED_CONFIG} --num_processes 2"
    train = [*cli, "train", "--repo", str(root), "--max-steps", "2", "--tasks", "plan", "--json"]
    for launch, name in ((two, "two"), ("false", "none")):
        (root / "repolm.toml").write_text(f'[train]\nlaunch = "{launch}"\n', encoding="utf-8")
        run = subprocess.run([*train, "--name", name], env=env, capture_output=True, text=True, timeout=600)
        if name == "two":
            assert run.returncode == 0, run.stderr[-3000:]
            manifest = json.loads(run.stdout)
            assert manifest["train"]["steps"] == 2 and manifest["train"]["processes"] == 2
            assert manifest["train"]["distributed"] == "MULTI_CPU"
            assert (root / ".repolm" / "adapters" / "two" / "adapter_model.safetensors").is_file()
        else:
            assert run.returncode == 2 and "training under `false` failed" in run.stderr, run.stderr[-2000:]


def test_eval_adds_an_adapter_to_an_earlier_run_on_the_same_targets(dataset, tmp_path):
    """`--no-base` evaluates only the adapters, on the targets the same split, limit and seed give."""
    from repolm.cli import main

    root, path = dataset
    train_raft(path, tmp_path / "tiny", TINY)
    common = ["eval", "--repo", str(root), "--limit", "2", "--arms", "in_file", "--explain", "0"]
    common += ["--graph", "0", "--threads", "1", "--report", str(tmp_path / "report")]
    assert main([*common, "--json", str(tmp_path / "base.json")]) == 0
    added = [f"--adapter=tiny={tmp_path / 'tiny'}", "--no-base", "--json", str(tmp_path / "added.json")]
    assert main([*common, *added]) == 0
    base, tuned = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("base", "added"))
    assert set(tuned["models"]) == {"tiny"} and set(tuned["gate"]) == {"tiny"}
    assert [(r["path"], r["line"]) for r in tuned["records"]] == [
        (r["path"], r["line"]) for r in base["records"]
    ]
    assert all(set(r["models"]) == {"tiny"} for r in tuned["records"])
    assert main([*common, "--no-base"]) != 0  # nothing to evaluate
