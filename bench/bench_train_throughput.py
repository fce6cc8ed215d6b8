"""Training throughput on this machine: the same RAFT rows trained under trl's stock recipe and repolm's.

    python bench/bench_train_throughput.py [--corpus requests] [--steps 30] [--rounds 1]
                                           [--out bench/results/train_throughput.json]

Builds one RAFT dataset (completion examples, the serving prompt budget) on a fresh copy of a pinned
sdist, then trains the embedded model on exactly those rows, batch 4, for `--steps` steps under:

- `stock`: trl's SFTTrainer as it comes, fp32, random batches (trl's fused LM head scores every
  position off Triton devices);
- `repolm`: repolm's recipe (`repolm.training.finetune`): bf16 autocast where the CPU has bf16
  arithmetic, batches of similar length, logits only where the loss is taken;
- `repolm-fp32`: the same recipe in fp32, to tell the precision's share from the rest.

Arms take turns (`--rounds` times each, in the order above), so that a change in the machine's load
touches them alike. Reports tokens per second (the rows' tokens, not padding) per arm and round, the
ratio to `stock`, and the loss curves side by side (`<out stem>.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import indexed_copy
from report import machine

HERE = Path(__file__).resolve().parent
ARMS = ("stock", "repolm", "repolm-fp32")


def dataset_rows(corpus: str, examples: int) -> tuple[list[dict], dict]:
    from transformers import AutoTokenizer

    from repolm.config import load_config
    from repolm.indexer.retrieval import Index
    from repolm.model import resolve_base
    from repolm.training.finetune import raft_rows
    from repolm.training.raft_dataset import RaftConfig, build_dataset

    repo = indexed_copy(corpus, HERE / ".cache" / f"throughput-{corpus}")
    config = load_config(repo)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(None), local_files_only=True)
    index = Index.open(repo, config)
    raft = RaftConfig(completion_examples=examples, explain_examples=0, plan_examples=0)
    try:
        found, stats = build_dataset(index, tokenizer, raft, config.serve)
    finally:
        index.close()
    rows, _ = raft_rows([e.to_json() for e in found], tokenizer, 1024)
    return rows, {"examples": stats.examples, "rows": len(rows)}


def train_arm(arm: str, rows: list[dict], steps: int, folder: Path) -> dict:
    from repolm.training.finetune import TrainConfig, train_rows

    config = TrainConfig(
        max_steps=steps, batch_size=4, gradient_accumulation=1, logging_steps=1, save_steps=10**6,
        max_length=1024, precision="fp32" if arm == "repolm-fp32" else "auto", progress=False,
    )  # fmt: skip
    if arm != "stock":
        result = train_rows(rows, folder, config, "raft", resume=False)
        curve = json.loads((folder / "loss_curve.json").read_text(encoding="utf-8"))
        return {"tokens_per_second": result.tokens_per_second, "seconds": result.seconds,
                "tokens": result.train_tokens, "precision": result.precision, "loss": curve}  # fmt: skip
    return stock_trl(rows, config, folder)


def stock_trl(rows: list[dict], config: object, folder: Path) -> dict:
    """trl's SFTTrainer with its own collator and loss, fp32 and random batches."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from repolm.training.finetune import _load_base

    model, tokenizer = _load_base(dataclasses.replace(config, precision="fp32"))
    args = SFTConfig(
        output_dir=str(folder), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=1, learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine", logging_steps=1, save_strategy="no", report_to=[], seed=config.seed,
        max_length=config.max_length, completion_only_loss=True, use_cpu=True,
        include_num_input_tokens_seen="non_padding", disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM",
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=lora,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    curve = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    return {"tokens_per_second": round(tokens / seconds, 1), "seconds": round(seconds, 2), "tokens": tokens,
            "precision": "fp32", "loss": curve}  # fmt: skip


def plot(runs: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for arm, results in runs.items():
        points = results[0]["loss"]
        rate = results[0]["tokens_per_second"]
        label = f"{arm} ({rate} tokens/s)"
        axis.plot([p["step"] for p in points], [p["loss"] for p in points], marker=".", label=label)
    axis.set_xlabel("step (same rows, batch 4)")
    axis.set_ylabel("training loss (answer tokens)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--examples", type=int, default=600, help="completion examples in the dataset")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_throughput.json")
    args = parser.parse_args()
    command = " ".join(["python", "bench/bench_train_throughput.py", *sys.argv[1:]])

    rows, dataset = dataset_rows(args.corpus, args.examples)
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    work = HERE / ".cache" / "throughput-runs"
    for round_ in range(args.rounds):
        for arm in ARMS:
            result = train_arm(arm, rows, args.steps, work / f"{arm}-{round_}")
            runs[arm].append(result)
            print(f"round {round_ + 1} {arm}: {result['tokens_per_second']} tokens/s", flush=True)
    stock = [r["tokens_per_second"] for r in runs["stock"]]
    summary = {
        arm: {
            "tokens_per_second": [r["tokens_per_second"] for r in results],
            "over_stock": [round(r["tokens_per_second"] / s, 2) for r, s in zip(results, stock, strict=True)],
            "precision": results[0]["precision"],
        }
        for arm, results in runs.items()
    }
    report = {"command": command, "machine": machine(), "corpus": args.corpus, "dataset": dataset,
              "steps": args.steps, "summary": summary, "runs": runs}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(runs, args.out.with_suffix(".png"))
    for arm, row in summary.items():
        rates, ratios = row["tokens_per_second"], row["over_stock"]
        print(f"{arm:<12} {row['precision']}: {rates} tokens/s, {ratios}x stock")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
