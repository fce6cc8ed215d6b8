"""The grouped CPU attention against transformers' SDPA path, on the real embedded SmolLM2-135M."""

from __future__ import annotations

import itertools

import pytest
import torch

from repolm.attention import GROUPED_ATTENTION, MAX_GROUPED_QUERIES, kv_cache
from repolm.model import LoadedModel, load_model


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    # fp32, so that the two paths agree to rounding rather than to bf16's three digits
    return load_model(device="cpu", dtype=torch.float32)


def passes(loaded: LoadedModel, attention: str, blocks: list[list[int]]) -> list[torch.Tensor]:
    """Logits of each block fed in turn through one KV cache: a prefill, then decoding-sized passes."""
    loaded.model.set_attn_implementation(attention)
    cache = kv_cache(loaded.model)
    with torch.inference_mode():
        return [
            loaded.model(input_ids=torch.tensor([block]), past_key_values=cache, use_cache=True).logits[0]
            for block in blocks
        ]


@pytest.mark.parametrize(
    "sizes",
    [
        [12, 1, 7],  # a short prompt takes the grouped path uncached, then a token and a draft block
        [MAX_GROUPED_QUERIES + 40, 1, 7],  # a longer prompt goes to SDPA
        [10, 250, 1, 7],  # the fp32 cache's first buffer (256 tokens) grows during the second block
    ],
)
def test_grouped_attention_matches_sdpa(loaded: LoadedModel, sizes: list[int]) -> None:
    text = "def add(first, second):\n    return first + second\n\n\nclass Counter:\n    count = 0\n" * 16
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) >= sum(sizes)
    ends = list(itertools.accumulate(sizes))
    blocks = [ids[end - size : end] for size, end in zip(sizes, ends, strict=True)]
    try:
        reference = passes(loaded, "sdpa", blocks)
        grouped = passes(loaded, GROUPED_ATTENTION, blocks)
    finally:
        loaded.model.set_attn_implementation(GROUPED_ATTENTION)
    for expected, actual in zip(reference, grouped, strict=True):
        assert torch.equal(expected.argmax(-1), actual.argmax(-1))
        torch.testing.assert_close(actual, expected, atol=2e-3, rtol=1e-4)


def test_cpu_models_load_with_grouped_attention_and_an_fp32_cache() -> None:
    bf16 = load_model(device="cpu", dtype=torch.bfloat16)
    assert bf16.model.config._attn_implementation == GROUPED_ATTENTION
    cache = kv_cache(bf16.model)
    with torch.inference_mode():
        bf16.model(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=cache, use_cache=True)
    assert all(layer.keys.dtype == torch.float32 for layer in cache.layers)
    assert cache.get_seq_length() == 3
