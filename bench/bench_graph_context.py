"""How often would graph context put a completion's oracle in the prompt, against hybrid retrieval?

    python bench/bench_graph_context.py [--corpora httpx jinja2 werkzeug] [--k 5]

Reads what `bench/bench_raft.py` left (each corpus's indexed copy and its evaluation records, same
targets) and, for every held-out target with oracle chunks, takes the definitions of the repository
symbols used in the lines above the cursor within its enclosing definition, nearest first (the symbol
graph resolves them as the evaluation resolves the target's own uses). Counts the targets whose oracle
is among the first k of them, among the hybrid ranking's first k (the evaluation's recorded rank), and
either; overall and on the targets whose oracle supplies a name the code above lacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CACHE
from report import write_report

from repolm.config import load_config
from repolm.indexer.code_chunks import parse_code
from repolm.indexer.code_uses import definition_chunk_ids
from repolm.indexer.retrieval import Index
from repolm.training.eval_targets import analyze_file, code_files, read_redacted

HERE = Path(__file__).resolve().parent


def count(corpus: str, k: int) -> dict[str, int]:
    root = CACHE / f"raft-{corpus}"
    records = json.loads((CACHE / "raft-eval" / f"{corpus}.json").read_text(encoding="utf-8"))["records"]
    index = Index.open(root, load_config(root))
    files = code_files(index)
    seen: dict[str, tuple] = {}
    found = dict.fromkeys(("oracle_targets", "graph", "hybrid", "either", "supplies", "supplies_graph",
                           "supplies_hybrid"), 0)  # fmt: skip
    try:
        for record in records:
            if not record["oracle_chunks"]:
                continue
            path, line = record["path"], record["line"]
            if path not in seen:
                text = read_redacted(root, path) or ""
                seen[path] = (
                    analyze_file(index, path, files[path], text),
                    parse_code(path, files[path], text),
                )
            facts, parsed = seen[path]
            oracle = {c for symbol in facts.uses.get(line, []) for c in definition_chunk_ids(index, symbol)}
            enclosing = [d.start_line for d in parsed.definitions if d.start_line < line <= d.end_line]
            candidates: list[int] = []
            for number in range(line - 1, min(enclosing, default=1) - 1, -1):
                for symbol in facts.uses.get(number, []):
                    candidates += [c for c in definition_chunk_ids(index, symbol) if c not in candidates]
            graph = bool(oracle & set(candidates[:k]))
            rank = record["models"]["base"]["hybrid"]["rank"]
            hybrid = rank is not None and rank <= k
            found["oracle_targets"] += 1
            found["graph"] += graph
            found["hybrid"] += hybrid
            found["either"] += graph or hybrid
            if record["oracle_supplies"]:
                found["supplies"] += 1
                found["supplies_graph"] += graph
                found["supplies_hybrid"] += hybrid
    finally:
        index.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", nargs="+", default=["httpx", "jinja2", "werkzeug"])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "graph_context.json")
    args = parser.parse_args()
    write_report(
        {"k": args.k, "corpora": {corpus: count(corpus, args.k) for corpus in args.corpora}}, args.out
    )


if __name__ == "__main__":
    main()
