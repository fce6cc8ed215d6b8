"""The loss on answer tokens only, with logits computed only where it is taken.

A RAFT row is a prompt of ~750 tokens before an answer of ~15. The LM head (vocabulary × hidden size)
over every position is a fifth of the forward pass and, for SmolLM2, a 600 MB tensor per batch of four,
for positions whose loss is masked anyway; trl's fused LM head avoids the tensor but still scores every
position off Triton devices. Here rows are padded on the left, so that every row's answer ends at the
batch's last position, and the model computes logits for the last `logits_to_keep` positions only.
Rows whose every token is scored (the plain-LoRA control) keep them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional
from trl import SFTTrainer

IGNORED = -100  # the label of a position that is not scored


@dataclass(frozen=True)
class AnswerCollator:
    """Batches of rows padded on the left, so that every row's scored tokens end at the last position.

    The batch says how many final positions hold every scored token (`logits_to_keep`, one more than the
    longest scored run, since position t predicts token t + 1); only those get logits.
    """

    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rows as trl prepares them: `input_ids`, and `labels` with IGNORED where no loss is taken."""
        width = max(len(row["input_ids"]) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORED, dtype=torch.long)
        scored = 1
        for i, row in enumerate(rows):
            start = width - len(row["input_ids"])
            ids[i, start:] = torch.tensor(row["input_ids"])
            mask[i, start:] = 1
            labels[i, start:] = torch.tensor(row["labels"])
            first = next((at for at, label in enumerate(row["labels"]) if label != IGNORED), width - start)
            scored = max(scored, width - start - first)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            "labels": labels,
            "logits_to_keep": min(width, scored + 1),
        }


class AnswerLossTrainer(SFTTrainer):
    """trl's SFTTrainer with the loss over the kept positions (mean over the scored tokens of all the
    batches of one optimizer step, as `num_items_in_batch` counts them)."""

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        keep = inputs.pop("logits_to_keep")
        labels = inputs.pop("labels")
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits[:, :-1]
        targets = labels[:, labels.shape[1] - keep + 1 :]
        total = functional.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORED, reduction="sum"
        )
        count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORED).sum()
        loss = total / torch.as_tensor(count).clamp(min=1)
        return (loss, None) if return_outputs else loss
