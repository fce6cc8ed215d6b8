"""Int8 weight copies: which passes take them, and how close they stay to the bf16 layer."""

from __future__ import annotations

import torch
from torch import nn

from repolm.int8 import NARROW_ROWS, DualLinear, add_int8_copies, quantized_rows


def small_model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32, bias=False)).to(dtype)


def test_rows_round_trip_within_one_step() -> None:
    weight = torch.randn(5000, 48, dtype=torch.bfloat16)  # more rows than one conversion block
    rows, scales = quantized_rows(weight)
    assert rows.dtype == torch.int8 and scales.shape == (5000,)
    restored = rows.float() * scales.float()[:, None]
    step = scales.float()[:, None]
    # Half a step of rounding, plus the scale's own bf16 rounding (2^-8 relative) over 127 steps.
    assert ((restored - weight.float()).abs() <= step).all()
    assert (rows.abs().amax(dim=1) == 127).all()  # each row uses its whole range


def test_narrow_passes_take_the_copies_only_while_switched_on() -> None:
    model = small_model(torch.bfloat16)
    plain = small_model(torch.bfloat16)
    switch = add_int8_copies(model)
    assert switch is not None and not switch.enabled
    assert sum(isinstance(m, DualLinear) for m in model.modules()) == 2
    narrow = torch.randn(1, NARROW_ROWS, 64, dtype=torch.bfloat16)
    wide = torch.randn(1, NARROW_ROWS + 1, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(model(narrow), plain(narrow))  # switched off: the bf16 weights
        with switch.on():
            quantized = model(narrow)
            assert torch.equal(model(wide), plain(wide))  # too wide for the int8 kernel
        assert not switch.enabled
        expected = plain(narrow).float()
    assert not torch.equal(quantized.float(), expected)
    assert torch.allclose(quantized.float(), expected, atol=0.05, rtol=0.05)


def test_fp32_models_are_left_alone() -> None:
    model = small_model(torch.float32)
    assert add_int8_copies(model) is None
    assert not any(isinstance(m, DualLinear) for m in model.modules())
