"""Where a completion after a jump spends its time: retrieval, the prompt's prefill, decoding.

    python bench/bench_jump.py [--corpus requests] [--lines 60] [--rounds 5] [--out FILE]

On a fresh indexed copy of a downloaded repository, the completer of `repolm serve` (in-process, no
LSP) completes the same sampled lines as `bench_server.py`'s new-line arm, in the same order, with the
answer cache off: each request lands somewhere new, as after a jump. Each single-line request's time is
split into retrieval (query, search, snippets), building the prompt, the first forward pass (the
prefill of every prompt token the KV caches did not hold) and decoding (the rest of the generation).
Then one full-budget prompt's prefill is run `--rounds` times on a fresh KV cache, timed bare, and once
more under torch's profiler, which splits it by operator: linear layers (the weight matrices), attention
(SDPA), and everything else. Medians of this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import sample_lines, single_lines
from bench_steady import request, uncached_completer
from corpora import CORPORA, indexed_copy
from report import machine, write_report

from repolm.assist.completion import Completer, Completion, CompletionRequest
from repolm.attention import kv_cache
from repolm.model import LoadedModel
from repolm.prompt import PromptRequest, build_prompt

HERE = Path(__file__).resolve().parent
# Operators of a prefill, by what they compute. Self times, so nested operators are not counted twice.
LINEAR = ("aten::mm", "aten::addmm", "aten::_weight_int8pack_mm")
ATTENTION = ("aten::_scaled_dot_product_flash_attention_for_cpu",)


def split_requests(root: Path, completer: Completer, lines: int) -> tuple[dict[str, object], list[int]]:
    """Per-stage medians over the single-line requests, and the longest prompt's tokens."""
    stages: dict[str, list[float]] = {"retrieve": [], "prompt": [], "prefill": [], "decode": [], "total": []}
    prefilled, generated, longest = [], [], []
    for sampled in single_lines(root, sample_lines(root, lines)):
        line = request(root, *sampled)
        completion = completer.complete(line)
        timings = completion.timings
        for stage in ("retrieve", "prompt", "prefill", "total"):
            stages[stage].append(timings[stage])
        stages["decode"].append(timings["generate"] - timings["prefill"])
        prefilled.append(completion.prefill_tokens)
        generated.append(len(completer.model.tokenizer(completion.text)["input_ids"]))
        if completion.prefill_tokens > len(longest):
            longest = prompt_ids(completer, line, completion)
    result = {stage: round(1000 * statistics.median(values), 1) for stage, values in stages.items()}
    return {
        "requests": len(stages["total"]),
        "median_ms": result,
        "prefill_tokens_p50": statistics.median(prefilled),
        "inserted_tokens_p50": statistics.median(generated),
    }, longest


def prompt_ids(completer: Completer, line: CompletionRequest, completion: Completion) -> list[int]:
    """The prompt `completion` was made from: the same snippets and prefix give the same tokens (the
    document ends at the cursor)."""
    prompt = PromptRequest("complete", completion.documents, prefix=line.text, path=line.path)
    return build_prompt(prompt, completer.model.tokenizer, completer.config.completion_budget).input_ids


def prefill(loaded: LoadedModel, ids: list[int]) -> float:
    """Seconds of one forward pass over `ids` on a fresh KV cache, as `generate`'s first pass."""
    inputs = torch.tensor([ids], device=loaded.device)
    with torch.inference_mode():
        started = time.perf_counter()
        loaded.model(
            input_ids=inputs, past_key_values=kv_cache(loaded.model), use_cache=True, logits_to_keep=1
        )
        return time.perf_counter() - started


def prefill_split(loaded: LoadedModel, ids: list[int], rounds: int) -> dict[str, object]:
    prefill(loaded, ids)  # warm-up
    bare = [prefill(loaded, ids) for _ in range(rounds)]
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        prefill(loaded, ids)
    self_ms = {event.key: event.self_cpu_time_total / 1000 for event in profiled.key_averages()}
    total = sum(self_ms.values())
    linear = sum(self_ms.get(name, 0.0) for name in LINEAR)
    attention = sum(self_ms.get(name, 0.0) for name in ATTENTION)
    return {
        "prompt_tokens": len(ids),
        "bare_ms_median": round(1000 * statistics.median(bare), 1),
        "bare_ms_runs": [round(1000 * seconds, 1) for seconds in bare],
        "profiled_ms": {
            "total": round(total, 1),
            "linear_layers": round(linear, 1),
            "attention": round(attention, 1),
            "everything_else": round(total - linear - attention, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests", choices=sorted(CORPORA))
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "jump.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repolm-jump-") as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        completer = uncached_completer(root)
        requests, longest = split_requests(root, completer, args.lines)
        report = {
            "machine": machine(),
            "corpus": CORPORA[args.corpus],
            "command": " ".join(["python", "bench/bench_jump.py", *sys.argv[1:]]),
            "torch_threads": torch.get_num_threads(),
            "new_line_requests": requests,
            "full_prompt_prefill": prefill_split(completer.model, longest, args.rounds),
        }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
