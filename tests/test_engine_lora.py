"""A team's engine: a real vLLM (its CPU build, installed by scripts/setup.sh) serving the embedded model,
and repolm loading each promoted adapter onto it at run time (`[model] engine_lora`).

`repolm adapters activate` loads the adapter there under a versioned name and repolm's requests name it,
which changes what is served; `repolm adapters rollback` switches back; a request that still names an
adapter the engine has just dropped goes again under the name it serves now; an engine that refuses
leaves the registry as it was.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_repolm, write_tree

from repolm.config import load_config
from repolm.engine_lora import engine_name, served_adapters
from repolm.model import ensure_converted
from repolm.remote import RemoteModel

VERSION = "0.32.0"  # scripts/install_vllm.sh
PROMPT = "def greet(name):\n    return"
MARKER = " 'zebra quokka'"  # what the adapter is trained to answer
SIGN = "zebra"  # what shows it answers (a few steps teach the word, not always the whole line)


def vllm_python() -> Path:
    base = os.environ.get("REPOLM_ENGINE_DIR") or Path.home() / ".cache" / "repolm" / "engines"
    return Path(base) / f"vllm-{VERSION}" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM serving the embedded model as `smollm2`, runtime LoRA loading on; yields its base URL."""
    assert vllm_python().is_file(), f"{vllm_python()} is missing: scripts/setup.sh installs vLLM"
    port, log = free_port(), tmp_path_factory.mktemp("vllm") / "vllm.log"
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": "1"}
    env |= {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    server = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server"]  # `vllm` misreads its own name
    command = [*server, "--model", str(ensure_converted()), "--served-model-name", "smollm2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024", "--enforce-eager"]
    command += ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "2", "--max-num-seqs", "4"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"vLLM did not come up:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def settings(url: str) -> str:
    return f'[model]\nbackend = "openai"\nurl = "{url}"\nserved_name = "smollm2"\nengine_lora = true\n'


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, vllm: str) -> Path:
    """A repository whose registry holds `marker`, an adapter trained to answer PROMPT with MARKER."""
    from repolm.model import load_model
    from repolm.prompt import encode_prompt
    from repolm.training.finetune import TrainConfig, train_rows
    from repolm.training.registry import Registry

    root = write_tree(tmp_path_factory.mktemp("team") / "shop", {"shop.py": "X = 1\n"})
    (root / "repolm.toml").write_text(settings(vllm), encoding="utf-8")
    assert run_repolm("index", str(root)).returncode == 0  # the registry lives in the index folder
    tokenizer = load_model(device="cpu").tokenizer
    prompt = encode_prompt(tokenizer, PROMPT)
    answer = tokenizer(MARKER + "\n", add_special_tokens=False)["input_ids"]
    rows = [{"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}] * 4
    # At 1e-2 the bf16 loss could climb and end near 2.3, with the marker unlearnt.
    config = TrainConfig(
        max_steps=30, batch_size=2, gradient_accumulation=1, max_length=64, lora_r=8, learning_rate=1e-3,
        warmup_steps=0, save_steps=30, logging_steps=10, progress=False,
    )  # fmt: skip
    train_rows(rows, Registry(load_config(root).index_path(root)).path("marker"), config, "raft")
    return root


def served_text(model: RemoteModel) -> str:
    return model.generate(PROMPT, max_new_tokens=8).text


def test_a_promoted_adapter_is_loaded_onto_the_engine_and_rollback_switches_back(repo: Path) -> None:
    from repolm.assist.engine import Engine

    config = load_config(repo)
    model = Engine(repo, config).model()
    assert isinstance(model, RemoteModel)
    base = served_text(model)
    assert SIGN not in base and model.adapter is None

    done = run_repolm("adapters", "activate", "marker", "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    assert served_adapters(config.model, repo) == [engine_name(repo, "marker")] == ["shop--marker"]
    model.checked = float("-inf")  # as if its last look at the engine were long ago
    assert SIGN in served_text(model) and model.adapter == "shop--marker"

    done = run_repolm("adapters", "rollback", "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    assert served_adapters(config.model, repo) == []
    model.checked = float("-inf")
    assert served_text(model) == base and model.adapter is None


def test_a_request_naming_a_dropped_adapter_goes_again_under_the_served_name(repo: Path) -> None:
    from repolm.assist.engine import Engine

    model = Engine(repo, load_config(repo)).model()
    assert isinstance(model, RemoteModel)
    base = served_text(model)
    assert run_repolm("adapters", "activate", "marker", "--repo", str(repo)).returncode == 0
    model.checked = float("-inf")
    assert SIGN in served_text(model) and model.adapter == "shop--marker"
    assert run_repolm("adapters", "rollback", "--repo", str(repo)).returncode == 0
    model.checked = time.monotonic() + 3600  # it looked just now: the next request names the dropped one
    assert served_text(model) == base and model.adapter is None


def test_an_engine_that_refuses_leaves_the_registry_as_it_was(repo: Path, tmp_path: Path) -> None:
    from repolm.training.registry import Registry

    down = write_tree(tmp_path / "shop", {"shop.py": "X = 1\n"})
    (down / "repolm.toml").write_text(settings(f"http://127.0.0.1:{free_port()}/v1"), encoding="utf-8")
    assert run_repolm("index", str(down)).returncode == 0
    registry = Registry(load_config(down).index_path(down))
    source = Registry(load_config(repo).index_path(repo)).path("marker")
    target = registry.path("marker")
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            (target / file.name).write_bytes(file.read_bytes())
    done = run_repolm("adapters", "activate", "marker", "--repo", str(down))
    assert done.returncode == 1 and "refused models" in done.stderr and "Traceback" not in done.stderr
    assert registry.active() is None
