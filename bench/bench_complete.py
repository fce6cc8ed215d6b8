"""Completion latency through the real code path (retrieval + prompt + generation), warm, on this machine.

    python bench/bench_complete.py [--repo PATH] [--lines 12] [--keystrokes 4] [--out FILE]

Simulates typing: for sampled lines inside function bodies of the repository's Python files, the file is
cut at the line's start plus a few characters and one single-line completion is requested per keystroke
(each one a new request, as an editor sends them). The first request on a line pays a full prefill; the
following keystrokes reuse the model's KV cache. Reports p50/p95 of both, and of all requests together.
Default repo: a copy of this project's own `indexer/` and `repolm/` sources.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from repolm.server.completion import CompletionRequest
from repolm.server.engine import Engine

from repolm.config import load_config


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def sample_lines(root: Path, count: int, rng: random.Random) -> list[tuple[str, int, str]]:
    """(relative path, 0-based line, text) of indented code lines long enough to type into."""
    candidates = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".repolm"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            body = line.strip()
            if line.startswith("    ") and len(body) > 20 and not body.startswith(("#", '"', "'")):
                candidates.append((relative, number, line))
    return rng.sample(candidates, min(count, len(candidates)))


def explain_latency(engine: Engine, count: int) -> dict[str, int]:
    """p50 of the symbol card alone and of card plus model explanation, over distinct functions."""
    index = engine.index()
    assert index is not None
    names = sorted(
        {h.chunk.symbol for h in index.search("def", mode="bm25", k=200) if h.chunk.kind == "function"}
    )
    cards, full = [], []
    for name in names[:count]:
        symbol = engine.symbol_named(name)
        if symbol is None:
            continue
        begin = time.perf_counter()
        engine.explain(symbol, with_model=False)
        cards.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        engine.explain(symbol)
        full.append(time.perf_counter() - begin)
    if not cards:
        return {}
    return {
        "explain_symbols": len(cards),
        "card_p50_ms": round(1000 * statistics.median(cards)),
        "explain_p50_ms": round(1000 * statistics.median(full)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--keystrokes", type=int, default=4)
    parser.add_argument("--explain", type=int, default=5, help="symbols to explain (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.repo
        if root is None:
            root = Path(scratch) / "repo"
            project = Path(__file__).resolve().parent.parent
            for folder in ("indexer", "repolm"):
                shutil.copytree(project / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
        engine = Engine(root, load_config(root))
        started = time.perf_counter()
        engine.update_index()
        engine.model()
        print(f"index + model ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        first, following = [], []
        stages: dict[str, list[float]] = {}
        rng = random.Random(0)
        samples = sample_lines(root, args.lines + 1, rng)
        for number, (path, line, text) in enumerate(samples):
            source = (root / path).read_text(encoding="utf-8")
            indent = len(text) - len(text.lstrip())
            for keystroke in range(args.keystrokes):
                column = indent + 4 + keystroke
                request = CompletionRequest(path, source, line, column)
                begin = time.perf_counter()
                result = engine.complete(request)
                elapsed = time.perf_counter() - begin
                print(
                    f"{path}:{line + 1}:{column + 1} {elapsed * 1000:.0f} ms",
                    f"prefill {result.prefill_tokens} {result.text!r}",
                    file=sys.stderr,
                )
                if number == 0:
                    continue  # warm-up: first use of torch kernels and the query embedder
                (first if keystroke == 0 else following).append(elapsed)
                for stage, seconds in result.timings.items():
                    stages.setdefault(stage, []).append(seconds)
        everything = first + following
        report = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "budget_tokens": engine.config.serve.completion_budget,
            "max_new_tokens": engine.config.serve.completion_max_tokens,
            "requests": len(everything),
            "p50_ms": round(1000 * statistics.median(everything)),
            "p95_ms": round(1000 * percentile(everything, 0.95)),
            "first_keystroke_p50_ms": round(1000 * statistics.median(first)),
            "later_keystrokes_p50_ms": round(1000 * statistics.median(following)),
            "stage_p50_ms": {k: round(1000 * statistics.median(v)) for k, v in stages.items()},
            **explain_latency(engine, args.explain),
        }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
