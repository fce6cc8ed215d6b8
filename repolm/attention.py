"""Attention for short query blocks on the CPU, registered with transformers as `GROUPED_ATTENTION`.

Decoding feeds one token per forward pass (a few more with a prompt-lookup draft) against a KV cache of
hundreds of tokens. For such shapes torch's CPU SDPA kernel costs about 0.3 ms per layer whatever the
work, while the attention itself is a few thousand multiply-adds. Here the query heads that share a
key/value head are stacked into one matrix, so attention is two small matmuls per key/value head: no
repeated keys, no kernel set-up. Measured in `bench/bench_decode.py`; long query blocks (a prompt's
prefill) still go to SDPA, which is faster there.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

GROUPED_ATTENTION = "repolm_grouped"

# Query lengths up to this take the grouped path; at 64 queries against 800 keys SDPA was already as
# fast (0.26 vs 0.37 ms at 16, 1.26 vs 1.16 ms at 64, measured on the 2-core CPU).
MAX_GROUPED_QUERIES = 32

# Keyword arguments some architectures pass that the grouped path does not implement.
_UNSUPPORTED = ("softcap", "position_bias", "s_aux", "sinks")


def grouped_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (batch, heads, queries, dim)
    key: torch.Tensor,  # (batch, key/value heads, keys, dim), not repeated per query head
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # sdpa_mask's boolean (batch, 1, queries, keys) or None
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    batch, heads, queries, dim = query.shape
    if (
        queries > MAX_GROUPED_QUERIES
        or dropout
        or module.training
        or any(kwargs.get(name) is not None for name in _UNSUPPORTED)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups, keys = key.shape[1], key.shape[2]
    per_group = heads // groups
    # transformers' repeat_kv gives query head h the key/value head h // per_group, so consecutive
    # heads share one: (batch, groups, per_group * queries, dim), rows ordered head-major.
    stacked = query.reshape(batch, groups, per_group * queries, dim)
    scores = torch.matmul(stacked, key.transpose(-1, -2)).float()
    scores *= scaling if scaling is not None else dim**-0.5
    causal = kwargs.get("is_causal")
    causal = causal if causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and queries > 1 and causal:
        # sdpa_mask leaves out a purely causal mask; the queries are the last `queries` positions.
        attention_mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
    if attention_mask is not None:
        mask = attention_mask.expand(batch, 1, queries, keys).repeat(1, 1, per_group, 1)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(weights, value).reshape(batch, heads, queries, dim)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_ATTENTION, grouped_attention)
# Masks as SDPA takes them: None when the pattern is purely causal, boolean otherwise.
ALL_MASK_ATTENTION_FUNCTIONS.register(GROUPED_ATTENTION, sdpa_mask)
