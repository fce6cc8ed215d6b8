"""Attention for short query blocks on the CPU, registered with transformers as `GROUPED_ATTENTION`.

Decoding feeds one token per forward pass (a few more with a prompt-lookup draft) against a KV cache of
hundreds of tokens. For one token, about a million multiply-adds per layer, torch's CPU SDPA kernel
spends most of its time repeating keys and setting itself up. Here the query heads that share a
key/value head are stacked into one matrix, so attention is two small matmuls per key/value head: no
repeated keys, no kernel set-up. Long query blocks (a prompt's prefill) still go to SDPA, which is faster
there (docs/PERFORMANCE.md, Language server).

The grouped matmuls run in fp32 on a KV cache kept in fp32 (`kv_cache`). In bf16 they go through
oneDNN, which compiles a kernel for every new key length (a few milliseconds, and decoding meets a new
length on every pass) and keeps each, about 1.3 MB, in its cache, so the server's memory grows with
every length it meets. fp32 matmuls use fixed BLAS kernels, and keys are
converted once, when cached, rather than on every pass.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

GROUPED_ATTENTION = "repolm_grouped"

# Query lengths up to this take the grouped path (a pass with a draft of 8 is 9); for longer blocks SDPA
# is the faster (docs/PERFORMANCE.md, Language server).
MAX_GROUPED_QUERIES = 16

# KV cache buffers hold a whole number of steps with room for this many more tokens (a completion or
# an explanation decodes at most 96). Several prompts' caches are kept (repolm.model's _PromptCaches):
# a full 768-token prompt's buffers hold 1,024 tokens where twice its length held 1,536, and sizes from
# a few steps let the allocator reuse a dropped cache's memory for the next one.
HEADROOM_TOKENS = 128
BUFFER_STEP_TOKENS = 256

# Keyword arguments some architectures pass that the grouped path does not implement.
_UNSUPPORTED = ("softcap", "position_bias", "s_aux", "sinks")


def grouped_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (batch, heads, queries, dim)
    key: torch.Tensor,  # (batch, key/value heads, keys, dim), not repeated per query head; fp32 when
    value: torch.Tensor,  # they come from `kv_cache`
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
        key, value = key.to(query.dtype), value.to(query.dtype)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups, keys = key.shape[1], key.shape[2]
    per_group = heads // groups
    # transformers' repeat_kv gives query head h the key/value head h // per_group, so consecutive
    # heads share one: (batch, groups, per_group * queries, dim), rows ordered head-major.
    stacked = query.reshape(batch, groups, per_group * queries, dim).float()
    scores = torch.matmul(stacked, key.float().transpose(-1, -2))
    scores *= scaling if scaling is not None else dim**-0.5
    causal = kwargs.get("is_causal")
    causal = causal if causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and queries > 1 and causal:
        # sdpa_mask leaves out a purely causal mask; the queries are the last `queries` positions.
        attention_mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
    if attention_mask is not None:
        mask = attention_mask.expand(batch, 1, queries, keys).repeat(1, 1, per_group, 1)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1)
    output = torch.matmul(weights, value.float()).reshape(batch, heads, queries, dim)
    return output.transpose(1, 2).to(query.dtype).contiguous(), None


class Float32Layer(DynamicLayer):
    """A KV cache layer kept in fp32 (bf16 converts to fp32 exactly), in buffers with room to grow.

    transformers' `DynamicLayer` concatenates: every pass copies the whole cache into a fresh tensor,
    and a fresh tensor that size is fresh memory, faulted in page by page. Here a pass writes only its
    own tokens into buffers with room for at least `HEADROOM_TOKENS` more. `keys` and `values` are
    views of the filled part, so `crop` (which slices them) needs no change.
    """

    _buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:  # it reads only dtype and device: empty slices spare a copy
            self.lazy_initialization(key_states[..., :0, :].float(), value_states[..., :0, :].float())
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self._buffers is None or end > self._buffers[0].shape[-2]:
            keys = self._grown(self.keys, key_states, end)
            self._buffers = keys, self._grown(self.values, value_states, end)
        key_buffer, value_buffer = self._buffers
        key_buffer[:, :, start:end].copy_(key_states)
        value_buffer[:, :, start:end].copy_(value_states)
        self.keys, self.values = key_buffer[:, :, :end], value_buffer[:, :, :end]
        return self.keys, self.values

    @staticmethod
    def _grown(filled: torch.Tensor, new: torch.Tensor, needed: int) -> torch.Tensor:
        batch, heads, _, dim = new.shape
        tokens = -(-(needed + HEADROOM_TOKENS) // BUFFER_STEP_TOKENS) * BUFFER_STEP_TOKENS
        buffer = new.new_empty(batch, heads, tokens, dim, dtype=torch.float32)
        if filled.numel():
            buffer[:, :, : filled.shape[-2]].copy_(filled)
        return buffer


def kv_cache(model: torch.nn.Module) -> Cache:
    """An empty KV cache in the layout `model`'s attention reads fastest."""
    if model.config._attn_implementation == GROUPED_ATTENTION:
        return Cache(layer_class_to_replicate=Float32Layer)
    return DynamicCache()


AttentionInterface.register(GROUPED_ATTENTION, grouped_attention)
# Masks as SDPA takes them: None when the pattern is purely causal, boolean otherwise.
ALL_MASK_ATTENTION_FUNCTIONS.register(GROUPED_ATTENTION, sdpa_mask)
