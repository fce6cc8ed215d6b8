"""How closely decoding on int8 weight copies follows bf16: teacher-forced agreement on explanations.

    python bench/bench_int8.py [--corpus requests] [--symbols 24] [--out FILE]

For each documented function of a real repository (bench_server's hover targets), the server's
explanation prompt for it is decoded greedily on the bf16 weights, one token per pass. The same tokens
are then fed one per pass through the int8 copies (`repolm.int8`), as explanations are served. Figures:
the share of positions where int8's greedy choice is bf16's token, the share of explanations whose every
token agrees, and the mean log-probability of bf16's tokens under each. A bf16 replay of the same tokens
checks the harness: it must agree at every position. Also what making the copies costs: seconds, int8
values, and the process's resident memory before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import hover_targets, resident_mib
from corpora import CORPORA, indexed_copy
from report import machine, write_report

from repolm.assist.engine import Engine
from repolm.assist.explain import explain_question
from repolm.attention import kv_cache
from repolm.config import load_config
from repolm.model import LoadedModel, generate
from repolm.prompt import PromptRequest, build_prompt


def replay(loaded: LoadedModel, prompt: list[int], tokens: list[int], int8: bool) -> tuple[int, float]:
    """Positions where the model's greedy choice is `tokens`' own, and their summed log-probability,
    feeding `tokens` one per pass after the prompt."""
    switch = loaded.int8_switch() if int8 else None
    agreed, logprob = 0, 0.0
    with torch.inference_mode(), switch.on() if switch else nullcontext():
        cache = kv_cache(loaded.model)
        feed = prompt
        for token in tokens:
            output = loaded.model(input_ids=torch.tensor([feed]), past_key_values=cache, use_cache=True)
            logits = output.logits[0, -1].float()
            agreed += int(logits.argmax()) == token
            logprob += float(torch.log_softmax(logits, dim=-1)[token])
            feed = [token]
    return agreed, logprob


def measure(root: Path, symbols: int) -> dict[str, object]:
    config = load_config(root)
    serve = dataclasses.replace(config.serve, int8_decoding=False)
    engine = Engine(root, dataclasses.replace(config, serve=serve))
    loaded = engine.model()
    before = resident_mib(os.getpid())
    started = time.perf_counter()
    with loaded.lock:
        loaded.int8_switch()
    copies = {
        "seconds": round(time.perf_counter() - started, 3),
        "int8_values": sum(b.numel() for name, b in loaded.model.named_buffers() if name.endswith(".rows")),
        "resident_mib_before": before,
        "resident_mib_after": resident_mib(os.getpid()),
    }
    positions, agreed_int8, agreed_bf16, whole = 0, 0, 0, 0
    logprob_int8, logprob_bf16 = 0.0, 0.0
    for relative, number, column in hover_targets(root, symbols):
        text = (root / relative).read_text(encoding="utf-8")
        symbol = engine.symbol_at(relative, text, number, column)
        assert symbol is not None, f"no symbol at {relative}:{number + 1}"
        sources = engine.explain(symbol, relative, {relative: text}, wait_for_graph=False).sources
        request = PromptRequest("explain", sources, question=explain_question(symbol), path=relative)
        prompt = build_prompt(request, loaded.tokenizer, serve.explain_budget).input_ids
        loaded._prompt_caches.clear()
        tokens = generate(loaded, prompt, max_new_tokens=serve.explain_max_tokens).tokens
        with loaded.lock:
            same_bf16, bf16 = replay(loaded, prompt, tokens, int8=False)
            same_int8, int8 = replay(loaded, prompt, tokens, int8=True)
        positions += len(tokens)
        agreed_bf16 += same_bf16
        agreed_int8 += same_int8
        whole += same_int8 == len(tokens)
        logprob_bf16 += bf16
        logprob_int8 += int8
    return {
        "copies": copies,
        "explanations": symbols,
        "tokens": positions,
        "bf16_replay_agreement": round(agreed_bf16 / positions, 4),
        "int8_agreement": round(agreed_int8 / positions, 4),
        "int8_explanations_agreeing_throughout": whole,
        "mean_logprob_bf16": round(logprob_bf16 / positions, 4),
        "mean_logprob_int8": round(logprob_int8 / positions, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="requests", choices=sorted(CORPORA))
    parser.add_argument("--symbols", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("bench/results/int8.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repolm-bench-") as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        result = measure(root, args.symbols)
    report = {"machine": machine(), "corpus": CORPORA[args.corpus], **result}
    write_report(report, args.out)


if __name__ == "__main__":
    main()
