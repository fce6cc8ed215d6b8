"""Completions through an engine against the local runtime: same lines, same embedded GGUF, one run.

    python bench/bench_engine.py [--corpus requests] [--lines 40] [--editors 8] [--out FILE]

On an indexed copy of a downloaded repository, the same sampled lines (cursor after the indentation,
nothing after it written yet) are completed in-process by repolm's assist engine three ways: on the
local runtime; through llama.cpp's server (scripts/build_llama_server.sh) serving the embedded model's
own GGUF, one request at a time; and through that server with `--editors` editors asking at once (each
its own repolm engine, as each developer runs `repolm serve`; the server has as many slots). Every
request starts cold on repolm's side (its completion cache and prompt caches cleared); llama.cpp's
server keeps its own prompt cache per slot, as it does when serving. Figures are medians and 95th
percentiles of this run, and completions per second for the concurrent editors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
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
from repolm.model import LoadedModel, gguf_path

HERE = Path(__file__).resolve().parent
SERVER = Path.home() / ".cache/repolm/engines/llama-server-0.3.36/llama-server"


def start_server(slots: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(SERVER), "-m", str(gguf_path()), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-c", str(2048 * slots), "-np", str(slots), "-t", "2", "--no-webui"]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama-server did not start: {log.read_text()[-2000:]}")


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
    parser.add_argument("--out", type=Path, default=HERE / "results" / "engine.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        lines = sample_lines(root, args.lines)
        config = load_config(root)
        local_seconds, local_texts = sequential(Engine(root, config), root, lines)
        process, url = start_server(args.editors, Path(scratch) / "llama-server.log")
        try:
            remote = dataclasses.replace(
                config, model=ModelSection(backend="openai", url=url, served_name="smollm2")
            )
            engine_seconds, engine_texts = sequential(Engine(root, remote), root, lines)
            together = concurrent(remote, root, lines, args.editors)
        finally:
            process.kill()
    same = sum(a == b for a, b in zip(local_texts, engine_texts, strict=True))
    result = {
        "command": " ".join(["python", "bench/bench_engine.py", *sys.argv[1:]]),
        "machine": machine(),
        "corpus": args.corpus,
        "local": summary(local_seconds),
        "engine": summary(engine_seconds),
        "engine_concurrent": {"editors": args.editors, **together},
        "same_completion": f"{same}/{len(lines)}",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
