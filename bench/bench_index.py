"""Index benchmarks on real repositories: build time, incremental update, retrieval quality, latency.

    python bench/bench_index.py [--corpora requests django] [--queries 0] [--out bench/results/index.json]

Every figure printed here comes from this run on this machine; `docs/BENCHMARKS.md` quotes them with
this command. Timings are medians over repeats because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CORPORA, fresh_copy
from repolm.indexer.builder import update_index
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index
from repolm.training.metrics import bootstrap
from report import machine, write_report

from repolm.config import Config

LEXICAL_STAGES = ("discovery", "parsing", "graph", "lexical")
MODES = ("bm25", "dense", "hybrid")
# Query latency is timed on this many queries, spread over the repository (quality uses --queries).
LATENCY_QUERIES = 300
# A query's text and the qualnames of the functions it describes (any of them is a right answer).
Query = tuple[str, frozenset[str]]
# (fusion, dense weight, summaries): RRF, then the normalised-score mix with more and more weight on
# dense; each with and without the lists over the definitions' docstrings.
FUSIONS = tuple(
    (fusion, weight, summaries)
    for summaries in (True, False)
    for fusion, weight in (
        ("rrf", 0.5),
        ("weighted", 0.2),
        ("weighted", 0.3),
        ("weighted", 0.4),
        ("weighted", 0.5),
    )
)


def full_index(repo: Path) -> dict[str, object]:
    """`repolm index --json` in a child process, so its peak memory is its own."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "repolm.cli", "index", str(repo), "--json", "--rebuild"],
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"repolm index failed on {repo}")
    summary = json.loads(output)
    seconds = summary["seconds"]
    lexical = sum(seconds.get(stage, 0.0) for stage in LEXICAL_STAGES)
    return {
        "files": summary["files"],
        "chunks": summary["chunks"],
        "skipped": summary["skipped"],
        "redactions": summary["redactions_total"],
        "wall_seconds": round(wall, 2),
        "stage_seconds": seconds,
        "lexical_seconds": round(lexical, 2),
        "embedding_seconds": seconds.get("embedding", 0.0),
        "lexical_files_per_s": round(summary["files"] / lexical, 1),
        "lexical_chunks_per_s": round(summary["chunks"] / lexical, 1),
        # The embedding stage's seconds include the summaries, embedded in the same batches.
        "embedding_chunks_per_s": round(summary["embedded"] / max(seconds.get("embedding", 0.0), 1e-9), 1),
        "summaries_embedded": summary["summaries_embedded"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "index_mib": round(
            sum(p.stat().st_size for p in (repo / ".repolm").rglob("*") if p.is_file()) / 2**20, 1
        ),
    }


def incremental(repo: Path, embedder: Embedder, repeats: int = 7) -> dict[str, object]:
    """Re-index after editing one file (a new function appended), in-process with the model loaded,
    as the language server does on save; and the same through the CLI, process start included."""
    target = max(repo.rglob("*.py"), key=lambda p: (p.stat().st_size < 20_000, p.stat().st_size))
    original = target.read_text(encoding="utf-8")
    in_process = []
    for round_number in range(repeats):
        target.write_text(original + f"\n\ndef bench_edit_{round_number}():\n    return {round_number}\n")
        start = time.perf_counter()
        summary = update_index(repo, Config(), embedder=embedder)
        in_process.append(time.perf_counter() - start)
        assert summary.changed == 1 and summary.reparsed == 1, summary
    cli = []
    for round_number in range(3):
        target.write_text(original + f"\n\ndef bench_cli_{round_number}():\n    return {round_number}\n")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "repolm.cli", "index", str(repo), "--json"],
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - start)
    target.write_text(original)
    update_index(repo, Config(), embedder=embedder)
    return {
        "file": str(target.relative_to(repo)),
        "file_lines": original.count("\n"),
        "in_process_median_s": round(statistics.median(in_process), 3),
        "in_process_runs_s": [round(t, 3) for t in in_process],
        "cli_median_s": round(statistics.median(cli), 3),
    }


def docstring_queries(index: Index, limit: int = 0) -> list[Query]:
    """(query, relevant qualnames): the docstring's first sentence with the function's name removed.

    The name goes where it is a word or part of one split on punctuation ("GET", "json-encoded"), not
    where it is merely inside a word ("information" stays for `info`). A query text that several
    functions' docstrings give ("Sends a request." for api.get, api.post, ...) names no one of them,
    so each of those functions counts as a right answer. `limit` > 0 takes that many, evenly spread.
    """
    rows = index.store.db.execute(
        "SELECT d.name, d.qualname, d.docstring FROM definitions d JOIN files f ON f.id = d.file_id"
        " WHERE f.gen_removed IS NULL AND d.kind IN ('function', 'method') AND length(d.docstring) > 20"
        " ORDER BY d.qualname"
    ).fetchall()
    queries: dict[str, set[str]] = {}
    for name, qualname, docstring in rows:
        sentence = re.split(r"(?<=[.!?])\s|\n\s*\n", docstring.strip(), maxsplit=1)[0]
        words = [w for w in sentence.split() if name.lower() not in re.split(r"\W+", w.lower())]
        query = " ".join(words).strip()
        if len(query.split()) >= 3:
            queries.setdefault(query, set()).add(qualname)
    pairs = sorted((query, frozenset(names)) for query, names in queries.items())
    if limit <= 0:
        return pairs
    step = max(1, len(pairs) // limit)  # an even spread over the repository, same every run
    return pairs[::step][:limit]


def retrieval_quality(index: Index, queries: list[Query]) -> dict[str, dict[str, object]]:
    ranks = {mode: _ranks(index, queries, mode) for mode in MODES}
    results = {mode: _summary(found) for mode, found in ranks.items()}
    # Each query at the better of its two single-mode ranks: what a fusion reaches if it keeps every
    # find of either mode; it can pass this only by lifting a function that both modes rank lower.
    pairs = zip(ranks["bm25"], ranks["dense"], strict=True)
    either = [min((rank for rank in pair if rank), default=None) for pair in pairs]
    results["bm25 or dense"] = _summary(either)
    # The goal's margin, paired per query: hybrid's Recall@5 hit minus the better single mode's.
    better = max(("bm25", "dense"), key=lambda mode: results[mode]["recall@5"])
    margin = [
        100 * (_hit(hybrid) - _hit(single))
        for hybrid, single in zip(ranks["hybrid"], ranks[better], strict=True)
    ]
    results["hybrid minus better at 5"] = {"better": better} | bootstrap(margin).to_json()
    return results


def _hit(rank: int | None, k: int = 5) -> int:
    return int(rank is not None and rank <= k)


def fusion_sweep(index: Index, queries: list[Query]) -> dict[str, dict[str, float]]:
    """Hybrid quality under each fusion setting, so the default's choice is visible next to the rest."""
    configured = index.config
    results = {}
    for fusion, dense_weight, summaries in FUSIONS:
        search = replace(configured.search, fusion=fusion, dense_weight=dense_weight, summaries=summaries)
        index.config = replace(configured, search=search)
        label = f"rrf k={configured.search.rrf_k}" if fusion == "rrf" else f"weighted {dense_weight}"
        label += "" if summaries else ", no summaries"
        results[label] = _summary(_ranks(index, queries, "hybrid"))
    index.config = configured
    return results


def _ranks(index: Index, queries: list[Query], mode: str) -> list[int | None]:
    """Each query's rank of the first chunk of a relevant function in the top 10 (None: not there)."""
    ranks = []
    for query, relevant in queries:
        hits = index.search(query, mode=mode, k=10)
        ranks.append(next((i for i, h in enumerate(hits, 1) if h.chunk.symbol in relevant), None))
    return ranks


def _summary(ranks: list[int | None]) -> dict[str, float]:
    return {
        f"recall@{k}": round(100 * sum(1 for r in ranks if r and r <= k) / len(ranks), 1) for k in (1, 5, 10)
    } | {"mrr@10": round(sum(1 / r for r in ranks if r) / len(ranks), 3)}


def latency(index: Index, queries: list[Query]) -> dict[str, dict[str, float]]:
    results = {}
    for mode in MODES:
        for query, _ in queries[:10]:  # warm caches and lazy loads
            index.search(query, mode=mode, k=10)
        times = []
        for query, _ in queries:
            start = time.perf_counter()
            index.search(query, mode=mode, k=10)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        results[mode] = {
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA))
    parser.add_argument("--queries", type=int, default=0, help="docstring queries per repository (0: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/index.json"))
    args = parser.parse_args()
    embedder = Embedder.from_config(Config().index)  # the settings `repolm index` embeds chunks with
    report: dict[str, object] = {
        "machine": machine(),
        "corpora": {},
    }
    with tempfile.TemporaryDirectory(prefix="repolm-bench-") as scratch:
        for name in args.corpora:
            repo = fresh_copy(name, Path(scratch) / name)
            print(f"== {CORPORA[name]}: full index", flush=True)
            result: dict[str, object] = {"full_index": full_index(repo)}
            print(json.dumps(result["full_index"], indent=1), flush=True)
            index = Index.open(repo, Config(), embedder=embedder)
            queries = docstring_queries(index, args.queries)
            result["queries"] = len(queries)
            result["retrieval"] = retrieval_quality(index, queries)
            result["fusion"] = fusion_sweep(index, queries)
            print(json.dumps(result["retrieval"] | result["fusion"], indent=1), flush=True)
            result["latency"] = latency(index, docstring_queries(index, LATENCY_QUERIES))
            print(json.dumps(result["latency"], indent=1), flush=True)
            index.close()
            result["incremental"] = incremental(repo, embedder)
            print(json.dumps(result["incremental"], indent=1), flush=True)
            report["corpora"][CORPORA[name]] = result  # type: ignore[index]
    write_report(report, args.out)


if __name__ == "__main__":
    main()
