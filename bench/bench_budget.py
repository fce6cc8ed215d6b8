"""What the completion prompt's token budget buys: quality and latency at several budgets, same targets.

    python bench/bench_budget.py [--corpus requests] [--budgets 768 384 256] [--limit 200] [--threads 2]
                                 [--out bench/results/budget.json]

On a 2-core CPU a completion requested after a jump pays the whole prompt's prefill, so the budget
(`[serve] completion_budget`) sets its latency. This runs `repolm eval` (in-file and hybrid arms) once per
budget on one indexed copy of a pinned PyPI sdist, and compares every budget with the first on the same
targets: a bootstrap over targets of the per-target difference (paired), for each metric.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import indexed_copy, repolm
from report import machine, write_report

from repolm.training.metrics import bootstrap

HERE = Path(__file__).resolve().parent
ARMS = ("in_file", "hybrid")
METRICS = ("exact_match", "edit_similarity", "identifier_f1")


def evaluate(repo: Path, budget: int, args: argparse.Namespace, out: Path) -> dict:
    """`repolm eval` with the completion budget set in the repository's `repolm.toml`."""
    (repo / "repolm.toml").write_text(f"[serve]\ncompletion_budget = {budget}\n", encoding="utf-8")
    repolm(
        "eval", "--repo", str(repo), "--arms", *ARMS, "--limit", str(args.limit), "--explain", "0",
        "--graph", "0", "--threads", str(args.threads), "--json", str(out),
        "--report", str(out.with_suffix("")),
    )  # fmt: skip
    return json.loads(out.read_text(encoding="utf-8"))


def summary(evaluation: dict) -> dict[str, dict]:
    arms = evaluation["models"]["base"]["arms"]
    return {
        arm: {metric: arms[arm][metric] for metric in METRICS}
        | {"empty": arms[arm]["empty"], "latency_ms": arms[arm]["latency_ms"]}
        for arm in ARMS
    }


def paired_differences(reference: dict, other: dict) -> dict[str, dict]:
    """Per arm and metric: other minus reference, target by target, with its bootstrap 95% interval."""
    targets = [(r["path"], r["line"], r["column"]) for r in reference["records"]]
    if targets != [(r["path"], r["line"], r["column"]) for r in other["records"]]:
        raise SystemExit("the runs evaluated different targets; a paired comparison needs the same ones")
    differences: dict[str, dict] = {}
    for arm in ARMS:
        differences[arm] = {}
        for metric in METRICS:
            pairs = zip(reference["records"], other["records"], strict=True)
            values = [b["models"]["base"][arm][metric] - a["models"]["base"][arm][metric] for a, b in pairs]
            differences[arm][metric] = bootstrap(values).to_json()
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--budgets", type=int, nargs="+", default=[768, 384, 256])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "budget.json")
    args = parser.parse_args()

    repo = indexed_copy(args.corpus, HERE / ".cache" / f"budget-{args.corpus}")
    evaluations = {}
    with tempfile.TemporaryDirectory(prefix="repolm-budget-") as scratch:
        for budget in args.budgets:
            print(f"== budget {budget}", flush=True)
            evaluations[budget] = evaluate(repo, budget, args, Path(scratch) / f"eval_{budget}.json")
    reference, *others = args.budgets
    report = {
        "machine": machine(),
        "corpus": args.corpus,
        "command": " ".join(["python", "bench/bench_budget.py", *sys.argv[1:]]),
        "targets": evaluations[reference]["targets"],
        "budgets": {str(budget): summary(evaluations[budget]) for budget in args.budgets},
        f"minus_{reference}": {
            str(budget): paired_differences(evaluations[reference], evaluations[budget]) for budget in others
        },
    }
    write_report(report, args.out)
    for budget in args.budgets:
        for arm, row in report["budgets"][str(budget)].items():
            quality = " ".join(f"{metric} {row[metric]['mean']:.3f}" for metric in METRICS)
            latency = row["latency_ms"]
            print(f"{budget:>5} {arm:>8} {quality} p50 {latency['p50']:.0f} ms p95 {latency['p95']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
