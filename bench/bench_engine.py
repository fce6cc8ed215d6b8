"""Completions through an engine against the local runtime: same lines, same embedded GGUF, one run.

    python bench/bench_engine.py [--corpus requests] [--lines 40] [--editors 8]
                                 [--engines llama.cpp vllm] [--out FILE]

On an indexed copy of a downloaded repository, the same sampled lines (cursor after the indentation,
nothing after it written yet) are completed in-process by repolm's assist engine: on the local runtime;
then through each engine, one request at a time and with `--editors` editors asking at once (each its
own repolm engine, as each developer runs `repolm serve`; the engine takes as many sequences). The
engines: llama.cpp's server (scripts/build_llama_server.sh) serving the embedded model's own GGUF, and
vLLM's CPU build (scripts/install_vllm.sh) serving the converted model the local runtime loads, in
bf16. Every request starts cold on repolm's side (its completion cache and prompt caches cleared); the
engines keep their own prompt caches, as they do when serving. Figures are medians and 95th
percentiles of this run, and completions per second for the concurrent editors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import cut_at_indentation, sample_lines, summary
from corpora import indexed_copy
from report import machine

from repolm.assist.completion import CompletionRequest
from repolm.assist.engine import Engine
from repolm.config import Config, ModelSection, load_config
from repolm.model import LoadedModel, ensure_converted, gguf_path

HERE = Path(__file__).resolve().parent
ENGINES = Path.home() / ".cache/repolm/engines"
LLAMA_SERVER = ENGINES / "llama-server-0.3.36/llama-server"
VLLM_PYTHON = ENGINES / "vllm-0.32.0/bin/python"


def engine_command(engine: str, slots: int, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve the embedded model on `port` as `smollm2`."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if engine == "llama.cpp":
        command = [str(LLAMA_SERVER), "-m", str(gguf_path()), *address, "-c", str(2048 * slots)]
        return [*command, "-np", str(slots), "-t", "2", "--no-webui"], dict(os.environ)
    # `vllm serve` misreads its own package name in this build; the module is the same server.
    command = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(ensure_converted()),
    ]
    command += ["--served-model-name", "smollm2", *address, "--dtype", "bfloat16", "--max-model-len", "2048"]
    command += ["--max-num-seqs", str(slots)]
    return command, {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CPU_KVCACHE_SPACE": "2",
    }


def start_engine(engine: str, slots: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = engine_command(engine, slots, port)
    # Its own process group: vLLM's engine core and workers are children that must go with it.
    process = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    stop_engine(process)
    raise RuntimeError(f"{engine} did not start: {log.read_text()[-2000:]}")


def stop_engine(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def complete_cold(engine: Engine, root: Path, line: tuple[str, int, str]) -> tuple[float, str]:
    relative, number, text = line
    document, column = cut_at_indentation(root, relative, number, text)
    model = engine.model()
    if engine.completer is not None:
        engine.completer.clear_cache()
    if isinstance(model, LoadedModel):
        model._prompt_caches.clear()
    started = time.perf_counter()
    completion = engine.complete(CompletionRequest(relative, document, number, column))
    return time.perf_counter() - started, completion.text


def sequential(
    engine: Engine, root: Path, lines: list[tuple[str, int, str]]
) -> tuple[list[float], list[str]]:
    complete_cold(engine, root, lines[0])  # load the model and the index first
    timed = [complete_cold(engine, root, line) for line in lines]
    return [seconds for seconds, _ in timed], [text for _, text in timed]


def concurrent(config: Config, root: Path, lines: list[tuple[str, int, str]], editors: int) -> dict:
    engines = [Engine(root, config) for _ in range(editors)]
    for engine in engines:
        complete_cold(engine, root, lines[0])
    work: queue.Queue[tuple[str, int, str]] = queue.Queue()
    for line in lines:
        work.put(line)
    latencies: list[float] = []
    lock = threading.Lock()

    def editor(engine: Engine) -> None:
        while True:
            try:
                line = work.get_nowait()
            except queue.Empty:
                return
            seconds, _ = complete_cold(engine, root, line)
            with lock:
                latencies.append(seconds)

    started = time.perf_counter()
    threads = [threading.Thread(target=editor, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {**summary(latencies), "completions_per_second": round(len(latencies) / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--editors", type=int, default=8)
    parser.add_argument("--engines", nargs="+", default=["llama.cpp", "vllm"], choices=["llama.cpp", "vllm"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "engine.json")
    args = parser.parse_args()
    engines = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        lines = sample_lines(root, args.lines)
        config = load_config(root)
        local_seconds, local_texts = sequential(Engine(root, config), root, lines)
        for name in args.engines:
            process, url = start_engine(name, args.editors, Path(scratch) / f"{name}.log")
            try:
                remote = dataclasses.replace(
                    config, model=ModelSection(backend="openai", url=url, served_name="smollm2")
                )
                seconds, texts = sequential(Engine(root, remote), root, lines)
                together = concurrent(remote, root, lines, args.editors)
            finally:
                stop_engine(process)
            same = sum(a == b for a, b in zip(local_texts, texts, strict=True))
            engines[name] = {
                "one_editor": summary(seconds),
                "concurrent": {"editors": args.editors, **together},
                "same_completion": f"{same}/{len(lines)}",
            }
    result = {
        "command": " ".join(["python", "bench/bench_engine.py", *sys.argv[1:]]),
        "machine": machine(),
        "corpus": args.corpus,
        "local": summary(local_seconds),
        "engines": engines,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
