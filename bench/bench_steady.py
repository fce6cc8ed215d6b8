"""What keeping the line above's snippets costs in quality, paired on the same lines.

    python bench/bench_steady.py [--corpus requests] [--lines 150] [--steps 1] [--out FILE]

After the user writes a line and presses Enter, the server keeps the previous request's snippets while
any of them is still among the new candidates (`steady_snippets`): the prompt's head then
stays the same and the model's KV cache covers it. This completes each sampled line's next line twice
in-process: after completing the sampled line, as the server does after writing (`kept`), and with the
snippets retrieved for that line alone (`own`). Both are scored against the real next line (exact match
and edit similarity of the first completed line), and the per-line difference comes with a paired
bootstrap 95% interval. The after-writing requests that still ran most of their prompt (more than half
the budget: the KV cache held less than the snippets) are counted by cause: new snippets, or kept
snippets with a prefix whose start moved. Single-line requests only, as in the latency goal; the figures
of the LSP path are `bench/bench_server.py`'s.

With `--steps N` the user writes on for N lines from each sampled line, each completed as after writing
the one above, so the snippets kept from the chain's start may drift away from the code being written;
the figures are then given per step as well.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import cut_at_indentation, sample_lines
from corpora import indexed_copy
from report import machine, write_report

from repolm.assist.completion import Completer, Completion, CompletionRequest, opens_block
from repolm.assist.engine import Engine
from repolm.config import Config
from repolm.training.metrics import bootstrap, edit_similarity, exact_match

HERE = Path(__file__).resolve().parent
WRITING = "writing"  # the completer's context for the chain of lines written one after another


def request(root: Path, relative: str, number: int, line: str) -> CompletionRequest:
    prefix, indent = cut_at_indentation(root, relative, number, line)
    return CompletionRequest(relative, prefix, number, indent)


def scored(completion: Completion, expected: str) -> tuple[float, bool]:
    """Edit similarity and exact match of the first completed line, as the evaluation harness scores."""
    got = completion.text.split("\n", 1)[0].strip()
    return edit_similarity(got, expected.strip()), bool(exact_match(got, expected.strip()))


def uncached_completer(root: Path) -> Completer:
    """The completer `repolm serve` would use on `root`, its answer cache off: every request runs."""
    engine = Engine(root, Config())
    engine.model()
    completer = engine.completer
    assert completer is not None, "the engine builds its completer with the model"
    completer.config = replace(completer.config, completion_cache_size=0)
    return completer


def lines_below(root: Path, relative: str, number: int, count: int) -> list[tuple[str, int, str]]:
    """The next `count` non-blank lines below line `number` of a file (fewer at its end)."""
    text = (root / relative).read_text(encoding="utf-8").splitlines()
    below = [n for n in range(number + 1, len(text)) if text[n].strip()][:count]
    return [(relative, n, text[n]) for n in below]


def compare(root: Path, completer: Completer, lines: int, steps: int) -> dict[str, object]:
    """From each sampled line, write on for `steps` lines: each next line is completed as after writing
    the one above (`kept`, the chain's snippets carried along) and afresh (`own`)."""
    half_budget = completer.config.completion_budget // 2
    rows = []
    for chain, start in enumerate(sample_lines(root, lines)):
        completer.clear_cache()  # a chain starts with no kept snippets
        above = completer.complete(request(root, *start), cache_key=WRITING)
        for step, after in enumerate(lines_below(root, start[0], start[1], steps), start=1):
            line = request(root, *after)
            kept = completer.complete(line, cache_key=WRITING)
            if not opens_block(line.text):
                own = completer.complete(line, cache_key=f"own {step}")  # a place with no kept snippets
                rows.append(
                    {
                        "chain": chain,
                        "step": step,
                        "kept": scored(kept, after[2]),
                        "own": scored(own, after[2]),
                        "same_snippets": kept.documents == own.documents,
                        "kept_previous": kept.documents == above.documents,
                        "kept_prefill_tokens": kept.prefill_tokens,
                        "kept_reran_prompt": kept.prefill_tokens > half_budget,
                    }
                )
            above = kept
    result = summarise(rows)
    if steps > 1:
        # A chain's lines share its snippets, so they are not independent draws: the interval that
        # counts is over chains (each chain's mean difference), wider than the one over lines.
        chains = sorted({row["chain"] for row in rows})
        result["kept_minus_own_per_chain"] = {
            metric: bootstrap(
                [
                    statistics.mean(scale * (r["kept"][i] - r["own"][i]) for r in rows if r["chain"] == c)
                    for c in chains
                ]
            ).to_json()
            for metric, i, scale in (("edit_similarity", 0, 1.0), ("exact_match", 1, 100.0))
        }
        result["by_step"] = {
            step: summarise([r for r in rows if r["step"] == step]) for step in range(1, steps + 1)
        }
    return result


def summarise(rows: list[dict]) -> dict[str, object]:
    result: dict[str, object] = {"lines": len(rows)}
    for arm in ("kept", "own"):
        result[arm] = {
            "edit_similarity": round(statistics.mean(row[arm][0] for row in rows), 3),
            "exact_match": round(100 * sum(row[arm][1] for row in rows) / len(rows), 1),
        }
    # Prompt tokens the model ran for the next line after writing (the rest came from its KV cache).
    prefills = sorted(row["kept_prefill_tokens"] for row in rows)
    result["kept"]["prefill_tokens_p50"] = statistics.median(prefills)
    result["kept"]["prefill_tokens_p95"] = prefills[int(0.95 * (len(prefills) - 1))]
    result["kept_minus_own"] = {
        "edit_similarity": bootstrap([row["kept"][0] - row["own"][0] for row in rows]).to_json(),
        "exact_match": bootstrap([100.0 * (row["kept"][1] - row["own"][1]) for row in rows]).to_json(),
    }
    result["lines_with_the_same_snippets"] = sum(row["same_snippets"] for row in rows)
    result["lines_keeping_the_line_above_snippets"] = sum(row["kept_previous"] for row in rows)
    reran = [row for row in rows if row["kept_reran_prompt"]]
    result["kept_requests_rerunning_most_of_the_prompt"] = {
        "new_snippets": sum(not row["kept_previous"] for row in reran),
        "same_snippets_prefix_moved": sum(row["kept_previous"] for row in reran),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--lines", type=int, default=150)
    parser.add_argument("--steps", type=int, default=1, help="lines written on from each sampled line")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "steady.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repolm-steady-") as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        result = compare(root, uncached_completer(root), args.lines, args.steps)
    report = {
        "machine": machine(),
        "corpus": args.corpus,
        "command": " ".join(["python", "bench/bench_steady.py", *sys.argv[1:]]),
        **result,
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
