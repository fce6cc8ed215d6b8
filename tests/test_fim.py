"""Fill-in-the-middle code models: each family's prompt bytes, recognition from the tokenizer, and a tiny
randomly initialised FIM model through train → adapter → serve in its template (train = serve)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from raft_fixture import write_fixture_repo

from repolm.assist.completion import Completer, CompletionRequest
from repolm.config import COMPLETION_TEMPLATES, ServeConfig, load_config
from repolm.fim import NAMES, detect
from repolm.model import ensure_converted, load_model
from repolm.prompt import Document, PromptRequest, build_prompt
from repolm.training.eval_targets import cursor_prefix, cursor_suffix
from repolm.training.finetune import TrainConfig, train_raft
from repolm.training.raft_dataset import RaftConfig, build_dataset, write_jsonl

# Each family's special tokens, as its tokenizer lists them.
FAMILY_TOKENS = {
    "qwen": [
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
    ],
    "codegemma": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"],
    "starcoder2": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<repo_name>", "<file_sep>"],
    "starcoder": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>"],
    "deepseek": ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
    "codellama": ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
}

UTIL = Document("pkg/util.py", 3, 4, "def add(a, b):\n    return a + b\n", "add")
TEXT = Document("pkg/text.py", 1, 2, "def shout(s):\n    return s.upper()\n", "shout")
PREFIX = "from pkg.util import add\n\n\ndef total(xs):\n    return "
SUFFIX = "\n\n\nprint(total([1]))\n"
REQUEST = PromptRequest("complete", [UTIL, TEXT], prefix=PREFIX, suffix=SUFFIX, path="pkg/main.py")

# Snippets best last (nearest the cursor), in the family's repository layout or as path comments.
FILES = {
    "<|file_sep|>": "<|file_sep|>pkg/text.py\ndef shout(s):\n    return s.upper()\n"
    "<|file_sep|>pkg/util.py\ndef add(a, b):\n    return a + b\n",
    "<file_sep>": "<file_sep>pkg/text.py\ndef shout(s):\n    return s.upper()\n"
    "<file_sep>pkg/util.py\ndef add(a, b):\n    return a + b\n",
}
COMMENTS = (
    "# Path: pkg/text.py:1-2\ndef shout(s):\n    return s.upper()\n\n"
    "# Path: pkg/util.py:3-4\ndef add(a, b):\n    return a + b\n\n# Path: pkg/main.py\n"
)
EXPECTED = {
    "qwen": f"{FILES['<|file_sep|>']}<|file_sep|>pkg/main.py\n"
    f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
    "starcoder2": f"{FILES['<file_sep>']}<file_sep><fim_prefix>pkg/main.py\n"
    f"{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>",
    "codegemma": f"<|fim_prefix|>{COMMENTS}{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
    "starcoder": f"<fim_prefix>{COMMENTS}{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>",
    "deepseek": f"<｜fim▁begin｜>{COMMENTS}{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>",
    "codellama": f"▁<PRE> {COMMENTS}{PREFIX}▁<SUF>{SUFFIX}▁<MID>",
}


def family_tokenizer(family: str):
    """The embedded model's tokenizer with a FIM family's special tokens added."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_converted(), local_files_only=True)
    tokenizer.add_special_tokens({"additional_special_tokens": FAMILY_TOKENS[family]})
    return tokenizer


def test_the_config_names_every_template() -> None:
    assert ("auto", *NAMES) == COMPLETION_TEMPLATES


@pytest.mark.parametrize("family", list(FAMILY_TOKENS))
def test_each_family_is_recognised_and_gets_its_exact_prompt(family: str) -> None:
    tokenizer = family_tokenizer(family)
    template = detect(tokenizer)
    # The embedded tokenizer these are added to already has StarCoder2's `<file_sep>` (but no FIM
    # tokens): StarCoder's three read as StarCoder2's there, as they would on StarCoder2's own.
    assert template is not None and template.name == ("starcoder2" if family == "starcoder" else family)
    prompt = build_prompt(REQUEST, tokenizer, 512, family)
    assert prompt.text == EXPECTED[family]
    assert prompt.healed == "" and prompt.kept_prefix == PREFIX
    assert prompt.input_ids == tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    for token in FAMILY_TOKENS[family]:  # each control token reaches the model as one id
        if token in prompt.text:
            assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    # Named in the settings, the template is used whatever the tokenizer; "plain" turns FIM off.
    assert build_prompt(REQUEST, family_tokenizer("deepseek"), 512, family).text == EXPECTED[family]
    plain = build_prompt(dataclasses.replace(REQUEST, suffix=""), tokenizer, 512, "plain")
    assert build_prompt(REQUEST, tokenizer, 512, "plain") == plain


def test_the_embedded_model_keeps_the_plain_layout() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_converted(), local_files_only=True)
    assert detect(tokenizer) is None
    prompt = build_prompt(REQUEST, tokenizer, 512)
    assert prompt == build_prompt(dataclasses.replace(REQUEST, suffix=""), tokenizer, 512)
    assert prompt.text.startswith("# Path: pkg/text.py:1-2\n") and SUFFIX.strip() not in prompt.text


def test_a_fim_prompt_keeps_its_shares_of_a_tight_budget() -> None:
    tokenizer = family_tokenizer("qwen")
    long = PromptRequest(
        "complete",
        [UTIL, TEXT],
        prefix="".join(f"x{n} = {n}\n" for n in range(200)),
        suffix="".join(f"y{n} = {n}\n" for n in range(200)),
        path="pkg/main.py",
    )
    prompt = build_prompt(long, tokenizer, 160)
    assert len(prompt.input_ids) <= 160
    assert prompt.kept_prefix.endswith("x199 = 199\n") and "y0 = 0\n" in prompt.text
    assert "y199" not in prompt.text and "x0 = 0" not in prompt.text


@pytest.fixture(scope="module")
def fim_base(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama with Qwen2.5-Coder's FIM tokens, saved as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("fim-base")
    tokenizer = family_tokenizer("qwen")
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_a_fim_model_trains_and_serves_in_its_template(fim_base: Path, tmp_path: Path, embedder) -> None:
    from repolm.indexer.builder import update_index
    from repolm.indexer.retrieval import Index

    root = write_fixture_repo(tmp_path / "repo")
    config = load_config(root)
    update_index(root, config, embedder=embedder)
    serve = ServeConfig(model=str(fim_base), completion_budget=256, explain_budget=256)
    model = load_model(str(fim_base), device="cpu")
    index = Index.open(root, config, embedder)
    try:
        small = RaftConfig(completion_examples=8, explain_examples=2, plan_examples=2)
        examples, _ = build_dataset(index, model.tokenizer, small, serve)
    finally:
        index.close()
    completions = [e for e in examples if e.task == "complete" and e.documents]
    assert completions
    for example in completions:
        assert "<|file_sep|>" in example.prompt and example.prompt.endswith("<|fim_middle|>")
        assert example.completion == example.answer + model.tokenizer.eos_token

    # Served at the same cursor with the same snippets, the prompt is the training prompt, byte for byte.
    example = completions[0]
    documents = [
        Document(d["path"], d["start_line"], d["end_line"], d["text"], d["symbol"]) for d in example.documents
    ]
    source = (root / example.path).read_text()
    column = len(example.prefix.rsplit("\n", 1)[-1])
    end_line = example.source_spans[0]["end_line"]  # the editor holds the file without the answer yet
    text = cursor_prefix(source, example.line, column) + cursor_suffix(source, end_line)
    once = dataclasses.replace(serve, completion_max_tokens=2, completion_cache_size=0)
    Completer(model, once, lambda query, path, prefix, k: documents[:k]).complete(
        CompletionRequest(example.path, text, example.line - 1, column)
    )
    expected = model.tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    assert model._prompt_caches.entries[-1].ids[: len(expected)] == expected

    path = tmp_path / "raft.jsonl"
    write_jsonl(examples, path)
    tiny = TrainConfig(
        base=str(fim_base), max_steps=2, batch_size=1, gradient_accumulation=1, max_length=300, lora_r=4,
        learning_rate=5e-3, warmup_steps=0, save_steps=1, logging_steps=1, progress=False,
    )  # fmt: skip
    result = train_raft(path, tmp_path / "adapter", tiny)
    assert result.steps == 2 and (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    tuned = load_model(str(fim_base), adapter=tmp_path / "adapter", device="cpu")
    completion = Completer(tuned, once, lambda query, path, prefix, k: documents[:k]).complete(
        CompletionRequest(example.path, text, example.line - 1, column)
    )
    assert completion.finish_reason in ("length", "stop")
