"""RAFT training on a real repository: dataset build, training throughput, and base / plain-LoRA / RAFT.

    python bench/bench_training.py [--corpus requests] [--profile quick] [--steps N] [--limit 150]
                                   [--threads 2] [--out bench/results/training.json]
    python bench/bench_training.py --train-only [--steps N] [--out bench/results/training_throughput.json]

Runs the CLI as a user would on a fresh copy of a pinned PyPI sdist: `repolm index`, `repolm train`
(RAFT), `repolm train --plain` (the domain fine-tuning control, same steps), then `repolm eval` with both
adapters beside the base model on the in-file and hybrid arms of the held-out split. Goals checked:
RAFT + hybrid exact match ≥ 1.15× base + hybrid and above plain-LoRA + hybrid; RAFT in-file no more than
1 point below base in-file. `--train-only` stops after the RAFT run: dataset build time and training
throughput alone, for a measurement on a quiet machine.
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
ARMS = ("in_file", "hybrid")
MODELS = ("base", "plain", "raft")


def train(repo: Path, name: str, profile: str, steps: int | None, plain: bool) -> dict:
    arguments = ["train", "--repo", str(repo), "--name", name, "--profile", profile, "--json"]
    arguments += ["--max-steps", str(steps)] if steps else []
    arguments += ["--plain"] if plain else []
    started = time.perf_counter()
    manifest = json.loads(repolm(*arguments))
    manifest["wall_seconds"] = round(time.perf_counter() - started, 1)
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--steps", type=int, help="training steps (default: the profile's)")
    parser.add_argument("--limit", type=int, default=150, help="completion targets evaluated")
    parser.add_argument("--threads", type=int, default=2, help="inference threads for the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-only", action="store_true", help="only the RAFT run (no control, no eval)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or HERE / "results" / ("training_throughput.json" if args.train_only else "training.json")
    command = " ".join(["python", "bench/bench_training.py", *sys.argv[1:]])

    repo = fresh_copy(args.corpus, HERE / ".cache" / f"train-{args.corpus}")
    repolm("index", str(repo))
    raft = train(repo, "raft", args.profile, args.steps, plain=False)
    if args.train_only:
        run = raft["train"]
        result = {"command": command, "corpus": args.corpus, "machine": machine(), "dataset": raft["dataset"],
                  "train": run, "wall_seconds": raft["wall_seconds"]}  # fmt: skip
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"{run['steps']} steps, {run['train_tokens']} tokens in {run['seconds']} s:"
              f" {run['tokens_per_second']} tokens/s on {run['device']}")  # fmt: skip
        return 0
    plain = train(repo, "plain", args.profile, args.steps, plain=True)
    adapters = repo / ".repolm" / "adapters"
    evaluation_file = out.with_name(f"{out.stem}_eval.json")  # training.json: training_eval.json
    started = time.perf_counter()
    repolm(
        "eval", "--repo", str(repo), "--arms", *ARMS, "--limit", str(args.limit), "--explain", "0",
        "--threads", str(args.threads), "--seed", str(args.seed),
        "--adapter", f"raft={adapters / 'raft'}", "--adapter", f"plain={adapters / 'plain'}",
        "--json", str(evaluation_file), "--report", str(out.with_name(f"{out.stem}_report")),
    )  # fmt: skip
    eval_seconds = time.perf_counter() - started
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))

    table = {
        model: {arm: evaluation["models"][model]["arms"][arm]["exact_match"] for arm in ARMS}
        | {f"{arm}_edit_similarity": evaluation["models"][model]["arms"][arm]["edit_similarity"]["mean"]
           for arm in ARMS}
        | {f"{arm}_empty": evaluation["models"][model]["arms"][arm]["empty"] for arm in ARMS}
        for model in MODELS
    }  # fmt: skip
    result = {
        "command": command,
        "corpus": args.corpus,
        "machine": machine(),
        "dataset": raft["dataset"],
        "train": {"raft": raft["train"], "plain": plain["train"]},
        "train_wall_seconds": {"raft": raft["wall_seconds"], "plain": plain["wall_seconds"]},
        "eval_seconds": round(eval_seconds, 1),
        "targets": evaluation["targets"],
        "table": table,
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    dataset = raft["dataset"]
    print(f"\ndataset: {dataset['examples']} examples {dataset['by_task']} in {dataset['seconds']} s")
    for name, run in result["train"].items():
        print(f"{name}: {run['steps']} steps, {run['train_tokens']} tokens,"
              f" {run['tokens_per_second']} tokens/s, final loss {run['final_loss']},"
              f" device {run['device']}")  # fmt: skip
    print(f"{result['targets']['n']} targets; exact match [95% CI]:")
    for model in MODELS:
        cells = [f"{table[model][arm]['mean']:.3f} [{table[model][arm]['ci_low']:.3f}, "
                 f"{table[model][arm]['ci_high']:.3f}]" for arm in ARMS]  # fmt: skip
        empty = [table[model][f"{arm}_empty"] for arm in ARMS]
        print(f"{model:>6}  in-file {cells[0]}  hybrid {cells[1]}  empty lines {empty[0]} / {empty[1]}")
    base, raft_em, plain_em = (table[m]["hybrid"]["mean"] for m in ("base", "raft", "plain"))
    ratio = raft_em / base if base else None
    print(f"RAFT/base hybrid EM {ratio} (goal ≥ 1.15);"
          f" RAFT − plain hybrid {raft_em - plain_em:+.3f} (goal > 0);"
          f" RAFT − base in-file {table['raft']['in_file']['mean'] - table['base']['in_file']['mean']:+.3f}"
          " (goal ≥ −0.01)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
