"""Completion evaluation on a real repository: in-file vs retrieval arms vs the oracle, base model.

    python bench/bench_eval.py [--corpus requests] [--limit 60] [--explain 5] [--threads 1]
                               [--out bench/results/eval.json]

Runs `repolm eval` (the CLI, as a user would) on a fresh copy of a pinned PyPI sdist and prints the
arms table. The goal it checks: hybrid exact match at least 1.4× in-file exact match.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import fresh_copy, repolm
from report import machine

HERE = Path(__file__).resolve().parent
ARMS = ("in_file", "bm25", "dense", "hybrid", "oracle")
RETRIEVAL = ("acc@1", "acc@5", "mrr")
GOAL = 1.4


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--explain", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (1 on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "eval.json")
    args = parser.parse_args()

    repo = fresh_copy(args.corpus, HERE / ".cache" / f"eval-{args.corpus}")
    started = time.perf_counter()
    repolm(
        "eval", "--repo", str(repo), "--arms", *ARMS, "--limit", str(args.limit),
        "--explain", str(args.explain), "--threads", str(args.threads), "--seed", str(args.seed),
        "--json", str(args.out), "--report", str(args.out.parent / "eval_report"),
    )  # fmt: skip
    wall = time.perf_counter() - started

    result = json.loads(args.out.read_text(encoding="utf-8"))
    result["bench"] = {
        "corpus": args.corpus,
        "command": " ".join(["python", "bench/bench_eval.py", *sys.argv[1:]]),
        "wall_seconds": round(wall, 1),
        "machine": machine(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    base = result["models"]["base"]
    ratio = base["hybrid_over_in_file"]
    print(f"\n{args.corpus}: {result['targets']['n']} targets {result['targets']['by_kind']}, {wall:.0f} s")
    print(f"{'arm':>8} {'EM':>6} {'95% CI':>15} {'edit':>6} {'idF1':>6} {'acc@1':>6} {'acc@5':>6} {'MRR':>6}"
          f" {'p50 ms':>7} {'p95 ms':>7}")  # fmt: skip
    for arm in ARMS:
        s = base["arms"][arm]
        r = s["retrieval"] or {}
        em = s["exact_match"]
        print(
            f"{arm:>8} {em['mean']:6.3f} [{em['ci_low']:.3f}, {em['ci_high']:.3f}] "
            f"{s['edit_similarity']['mean']:6.3f} {s['identifier_f1']['mean']:6.3f} "
            + " ".join(f"{r[k]:6.3f}" if r.get(k) is not None else f"{'–':>6}" for k in RETRIEVAL)
            + f" {s['latency_ms']['p50']:7.0f} {s['latency_ms']['p95']:7.0f}"
        )  # fmt: skip
    print(f"oracle-gap closure {base['oracle_gap_closure']}; hybrid / in-file EM {ratio} (goal ≥ {GOAL})")
    for score, stats in base["hybrid_minus_in_file"].items():
        interval = f"[{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]"
        print(f"hybrid − in-file {score}, paired: {stats['mean']:+.4f} {interval}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
