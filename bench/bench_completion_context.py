"""Completion retrieval with the definitions of what the code above the cursor uses, fused in by rank.

    python bench/bench_completion_context.py [--corpora requests httpx jinja2 werkzeug]
        [--weights 0 0.5 1 2] [--limit 200] [--out bench/results/completion_context.json]

Reads the indexed copies `bench/bench_retriever.py` left (`bench/.cache/retriever-CORPUS`, run it first),
whose index holds vectors under both the base MiniLM and the retriever fine-tuned there. For each
retriever and each `[serve] completion_context_weight`, ranks the oracle chunks of the same held-out
completion targets as that bench (`evaluate_retrieval`'s completion family: the code before the cursor,
queried through `code_hits` as the server queries). Reports acc@1 / acc@5 / MRR per cell, and the
paired acc@5 differences [bootstrap 95% CI]: each weight against weight 0 (no graph context) with the
same retriever, and each cell against the base retriever without graph context (the issue's baseline),
per repository and pooled over the repositories.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CACHE, repolm
from report import machine, write_report

from repolm.assist.completion import retrieval_query
from repolm.config import load_config
from repolm.indexer.builder import embed_generation
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index
from repolm.training.eval_retrieval import RetrievalEvalOptions, completion_ranks, family_summary
from repolm.training.eval_split import EvalSplit
from repolm.training.metrics import bootstrap, hit_at
from repolm.training.retriever import model_folder, retriever_registry

HERE = Path(__file__).resolve().parent


def tuned_folder(root: Path) -> Path:
    """The newest retriever `bench_retriever.py` trained in the copy (promoted or not)."""
    registry = retriever_registry(root, load_config(root))
    names = sorted(p.name for p in registry.root.iterdir() if (p / "manifest.json").is_file())
    if not names:
        raise SystemExit(f"no fine-tuned retriever in {root}: run bench/bench_retriever.py first")
    return model_folder(registry, names[-1])


def rank_cells(corpus: str, weights: list[float], limit: int) -> dict[str, object]:
    root = CACHE / f"retriever-{corpus}"
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: run python bench/bench_retriever.py --corpus {corpus} first")
    repolm("index", str(root), "--json")  # brings an index of an older repolm up to date
    config = load_config(root)
    options = RetrievalEvalOptions(EvalSplit("file"), limit, seed=config.train.seed)
    folder = tuned_folder(root)
    cells: dict[str, dict[str, object]] = {}
    for retriever, path in (("base", ""), ("tuned", str(folder))):
        embedder = Embedder.from_config(config.index, path)
        embed_generation(root, config, embedder)  # vectors kept from before are reused
        index = Index.open(root, config, embedder)
        try:
            for weight in weights:
                serve = dataclasses.replace(config.serve, completion_context_weight=weight)
                ranks = completion_ranks(index, options, serve, retrieval_query, lambda *_: None)
                summary = family_summary(ranks)
                cells[f"{retriever}@{weight:g}"] = summary
                print(f"{corpus} {retriever} weight {weight:g}: n={summary['n']} acc@1 {summary['acc@1']} "
                      f"acc@5 {summary['acc@5']} MRR {summary['mrr']}", flush=True)  # fmt: skip
        finally:
            index.close()
    return {"retriever": str(folder.relative_to(root)), "cells": cells}


def paired(cells: dict, new: str, old: str) -> list[float]:
    pairs = zip(cells[new]["ranks"], cells[old]["ranks"], strict=True)
    return [hit_at(a, 5) - hit_at(b, 5) for a, b in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", nargs="+", default=["requests", "httpx", "jinja2", "werkzeug"])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--limit", type=int, default=200, help="completion targets sampled (held out)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "completion_context.json")
    args = parser.parse_args()

    corpora = {corpus: rank_cells(corpus, args.weights, args.limit) for corpus in args.corpora}
    names = list(next(iter(corpora.values()))["cells"])
    differences: dict[str, dict[str, object]] = {}
    for name in names:
        retriever = name.split("@")[0]
        for baseline in (f"{retriever}@0", "base@0"):
            if name == baseline or baseline not in names:
                continue
            per = {corpus: paired(r["cells"], name, baseline) for corpus, r in corpora.items()}
            differences[f"{name} - {baseline}"] = {
                **{corpus: bootstrap(values).to_json() for corpus, values in per.items()},
                "pooled": bootstrap([v for values in per.values() for v in values]).to_json(),
            }
    write_report(
        {
            "command": " ".join(["python", "bench/bench_completion_context.py", *sys.argv[1:]]),
            "machine": machine(),
            "corpora": corpora,
            "acc@5_differences": differences,
        },
        args.out,
    )
    for label, result in differences.items():
        pooled = result["pooled"]
        print(f"{label}: pooled acc@5 {pooled}")


if __name__ == "__main__":
    main()
