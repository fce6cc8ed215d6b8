"""LoRA fine-tuning with trl's SFTTrainer: RAFT examples (loss on the answer only) or the plain-LoRA control.

The RAFT dataset's rows hold the exact prompt text `build_prompt` produced and the completion to append
(`prompt.healed` + answer). They are tokenized here the way the server tokenizes (no special tokens
added), the prompt's ids first and the completion's after them, with a `completion_mask` marking the
completion: only its tokens are scored.

The plain-LoRA control trains on the training split's files as plain next-token text, without retrieved
context: the usual domain fine-tuning that the evaluation compares RAFT against.

Throughput: bf16 autocast wherever the hardware computes in bf16 (GPUs, and CPUs with AVX512-BF16 or
AMX), batches of rows of similar length, and logits only where the loss is taken (`answer_loss.py`).
GPU: gradient checkpointing and a 4-bit base when bitsandbytes is installed. Several GPUs: run this
module under `accelerate launch` (see docs/RAFT_DATASET.md). An interrupted run resumes from its last
checkpoint; the loss curve lands in the adapter folder as `loss_curve.json` and `loss_curve.png`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import TrainerCallback

from repolm.model import resolve_base
from repolm.prompt import encode_prompt, path_header

from .raft_dataset import read_jsonl
from .raft_examples import RaftConfig

CHECKPOINTS = "checkpoints"
RESULT_FILE = "train_result.json"


@dataclass(frozen=True)
class TrainConfig:
    """LoRA and trainer settings. The defaults are the `full` profile's; `quick` shrinks them."""

    base: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    max_steps: int = 300
    batch_size: int = 4
    gradient_accumulation: int = 2
    learning_rate: float = 2e-4
    warmup_steps: int = 10
    max_length: int = 1024  # prompt budget + answer; longer rows are dropped, never cut
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    save_steps: int = 50
    # Training stops after this many minutes even short of max_steps (None: no limit), so a profile's
    # promise holds on a slower or busier machine than the one its steps were sized on.
    max_minutes: float | None = None
    logging_steps: int = 5
    seed: int = 0
    precision: str = "auto"  # auto (bf16 where the hardware has it, else fp32) | bf16 | fp32
    gradient_checkpointing: bool = True  # GPU only: memory for longer sequences
    load_in_4bit: bool = True  # GPU only, and only when bitsandbytes is installed
    progress: bool = True  # tqdm bars


@dataclass(frozen=True)
class Profile:
    raft: RaftConfig
    train: TrainConfig
    eval_limit: int  # held-out completion targets the retrain gate scores


# quick: minutes on a 2-core CPU (CI, a first look); standard: what a nightly `repolm retrain` runs on a
# CPU, at most 45 minutes of training on 2 cores (docs/PERFORMANCE.md, Training); full: a GPU.
PROFILES: dict[str, Profile] = {
    "quick": Profile(
        RaftConfig(completion_examples=160, explain_examples=40, plan_examples=40),
        TrainConfig(max_steps=40, batch_size=4, gradient_accumulation=1, lora_r=8, save_steps=20),
        eval_limit=40,
    ),
    "standard": Profile(
        RaftConfig(completion_examples=1200, explain_examples=100, plan_examples=100),
        TrainConfig(max_steps=160, batch_size=4, gradient_accumulation=1, save_steps=40, max_minutes=45),
        eval_limit=150,
    ),
    "full": Profile(RaftConfig(), TrainConfig(), eval_limit=300),
}


def profile(name: str) -> Profile:
    """A profile by name; `auto` is `full` where a GPU is present, else `standard`."""
    if name == "auto":
        name = "full" if _has_cuda() else "standard"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from auto, {', '.join(PROFILES)}")
    return PROFILES[name]


@dataclass
class TrainResult:
    adapter_dir: str
    mode: str  # raft | plain
    steps: int
    resumed_from_step: int  # 0 for a fresh run
    train_tokens: int
    seconds: float
    tokens_per_second: float
    final_loss: float | None
    rows: int
    dropped_rows: int  # longer than max_length
    device: str
    precision: str  # what the run computed in: bf16 (autocast) or fp32
    stopped_by_time: bool  # max_minutes ran out before max_steps
    # How `accelerate launch` ran it: accelerate's distributed type (NO, MULTI_CPU, MULTI_GPU, FSDP,
    # DEEPSPEED), the processes, and whether each held only a shard of the parameters.
    distributed: str = "NO"
    processes: int = 1
    sharded: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Rows → token ids


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def raft_rows(examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[dict], int]:
    """input_ids = prompt ids + completion ids; completion_mask marks the completion. (rows, dropped)"""
    rows, dropped = [], 0
    for example in examples:
        prompt = encode_prompt(tokenizer, example["prompt"])
        completion = encode(tokenizer, example["completion"])
        if len(prompt) + len(completion) > max_length or not completion:
            dropped += 1
            continue
        rows.append(
            {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}
        )
    return rows, dropped


def plain_rows(texts: Sequence[tuple[str, str]], tokenizer: Any, max_length: int) -> list[dict]:
    """Windows of `max_length` tokens over each file, under the same `# Path:` header the prompt uses."""
    rows = []
    for path, text in texts:
        ids = encode_prompt(tokenizer, f"{path_header(path)}{text}")
        for start in range(0, len(ids), max_length):
            window = ids[start : start + max_length]
            if len(window) >= 16:  # a file's last few tokens teach nothing on their own
                rows.append({"input_ids": window, "completion_mask": [1] * len(window)})
    return rows


def plain_texts(root: Path, paths: Sequence[str]) -> list[tuple[str, str]]:
    """The training files' text, redacted as the index redacts it."""
    from .eval_targets import read_redacted

    found = []
    for path in paths:
        text = read_redacted(root, path)
        if text:
            found.append((path, text))
    return found


# ---------------------------------------------------------------------------------------------------------
# Training


def _has_cuda() -> bool:
    return torch.cuda.is_available()


def uses_bf16(precision: str) -> bool:
    """Whether training computes in bf16: asked for, or `auto` on hardware with bf16 arithmetic (where
    fp32 would waste it; elsewhere bf16 would only be emulated)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if _has_cuda():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(
        getattr(cpu, check, lambda: False)()
        for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


def _load_base(config: TrainConfig) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_base(config.base)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if _has_cuda():
        kwargs["dtype"] = torch.bfloat16
        if config.load_in_4bit and importlib.util.find_spec("bitsandbytes") is not None:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            )
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if getattr(model.config, "quantization_config", None) is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, config.gradient_checkpointing)
    return model, tokenizer


def _sft_config(config: TrainConfig, checkpoints: Path) -> Any:
    from trl import SFTConfig

    gpu = _has_cuda()
    bf16 = uses_bf16(config.precision)
    return SFTConfig(
        output_dir=str(checkpoints),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine",
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to=[],
        max_length=config.max_length,
        completion_only_loss=True,
        # Rows of similar length share a batch: little padding, without packing's cross-row attention.
        train_sampling_strategy="group_by_length",
        bf16=bf16,
        use_cpu=not gpu,
        gradient_checkpointing=gpu and config.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
    )


class TimeBudget(TrainerCallback):
    """Ends training, saving a checkpoint, once `minutes` have passed since this run began."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.started = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if time.monotonic() - self.started >= self.seconds:
            control.should_training_stop = True
            control.should_save = True


def last_checkpoint(checkpoints: Path) -> Path | None:
    found = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def train_rows(
    rows: list[dict], adapter_dir: Path, config: TrainConfig, mode: str, dropped: int = 0, resume: bool = True
) -> TrainResult:
    """Train a LoRA adapter on tokenized rows and save it (PEFT format) in `adapter_dir`.

    Checkpoints go to `adapter_dir/checkpoints`; with `resume`, a run finds the last one and continues.
    """
    from datasets import Dataset
    from peft import LoraConfig

    from .answer_loss import AnswerCollator, AnswerLossTrainer

    if not rows:
        raise ValueError("no training rows: the dataset is empty or every row is longer than max_length")
    adapter_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = adapter_dir / CHECKPOINTS
    model, tokenizer = _load_base(config)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    trainer = AnswerLossTrainer(
        model=model,
        args=_sft_config(config, checkpoints),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        data_collator=AnswerCollator(tokenizer.pad_token_id),
        callbacks=[TimeBudget(config.max_minutes)] if config.max_minutes else None,
    )
    start_from = last_checkpoint(checkpoints) if resume else None
    resumed_step = int(start_from.name.split("-")[-1]) if start_from else 0
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(start_from) if start_from else None)
    seconds = time.perf_counter() - started
    trainer.save_model(str(adapter_dir))
    tokens = int(trainer.state.num_input_tokens_seen)
    new_tokens = tokens - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    history = [e for e in trainer.state.log_history if "loss" in e]
    result = TrainResult(
        adapter_dir=str(adapter_dir),
        mode=mode,
        steps=int(output.global_step),
        resumed_from_step=resumed_step,
        train_tokens=tokens,
        seconds=round(seconds, 2),
        tokens_per_second=round(new_tokens / seconds, 1) if seconds > 0 else 0.0,
        final_loss=history[-1]["loss"] if history else None,
        rows=len(rows),
        dropped_rows=dropped,
        device="cuda" if _has_cuda() else "cpu",
        precision="bf16" if uses_bf16(config.precision) else "fp32",
        stopped_by_time=int(output.global_step) < config.max_steps,
        distributed=str(trainer.accelerator.distributed_type.value),
        processes=trainer.accelerator.num_processes,
        sharded=_sharded(trainer.model_wrapped),
        config=dataclasses.asdict(config),
    )
    if trainer.is_world_process_zero():  # one writer; the others trained the same adapter
        write_loss_curve(history, adapter_dir)
        (adapter_dir / RESULT_FILE).write_text(
            json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8"
        )
    return result


def _sharded(model: Any) -> bool:
    """Whether the parameters are FSDP2 shards (DTensors): each process holds a slice of each weight."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(parameter, DTensor) for parameter in model.parameters())


def write_loss_curve(history: Sequence[dict[str, Any]], folder: Path) -> None:
    """`loss_curve.json` (step, loss, learning rate) and a PNG of it, when matplotlib is installed."""
    points = [
        {"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")} for e in history
    ]
    (folder / "loss_curve.json").write_text(json.dumps(points, indent=2) + "\n", encoding="utf-8")
    if importlib.util.find_spec("matplotlib") is None or not points:
        return
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o", markersize=3)
    axis.set_xlabel("step")
    axis.set_ylabel("training loss (answer tokens)")
    axis.set_title(folder.name)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(folder / "loss_curve.png", dpi=100)
    plt.close(figure)


def train_raft(dataset: Path, adapter_dir: Path, config: TrainConfig, resume: bool = True) -> TrainResult:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(config.base), local_files_only=True)
    rows, dropped = raft_rows(read_jsonl(dataset), tokenizer, config.max_length)
    return train_rows(rows, adapter_dir, config, "raft", dropped, resume)


def train_plain(
    root: Path, paths: Sequence[str], adapter_dir: Path, config: TrainConfig, resume: bool = True
) -> TrainResult:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(config.base), local_files_only=True)
    rows = plain_rows(plain_texts(root, paths), tokenizer, config.max_length)
    return train_rows(rows, adapter_dir, config, "plain", 0, resume)


# ---------------------------------------------------------------------------------------------------------
# `python -m repolm.training.finetune`: the entry point `accelerate launch` runs


JOB_FILE = "job.json"  # what `repolm train` hands a launched training step


class LaunchError(RuntimeError):
    """The launcher, or a training process it started, failed."""


def write_job(
    output: Path,
    config: TrainConfig,
    dataset: Path | None = None,
    root: Path | None = None,
    paths: Sequence[str] = (),
) -> Path:
    """The training step as a file the launched processes read: RAFT on `dataset`, or the plain control
    on `paths` under `root`."""
    job = {"output": str(output), "config": dataclasses.asdict(config)}
    job |= {"dataset": str(dataset)} if dataset else {"root": str(root), "paths": list(paths)}
    output.mkdir(parents=True, exist_ok=True)
    (output / JOB_FILE).write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
    return output / JOB_FILE


def run_job(job_file: Path) -> TrainResult:
    """Run a job `write_job` wrote, in this process (or in each process a launcher started)."""
    job = json.loads(job_file.read_text(encoding="utf-8"))
    values = job["config"]
    config = TrainConfig(**{**values, "target_modules": tuple(values["target_modules"])})
    if "dataset" in job:
        return train_raft(Path(job["dataset"]), Path(job["output"]), config)
    return train_plain(Path(job["root"]), job["paths"], Path(job["output"]), config)


def launched(job_file: Path, launch: str) -> TrainResult:
    """Run a job under a launcher command line (`accelerate launch --config_file ...`, `torchrun ...`),
    which starts the processes; the result the first of them wrote. Their output goes to standard error
    (standard output may carry `--json`); a failed launch raises LaunchError with the end of it."""
    command = [*shlex.split(launch), "-m", "repolm.training.finetune", "--job", str(job_file)]
    tail: collections.deque[str] = collections.deque(maxlen=15)
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            for line in process.stdout or ():
                sys.stderr.write(line)
                tail.append(line.rstrip())
    except OSError as error:
        raise LaunchError(f"training under `{launch}` could not start: {error}") from error
    if process.returncode != 0:
        output = "\n".join(tail)
        raise LaunchError(f"training under `{launch}` failed (exit {process.returncode}):\n{output}")
    values = json.loads((job_file.parent / RESULT_FILE).read_text(encoding="utf-8"))
    return TrainResult(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a RAFT LoRA adapter from a dataset JSONL.")
    parser.add_argument("--job", type=Path, help="a job file `repolm train` wrote (replaces the rest)")
    parser.add_argument("--dataset", type=Path, help="RAFT dataset (JSONL)")
    parser.add_argument("--output", type=Path, help="adapter folder")
    parser.add_argument("--profile", default="auto", choices=("auto", *PROFILES))
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--save-steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--base", help="a local Hugging Face model folder (default: the embedded model)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="default: auto")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    args = parser.parse_args(argv)
    if args.job:
        print(json.dumps(run_job(args.job).to_json()))
        return 0
    if args.dataset is None or args.output is None:
        parser.error("--dataset and --output are required (or --job)")
    overrides = {
        "max_steps": args.max_steps,
        "save_steps": args.save_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "base": args.base,
        "precision": args.precision,
    }
    config = dataclasses.replace(
        profile(args.profile).train, **{k: v for k, v in overrides.items() if v is not None}
    )
    result = train_raft(args.dataset, args.output, config, resume=not args.no_resume)
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
