"""The prompt contract with the real SmolLM2 tokenizer (and one real greedy generation)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from repolm.model import LoadedModel, StopRules, count_tokens, generate, load_model
from repolm.prompt import (
    PREFIX_ANCHOR_LINES,
    Document,
    Prompt,
    PromptRequest,
    build_prompt,
    comment_prefix,
    completion_from_generation,
)

UTIL = Document("pkg/util.py", 12, 14, "def double(x):\n    return x * 2\n", "pkg.util.double")
BIG = Document(
    "pkg/big.py", 1, 40, "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(20)), "pkg.big"
)
PREFIX = "".join(f"value_{i} = compute({i})\n" for i in range(60)) + "def f(x):\n    "


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def tokenizer(loaded: LoadedModel) -> Any:
    return loaded.tokenizer


def complete(
    tokenizer: Any, budget: int, prefix: str = PREFIX, path: str = "app/main.py", docs=(UTIL,)
) -> Prompt:
    return build_prompt(PromptRequest("complete", docs, prefix=prefix, path=path), tokenizer, budget)


def test_comment_prefix_follows_the_language() -> None:
    assert comment_prefix("a/b.py") == "#"
    assert comment_prefix("src/x.ts") == "//"
    assert comment_prefix("main.go") == "//"
    assert comment_prefix("lib.rs") == "//"
    assert comment_prefix("App.java") == "//"


def test_completion_layout(tokenizer: Any) -> None:
    prompt = complete(tokenizer, 2000, docs=(UTIL, BIG))
    text = prompt.text + prompt.healed
    assert "# Path: pkg/util.py:12-14\ndef double(x):\n" in text
    assert text.endswith("# Path: app/main.py\n" + PREFIX)
    # The best snippet sits right above the current file.
    assert text.index("pkg/big.py") < text.index("pkg/util.py") < text.index("app/main.py")
    assert prompt.documents == (UTIL, BIG)
    js = complete(tokenizer, 2000, prefix="const x = ", path="web/app.js")
    assert "// Path: pkg/util.py:12-14" in js.text and "// Path: web/app.js\n" in js.text


@pytest.mark.parametrize("budget", [60, 120, 250, 400, 800])
def test_budget_is_never_exceeded(tokenizer: Any, budget: int) -> None:
    prompt = complete(tokenizer, budget, docs=(UTIL, BIG))
    assert len(prompt.input_ids) <= budget
    assert prompt.input_ids == tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    # The prefix keeps its most recent lines: the cursor line and the one above it survive.
    assert (prompt.text + prompt.healed).endswith("value_59 = compute(59)\ndef f(x):\n    ")
    assert prompt == complete(tokenizer, budget, docs=(UTIL, BIG))  # deterministic


def test_prefix_start_holds_while_the_user_writes_on(tokenizer: Any) -> None:
    # A file longer than the budget allows: as lines are added below, the kept prefix keeps its start,
    # so the prompt's head (and the model's KV cache of it) stays the same.
    lines = [f"value_{i} = compute({i})\n" for i in range(120)]
    starts = []
    for end in range(80, 88):
        prompt = complete(tokenizer, 300, prefix="".join(lines[:end]) + "tot", docs=())
        assert len(prompt.input_ids) <= 300
        kept = prompt.text.split("# Path: app/main.py\n", 1)[1]
        starts.append(int(kept.split(" = ", 1)[0].removeprefix("value_")))
    assert all(start % PREFIX_ANCHOR_LINES == 0 for start in starts)
    assert len(set(starts)) <= 2  # 8 lines added cross one anchor at most
    assert starts[0] < 80 - 16  # and the prefix still fills the budget: more than two anchors' worth


def test_documents_fit_in_rank_order_and_are_cut_at_lines(tokenizer: Any) -> None:
    prompt = complete(tokenizer, 420, docs=(UTIL, BIG))
    assert prompt.documents[0] == UTIL
    assert len(prompt.documents) == 2
    cut = prompt.documents[1]
    assert cut.end_line < BIG.end_line
    assert cut.text == "".join(BIG.text.splitlines(keepends=True)[: cut.end_line - cut.start_line + 1])
    assert f"# Path: pkg/big.py:1-{cut.end_line}\n" in prompt.text
    tight = complete(tokenizer, 120, docs=(BIG, UTIL))
    assert all(d.path != "pkg/big.py" or d.end_line < BIG.end_line for d in tight.documents)


def test_healing_ends_prompt_at_a_natural_boundary(tokenizer: Any) -> None:
    prompt = complete(tokenizer, 300, prefix="def f(x):\n    ")
    assert prompt.healed == "\n    "
    assert prompt.text.endswith("def f(x):")
    last = tokenizer.convert_ids_to_tokens(prompt.input_ids[-1:])[0]
    assert last == "):"
    word = complete(tokenizer, 300, prefix="items = []\nitems.app")
    assert word.healed == "app" and word.text.endswith("items.")
    digits = complete(tokenizer, 300, prefix="x = [1, 2")
    assert digits.healed == " 2"
    nothing = complete(tokenizer, 300, prefix="")
    assert nothing.healed == "" and nothing.text.endswith("# Path: app/main.py\n")


def test_real_generation_inserts_without_newline_or_extra_indent(loaded: LoadedModel) -> None:
    request = PromptRequest("complete", (UTIL,), prefix="def triple(x):\n    ", path="app/main.py")
    prompt = build_prompt(request, loaded.tokenizer, 300)
    generation = generate(loaded, prompt.input_ids, 24, StopRules(single_line=True), healed=prompt.healed)
    insertion = completion_from_generation(prompt, generation.text)
    assert insertion.strip()
    assert not insertion.startswith(("\n", " ", "\t"))
    assert "\n" not in insertion


def test_completion_from_generation_adjusts_unconstrained_text() -> None:
    indented = Prompt("def f(x):", [], (), "\n    ")
    assert completion_from_generation(indented, "\n    return x") == "return x"
    assert completion_from_generation(indented, "\n        return x") == "return x"
    assert completion_from_generation(indented, "return x") == "return x"
    assert completion_from_generation(indented, "\n\n    return x") == "return x"
    word = Prompt("items.", [], (), "app")
    assert completion_from_generation(word, "append(1)") == "end(1)"
    assert completion_from_generation(word, "extend(1)") == ""
    plain = Prompt("x = ", [], (), "")
    assert completion_from_generation(plain, "1") == "1"


def test_explain_prompt(tokenizer: Any) -> None:
    request = PromptRequest("explain", (UTIL, BIG), question="What does double do?", path="app/main.py")
    prompt = build_prompt(request, tokenizer, 2000)
    assert prompt.text.startswith("<|im_start|>system\n")
    assert prompt.text.endswith("<|im_start|>assistant\n")
    assert "[1] pkg/util.py:12-14\ndef double(x):" in prompt.text
    assert "[2] pkg/big.py:1-40\n" in prompt.text
    assert "##begin_quote##" in prompt.text and "<ANSWER>:" in prompt.text and "path:line" in prompt.text
    assert prompt.healed == "" and prompt.documents == (UTIL, BIG)

    small = build_prompt(request, tokenizer, 250)
    assert len(small.input_ids) <= 250
    assert small.documents[0] == UTIL and len(small.documents) <= 2
    assert count_tokens(tokenizer, small.text) == len(small.input_ids)


def test_explain_without_chat_template(tokenizer: Any) -> None:
    plain = copy.copy(tokenizer)
    plain.chat_template = None
    request = PromptRequest("explain", (UTIL,), question="What does double do?")
    prompt = build_prompt(request, plain, 500)
    assert "<|im_start|>" not in prompt.text
    assert prompt.text.endswith("Answer:\n") and "[1] pkg/util.py:12-14" in prompt.text


def test_a_short_whole_snippet_keeps_its_place_and_those_after_it(tokenizer: Any) -> None:
    # A one-line definition is whole, not cut to too little: it and the snippets ranked below it stay.
    constant = Document("pkg/consts.py", 3, 3, "TIMEOUT = 30\n", "pkg.consts.TIMEOUT")
    prompt = complete(tokenizer, 768, docs=(constant, UTIL))
    assert prompt.documents == (constant, UTIL)


def test_plan_prompt_lists_the_relations_the_caller_names(tokenizer: Any) -> None:
    # The contract knows no graph: the relation names come with the request, and one without them fails.
    request = PromptRequest("plan", (), question="What calls double?", relations=("calls", "called_by"))
    prompt = build_prompt(request, tokenizer, 256)
    assert "Relations: calls, called_by.<|im_end|>" in prompt.text
    assert prompt.text.endswith("Question: What calls double?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="relation names"):
        build_prompt(PromptRequest("plan", (), question="What calls double?"), tokenizer, 256)


def test_a_model_whose_tokenizer_starts_every_text_gets_that_token_once(tokenizer: Any) -> None:
    """Gemma's and Llama's tokenizers put `<bos>` before every text and the models need it; SmolLM2's
    adds nothing. A chat template that writes the token itself must not get it twice."""
    from tokenizers.processors import TemplateProcessing

    starting = copy.deepcopy(tokenizer)
    start = starting.convert_tokens_to_ids("<|im_start|>")
    starting._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", start)]
    )
    assert starting("x")["input_ids"][0] == start and tokenizer("x")["input_ids"][0] != start
    plain = complete(tokenizer, 2000)
    assert complete(starting, 2000).input_ids == [start, *plain.input_ids]
    assert len(complete(starting, 120).input_ids) <= 120
    request = PromptRequest("explain", (UTIL,), question="What does double do?")
    chat = build_prompt(request, starting, 2000).input_ids
    assert chat == build_prompt(request, tokenizer, 2000).input_ids and chat[0] == start


def test_healing_never_lets_the_model_re_indent_the_line_the_user_indented() -> None:
    """After the indentation the user typed, no token may add more: a vocabulary with long whitespace
    tokens (Gemma's) would otherwise fill the line with blanks."""
    from repolm.vocab import Vocab

    pieces = [b"\n", b"    ", b"        ", b"    return", b"     x", b"\n    ", b"ret"]
    vocab = Vocab.from_pieces(pieces, frozenset())
    allowed = {pieces[i] for i in vocab.consistent_with(b"    ")}
    assert allowed == {b"    ", b"    return"}  # not 8 spaces, not "     x"
    assert {pieces[i] for i in vocab.consistent_with(b"\n")} == {b"\n", b"\n    "}  # a new line may indent


def test_healing_offers_every_token_of_a_piece_so_the_model_can_write_its_own() -> None:
    """A SentencePiece vocabulary holds "\n" both as a token and as its byte fallback "<0x0A>". Healing
    "\n    " must offer both: forced onto the fallback, Gemma 3 read a token sequence it never saw in
    training and wrote words of other languages where the line went."""
    from repolm.vocab import Vocab

    pieces = [b"", b"\n", b"    ", b" ", b"  ", b"\n", b"x"]  # ids 1 and 5: a token and its byte fallback
    vocab = Vocab.from_pieces(pieces, frozenset({0}))
    assert sorted(vocab.consistent_with(b"\n    ")) == [1, 5]
    assert sorted(vocab.consistent_with(b"    ")) == [2, 3, 4]
