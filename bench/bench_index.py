"""Index benchmarks on real repositories: build time, incremental update, retrieval quality, latency,
the vector cache.

    python bench/bench_index.py [--corpora requests django] [--queries 0] [--out bench/results/index.json]

Every figure printed here comes from this run on this machine; `docs/PERFORMANCE.md` quotes them with
this command. Timings are medians over repeats because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CORPORA, fresh_copy
from report import machine, write_report

from repolm.config import Config
from repolm.indexer.builder import update_index
from repolm.indexer.dense import DenseMatrix, Embedder
from repolm.indexer.retrieval import Index, SearchFilter
from repolm.indexer.store import Store
from repolm.training.metrics import bootstrap

LEXICAL_STAGES = ("discovery", "parsing", "graph", "lexical")
MODES = ("bm25", "dense", "hybrid")
# Query latency is timed on this many queries, spread over the repository (quality uses --queries).
LATENCY_QUERIES = 300


class RememberingEmbedder(Embedder):
    """The embedder, keeping each query's vector while `remember` is on: quality runs search every
    query under many settings, and latency runs must embed each query as a user's search does."""

    remember = True

    @cached_property
    def _vectors(self) -> dict[str, np.ndarray]:
        return {}

    def encode_query(self, text: str) -> np.ndarray:
        if not self.remember:
            return super().encode_query(text)
        if text not in self._vectors:
            self._vectors[text] = super().encode_query(text)
        return self._vectors[text]


class Query(NamedTuple):
    text: str
    relevant: frozenset[str]  # qualnames of the functions it describes: any of them is a right answer
    source: str = ""  # the docs file the text was taken from, kept out of the results ("": none)


# (fusion, dense weight): RRF, then the normalised-score mix with more and more weight on dense.
FUSIONS = (("rrf", 0.5), ("weighted", 0.2), ("weighted", 0.3), ("weighted", 0.4), ("weighted", 0.5))
# Sphinx's reference directives: `.. method:: Class.name(args)`, the class and module they sit in.
DIRECTIVE = re.compile(r"^( *)\.\. (function|method|class|module|currentmodule)::\s*([\w.]*)")


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


def vector_cache(repo: Path, embedder: Embedder, repeats: int = 7) -> dict[str, object]:
    """`repolm index` once the embedding model sits elsewhere, as after a fresh virtualenv: the same
    files copied to another folder (vectors are keyed by the model's contents, so none should be
    embedded again); and the cache bound's check, which every update runs, alone."""
    with tempfile.TemporaryDirectory(prefix="repolm-model-") as scratch:
        moved = Embedder(str(shutil.copytree(embedder.path, Path(scratch) / "model")))
        start = time.perf_counter()
        summary = update_index(repo, Config(), embedder=moved)
        seconds = time.perf_counter() - start
    store = Store.open(Config().index_path(repo))
    checks = []
    for _ in range(repeats):
        start = time.perf_counter()
        store.prune_vectors(embedder.name)
        checks.append(time.perf_counter() - start)
    cached = store.cached_vectors()
    store.close()
    return {
        "moved model": {
            "embedded": summary.embedded + summary.summaries_embedded,
            "seconds": round(seconds, 3),
        },
        "vectors cached": cached,
        "bound check median_ms": round(1000 * statistics.median(checks), 2),
    }


def docstring_queries(index: Index, limit: int = 0) -> list[Query]:
    """The docstring's first sentence with the function's name removed; relevant: that function.

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
        query = _without_name(_first_sentence(docstring), name)
        if len(query.split()) >= 3:
            queries.setdefault(query, set()).add(qualname)
    pairs = sorted(Query(query, frozenset(names)) for query, names in queries.items())
    if limit <= 0:
        return pairs
    step = max(1, len(pairs) // limit)  # an even spread over the repository, same every run
    return pairs[::step][:limit]


def reference_queries(index: Index) -> list[Query]:
    """Queries written apart from the code: the project's reference docs (reST `.. function::` and
    `.. method::` directives), the first sentence of a directive's description with the name removed.

    Relevant: the non-test definitions of that name in the class the docs put it in (the directive's
    dotted prefix, the current module's last capitalised part, or the enclosing `.. class::`), or
    module-level functions for `.. function::`; those of the docs' current module if it has any.
    Queries whose name matches no definition, or more than 3, are left out. The docs file the text
    comes from is kept out of the results: it holds the very sentence.
    """
    docs = index.store.db.execute(
        "SELECT path FROM files WHERE gen_removed IS NULL AND (path LIKE '%.txt' OR path LIKE '%.rst')"
        " ORDER BY path"
    ).fetchall()
    queries: dict[tuple[str, str], set[str]] = {}
    for (path,) in docs:
        lines = (index.root / path).read_text(encoding="utf-8", errors="replace").split("\n")
        for kind, name, owner, module, description in _directives(lines):
            query = _without_name(_first_sentence(description), name)
            relevant = _definitions_named(index, name, owner if kind == "method" else None, module)
            if len(query.split()) >= 3 and 1 <= len(relevant) <= 3:
                queries.setdefault((query, path), set()).update(relevant)
    return sorted(Query(query, frozenset(names), path) for (query, path), names in queries.items())


def in_docstrings(index: Index, queries: list[Query]) -> int:
    """How many queries' text stands word for word in a relevant function's docstring."""
    count = 0
    for query in queries:
        marks = ",".join("?" * len(query.relevant))
        docstrings = index.store.db.execute(
            f"SELECT docstring FROM definitions WHERE qualname IN ({marks})", sorted(query.relevant)
        ).fetchall()
        count += any(query.text in " ".join(docstring.split()) for (docstring,) in docstrings)
    return count


def _directives(lines: list[str]) -> list[tuple[str, str, str | None, str, str]]:
    """(kind, name, class, module, description) of each function or method directive."""
    found = []
    module = ""
    classes: list[tuple[int, str]] = []  # enclosing `.. class::` directives: (indentation, name)
    for number, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if not match:
            continue
        indent, kind, dotted = len(match.group(1)), match.group(2), match.group(3)
        classes = [(i, name) for i, name in classes if i < indent]
        if kind in ("module", "currentmodule"):
            module = dotted
            continue
        if kind == "class":
            classes.append((indent, dotted.rsplit(".", 1)[-1]))
            continue
        *prefix, name = dotted.split(".")
        context = [*module.split("."), *prefix]
        owner = next((part for part in reversed(context) if part[:1].isupper()), None)
        owner = owner or (classes[-1][1] if classes else None)
        description = _description(lines, number, indent)
        if description:
            found.append((kind, name, owner, module, description))
    return found


def _description(lines: list[str], number: int, indent: int) -> str:
    """The first paragraph of a directive's body that does not open with emphasis (Django opens some
    with "*Asynchronous version*: ..."), up to a nested directive (a note, a version change)."""
    paragraphs: list[list[str]] = [[]]
    stacked = True  # directives on the very next lines share this one's body
    for line in lines[number + 1 :]:
        text = line.strip()
        if text and len(line) - len(line.lstrip()) <= indent:
            if stacked and text.startswith(".. "):
                continue
            break
        stacked = False
        if text.startswith(".. "):
            break
        if text.startswith(":") and paragraphs == [[]]:
            continue  # the directive's options
        if text:
            paragraphs[-1].append(text)
        elif paragraphs[-1]:
            paragraphs.append([])
    plain = next((p for p in paragraphs if p and not p[0].startswith("*")), [])
    return _plain(" ".join(plain))


def _plain(rest: str) -> str:
    """reST inline markup as the words a reader sees."""
    rest = re.sub(
        r":\w+:`~([\w.]*?)(\(\))?`", lambda m: m.group(1).rsplit(".", 1)[-1] + (m.group(2) or ""), rest
    )
    rest = re.sub(r"(?::\w+:)?`([^`<]*?)\s*(?:<[^>]*>)?`_{0,2}", r"\1", rest)
    return re.sub(r"``([^`]*)``", r"\1", rest)


def _definitions_named(index: Index, name: str, owner: str | None, module: str) -> set[str]:
    rows = index.store.db.execute(
        "SELECT d.qualname, d.scope, d.kind FROM definitions d JOIN files f ON f.id = d.file_id"
        " WHERE f.gen_removed IS NULL AND d.name = ? AND d.kind IN ('function', 'method')"
        " AND f.path NOT LIKE 'tests/%' AND f.path NOT LIKE '%/tests/%'",
        (name,),
    ).fetchall()
    if owner:
        chosen = {qualname for qualname, scope, _ in rows if scope.rsplit(".", 1)[-1] == owner}
    else:
        chosen = {qualname for qualname, _, kind in rows if kind == "function"}
    in_module = {qualname for qualname in chosen if module and qualname.startswith(module + ".")}
    return in_module or chosen


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s|\n\s*\n", text.strip(), maxsplit=1)[0]


def _without_name(sentence: str, name: str) -> str:
    words = [w for w in sentence.split() if name.lower() not in re.split(r"\W+", w.lower())]
    return " ".join(words).strip()


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
    for fusion, dense_weight in FUSIONS:
        index.config = replace(
            configured, search=replace(configured.search, fusion=fusion, dense_weight=dense_weight)
        )
        label = f"rrf k={configured.search.rrf_k}" if fusion == "rrf" else f"weighted {dense_weight}"
        results[label] = _summary(_ranks(index, queries, "hybrid"))
    index.config = configured
    return results


def without_summaries(index: Index, queries: list[Query]) -> dict[str, dict[str, object]]:
    """`retrieval_quality` with every mode reading whole chunks only (`[search] summaries = false`)."""
    configured = index.config
    index.config = replace(configured, search=replace(configured.search, summaries=False))
    try:
        return retrieval_quality(index, queries)
    finally:
        index.config = configured


def _ranks(index: Index, queries: list[Query], mode: str) -> list[int | None]:
    """Each query's rank of the first chunk of a relevant function in the top 10 (None: not there)."""
    ranks = []
    for query in queries:
        where = SearchFilter(exclude_paths=frozenset({query.source})) if query.source else None
        hits = index.search(query.text, mode=mode, k=10, where=where)
        ranks.append(next((i for i, h in enumerate(hits, 1) if h.chunk.symbol in query.relevant), None))
    return ranks


def _summary(ranks: list[int | None]) -> dict[str, float]:
    return {
        f"recall@{k}": round(100 * sum(1 for r in ranks if r and r <= k) / len(ranks), 1) for k in (1, 5, 10)
    } | {"mrr@10": round(sum(1 / r for r in ranks if r) / len(ranks), 3)}


def latency(index: Index, queries: list[Query]) -> dict[str, dict[str, float]]:
    results = {}
    for mode in MODES:
        for query in queries[:10]:  # warm caches and lazy loads
            index.search(query.text, mode=mode, k=10)
        times = []
        for query in queries:
            start = time.perf_counter()
            index.search(query.text, mode=mode, k=10)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        results[mode] = {
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        }
    return results


def scoring_latency(index: Index, queries: list[Query]) -> dict[str, object]:
    """Dense scoring alone (the query already embedded) over the chunk matrix in float16, as served,
    and over a float32 copy, taking turns query by query; and how often both give the same top 10."""
    half = index.dense
    ids, vectors = index.store.alive_vectors(index.generation, index.vector_model)
    full = DenseMatrix(ids, vectors, dtype=np.float32)  # as stored, before float16 rounds them
    vectors = [index.query_embedder.encode_query(query.text) for query in queries]
    times: dict[str, list[float]] = {"float16": [], "float32": []}
    same_top = 0
    for vector in vectors[:10]:  # warm-up
        half.search(vector, 50)
        full.search(vector, 50)
    for vector in vectors:
        tops = []
        for label, matrix in (("float16", half), ("float32", full)):
            start = time.perf_counter()
            tops.append([item for item, _ in matrix.search(vector, 50)][:10])
            times[label].append((time.perf_counter() - start) * 1000)
        same_top += tops[0] == tops[1]
    result: dict[str, object] = {"vectors": len(half), "queries": len(vectors), "same top 10": same_top}
    for label, taken in times.items():
        taken.sort()
        result[label] = {
            "p50_ms": round(statistics.median(taken), 3),
            "p95_ms": round(taken[int(0.95 * (len(taken) - 1))], 3),
        }
    result["p50 ratio float16 / float32"] = round(
        statistics.median(times["float16"]) / statistics.median(times["float32"]), 3
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA))
    parser.add_argument("--queries", type=int, default=0, help="docstring queries per repository (0: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/index.json"))
    args = parser.parse_args()
    # The settings `repolm index` embeds chunks with.
    embedder = RememberingEmbedder.from_config(Config().index)
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
            embedder.remember = True
            for label, queries in (
                ("docstring", docstring_queries(index, args.queries)),
                ("reference", reference_queries(index)),
            ):
                if not queries:
                    continue
                quality: dict[str, object] = {
                    "queries": len(queries),
                    "in a docstring": in_docstrings(index, queries),
                }
                quality["retrieval"] = retrieval_quality(index, queries)
                quality["without summaries"] = without_summaries(index, queries)
                quality["fusion"] = fusion_sweep(index, queries)
                result[f"{label} queries"] = quality
                print(label, json.dumps(quality, indent=1), flush=True)
            embedder.remember = False
            timed = docstring_queries(index, LATENCY_QUERIES)
            result["latency"] = latency(index, timed)
            result["dense scoring"] = scoring_latency(index, timed)
            print(json.dumps(result["dense scoring"], indent=1), flush=True)
            print(json.dumps(result["latency"], indent=1), flush=True)
            index.close()
            result["incremental"] = incremental(repo, embedder)
            print(json.dumps(result["incremental"], indent=1), flush=True)
            result["vector cache"] = vector_cache(repo, embedder)
            print(json.dumps(result["vector cache"], indent=1), flush=True)
            report["corpora"][CORPORA[name]] = result  # type: ignore[index]
    write_report(report, args.out)


if __name__ == "__main__":
    main()
