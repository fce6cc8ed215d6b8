"""Unit tests for the plain-Python server cores: query building, block detection, insertion rules,
snippet keeping, quote/citation verification, settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from repolm.assist.completion import (
    Completer,
    CompletionRequest,
    Latest,
    PositionError,
    insertion_text,
    opens_block,
    retrieval_query,
    split_at,
    steady_snippets,
    stop_rules,
)
from repolm.assist.explain import SymbolCard, UseSite, verify
from repolm.config import Config
from repolm.model import StopRules, load_model
from repolm.prompt import Document, Prompt
from repolm.server.settings import apply_settings

CHECKOUT = "from util.pricing import apply_discount\n\n\ndef member_total(price):\n    total = apply_\n"


def prompt(healed: str = "") -> Prompt:
    return Prompt("", [], (), healed)


# -- cursor and block detection --------------------------------------------------------------------


def test_split_at_clamps_the_column_and_rejects_lines_outside() -> None:
    prefix, suffix = split_at(CHECKOUT, 4, 18)
    assert prefix.endswith("total = apply_") and suffix == "\n"
    assert split_at(CHECKOUT, 4, 999)[0].endswith("apply_")  # past the end of the line: its end
    assert split_at(CHECKOUT, 5, 0) == (CHECKOUT, "")  # the empty line after the final newline
    assert split_at("", 0, 0) == ("", "")
    for line, column in ((6, 0), (-1, 0), (0, -1)):
        with pytest.raises(PositionError):
            split_at(CHECKOUT, line, column)


def test_split_at_handles_crlf() -> None:
    prefix, suffix = split_at("a = 1\r\nb = 2\r\n", 1, 3)
    assert prefix == "a = 1\r\nb =" and suffix == " 2\r\n"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("def f(x):\n    ", True),
        ("def f(x):\n", True),
        ("if (x) {\n  ", True),
        ("class A:  \n\t", True),
        ("def f(x):\n    ret", False),  # the cursor line already has code
        ("x = 1\n    ", False),
        ("def f(x):", False),  # still on the opening line
        ("", False),
    ],
)
def test_opens_block(prefix: str, expected: bool) -> None:
    assert opens_block(prefix) is expected


def test_stop_rules_single_line_and_block() -> None:
    assert stop_rules("x = ", multiline=False) == StopRules(single_line=True)
    assert stop_rules("def f(x):\n    ", multiline=True) == StopRules(base_indent=4)
    # The cursor line not indented yet: the block is deeper than the opening line.
    assert stop_rules("    def f(x):\n", multiline=True) == StopRules(base_indent=5)


# -- retrieval query -------------------------------------------------------------------------------


def test_query_puts_the_cursor_neighbourhood_first_then_used_imports() -> None:
    prefix = "import os\nfrom util.pricing import apply_discount, add_tax\n\n" + "\n".join(
        f"step_{i} = {i}" for i in range(20)
    )
    prefix += "\ndef member_total(price):\n    base = apply_discount(price, 10)\n    total = apply_"
    terms = retrieval_query(prefix).split()
    assert terms[:4] == ["base", "apply_discount", "price", "member_total"]
    assert "apply_" not in terms  # the line being typed: the query stays the same while typing it
    assert retrieval_query(prefix + "disc") == retrieval_query(prefix)
    assert {"util", "pricing"} <= set(terms)  # where the nearby apply_discount comes from
    assert "add_tax" not in terms and "os" not in terms  # imported but not used near the cursor
    assert "step_0" not in terms  # far above the cursor
    assert "def" not in terms and "import" not in terms
    assert len(terms) == len(set(terms))


def test_query_is_empty_for_an_empty_prefix() -> None:
    assert retrieval_query("") == ""


# -- insertion text --------------------------------------------------------------------------------


def test_insertion_drops_the_healed_text_the_editor_already_has() -> None:
    generated = " apply_discount(price, 10)\n"
    text = insertion_text(prompt(" apply_"), generated, "    total = apply_", "\n", False)
    assert text == "discount(price, 10)"


def test_insertion_never_starts_with_a_newline() -> None:
    assert insertion_text(prompt(), "\n    return x", "def f(x):", "", False) == ""


def test_insertion_has_no_doubled_indentation() -> None:
    prefix = "def f(x):\n    "
    assert insertion_text(prompt(), "    return x + 1\n", prefix, "", True) == "return x + 1"
    assert insertion_text(prompt("\n    "), "\n    return x + 1", prefix, "", True) == "return x + 1"


def test_multiline_insertion_keeps_inner_indentation_and_trims_the_end() -> None:
    generated = "for item in cart:   \n        total += item\n    return total\n\n"
    text = insertion_text(prompt(), generated, "def f(cart):\n    ", "", True)
    assert text == "for item in cart:\n        total += item\n    return total"


def test_single_line_insertion_does_not_repeat_the_rest_of_the_line() -> None:
    assert insertion_text(prompt(), "price, 10)", "apply_discount(", ")\n", False) == "price, 10"
    assert insertion_text(prompt(), "a)\nmore", "f(", "", False) == "a)"


def test_snippets_stay_while_any_of_them_is_still_a_candidate() -> None:
    a, b, c, d, e, f = (Document(f"m{i}.py", 1, 2, f"def f{i}():\n    pass\n") for i in range(6))
    assert steady_snippets((), [a, b, c, d], 2) == [a, b]
    assert steady_snippets([a, b], [c, d, b, a], 2) == [a, b]  # both still candidates: kept, in order
    assert steady_snippets([a, b], [c, d, e, b], 2) == [a, b]  # one of two left: kept
    assert steady_snippets([a, b, c], [d, e, f, c], 3) == [a, b, c]  # one of three is enough
    assert steady_snippets([a, b], [c, d, e, f], 2) == [c, d]  # the user went elsewhere


def test_snippets_are_kept_per_file_and_index_generation() -> None:
    a, b, c, d = (Document(f"m{i}.py", 1, 3, f"def f{i}():\n    x = {i}\n    return x\n") for i in range(4))
    ranking = [a, b, c, d]
    serve = replace(Config().serve, completion_snippets=2, completion_max_tokens=2, completion_cache_size=0)
    completer = Completer(load_model(device="cpu"), serve, lambda query, path, prefix, k: ranking[:k])

    def snippets(path: str, context: str) -> set[Document]:
        request = CompletionRequest(path, "y = f(x)\n", 1, 0)
        return set(completer.complete(request, cache_key=context).documents)

    assert snippets("app.py", "generation 1") == {a, b}
    ranking = [c, d, b]  # `a` is no candidate any more, `b` still is: the snippets stay
    assert snippets("app.py", "generation 1") == {a, b}
    ranking = [c, d, b, a]
    assert snippets("app.py", "generation 2") == {c, d}  # reindexed: the snippets' text may have changed
    ranking = [a, b, c, d]
    assert snippets("other.py", "generation 2") == {a, b}
    # Back in app.py, its own snippets are still candidates: kept, so its prompt's head is as it was.
    assert snippets("app.py", "generation 2") == {c, d}


def test_repeated_requests_are_answered_from_a_least_recently_used_cache() -> None:
    serve = replace(Config().serve, completion_max_tokens=1, completion_cache_size=2, prompt_caches=1)
    completer = Completer(load_model(device="cpu"), serve)

    def answered(line: str, path: str = "app.py") -> str:
        return completer.complete(CompletionRequest(path, f"{line}\n", 0, len(line))).finish_reason

    assert answered("a = 1") != "cached" and answered("b = 2") != "cached"
    assert answered("a = 1") == "cached"  # and `a` is now the most recently used
    assert answered("c = 3") != "cached"  # the cache holds two: `b`, the least recently used, goes
    assert answered("a = 1") == "cached" and answered("b = 2") != "cached"
    off = Completer(completer.model, replace(serve, completion_cache_size=0))
    request = CompletionRequest("app.py", "a = 1\n", 0, 5)
    assert off.complete(request).finish_reason != "cached" and off.complete(request).finish_reason != "cached"


def test_a_completion_reports_its_prefill_within_its_generation() -> None:
    serve = replace(Config().serve, completion_max_tokens=4, completion_cache_size=0)
    completer = Completer(load_model(device="cpu"), serve)
    timings = completer.complete(CompletionRequest("app.py", "def area(width, height):\n    ", 1, 4)).timings
    assert 0 < timings["prefill"] <= timings["generate"] <= timings["total"]


SETTINGS = (
    '"""Settings of the app."""\n'
    'DB_PASSWORD = "Tr0ub4dor&3horse"\n'
    'DB_URL = "postgresql://admin:S3cr3t!Pw0rd@db.internal/app"\n'
    "# AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    "\n"
    "def connect(timeout=30):\n"
    '    session_token = "Zx8QpL2mN7vR4tY9wK3sJ6hG1fD5aB0c"\n'
    "    return open_db(DB_URL, DB_PASSWORD, session_token, timeout)\n"
    'GITHUB_TOKEN = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"\n'
)
# Pieces of every secret above, as the query's identifiers or the prompt's text would show them.
SECRET_PIECES = (
    "Tr0ub4dor",
    "S3cr3t",
    "Pw0rd",
    "AKIAIOSFODNN7",
    "wJalrXUtnFEMI",
    "K7MDENG",
    "Zx8QpL2m",
    "1a2B3c4D",
)


def test_no_secret_of_the_buffer_reaches_the_query_or_the_prompt() -> None:
    serve = replace(Config().serve, completion_max_tokens=2, completion_cache_size=0)
    queries: list[str] = []
    model = load_model(device="cpu")
    completer = Completer(model, serve, lambda query, path, prefix, k: queries.append(query) or [])
    # The cursor in the middle of the line that uses them all, the token on the line above.
    result = completer.complete(CompletionRequest("app/settings.py", SETTINGS, 7, 29))
    received = model.tokenizer.decode(model._prompt_caches.entries[-1].ids)
    assert "def connect(timeout=30):" in received and "return open_db(DB_URL" in received
    assert received.count("[REDACTED]") >= 4 and "DB_PASSWORD" in result.query
    for piece in SECRET_PIECES:
        assert piece not in received and piece not in result.query and piece not in queries[0]


def test_latest_request_cancels_the_previous_one() -> None:
    latest = Latest()
    first = latest.start()
    second = latest.start()
    assert first.is_set() and not second.is_set()


# -- verification ----------------------------------------------------------------------------------

SOURCES = [
    Document("util/pricing.py", 4, 6, 'def apply_discount(price, percent):\n    """Return price."""\n'),
    Document("app/checkout.py", 5, 9, "    discounted = apply_discount(subtotal, percent)\n"),
]


def test_verified_quotes_and_citations_are_kept() -> None:
    text = (
        "It reduces a price (util/pricing.py:4). ##begin_quote## def apply_discount(price, percent):"
        " ##end_quote## Called from app/checkout.py:7 as `apply_discount(subtotal, percent)`."
    )
    result = verify(text, SOURCES)
    assert "util/pricing.py:4" in result.text and "app/checkout.py:7" in result.text
    assert "def apply_discount(price, percent):" in result.text
    assert "`apply_discount(subtotal, percent)`" in result.text
    assert result.dropped_quotes == () and result.dropped_citations == ()


def test_invented_quotes_and_citations_are_dropped() -> None:
    text = (
        "See util/pricing.py:40 and lib/other.py:3. ##begin_quote##return price * 2##end_quote## "
        "It calls `compute_tax()`.\n```python\nimport discounts\n```\n<ANSWER>: it discounts"
    )
    result = verify(text, SOURCES)
    for invented in ("util/pricing.py:40", "lib/other.py:3", "price * 2", "compute_tax", "import discounts"):
        assert invented not in result.text
    assert set(result.dropped_citations) == {"util/pricing.py:40", "lib/other.py:3"}
    assert set(result.dropped_quotes) == {"return price * 2", "compute_tax()", "import discounts"}
    assert result.text.endswith("**Answer:** it discounts")


def test_qualified_names_pass_only_when_their_own_name_is_in_the_sources() -> None:
    result = verify("It is `util.pricing.apply_discount`; not `util.pricing.apply_coupon()`.", SOURCES)
    assert "`util.pricing.apply_discount`" in result.text
    assert "apply_coupon" not in result.text and result.dropped_quotes == ("util.pricing.apply_coupon()",)


def test_an_unterminated_quote_is_checked_too() -> None:
    assert verify("Look: ##begin_quote## made up text", SOURCES).text == "Look:"


def test_whitespace_differences_do_not_fail_a_quote() -> None:
    result = verify("##begin_quote##def apply_discount(price,   percent):##end_quote##", SOURCES)
    assert result.dropped_quotes == ()


def test_symbol_card_lists_definition_and_uses() -> None:
    card = SymbolCard(
        "util.pricing.apply_discount",
        "function",
        "def apply_discount(price, percent):",
        "Return price.",
        "util/pricing.py",
        4,
        (UseSite("app/checkout.py", 7, "app.checkout.checkout_total"),),
        (),
    )
    markdown = card.markdown()
    assert "Defined at util/pricing.py:4" in markdown
    assert "- app/checkout.py:7 (in `app.checkout.checkout_total`)" in markdown
    assert card.to_json()["callers"] == ["app/checkout.py:7"]


# -- settings --------------------------------------------------------------------------------------


def test_editor_settings_map_onto_the_config() -> None:
    settings = {
        "repolm": {
            "adapter": "/adapters/active",
            "draftTokens": 0,
            "int8Decoding": False,
            "promptCaches": 1,
            "completion": {"maxTokens": 16, "enabled": False},
            "explain": {"maxTokens": 8},
            "search": {"mode": "bm25", "perFileCap": 1},
        }
    }
    config, problems = apply_settings(Config(), settings)
    assert problems == []
    assert config.serve.adapter == "/adapters/active" and config.serve.draft_tokens == 0
    assert config.serve.int8_decoding is False and config.serve.prompt_caches == 1
    assert config.serve.completion_max_tokens == 16 and config.serve.completion_enabled is False
    assert config.serve.explain_max_tokens == 8
    assert config.search.mode == "bm25" and config.search.per_file_cap == 1
    assert apply_settings(Config(), None) == (Config(), [])


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"repolm": {"completion": {"maxTokens": "many"}}},
            "serve.completion_max_tokens = 'many': must be an integer",
        ),
        ({"repolm": {"nonsense": 1}}, "unknown setting nonsense"),
        ({"repolm": {"completion": {"nonsense": 1}}}, "unknown setting completion.nonsense"),
        ({"repolm": {"search": 3}}, "setting search must be an object"),
        (["not", "an", "object"], "settings must be an object"),
    ],
)
def test_bad_settings_are_reported_and_the_good_ones_kept(settings: object, problem: str) -> None:
    config, problems = apply_settings(Config(), settings)
    assert len(problems) == 1 and problem in problems[0]
    assert config == Config()
    if isinstance(settings, dict):
        settings["repolm"]["adapter"] = "/adapters/a"
        kept, _ = apply_settings(Config(), settings)
        assert kept.serve.adapter == "/adapters/a"
