"""Latency of one decoding forward pass of the embedded model, by attention path and context length.

    python bench/bench_decode.py [--corpus requests] [--contexts 256 768] [--rounds 10] [--out FILE]

The context is the head of a real source file's tokens (the corpus's largest Python file, repeated if
short), prefilled once per setting. Then 16 passes are timed as decoding makes them: each feeds 1 token
(plain decoding) or 9 (a token plus a prompt-lookup draft of 8, the server's default) and keeps one,
so the cache grows by a token per pass and the key length changes from pass to pass, as in decoding.
The median pass is kept. Each path runs with the KV cache it is served with (transformers' bf16
`DynamicCache` for SDPA, repolm's fp32 one for the grouped path). Rounds alternate the attention paths
so that the machine's drift hits both alike; the figure is the median over rounds, the ratio taken
within this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CORPORA, corpus
from report import write_report

from repolm.attention import GROUPED_ATTENTION, kv_cache
from repolm.model import LoadedModel, load_model

PATHS = ("sdpa", GROUPED_ATTENTION)  # transformers' default first, then repolm's CPU path
BLOCKS = (1, 9)
PASSES = 16


def context_ids(loaded: LoadedModel, root: Path, length: int) -> list[int]:
    largest = max(root.rglob("*.py"), key=lambda path: path.stat().st_size)
    ids = loaded.tokenizer(largest.read_text(), add_special_tokens=False)["input_ids"]
    while len(ids) < length + PASSES + max(BLOCKS):
        ids = ids + ids
    return ids


def pass_ms(loaded: LoadedModel, ids: list[int], context: int, block: int) -> float:
    """Median milliseconds of a forward pass over `block` tokens, the first after `context` cached ones,
    each later one a token further on."""
    cache = kv_cache(loaded.model)
    with torch.inference_mode():
        loaded.model(input_ids=torch.tensor([ids[:context]]), past_key_values=cache, use_cache=True)
        seconds = []
        for step in range(PASSES):
            feed = torch.tensor([ids[context + step : context + step + block]])
            started = time.perf_counter()
            loaded.model(input_ids=feed, past_key_values=cache, use_cache=True, logits_to_keep=block)
            seconds.append(time.perf_counter() - started)
            if block > 1:
                cache.crop(1 - block)  # the draft was rejected: one token kept
    return 1000 * statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="requests", choices=sorted(CORPORA))
    parser.add_argument("--contexts", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/decode.json"))
    args = parser.parse_args()
    loaded = load_model()
    ids = context_ids(loaded, corpus(args.corpus), max(args.contexts))
    settings = [(context, block) for context in args.contexts for block in BLOCKS]
    runs: dict[str, dict[str, list[float]]] = {path: {} for path in PATHS}
    for round_number in range(args.rounds):
        for path in PATHS:
            loaded.model.set_attn_implementation(path)
            for context, block in settings:
                key = f"{block} token{'s' if block > 1 else ''} after {context}"
                runs[path].setdefault(key, []).append(round(pass_ms(loaded, ids, context, block), 2))
        print(f"round {round_number + 1}: {json.dumps(runs)}", flush=True)
    medians = {
        path: {key: round(statistics.median(values), 2) for key, values in by_key.items()}
        for path, by_key in runs.items()
    }
    report = {
        "corpus": CORPORA[args.corpus],
        "model": f"{loaded.base} ({str(loaded.model.dtype).removeprefix('torch.')}, {loaded.device})",
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "median_pass_ms": medians,
        "ratio_grouped_to_sdpa": {
            key: round(medians[GROUPED_ATTENTION][key] / medians["sdpa"][key], 2) for key in medians["sdpa"]
        },
        "runs_ms": runs,
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
