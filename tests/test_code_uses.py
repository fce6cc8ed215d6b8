"""What the code above a cursor uses, resolved through a real index, and how completion retrieval reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import write_tree

from repolm.assist.engine import code_hits
from repolm.config import Config, ServeConfig
from repolm.indexer.builder import update_index
from repolm.indexer.code_uses import definition_chunk_ids, used_above
from repolm.indexer.retrieval import Index

PRICING = '''"""Price helpers."""


def apply_discount(price, percent):
    return price * (100 - percent) / 100


def add_tax(price, rate):
    return price * (1 + rate)


def round_cents(value):
    return round(value, 2)


class Dict:
    """A repository class that shares its name with typing.Dict."""


def dispatch(routes):
    def view_func(request):
        return routes[request]

    return view_func


def items():
    return []
'''

ORDERS = """class Order:
    def __init__(self, lines):
        self.items = lines

    def count(self):
        return len(self.items())
"""

CHECKOUT = """import typing as t

from shop.orders import Order
from shop.pricing import add_tax, apply_discount, round_cents


def checkout_total(cart: t.Dict, percent, rate):
    subtotal = sum(item.price for item in cart)
    discounted = apply_discount(subtotal, percent)
    taxed = add_tax(discounted, rate)
    view_func(taxed)
    return round_"""  # the cursor at its end


@pytest.fixture(scope="module")
def index(tmp_path_factory, embedder):
    files = {"shop/__init__.py": "", "shop/pricing.py": PRICING, "shop/orders.py": ORDERS}
    root = write_tree(tmp_path_factory.mktemp("uses") / "repo", files | {"app/checkout.py": CHECKOUT})
    update_index(root, Config(), embedder=embedder)
    opened = Index.open(root, Config(), embedder=embedder)
    yield opened
    opened.close()


def chunk_of(index: Index, qualname: str) -> int:
    symbol = index.graph.by_qualname(qualname)
    assert symbol is not None, qualname
    return definition_chunk_ids(index, symbol)[0]


def test_names_from_other_projects_attributes_and_local_functions_do_not_resolve(index: Index) -> None:
    graph = index.graph
    scope = "app.checkout.checkout_total"
    assert graph.resolve("t.Dict", "app/checkout.py", scope) is None  # typing's, not shop.pricing.Dict
    assert graph.resolve("apply_discount", "app/checkout.py", scope).qualname == "shop.pricing.apply_discount"
    assert graph.resolve("view_func", "app/checkout.py", scope) is None  # local to shop.pricing.dispatch
    assert graph.resolve("self.items", "shop/orders.py", "shop.orders.Order.count") is None  # an attribute
    assert graph.resolve("self.count", "shop/orders.py", "shop.orders.Order.count").name == "count"


def test_used_above_is_nearest_first_then_the_imports_not_used_yet(index: Index) -> None:
    prefix = CHECKOUT.removesuffix("round_")  # the cursor at the start of the last line's content
    expected = [
        chunk_of(index, "shop.pricing.add_tax"),
        chunk_of(index, "shop.pricing.apply_discount"),
        chunk_of(index, "shop.orders.Order"),
        chunk_of(index, "shop.pricing.round_cents"),
    ]
    assert used_above(index, "app/checkout.py", prefix) == expected
    # The line being typed is not read: the snippets stay the same while the user types on it.
    assert used_above(index, "app/checkout.py", CHECKOUT) == expected
    assert used_above(index, "app/checkout.py", "") == []
    assert used_above(index, "notes/todo.txt", prefix) == []


def test_completion_retrieval_fuses_the_context_in_by_its_weight(index: Index) -> None:
    prefix = CHECKOUT.removesuffix("round_")
    query = "Order count lines"  # points at shop/orders.py, not at the pricing helpers used above
    off = dataclasses.replace(ServeConfig(), completion_context_weight=0.0)
    plain = [hit.chunk_id for hit in code_hits(index, query, "app/checkout.py", 3, off, prefix=prefix)]
    searched = index.search(query, k=6, per_file_cap=off.completion_per_file_cap)
    assert plain == [hit.chunk_id for hit in searched if hit.chunk.path != "app/checkout.py"][:3]
    fused = [
        hit.chunk_id for hit in code_hits(index, query, "app/checkout.py", 3, ServeConfig(), prefix=prefix)
    ]
    assert chunk_of(index, "shop.pricing.add_tax") in fused
    assert chunk_of(index, "shop.pricing.add_tax") not in plain


def test_a_context_ranking_joins_any_search_by_reciprocal_rank(index: Index) -> None:
    tax = chunk_of(index, "shop.pricing.add_tax")
    alone = [hit.chunk_id for hit in index.search("Order count lines", k=3)]
    assert tax not in alone
    joined = index.search("Order count lines", k=3, context=[tax], context_weight=2.0)
    assert joined[0].chunk_id == tax
    assert [
        hit.chunk_id for hit in index.search("Order count lines", k=3, context=[tax], context_weight=0.0)
    ] == alone


def test_the_completer_hands_the_text_before_the_cursor_to_its_search(tmp_path: Path) -> None:
    from repolm.assist.completion import Completer, CompletionRequest
    from repolm.model import load_model

    seen: list[tuple[str, str]] = []
    serve = dataclasses.replace(ServeConfig(), completion_max_tokens=2)
    completer = Completer(
        load_model(device="cpu"), serve, lambda query, path, prefix, k: seen.append((path, prefix)) or []
    )
    completer.complete(CompletionRequest("app/checkout.py", CHECKOUT, 11, len("    return round_")))
    assert seen == [("app/checkout.py", CHECKOUT)]
