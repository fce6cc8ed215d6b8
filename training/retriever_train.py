"""Fine-tuning the retriever: sentence-transformers' trainer, MultipleNegativesRankingLoss, hard negatives.

The model is the embedder the index uses now (the active retriever, or the embedded MiniLM), trained on
`retriever_pairs` and saved as a sentence-transformers folder that `Embedder` loads like any other.
Texts are cut at the embedder's token cap during training as in serving, so the model learns from
exactly the window it will read. Like the generator's fine-tuning, it computes in bf16 autocast where
the hardware has bf16 arithmetic (fp32 master weights; the saved model is fp32).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from repolm.config import Progress

from .finetune import uses_bf16
from .retriever_pairs import Pair


@dataclass(frozen=True)
class RetrieverTrainConfig:
    # On requests (461 pairs): 1 epoch lifted held-out completion acc@5 from 0.30 to 0.36, 3 epochs to
    # 0.38; 2 epochs at twice the rate on 801 pairs (lookahead 2) also reached 0.38. At 5e-5 the model
    # drifted from natural-language questions (acc@5 −0.03, beyond noise); 2e-5 kept the completion gain
    # with questions within noise (bench/NOTES.md, Search).
    epochs: float = 3.0
    max_steps: int = 0  # > 0: stop after this many steps (tests, quick runs)
    batch_size: int = 32  # queries per step; each also brings its positive and hard negative
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    # MultipleNegativesRankingLoss' inverse temperature: 20 is its default, for cosine similarities.
    scale: float = 20.0
    seed: int = 0
    precision: str = "auto"  # auto (bf16 autocast where the hardware computes in bf16) | bf16 | fp32


@dataclass(frozen=True)
class RetrieverTrainResult:
    steps: int
    seconds: float
    final_loss: float  # the last logged loss (the mean over the run when it logged none)
    pairs: int
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train_retriever(
    base: Path,
    pairs: Sequence[Pair],
    out: Path,
    max_tokens: int,
    config: RetrieverTrainConfig | None = None,
    progress: Progress | None = None,
) -> RetrieverTrainResult:
    """Fine-tune the sentence-transformers model at `base` on `pairs` and save it in the folder `out`."""
    if not pairs:
        raise ValueError("no retriever training pairs (is the repository too small?)")
    config = config or RetrieverTrainConfig()
    report = progress or (lambda stage, done, total: None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    started = time.perf_counter()
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    model.max_seq_length = max_tokens
    dataset = Dataset.from_dict(_columns(pairs, config.seed))
    losses: list[float] = []

    class Report(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            report("retriever", state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory(prefix="repolm-retriever-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1: a share of the steps (transformers 5)
            # In-batch negatives must not be copies of a row's own positive: the same definition is the
            # answer of many call sites.
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            logging_steps=5,
            report_to="none",
            seed=config.seed,
            disable_tqdm=True,
            use_cpu=True,
            bf16=uses_bf16(config.precision),
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model, scale=config.scale),
            callbacks=[Report()],
        )
        output = trainer.train()
    model.save(str(out))
    return RetrieverTrainResult(
        steps=int(output.global_step),
        seconds=round(time.perf_counter() - started, 1),
        final_loss=round(losses[-1] if losses else float(output.training_loss), 4),
        pairs=len(pairs),
        config=asdict(config),
    )


def _columns(pairs: Sequence[Pair], seed: int) -> dict[str, list[str]]:
    """anchor / positive / negative columns; a pair without a hard negative gets another pair's
    positive (a random negative), because every row needs the same columns."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    anchors, positives, negatives = [], [], []
    for i in order:
        pair = pairs[i]
        negative = pair.negative
        while not negative and len(pairs) > 1:
            other = pairs[rng.randrange(len(pairs))]
            negative = other.positive if other.positive != pair.positive else ""
        anchors.append(pair.query)
        positives.append(pair.positive)
        negatives.append(negative or pair.positive)
    return {"anchor": anchors, "positive": positives, "negative": negatives}
