"""The evaluation harness: the split, the cursor rule, the metrics, and one real `repolm eval` run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import write_tree

from repolm.assist.completion import retrieval_query
from repolm.cli import main
from repolm.config import Config, ServeConfig
from repolm.indexer.builder import update_index
from repolm.indexer.code_uses import file_lines
from repolm.indexer.retrieval import Index
from repolm.training import metrics
from repolm.training.eval_split import (
    EvalSplit,
    is_held_out,
    parse_diff,
    parse_split,
    split_bucket,
    training_files,
)
from repolm.training.eval_targets import (
    analyze_file,
    cursor_prefix,
    editor_position,
    sample_targets,
)
from repolm.training.evaluate import IndexSearch

# Held out by the file split (pinned below): shop/pricing.py, shop/inventory.py, app/api.py.
FILES = {
    "shop/__init__.py": "",
    "shop/pricing.py": (
        "def apply_discount(price, rate):\n"
        '    """Price after taking `rate` (0..1) off, rounded to cents."""\n'
        "    return round(price * (1 - rate), 2)\n"
        "\n"
        "\n"
        "def bulk_rate(quantity):\n"
        '    """The discount rate for buying `quantity` items at once."""\n'
        "    return 0.1 if quantity >= 10 else 0.0\n"
    ),
    "shop/tax.py": (
        "RATES = {'de': 0.19, 'fr': 0.2, 'nl': 0.21}\n"
        "\n"
        "\n"
        "def vat_amount(price, country):\n"
        '    """The value-added tax owed on `price` in `country`."""\n'
        "    return round(price * RATES.get(country, 0.0), 2)\n"
    ),
    "shop/cart.py": (
        "from shop.pricing import apply_discount, bulk_rate\n"
        "\n"
        "\n"
        "class Cart:\n"
        '    """Items a customer is about to buy."""\n'
        "\n"
        "    def __init__(self):\n"
        "        self.items = []\n"
        "\n"
        "    def add_item(self, name, price, quantity=1):\n"
        "        self.items.append((name, price, quantity))\n"
        "\n"
        "    def subtotal(self):\n"
        "        return sum(apply_discount(p * q, bulk_rate(q)) for _, p, q in self.items)\n"
    ),
    "shop/inventory.py": (
        "from shop.cart import Cart\n"
        "\n"
        "STOCK = {'apple': 12, 'pear': 3}\n"
        "\n"
        "\n"
        "def reserve(cart: Cart, name, quantity):\n"
        "    available = STOCK.get(name, 0)\n"
        "    if quantity > available:\n"
        "        raise ValueError(f'only {available} {name} left in stock')\n"
        "    STOCK[name] = available - quantity\n"
        "    cart.add_item(name, 1.5, quantity)\n"
        "    return cart\n"
    ),
    "app/api.py": (
        "from shop.cart import Cart\n"
        "from shop.pricing import apply_discount\n"
        "from shop.tax import vat_amount\n"
        "\n"
        "\n"
        "def quote(items, country):\n"
        '    """What the customer pays for `items` shipped to `country`."""\n'
        "    cart = Cart()\n"
        "    for name, price, quantity in items:\n"
        "        cart.add_item(name, price, quantity)\n"
        "    net = cart.subtotal()\n"
        "    gross = net + vat_amount(net, country)\n"
        "    return {'net': net, 'gross': gross, 'country': country}\n"
        "\n"
        "\n"
        "def member_quote(items, country):\n"
        "    result = quote(items, country)\n"
        "    result['member_price'] = apply_discount(result['gross'], 0.05)\n"
        "    return result\n"
    ),
    "app/views.py": (
        "from app.api import quote\n"
        "\n"
        "\n"
        "def render_quote(items, country):\n"
        "    totals = quote(items, country)\n"
        "    return f\"{totals['gross']:.2f} EUR incl. VAT ({country})\"\n"
    ),
    "README.md": "# shop\n\nA tiny shop: carts, discounts and VAT.\n",
}
HELD_OUT = {"shop/__init__.py", "shop/pricing.py", "shop/inventory.py", "app/api.py"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Path, Index]:
    """Indexed once for the module: the tests only read it."""
    root = write_tree(tmp_path_factory.mktemp("eval") / "shop", FILES)
    update_index(root, Config(), embedder=embedder)
    index = Index.open(root, Config(), embedder=embedder)
    yield root, index
    index.close()


# -- the split -------------------------------------------------------------------------------------------


def test_file_split_is_a_stable_hash_of_the_path() -> None:
    # Pinned values: changing the hash or its salt silently moves files between training and evaluation.
    assert round(split_bucket("shop/pricing.py"), 4) == 0.0976
    assert round(split_bucket("app/views.py"), 4) == 0.5571
    assert {p for p in FILES if is_held_out(p)} == HELD_OUT
    paths = [f"pkg/module_{n}.py" for n in range(2000)]
    held = [p for p in paths if is_held_out(p)]
    assert 0.17 < len(held) / len(paths) < 0.23
    assert sorted(training_files(paths) + held) == sorted(paths)
    assert not set(training_files(paths)) & set(held)


def test_targets_never_come_from_training_files(shop) -> None:
    _, index = shop
    targets = sample_targets(index, EvalSplit("file"), limit=100, seed=3)
    assert targets, "the fixture must yield targets"
    assert {t.path for t in targets} <= HELD_OUT
    assert all(is_held_out(t.path) for t in targets)
    assert {t.kind for t in targets} == {"first_use", "call", "line"}
    # Deterministic for a seed; the unique-line rule holds.
    assert sample_targets(index, EvalSplit("file"), limit=100, seed=3) == targets
    all_lines = [line.strip() for p in FILES for line in file_lines(FILES[p])]
    assert all(all_lines.count(t.expected.strip()) == 1 for t in targets)


def test_no_target_is_a_line_holding_a_secret(tmp_path: Path, embedder) -> None:
    """A target's expected text goes into the report; a secret must not, nor be what a model is scored on."""
    secret = "S3cr3t!Pw0rd"
    code = (
        "def backup(cart):\n"
        f'    url = "postgresql://admin:{secret}@db.internal/app"\n'
        "    return send_to(url, cart)\n"
    )
    root = write_tree(tmp_path, {"shop/pricing.py": code})
    update_index(root, Config(), embedder=embedder)
    index = Index.open(root, Config(), embedder=embedder)
    targets = sample_targets(index, EvalSplit("file"), limit=100, seed=0)
    index.close()
    assert [t.expected for t in targets] == ["def backup(cart):", "return send_to(url, cart)"]


def test_commit_split_takes_only_lines_added_since_the_revision(tmp_path: Path) -> None:
    diff = (
        "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -2,0 +3,2 @@\n+x = 1\n+y = 2\n"
        "@@ -9 +11 @@\n-old\n+new\n"
        "diff --git a/gone.py b/gone.py\n--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    )
    assert parse_diff(diff) == {"m.py": frozenset({3, 4, 11})}

    repo = write_tree(tmp_path / "repo", {"m.py": "a = 1\nb = 2\n"})
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (repo / "m.py").write_text("a = 1\nnew_line = 3\nb = 2\n", encoding="utf-8")
    split = parse_split("commit:HEAD", repo)
    assert split.added_lines == {"m.py": frozenset({2})}
    assert split.allows("m.py", 2) and not split.allows("m.py", 1) and not split.allows("m.py", 3)


# -- the cursor rule -------------------------------------------------------------------------------------


def test_cursor_is_after_the_indentation_and_retrieval_never_sees_the_target_file(shop) -> None:
    root, index = shop
    targets = sample_targets(index, EvalSplit("file"), limit=8, seed=0)
    for mode in ("bm25", "hybrid"):  # hybrid runs the dense retriever too
        search = IndexSearch(index, mode, ServeConfig())
        for target in targets:
            text = (root / target.path).read_text(encoding="utf-8")
            prefix = cursor_prefix(text, target.line, target.column)
            lines_before = "".join(line + "\n" for line in file_lines(text)[: target.line - 1])
            indentation = file_lines(text)[target.line - 1][: target.column]
            assert prefix == lines_before + indentation and not indentation.strip()
            assert text[len(prefix) :].startswith(target.expected)
            assert editor_position(prefix) == (target.line - 1, target.column)
            # Both the query the completer builds and the answer itself as a query (the worst case).
            for query in (retrieval_query(prefix), target.expected):
                search(query, target.path, prefix, 4)
                paths = {c.chunk.path for c in index.store.chunks_by_id(search.ranking).values()}
                assert target.path not in paths


def test_oracle_is_the_chunk_defining_the_used_symbol(shop) -> None:
    _, index = shop
    targets = sample_targets(index, EvalSplit("file"), limit=100, seed=0)
    vat = next(t for t in targets if "vat_amount(" in t.expected)
    assert vat.symbols == ("shop.tax.vat_amount",)
    (chunk,) = index.store.chunks_by_id(list(vat.oracle_chunks)).values()
    assert chunk.chunk.path == "shop/tax.py" and "def vat_amount" in chunk.chunk.text


def test_a_method_of_an_unnamed_receiver_is_no_use_of_a_same_named_method(tmp_path: Path, embedder) -> None:
    # `"".join(...)` and `make().join(...)` call a method of a receiver whose type is unknown: the one
    # repository method named `join` is not what they use, so it is no oracle for those lines.
    root = write_tree(
        tmp_path / "urls",
        {
            "urls/model.py": "class URL:\n    def join(self, other):\n        return other\n",
            "urls/build.py": (
                "from urls.model import URL\n"
                "\n"
                "\n"
                "def render(parts):\n"
                '    text = ", ".join(parts)\n'
                "    again = URL().join(text)\n"
                "    return URL.join(again, text)\n"
            ),
        },
    )
    update_index(root, Config(), embedder=embedder)
    index = Index.open(root, Config(), embedder=embedder)
    try:
        facts = analyze_file(index, "urls/build.py", "python", (root / "urls/build.py").read_text())
    finally:
        index.close()
    used = {line: [s.qualname for s in symbols] for line, symbols in facts.uses.items()}
    assert 5 not in used and 5 not in facts.calls
    assert used[6] == ["urls.model.URL"]
    assert used[7] == ["urls.model.URL.join"]


# -- metrics ---------------------------------------------------------------------------------------------


def test_completion_metrics_on_hand_computed_cases() -> None:
    assert metrics.exact_match("return x  ", "return x") == 1.0
    assert metrics.exact_match("return y", "return x") == 0.0
    assert metrics.edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert metrics.edit_similarity("ab", "abcd") == pytest.approx(0.5)
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("", "abc") == 0.0
    # predicted {foo, bar, baz}, expected {foo, bar}: P = 2/3, R = 1, F1 = 0.8
    assert metrics.identifier_f1("foo(bar, baz)", "foo(bar)") == pytest.approx(0.8)
    assert metrics.identifier_f1("x = x + 1", "x = 2") == pytest.approx(2 * (1 / 2) * 1 / (1 / 2 + 1))
    assert metrics.identifier_f1("()", "[]") == 1.0
    assert metrics.identifier_f1("a", "b") == 0.0


def test_the_oracle_supplies_only_names_the_code_before_the_cursor_lacks() -> None:
    before = "from .auth import sign\n\ndef send(request):\n    "
    oracle = ["def sign(request, key):\n    return hmac(key)\n", "class Signer:\n    pass\n"]
    line = "return sign(request, key=Signer.default_key)"
    # `sign` and `request` are already in the file; `default_key` is in neither place.
    assert metrics.supplied_identifiers(line, before, oracle) == ["Signer", "key"]
    assert metrics.supplied_identifiers(line, before + line, oracle) == []
    assert metrics.supplied_identifiers(line, before, []) == []


def test_retrieval_metrics() -> None:
    relevant = frozenset({7, 9})
    assert metrics.first_relevant_rank([3, 9, 7], relevant) == 2
    assert metrics.first_relevant_rank([1, 2], relevant) is None
    ranks = [1, 2, None, 5]
    assert [metrics.hit_at(r, 1) for r in ranks] == [1.0, 0.0, 0.0, 0.0]
    assert [metrics.hit_at(r, 5) for r in ranks] == [1.0, 1.0, 0.0, 1.0]
    mrr = sum(metrics.reciprocal_rank(r) for r in ranks) / len(ranks)
    assert mrr == pytest.approx((1 + 0.5 + 0 + 0.2) / 4)


def test_bootstrap_confidence_interval_sanity() -> None:
    constant = metrics.bootstrap([0.5] * 20)
    assert (constant.mean, constant.ci_low, constant.ci_high) == (0.5, 0.5, 0.5)
    values = [1.0] * 30 + [0.0] * 70
    estimate = metrics.bootstrap(values, seed=1)
    assert estimate.mean == pytest.approx(0.3)
    assert estimate.ci_low < 0.3 < estimate.ci_high
    # Normal approximation: ±1.96 · sqrt(0.3 · 0.7 / 100) ≈ ±0.09.
    assert estimate.ci_high - estimate.ci_low == pytest.approx(0.18, abs=0.04)
    assert metrics.bootstrap(values, seed=1) == estimate
    small = metrics.bootstrap(values[::10], seed=1)
    assert small.ci_high - small.ci_low > estimate.ci_high - estimate.ci_low
    assert metrics.bootstrap([]).to_json() == {"mean": None, "ci_low": None, "ci_high": None}


# -- end to end ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_repolm_eval_end_to_end(tmp_path: Path, capsys) -> None:
    # Small budgets keep the real model fast; they are ordinary repolm.toml settings.
    settings = (
        "[serve]\ncompletion_budget = 192\ncompletion_max_tokens = 8\n"
        "explain_budget = 384\nexplain_max_tokens = 16\n"
    )
    root = write_tree(tmp_path / "shop", {**FILES, "repolm.toml": settings})
    out, report = tmp_path / "eval.json", tmp_path / "report"
    argv = ["eval", "--repo", str(root), "--limit", "2", "--arms", "in_file", "hybrid", "oracle"]
    argv += ["--explain", "1", "--threads", "1", "--json", str(out), "--report", str(report)]
    assert main(argv) == 0

    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["schema_version"] == 1
    assert result["split"]["kind"] == "file"
    assert result["targets"]["n"] == 2
    base = result["models"]["base"]
    for arm in ("in_file", "hybrid", "oracle"):
        summary = base["arms"][arm]
        assert summary["n"] == 2
        for score in ("exact_match", "edit_similarity", "identifier_f1"):
            stats = summary[score]
            assert 0.0 <= stats["ci_low"] <= stats["mean"] <= stats["ci_high"] <= 1.0
        assert summary["latency_ms"]["p50"] > 0
        predictions = [record["models"]["base"][arm]["prediction"] for record in result["records"]]
        assert summary["empty"] == sum(not prediction.strip() for prediction in predictions)
    assert set(base["arms"]["hybrid"]["retrieval"]) == {"n", "acc@1", "acc@5", "mrr"}
    assert base["arms"]["in_file"]["retrieval"] is None
    assert result["gate"] == {"base": base["arms"]["hybrid"]["edit_similarity"]["mean"]}
    arms_of = [record["models"]["base"] for record in result["records"]]
    for score, stats in base["hybrid_minus_in_file"].items():  # paired: target by target
        differences = [arms["hybrid"][score] - arms["in_file"][score] for arms in arms_of]
        assert stats["mean"] == pytest.approx(sum(differences) / len(differences), abs=1e-4)
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    supplied = [record for record in result["records"] if record["oracle_supplies"]]
    assert all(record["oracle_chunks"] for record in supplied)
    assert result["targets"]["oracle_supplies"] == len(supplied)
    assert base["explain"]["n"] == 1
    assert base["explain"]["quotes_verbatim"] in (None, 1.0)
    assert all(record["path"] in HELD_OUT for record in result["records"])
    graph = base["graph"]  # `--graph` defaults to 30 questions: every shown path must be valid
    assert set(graph["methods"]) == {"graph", "retrieval"} and graph["path_validity"] in (None, 1.0)

    html = (report / "eval_report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2
    assert f"report: {report / 'eval_report.html'}" in capsys.readouterr().out
