"""The model runtime against the real embedded SmolLM2-135M (converted once into the cache)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from repolm.int8 import NARROW_ROWS, DualLinear
from repolm.model import (
    DEFAULT_BASE,
    LoadedModel,
    StopRules,
    build_once,
    count_tokens,
    default_model_dir,
    generate,
    inference_dtype,
    load_gguf,
    load_model,
    score_continuations,
)
from repolm.vocab import vocab_of

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n"


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load_model(device="cpu")


def logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits


def transformers_greedy(loaded: LoadedModel, ids: list[int], new_tokens: int) -> list[int]:
    """What `transformers`' own greedy `generate` produces after `ids`: the reference for our loop."""
    with torch.inference_mode():
        output = loaded.model.generate(
            torch.tensor([ids]),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.eos_token_id,
        )
    return output[0, len(ids) :].tolist()


def test_converted_cache_matches_gguf() -> None:
    gguf_model, gguf_tokenizer = load_gguf()
    converted = load_model(device="cpu", dtype=torch.float32)  # the folder holds fp32, as GGUF dequantizes
    converted.model.set_attn_implementation("sdpa")  # the GGUF model's: only the weights are compared
    ids = gguf_tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    assert converted.tokenizer(PROMPT, add_special_tokens=False)["input_ids"] == ids
    assert torch.equal(logits(gguf_model, ids), logits(converted.model, ids))
    config = json.loads((default_model_dir() / "config.json").read_text())
    assert "quantization_config" not in config


def test_build_once_is_atomic_and_runs_once(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def failing(tmp: Path) -> None:
        (tmp / "half.bin").write_text("partial")
        raise RuntimeError("killed mid-conversion")

    with pytest.raises(RuntimeError):
        build_once(target, failing)
    assert not target.exists()
    assert not list(tmp_path.glob(".model.tmp-*"))

    calls: list[int] = []
    entered = threading.Event()

    def slow(tmp: Path) -> None:
        calls.append(1)
        entered.set()
        threading.Event().wait(0.2)  # the second caller arrives while this one holds the lock
        (tmp / "config.json").write_text("{}")

    first = threading.Thread(target=build_once, args=(target, slow))
    first.start()
    entered.wait()
    assert build_once(target, slow) == target
    first.join()
    assert calls == [1]
    assert (target / "config.json").read_text() == "{}"


def test_load_model_identifiers_and_dtype(loaded: LoadedModel) -> None:
    assert loaded.base == DEFAULT_BASE
    assert loaded.adapter is None
    assert loaded.device == torch.device("cpu")
    assert next(loaded.model.parameters()).dtype == inference_dtype(torch.device("cpu"))
    native_bf16 = torch.cpu._is_avx512_bf16_supported()
    assert inference_dtype(torch.device("cpu")) == (torch.bfloat16 if native_bf16 else torch.float32)
    assert inference_dtype(torch.device("cuda")) == torch.bfloat16


def test_local_folder_works_as_base() -> None:
    folder = str(default_model_dir())
    other = load_model(base=folder, device="cpu")
    assert other.base == folder
    assert generate(other, PROMPT, max_new_tokens=4).tokens


def test_missing_folder_is_refused_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(base=str(tmp_path / "nowhere"))


def test_greedy_loop_matches_transformers_generate(loaded: LoadedModel) -> None:
    ids = loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    reference = transformers_greedy(loaded, ids, 12)
    result = generate(loaded, ids, max_new_tokens=12)
    assert result.tokens == reference
    assert result.finish_reason == "length"
    assert result.text == loaded.tokenizer.decode(reference)


def test_trie_scores_are_each_continuations_own_likelihood() -> None:
    """One pass over the continuations' token trie scores each as a pass over prompt + it alone would;
    the prompt's cache is reused and left as it was, so scoring twice gives the same scores."""
    exact = load_model(device="cpu", dtype=torch.float32)
    tokenizer = exact.tokenizer
    ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    texts = ["    return fib", "    return fibonacci(n - 1)", "    return n", "    pass", "\n"]
    continuations = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    continuations.append(continuations[0][:1])  # a continuation that is a prefix of another

    def alone(continuation: list[int]) -> float:  # one plain forward pass, no cache
        scores = torch.log_softmax(logits(exact.model, ids + continuation)[0].float(), dim=-1)
        return sum(float(scores[len(ids) - 1 + i, token]) for i, token in enumerate(continuation))

    expected = [alone(continuation) for continuation in continuations]
    scores = score_continuations(exact, ids, continuations)
    assert [len(tokens) for tokens in scores] == [len(continuation) for continuation in continuations]
    assert [sum(tokens) for tokens in scores] == pytest.approx(expected, abs=1e-3)
    assert scores[-1] == pytest.approx(scores[0][:1], abs=1e-4)  # a shared prefix is one trie node
    assert exact._prompt_caches.entries[-1].ids == ids
    again = score_continuations(exact, ids, continuations)
    assert [sum(tokens) for tokens in again] == pytest.approx(expected, abs=1e-3)
    assert score_continuations(exact, ids, []) == []


def test_prompt_cache_reuses_common_prefix(loaded: LoadedModel) -> None:
    loaded._prompt_caches.clear()
    first = generate(loaded, PROMPT, max_new_tokens=3)
    assert first.prefill_tokens == count_tokens(loaded.tokenizer, PROMPT)
    longer = PROMPT + "    return fibonacci(n - 1) +"
    warm = generate(loaded, longer, max_new_tokens=6)
    total = count_tokens(loaded.tokenizer, longer)
    assert warm.prefill_tokens <= total - count_tokens(loaded.tokenizer, PROMPT) + 1
    loaded._prompt_caches.clear()
    cold = generate(loaded, longer, max_new_tokens=6)
    assert cold.prefill_tokens == total
    assert cold.tokens == warm.tokens


HELPERS = (
    "def parse_price(text):\n    amount, currency = text.split()\n    return float(amount), currency\n\n\n"
    "def format_price(amount, currency):\n    return f'{amount:.2f} {currency}'\n\n\n"
    "def total(prices):\n"
)


def test_a_prompt_comes_back_to_its_cache_after_other_prompts(loaded: LoadedModel) -> None:
    elsewhere = "# Path: notes.md\nA hover's explanation, or a completion in another file, runs in between."
    total_tokens = count_tokens(loaded.tokenizer, HELPERS + "    amounts")
    back = {}
    for kept in (3, 1):
        loaded._prompt_caches.clear()
        generate(loaded, HELPERS, max_new_tokens=4, prompt_caches=kept)
        # Shares "def " and little else: too little to take (and crop) the first prompt's cache.
        generate(loaded, "def " + elsewhere, max_new_tokens=4, prompt_caches=kept)
        back[kept] = generate(loaded, HELPERS + "    amounts", max_new_tokens=4, prompt_caches=kept)
    assert back[3].prefill_tokens <= total_tokens - count_tokens(loaded.tokenizer, HELPERS) + 1
    assert back[1].prefill_tokens == total_tokens  # one cache: the other prompt took its place
    assert back[3].tokens == back[1].tokens


def test_single_line_stop(loaded: LoadedModel) -> None:
    result = generate(loaded, "import os\nimport sys\nimport", 24, StopRules(single_line=True))
    assert result.finish_reason == "stop"
    assert result.text.strip() and "\n" not in result.text


@contextmanager
def counted_passes(model: torch.nn.Module) -> Iterator[list[int]]:
    """Counts forward passes of `model` (a list holding one number) while the block runs."""
    passes = [0]

    def count(*_: object) -> None:
        passes[0] += 1

    handle = model.register_forward_hook(count)
    try:
        yield passes
    finally:
        handle.remove()


def test_prompt_lookup_drafts_keep_greedy_output_in_fewer_passes(loaded: LoadedModel) -> None:
    # Code that repeats its context: the rest of the list can be drafted from its first occurrence.
    prompt = "COLUMNS = ['name', 'email', 'created_at', 'updated_at', 'owner_id']\n\n\ndef header():\n"
    prompt += "    return ['name', 'email',"
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reference = transformers_greedy(loaded, ids, 16)
    loaded._prompt_caches.clear()
    with counted_passes(loaded.model) as passes:
        result = generate(loaded, ids, max_new_tokens=16, draft_tokens=8)
    assert result.tokens == reference
    assert passes[0] < len(result.tokens)  # some tokens came from accepted drafts
    # The prompt cache holds exactly the tokens it says it does: a continuation reusing it decodes
    # what one computed from scratch does.
    continued = ids + result.tokens[:-1]
    warm = generate(loaded, continued, max_new_tokens=4, draft_tokens=8)
    assert warm.prefill_tokens <= 2
    loaded._prompt_caches.clear()
    assert generate(loaded, continued, max_new_tokens=4, draft_tokens=8).tokens == warm.tokens


def test_typing_the_suggestion_is_verified_in_one_pass(loaded: LoadedModel) -> None:
    ids = loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    loaded._prompt_caches.clear()
    suggestion = generate(loaded, ids, max_new_tokens=10, draft_tokens=8).tokens
    # The user types the suggestion's first two tokens: the rest of it is drafted in the first pass.
    typed = ids + suggestion[:2]
    with counted_passes(loaded.model) as passes:
        rest = generate(loaded, typed, max_new_tokens=8, draft_tokens=8)
    assert rest.tokens == transformers_greedy(loaded, typed, 8) == suggestion[2:]
    assert passes[0] == 1
    # Typing something else: the stale continuation is no draft, the output is still plain greedy.
    other = ids + loaded.tokenizer(" pass", add_special_tokens=False)["input_ids"]
    assert generate(loaded, other, max_new_tokens=6, draft_tokens=8).tokens == transformers_greedy(
        loaded, other, 6
    )


def test_cancellation_is_checked_before_every_pass(loaded: LoadedModel) -> None:
    event = threading.Event()
    event.set()
    assert generate(loaded, PROMPT, 8, cancel=event).finish_reason == "cancelled"
    checks = iter(range(100))
    with counted_passes(loaded.model) as passes:
        result = generate(loaded, PROMPT, 20, cancel=lambda: next(checks) >= 3, draft_tokens=8)
    assert result.finish_reason == "cancelled"
    assert passes[0] == 3
    assert 3 <= len(result.tokens) < 20


def test_healed_text_is_reproduced(loaded: LoadedModel) -> None:
    result = generate(loaded, "def f(x):", 12, StopRules(single_line=True), healed="\n    ")
    assert result.text.startswith("\n    ")
    assert result.text[5:].strip() and "\n" not in result.text[5:]


def test_stop_rules() -> None:
    assert StopRules(single_line=True).cut("x = 1\ny") == 5
    assert StopRules(single_line=True).cut("\n  x") is None  # no text yet before the newline
    assert StopRules(stop_strings=("END",)).cut("abcEND") == 3
    dedent = StopRules(base_indent=4)
    body = "x = 1\n    y = 2\n\nz = 3\n"
    assert body[: dedent.cut(body)] == "x = 1\n    y = 2"
    assert dedent.cut("x = 1\n    y = 2\n  ") is None  # indentation unfinished until text appears
    assert dedent.cut("x = 1\n        y") is None


def test_vocab_pieces_decode_multibyte_text(loaded: LoadedModel) -> None:
    text = "naïve = '日本語 ✓ 🙂'"
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    vocab = vocab_of(loaded.tokenizer)
    assert b"".join(vocab.piece(i) for i in ids) == text.encode()
    assert vocab.is_stop(loaded.tokenizer.eos_token_id)


def test_adapters_are_served_merged_and_swapped(tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    trainee = load_model(base=str(default_model_dir()), device="cpu")
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(trainee.model, config).save_pretrained(tmp_path / "adapter")

    ids = trainee.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    base_logits = logits(load_model(device="cpu", dtype=torch.float32).model, ids)
    unmerged = PeftModel.from_pretrained(
        load_model(device="cpu", dtype=torch.float32).model, tmp_path / "adapter"
    )
    served = load_model(adapter=tmp_path / "adapter", device="cpu", dtype=torch.float32)
    adapted = logits(served.model, ids)
    assert served.adapter == tmp_path / "adapter"
    assert not any("lora" in name for name, _ in served.model.named_modules())  # merged: no LoRA layers
    assert torch.allclose(adapted, logits(unmerged, ids), atol=1e-3)
    assert not torch.allclose(adapted, base_logits, atol=1e-3)

    served.set_adapter(None)
    assert served.adapter is None
    assert torch.allclose(logits(served.model, ids), base_logits)
    served.set_adapter(tmp_path / "adapter")
    served.set_adapter(tmp_path / "adapter")  # a new version replaces the old one: no merge on top
    assert torch.allclose(logits(served.model, ids), adapted)


def test_int8_decoding_runs_narrow_passes_on_the_copies() -> None:
    loaded = load_model(device="cpu", dtype=torch.bfloat16)
    with loaded.lock:
        switch = loaded.int8_switch()
    assert switch is not None
    prompt = "COLUMNS = ['name', 'email', 'created_at', 'updated_at', 'owner_id']\n\n\ndef header():\n"
    prompt += "    return ['name', 'email',"
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    passes: list[tuple[int, bool]] = []  # (tokens fed, copies switched on)

    def record(_module: object, _args: object, kwargs: dict[str, torch.Tensor]) -> None:
        passes.append((kwargs["input_ids"].shape[1], switch.enabled))

    with switch.on():
        reference = transformers_greedy(loaded, ids, 16)  # one token per pass after the prefill
    handle = loaded.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = generate(loaded, ids, max_new_tokens=16, draft_tokens=8, int8=True)
    finally:
        handle.remove()
    assert result.tokens == reference
    assert passes[0] == (len(ids), True)  # the prefill: too wide for the kernel, it runs on bf16
    assert all(on and 1 <= width <= NARROW_ROWS for width, on in passes[1:])
    assert any(width > 1 for width, _ in passes[1:])  # drafts, cut to fit the narrow passes
    assert not switch.enabled
    # Typing the suggestion's first two tokens: the first pass carries the rest of it, however wide.
    with counted_passes(loaded.model) as typed_passes:
        rest = generate(loaded, ids + result.tokens[:2], max_new_tokens=8, draft_tokens=8, int8=True)
    assert typed_passes[0] == 1 and rest.tokens == result.tokens[2:10]
    loaded.set_adapter(None)  # fresh weights: the copies are made again on the next use
    assert not any(isinstance(m, DualLinear) for m in loaded.model.modules())


def test_the_text_so_far_is_told_after_every_pass(loaded: LoadedModel) -> None:
    seen: list[str] = []
    with counted_passes(loaded.model) as passes:
        result = generate(loaded, PROMPT, 12, on_text=seen.append, draft_tokens=8)
    assert seen and len(seen) <= passes[0]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    assert result.text.startswith(seen[-1])
    if result.finish_reason == "length":
        assert seen[-1] == result.text
