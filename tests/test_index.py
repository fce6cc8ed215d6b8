"""The index end to end: build, incremental updates, atomic generations, secrets, bad files, search."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tree

from repolm.config import Config
from repolm.indexer.builder import OUTDATED_NAME, IndexBusyError, index_lock, update_index
from repolm.indexer.dense import Embedder
from repolm.indexer.retrieval import Index, SearchFilter, reciprocal_rank_fusion, weighted_fusion
from repolm.indexer.store import IndexFormatError, OutdatedIndexError, Store

REPO = {
    "shop/pricing.py": (
        '"""Prices and discounts."""\n'
        "from shop.tax import vat_rate\n"
        "\n"
        "\n"
        "def apply_discount(price, percent):\n"
        '    """Reduce a price by a percentage discount."""\n'
        "    return price * (1 - percent / 100)\n"
        "\n"
        "\n"
        "def gross_price(net):\n"
        '    """Add value added tax to a net price."""\n'
        "    return net * (1 + vat_rate())\n"
    ),
    "shop/tax.py": 'def vat_rate():\n    """The VAT rate for the shop."""\n    return 0.2\n',
    "shop/cart.py": (
        "from shop.pricing import apply_discount\n"
        "\n"
        "\n"
        "class Cart:\n"
        '    """A shopping cart holding items."""\n'
        "\n"
        "    def total(self, items):\n"
        "        return sum(apply_discount(i.price, i.discount) for i in items)\n"
        "\n"
        "\n"
        "class GiftCart(Cart):\n"
        "    def total(self, items):\n"
        "        return 0\n"
    ),
    "docs/guide.md": (
        "# Guide\n\nHow to use the shop.\n\n## Discounts\n\nDiscounts are percentages off the price.\n"
    ),
}


def build(root: Path, embedder, **kwargs):
    return update_index(root, Config(), embedder=embedder, **kwargs)


def open_index(root: Path, embedder) -> Index:
    return Index.open(root, Config(), embedder=embedder)


def test_build_search_and_graph(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    summary = build(tmp_path, embedder)
    assert (summary.files, summary.added, summary.generation) == (4, 4, 1)
    index = open_index(tmp_path, embedder)
    for mode in ("bm25", "dense", "hybrid"):
        hits = index.search("reduce a price by a percentage", mode=mode, k=3)
        assert hits[0].chunk.symbol == "shop.pricing.apply_discount", mode
        assert (hits[0].chunk.start_line, hits[0].chunk.end_line) == (5, 7)
    assert index.search("discount", mode="bm25", k=5, per_file_cap=1)[0].chunk.path in {
        "shop/pricing.py",
        "shop/cart.py",
        "docs/guide.md",
    }
    assert len(
        {h.chunk.path for h in index.search("discount price", mode="bm25", k=10, per_file_cap=1)}
    ) == len(index.search("discount price", mode="bm25", k=10, per_file_cap=1))
    graph = index.graph
    assert [(u.path, u.line, u.scope) for u in graph.callers("shop.pricing.apply_discount")] == [
        ("shop/cart.py", 8, "shop.cart.Cart.total")
    ]
    assert [s.qualname for s in graph.callees("shop.pricing.gross_price")] == ["shop.tax.vat_rate"]
    assert [u.path for u in graph.importers("shop.pricing")] == ["shop/cart.py"]
    assert [s.qualname for s in graph.subclasses("shop.cart.Cart")] == ["shop.cart.GiftCart"]
    cart = (tmp_path / "shop/cart.py").read_text()
    target = graph.definition_at("shop/cart.py", 8, cart.splitlines()[7].index("apply_discount") + 2, cart)
    assert target is not None and (target.path, target.name_line) == ("shop/pricing.py", 5)


def test_a_second_index_run_is_refused_at_once_while_one_holds_the_lock(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    build(tmp_path, embedder)
    (tmp_path / "shop/extra.py").write_text("def extra():\n    return 1\n")
    busy = pytest.raises(IndexBusyError, match="another `repolm index` is updating")
    with index_lock(Config().index_path(tmp_path)), busy:
        build(tmp_path, embedder)
    assert build(tmp_path, embedder).added == 1  # released: the next run goes ahead


def test_filters_exclude_paths_and_line_ranges(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    build(tmp_path, embedder)
    index = open_index(tmp_path, embedder)
    query = "apply discount price percent"
    assert all(
        h.chunk.path != "shop/pricing.py"
        for h in index.search(query, k=10, where=SearchFilter(exclude_paths=frozenset({"shop/pricing.py"})))
    )
    after_cursor = SearchFilter(exclude_ranges=(("shop/pricing.py", 6, 10**9),))
    hits = index.search(query, k=10, where=after_cursor)
    assert all(not (h.chunk.path == "shop/pricing.py" and h.chunk.end_line >= 6) for h in hits)
    assert any(h.chunk.path == "shop/pricing.py" and h.chunk.end_line < 6 for h in hits)


def test_incremental_edit_add_delete_rename(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    build(tmp_path, embedder)
    again = build(tmp_path, embedder)
    assert (again.reparsed, again.generation, again.unchanged) == (0, 1, 4)

    (tmp_path / "shop/tax.py").write_text('def vat_rate():\n    """Zero-rated goods."""\n    return 0.0\n')
    write_tree(tmp_path, {"shop/refunds.py": "def refund_order(order):\n    return order.total\n"})
    (tmp_path / "docs/guide.md").unlink()
    os.rename(tmp_path / "shop/cart.py", tmp_path / "shop/basket.py")
    summary = build(tmp_path, embedder)
    assert (summary.changed, summary.added, summary.removed, summary.renamed) == (1, 1, 1, 1)
    assert summary.reparsed == 3 and summary.generation == 2
    # tax.py and refunds.py: one chunk each; the renamed cart.py → basket.py: 5 chunks whose embedded
    # text names their new path. Nothing else is embedded again.
    assert summary.embedded == 7
    # Summaries' vectors are keyed by their text alone: only tax.py's new docstring is embedded.
    assert summary.summaries_embedded == 1
    index = open_index(tmp_path, embedder)
    assert index.lexical.num_docs == index.chunk_count  # the old versions' documents left Tantivy
    assert {h.chunk.path for h in index.search("zero rated goods", mode="bm25", k=3)} >= {"shop/tax.py"}
    assert not index.search("Discounts are percentages", mode="bm25", k=10, where=None) or all(
        h.chunk.path != "docs/guide.md" for h in index.search("Discounts are percentages", k=10)
    )
    assert index.search("refund order", mode="bm25", k=1)[0].chunk.symbol == "shop.refunds.refund_order"
    assert index.graph.by_qualname("shop.basket.Cart") is not None
    assert index.graph.by_qualname("shop.cart.Cart") is None
    dense_paths = {h.chunk.path for h in index.search("shopping cart", mode="dense", k=20)}
    assert "shop/cart.py" not in dense_paths and "shop/basket.py" in dense_paths


def test_a_new_embedding_cap_reembeds_every_chunk_without_file_changes(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    first = build(tmp_path, embedder)
    recapped = Embedder(str(embedder.path), max_tokens=embedder.max_tokens // 2)
    assert recapped.name != embedder.name  # vectors are cached per model and cap
    summary = build(tmp_path, recapped)
    assert summary.reparsed == 0 and summary.generation == first.generation  # no file changed
    assert summary.embedded == first.embedded  # every distinct chunk, once
    assert build(tmp_path, recapped).embedded == 0
    index = Index.open(tmp_path, Config(), embedder=recapped)
    assert len(index.dense) == index.chunk_count
    assert "shop/cart.py" in {h.chunk.path for h in index.search("shopping cart", mode="dense", k=3)}


def test_vectors_are_keyed_by_the_model_contents_not_its_place(tmp_path: Path, embedder) -> None:
    repo, copy = tmp_path / "repo", tmp_path / "model-copy"
    write_tree(repo, REPO)
    first = build(repo, embedder)
    shutil.copytree(embedder.path, copy)
    (copy / "README.md").write_text("A model card edited by hand.\n")
    moved = Embedder(str(copy))  # as the same model in a fresh virtualenv
    assert moved.name == embedder.name and moved.legacy_name != embedder.legacy_name
    assert build(repo, moved).embedded == 0
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert Embedder(str(copy)).name != embedder.name

    # An index written while the key was the model's path: readers find the vectors under the old key
    # until the next update files them under the new one, embedding nothing.
    index_dir = repo / ".repolm"
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        db.execute("UPDATE embeddings SET model = ?", (embedder.legacy_name,))
    db.close()
    index = open_index(repo, embedder)
    assert len(index.dense) == index.chunk_count == first.chunks
    index.close()
    assert (build(repo, embedder).embedded, build(repo, embedder).summaries_embedded) == (0, 0)
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        models = {row[0] for row in db.execute("SELECT DISTINCT model FROM embeddings")}
    db.close()
    assert models == {embedder.name}


def _cache_size(index_dir: Path) -> tuple[int, int]:
    """(vectors cached, chunk rows), all generations and embedders alike."""
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        counts = db.execute(
            "SELECT (SELECT COUNT(*) FROM embeddings), (SELECT COUNT(*) FROM chunks)"
        ).fetchone()
    db.close()
    return counts


def test_the_vector_cache_keeps_recent_unused_vectors_within_a_bound(tmp_path: Path, embedder) -> None:
    helpers = "".join(f"def helper_{n}(value):\n    return value + {n}\n\n\n" for n in range(30))
    write_tree(tmp_path, {**REPO, "shop/helpers.py": helpers})
    build(tmp_path, embedder)
    index_dir = tmp_path / ".repolm"
    tax = tmp_path / "shop" / "tax.py"
    versions = [f'def vat_rate():\n    """The VAT rate, version {n}."""\n    return {n}\n' for n in range(24)]
    pruned = 0
    for version in versions:
        tax.write_text(version)
        summary = build(tmp_path, embedder)
        assert summary.embedded == summary.summaries_embedded == 1
        pruned += summary.vectors_pruned
        cached, chunk_rows = _cache_size(index_dir)
        assert cached <= 2 * chunk_rows
        index = open_index(tmp_path, embedder)
        assert len(index.dense) == index.chunk_count  # every chunk alive still has its vector
        index.close()
    assert pruned > 0  # 48 vectors went out of use, more than the bound leaves room for
    # The oldest went first: a version from a few edits back is still cached, the first one is not.
    tax.write_text(versions[-4])
    assert build(tmp_path, embedder).embedded == 0
    tax.write_text(versions[0])
    assert build(tmp_path, embedder).embedded == 1
    index = open_index(tmp_path, embedder)
    assert index.search("VAT rate version", mode="dense", k=1)[0].chunk.symbol == "shop.tax.vat_rate"


def test_the_server_warm_up_loads_the_vectors_before_the_first_search(tmp_path: Path, embedder) -> None:
    from repolm.assist.engine import Engine

    write_tree(tmp_path, REPO)
    engine = Engine(tmp_path, Config())
    assert engine.warm_index() is False  # no index yet: the server builds one
    build(tmp_path, embedder)
    assert engine.warm_index() is True
    index = engine.index()
    assert index is not None and {"dense", "summary_dense"} <= vars(index).keys()
    assert len(index.dense) == index.chunk_count


def test_chunks_stored_under_an_earlier_text_recipe_keep_and_renew_their_vectors(
    tmp_path: Path, embedder
) -> None:
    write_tree(tmp_path, REPO)
    first = build(tmp_path, embedder)
    # As an index written when `Chunk.embedding_text` was made differently: the stored cache keys are
    # not the hashes of today's embedding text.
    with sqlite3.connect(tmp_path / ".repolm" / "index.sqlite") as db:
        db.execute("UPDATE chunks SET hash = 'v1:' || hash")
        db.execute("UPDATE embeddings SET hash = 'v1:' || hash")
    db.close()
    index = open_index(tmp_path, embedder)
    assert len(index.dense) == index.chunk_count
    renamed = Embedder(str(embedder.path), max_tokens=embedder.max_tokens // 2)  # as a new text version
    assert build(tmp_path, renamed).embedded == first.embedded
    assert build(tmp_path, renamed).embedded == 0  # the new vectors are found under the stored keys
    index = Index.open(tmp_path, Config(), embedder=renamed)
    assert len(index.dense) == index.chunk_count


def test_every_mode_also_reads_the_docstrings(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    assert build(tmp_path, embedder).summaries_embedded == 4
    assert build(tmp_path, embedder).summaries_embedded == 0
    index = open_index(tmp_path, embedder)
    documented = index.store.chunks_by_id([int(i) for i in index.summary_dense.chunk_ids])
    assert {c.chunk.symbol: c.chunk.summary for c in documented.values()} == {
        "shop.pricing.apply_discount": "Reduce a price by a percentage discount.",
        "shop.pricing.gross_price": "Add value added tax to a net price.",
        "shop.tax.vat_rate": "The VAT rate for the shop.",
        "shop.cart.Cart": "A shopping cart holding items.",
    }
    query = "reduce a price by a percentage"
    by_id = {c.id: c.chunk.symbol for c in index.store.alive_chunks(index.generation)}
    discount = next(i for i, symbol in by_id.items() if symbol == "shop.pricing.apply_discount")
    # BM25: the summary is one more field, which adds its own score to the chunk's.
    plain = dict(index.lexical.search(query, 10))
    with_summary = dict(index.lexical.search(query, 10, summaries=True))
    assert with_summary[discount] > plain[discount]
    assert all(with_summary[i] == pytest.approx(plain[i]) for i in plain if i not in documented)
    # Dense: a documented chunk scores the nearer of its two vectors.
    vector = embedder.encode_query(query)
    whole = dict(index.dense.search(vector, 10))
    summary = dict(index.summary_dense.search(vector, 10))
    (hit,) = index.search(query, mode="dense", k=1)
    assert (hit.chunk_id, hit.score) == (discount, pytest.approx(max(whole[discount], summary[discount])))
    (cart,) = index.search("a basket of things to buy", mode="dense", k=1)
    assert cart.chunk.symbol == "shop.cart.Cart"
    # Hybrid fuses the two retrievers' lists, each reading both texts: first in both.
    assert index.search(query, mode="hybrid", k=1)[0].score == pytest.approx(2 / 61)
    # An identifier is still found first, though another docstring holds one of its words.
    for mode in ("bm25", "hybrid"):
        assert index.search("apply_discount", mode=mode, k=1)[0].chunk.symbol == "shop.pricing.apply_discount"
    index.config = Config(search=replace(Config().search, summaries=False))
    assert index.search(query, mode="bm25", k=1)[0].score == pytest.approx(plain[discount])
    assert index.search(query, mode="dense", k=1)[0].score == pytest.approx(whole[discount])


def test_readers_keep_their_generation(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    build(tmp_path, embedder)
    reader = open_index(tmp_path, embedder)
    (tmp_path / "shop/tax.py").write_text("def excise_duty():\n    return 1\n")
    build(tmp_path, embedder)
    assert reader.search("vat rate", mode="bm25", k=1)[0].chunk.path == "shop/tax.py"
    assert reader.refresh() is True
    assert reader.search("excise duty", mode="bm25", k=1)[0].chunk.symbol == "shop.tax.excise_duty"


def test_kill_during_indexing_leaves_previous_generation_usable(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    build(tmp_path, embedder)
    # Enough new files that the killed run is certainly mid-way (parsing, embedding or Tantivy).
    write_tree(tmp_path, {f"gen/mod_{i}.py": f"def helper_{i}(x):\n    return x + {i}\n" for i in range(400)})
    child = subprocess.Popen(
        [sys.executable, "-m", "repolm.cli", "index", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    index_dir = tmp_path / ".repolm"
    while time.time() < deadline and not (index_dir / "lexical-2").exists():
        if Store.open(index_dir).db.execute("SELECT COUNT(*) FROM files WHERE gen_added = 2").fetchone()[0]:
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    reader = open_index(tmp_path, embedder)
    assert reader.generation == 1
    assert (
        reader.search("reduce a price by a percentage", k=1)[0].chunk.symbol == "shop.pricing.apply_discount"
    )
    assert not reader.search("helper_7", mode="bm25", k=1) or reader.search("helper_7", mode="bm25", k=1)[
        0
    ].chunk.path.startswith("shop")
    summary = build(tmp_path, embedder)
    assert summary.generation == 2 and summary.files == 404
    assert (
        open_index(tmp_path, embedder).search("helper_7", mode="bm25", k=1)[0].chunk.symbol
        == "gen.mod_7.helper_7"
    )


SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLQ",
    "github": "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "password": "Tr0ub4dor&3-correct-horse",
    "pem": "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi",
}


def test_secrets_never_reach_any_store_or_output(tmp_path: Path, embedder) -> None:
    write_tree(
        tmp_path,
        {
            "settings.py": (
                f'AWS_ACCESS_KEY_ID = "{SECRETS["aws"]}"\n'
                f'GITHUB_TOKEN = "{SECRETS["github"]}"\n'
                f'slack_token = "{SECRETS["slack"]}"\n'
                "def connect():\n"
                f'    """Signs in with {SECRETS["github"]} (a docstring becomes the chunk\'s summary)."""\n'
                "    return AWS_ACCESS_KEY_ID\n"
            ),
            ".env.production": f"DB_PASSWORD={SECRETS['password']}\n",
            "deploy/key.md": (
                "# Deploy key\n\n```\n-----BEGIN RSA PRIVATE KEY-----\n"
                f"{SECRETS['pem']}\nq3Z0cF7v9kLmN2pQ8rS1tU4wX6yZ0aB3cD5eF7gH9iJ\n"
                "-----END RSA PRIVATE KEY-----\n```\n"
            ),
        },
    )
    summary = build(tmp_path, embedder)
    assert summary.redactions >= 5
    index_dir = tmp_path / ".repolm"
    blobs = b"".join(p.read_bytes() for p in index_dir.rglob("*") if p.is_file())
    for name, secret in SECRETS.items():
        assert secret.encode() not in blobs, name
    index = open_index(tmp_path, embedder)
    assert any(
        c.chunk.summary.startswith("Signs in with") for c in index.store.alive_chunks(index.generation)
    )
    texts = [
        h.chunk.text
        for mode in ("bm25", "dense", "hybrid")
        for h in index.search("token key password", mode=mode, k=20)
    ]
    assert texts and not any(secret in text for text in texts for secret in SECRETS.values())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "repolm.cli",
            "search",
            "AWS token connect",
            "--repo",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) and not any(secret in out for secret in SECRETS.values())


def test_bad_files_are_skipped_with_reasons(tmp_path: Path, embedder) -> None:
    write_tree(
        tmp_path,
        {
            "good.py": "def fine():\n    return 1\n",
            "broken.py": "def broken(:\n    return (\n\nclass Half\n",
            "latin.py": b"def latin():\n    return '\xe9t\xe9'\n",
            "image.py": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "huge.py": "x = 1\n" * 300_000,
            "bundle.min.js": "var a=1;" * 10,
        },
    )
    os.symlink(tmp_path / "nowhere.py", tmp_path / "dangling.py")
    summary = build(tmp_path, embedder)
    assert summary.files == 3
    assert summary.skipped["binary"] == 1
    assert summary.skipped["over the size limit"] == 1
    assert summary.skipped["generated or minified"] == 1
    assert summary.skipped["unreadable"] == 1
    assert summary.syntax_error_files == 1 and summary.invalid_utf8_files == 1
    index = open_index(tmp_path, embedder)
    assert index.search("broken", mode="bm25", k=1)[0].chunk.path == "broken.py"
    assert index.search("latin", mode="bm25", k=1)[0].chunk.path == "latin.py"


def test_corrupt_and_foreign_indexes_fail_clearly(tmp_path: Path, embedder) -> None:
    with pytest.raises(IndexFormatError, match="run `repolm index` first"):
        open_index(tmp_path, embedder)
    write_tree(tmp_path, {"a.py": "a = 1\n"})
    build(tmp_path, embedder)
    store = Store.open(tmp_path / ".repolm")
    store.db.execute("UPDATE meta SET value = '999' WHERE key = 'format_version'")
    store.close()
    with pytest.raises(IndexFormatError, match="format 999"):
        open_index(tmp_path, embedder)
    (tmp_path / ".repolm" / "index.sqlite").write_bytes(b"this is not sqlite" * 100)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / ".repolm" / name).unlink(missing_ok=True)
    with pytest.raises(IndexFormatError, match=r"is damaged \(file is not a database\); run `repolm index`"):
        open_index(tmp_path, embedder)


def _mark_outdated(index_dir: Path) -> int:
    """Label the index as written by an earlier format version; the number of vectors it holds."""
    store = Store.open(index_dir)
    store.db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    vectors = int(store.db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    store.close()
    return vectors


def test_an_outdated_index_is_rebuilt_and_keeps_its_vectors(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    first = build(tmp_path, embedder)
    index_dir = tmp_path / ".repolm"
    vectors = _mark_outdated(index_dir)
    assert vectors == first.embedded + first.summaries_embedded > 0
    with pytest.raises(OutdatedIndexError, match="Run `repolm index`: it rebuilds"):
        open_index(tmp_path, embedder)
    rebuilt = build(tmp_path, embedder)
    # Every file parsed again into a new index, and nothing embedded again: the vectors came along.
    assert (rebuilt.generation, rebuilt.added, rebuilt.embedded, rebuilt.summaries_embedded) == (1, 4, 0, 0)
    assert sorted(p.name for p in index_dir.iterdir() if p.name.startswith(OUTDATED_NAME)) == []
    index = open_index(tmp_path, embedder)
    assert len(index.dense) == index.chunk_count
    assert index.search("percentage discount", k=1)[0].chunk.symbol == "shop.pricing.apply_discount"
    index.close()

    # A run killed after setting the old database aside and creating the new one: the next run still
    # carries the vectors over, and then deletes the old database.
    _mark_outdated(index_dir)
    with pytest.raises(OutdatedIndexError):
        Store.open(index_dir, create=True)
    for suffix in ("", "-wal", "-shm"):
        if (index_dir / f"index.sqlite{suffix}").exists():
            os.replace(index_dir / f"index.sqlite{suffix}", index_dir / f"{OUTDATED_NAME}{suffix}")
    Store.open(index_dir, create=True).close()
    rebuilt = build(tmp_path, embedder)
    assert (rebuilt.added, rebuilt.embedded, rebuilt.summaries_embedded) == (4, 0, 0)
    assert not (index_dir / OUTDATED_NAME).exists()


def test_fusion_arithmetic() -> None:
    bm25 = [(1, 12.0), (2, 8.0), (3, 1.0)]
    dense = [(3, 0.9), (1, 0.5)]
    fused = reciprocal_rank_fusion([bm25, dense], k=60)
    assert [item for item, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)
    mixed = weighted_fusion([(bm25, 0.5), (dense, 0.5)])
    assert dict(mixed) == pytest.approx({1: 0.5, 2: 0.5 * 7 / 11, 3: 0.5})


def test_threaded_embedding_keeps_order_and_vectors(embedder) -> None:
    # Enough texts for several pieces per thread; each is distinct so that a swapped row would show.
    verbs = ("load", "save", "render", "delete", "parse", "send", "cache", "sort")
    nouns = ("invoice", "user", "cart", "token", "report", "image", "order", "email", "route")
    texts = [
        f"def {verb}_{noun}(request):\n    return {verb}({noun}_store, request)"
        for verb in verbs
        for noun in nouns
    ]
    single = Embedder(str(embedder.path), batch_size=4, threads=1).encode(texts)
    threaded = Embedder(str(embedder.path), batch_size=4, threads=3).encode(texts)
    assert threaded.shape == single.shape == (len(texts), single.shape[1])
    similarity = threaded @ single.T
    assert (similarity.argmax(axis=1) == np.arange(len(texts))).all()
    assert similarity.diagonal().min() > 0.99
