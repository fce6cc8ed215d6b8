"""Embedding throughput of the index's embedder under different batch sizes and thread counts.

    python bench/bench_embedding.py [--corpus django] [--chunks 4096] [--rounds 3] [--out FILE]

Chunks are those `repolm index` embeds (same redaction, chunking and embedding text), a seeded sample of
the corpus, sorted by length as the index builder sorts them. Each round encodes the sample once with
every setting, one after the other, so that the machine's drift hits all settings alike; the figure per
setting is the median over rounds, and ratios are taken against the first setting within this run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CORPORA, corpus
from report import write_report

from repolm.config import Config
from repolm.indexer.builder import parse_source
from repolm.indexer.dense import Embedder
from repolm.indexer.discovery import discover, read_source

# (batch size, Python threads): the defaults before this benchmark first, then the candidates.
SETTINGS = ((64, 1), (16, 1), (16, 2))


def embedding_texts(root: Path, config: Config) -> list[str]:
    texts = []
    for found in discover(root, config.index).files:
        source = read_source(root, found.path, config.index.max_file_bytes)
        if isinstance(source, str):
            continue
        parsed = parse_source(found.path, source.text, config.index.max_chunk_lines)
        if parsed is not None:
            texts.extend(chunk.embedding_text for chunk in parsed[1].chunks)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="django", choices=sorted(CORPORA))
    parser.add_argument("--chunks", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/embedding.json"))
    args = parser.parse_args()
    config = Config()
    texts = embedding_texts(corpus(args.corpus), config)
    sample = sorted(random.Random(0).sample(texts, min(args.chunks, len(texts))), key=len)
    embedders = {
        f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}": Embedder(
            batch_size=batch, threads=threads, max_tokens=config.index.embedding_max_tokens
        )
        for batch, threads in SETTINGS
    }
    for embedder in embedders.values():
        embedder.encode(sample[:32])  # load and warm up outside the clock
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for round_number in range(args.rounds):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            embedder.encode(sample)
            rates[name].append(round(len(sample) / (time.perf_counter() - started), 1))
        print(f"round {round_number + 1}: {json.dumps({n: r[-1] for n, r in rates.items()})}", flush=True)
    baseline = statistics.median(rates[next(iter(rates))])
    report = {
        "corpus": CORPORA[args.corpus],
        "chunks": len(sample),
        "corpus_chunks": len(texts),
        "rounds": args.rounds,
        "settings": {
            name: {
                "median_chunks_per_s": statistics.median(values),
                "runs": values,
                "ratio_to_first": round(statistics.median(values) / baseline, 2),
            }
            for name, values in rates.items()
        },
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
