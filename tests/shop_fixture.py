"""The shop repository the end-to-end tests write: a helper defined in one file, used in another.

The LSP, Neovim and VS Code tests all ask the same question of it (complete `total = apply_` in
app/checkout.py; explain `apply_discount`, defined in util/pricing.py), so they share one copy.
"""

PRICING = '''"""Price helpers shared by the shop."""


def apply_discount(price, percent):
    """Return price reduced by percent (0-100)."""
    return price * (100 - percent) / 100


def add_tax(price, rate):
    """Return price with tax added at rate (e.g. 0.2)."""
    return price * (1 + rate)
'''
DEF_LINE = 4  # 1-based line of `def apply_discount` in util/pricing.py

CHECKOUT = '''from util.pricing import add_tax, apply_discount


def checkout_total(cart, percent, rate):
    """Total of the cart after the discount and tax."""
    subtotal = sum(item.price for item in cart)
    discounted = apply_discount(subtotal, percent)
    return add_tax(discounted, rate)


def member_total(price):
    """Members get ten percent off."""
    total = apply_
'''
TYPED = "    total = apply_"  # the last line of CHECKOUT, where completions are asked for

FILES = {
    "util/__init__.py": "",
    "util/pricing.py": PRICING,
    "app/__init__.py": "",
    "app/checkout.py": CHECKOUT,
    "docs/pricing.md": "# Pricing\n\nDiscounts use `apply_discount(price, percent)` before `add_tax`.\n",
}

# Small budgets keep the end-to-end tests fast on a 2-core CPU; the code paths are the production ones.
SETTINGS = {"repolm": {"completion": {"budget": 512, "maxTokens": 16}, "explain": {"maxTokens": 24}}}


async def start_session(client, root) -> None:
    """Initialize `client` (a pytest-lsp client of `repolm serve`) on the shop at `root` as VS Code
    would, and wait until the index the server builds in the background on `initialized` is ready."""
    import pytest_lsp
    from lsprotocol import types

    await client.initialize_session(
        types.InitializeParams(
            capabilities=pytest_lsp.client_capabilities("visual-studio-code"),
            root_uri=root.as_uri(),
            initialization_options=SETTINGS,
        )
    )
    client.root = root
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.reindex")
    )
    assert result["generation"] >= 1


async def explain_streamed(client, symbol: str) -> tuple[dict, list[str]]:
    """`repolm.explain` of `symbol` with a work-done token: the answer, and the text of each progress
    report streamed under the token (checked to begin, grow and end)."""
    import asyncio
    import itertools

    from lsprotocol import types

    token = f"explain-{symbol}"
    client.progress_reports[token] = []  # a token the client made, as pytest-lsp expects
    answer = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="repolm.explain", arguments=[{"symbol": symbol, "workDoneToken": token}]
        )
    )
    reports = client.progress_reports[token]
    for _ in range(50):  # the end is sent before the answer; give the client's loop a moment to read it
        if reports and isinstance(reports[-1], types.WorkDoneProgressEnd):
            break
        await asyncio.sleep(0.1)
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and symbol in reports[0].title
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    texts = [r.message or "" for r in reports[1:-1]]
    assert all(isinstance(r, types.WorkDoneProgressReport) for r in reports[1:-1])
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    return answer, texts
