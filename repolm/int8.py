"""Weight-only int8 copies of a model's linear layers, for narrow decoding passes on the CPU.

A decoding pass over one to a few tokens is bound by reading the weights, and torch's weight-only
int8 kernel (`_weight_int8pack_mm`) reads half the bytes of bf16. It loses to bf16 from about five rows
on, so prefill and wide draft passes keep the bf16 weights: each layer keeps both, and a switch shared
by the model's layers says whether narrow passes may take the int8 copy. Generation turns it on with
drafts cut to fit (see `repolm.model.generate`), so every pass of one generation after its first
takes the same rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

# Rows (tokens) a pass may have and still take the int8 kernel, which beats bf16 on narrow passes only.
NARROW_ROWS = 4


@dataclass
class Int8Switch:
    """Whether narrow passes use the int8 copies; shared by every layer of one model."""

    enabled: bool = False

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        previous, self.enabled = self.enabled, True
        try:
            yield
        finally:
            self.enabled = previous


def supported(model: nn.Module) -> bool:
    """The kernel exists for bf16 activations on the CPU; elsewhere (CUDA, fp32) nothing is converted."""
    parameter = next(model.parameters())
    return parameter.device.type == "cpu" and parameter.dtype == torch.bfloat16


def quantized_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row and the bf16 scales that undo it."""
    scales = weight.detach().abs().amax(dim=1).float().clamp(min=1e-12) / 127
    rows = torch.empty(weight.shape, dtype=torch.int8)
    # One block of rows at a time: an fp32 copy of a whole large matrix (the tied embedding) is not needed.
    for start in range(0, weight.shape[0], 4096):
        block = weight[start : start + 4096].detach().float() / scales[start : start + 4096, None]
        rows[start : start + 4096] = block.round_().clamp_(-127, 127).to(torch.int8)
    return rows, scales.to(weight.dtype)


class DualLinear(nn.Module):
    """A linear layer with its bf16 weights and an int8 copy; `switch` picks per pass."""

    def __init__(self, linear: nn.Linear, switch: Int8Switch) -> None:
        super().__init__()
        self.linear = linear
        self.switch = switch
        rows, scales = quantized_rows(linear.weight)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("scales", scales, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.numel() // x.shape[-1]
        if not self.switch.enabled or tokens > NARROW_ROWS:
            return self.linear(x)
        flat = torch.ops.aten._weight_int8pack_mm(x.reshape(tokens, -1).contiguous(), self.rows, self.scales)
        if self.linear.bias is not None:
            flat = flat + self.linear.bias
        return flat.reshape(*x.shape[:-1], -1)


def add_int8_copies(model: nn.Module) -> Int8Switch | None:
    """Give every linear layer of `model` an int8 copy; None (model untouched) where unsupported."""
    if not supported(model):
        return None
    switch = Int8Switch()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, DualLinear(child, switch))
    return switch
