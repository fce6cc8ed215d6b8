"""A damaged index says what is broken and how to fix it, and `repolm index` repairs it, redoing only
what is needed: a lost Tantivy generation is rewritten from the chunks in SQLite, missing vectors are
embedded, and an unreadable database is set aside and rebuilt with the vectors it still holds."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import tantivy
from conftest import run_repolm, write_tree

from repolm.config import Config
from repolm.indexer.builder import update_index
from repolm.indexer.lexical import ANALYZER
from repolm.indexer.retrieval import Index
from repolm.indexer.status import index_status
from repolm.indexer.store import IndexFormatError

REPO = {
    "shop/pricing.py": (
        "def apply_discount(price, percent):\n"
        '    """Reduce a price by a percentage discount."""\n'
        "    return price * (1 - percent / 100)\n"
    ),
    "shop/tax.py": 'def vat_rate():\n    """The VAT rate for the shop."""\n    return 0.2\n',
    "shop/cart.py": (
        "from shop.pricing import apply_discount\n\n\n"
        "class Cart:\n"
        "    def total(self, items):\n"
        "        return sum(apply_discount(i.price, i.discount) for i in items)\n"
    ),
    "docs/guide.md": "# Guide\n\nDiscounts are percentages off the price.\n",
}


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _lose_lexical(index_dir: Path) -> None:
    shutil.rmtree(index_dir / "lexical-1")


def _corrupt_lexical(index_dir: Path) -> None:
    # A segment file whose end (Tantivy's footer) is overwritten, as a torn write or a bad disk leaves it.
    segment = max(
        (p for p in (index_dir / "lexical-1").iterdir() if p.suffix == ".idx"), key=lambda p: p.name
    )
    data = bytearray(segment.read_bytes())
    data[-16:] = b"\x00" * 16
    segment.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_lose_lexical, _corrupt_lexical], ids=["missing", "corrupt"])
def test_a_damaged_lexical_generation_is_reported_and_rewritten_from_sqlite(
    tmp_path: Path, embedder, damage
) -> None:
    write_tree(tmp_path, REPO)
    first = update_index(tmp_path, Config(), embedder=embedder)
    index_dir = tmp_path / ".repolm"
    damage(index_dir)

    line = _one_line_error(run_repolm("search", "discount", "--repo", str(tmp_path), "--mode", "bm25"))
    assert "lexical index of generation 1" in line and "run `repolm index`" in line
    status = run_repolm("status", str(tmp_path), "--json")
    assert status.returncode == 0, status.stderr
    (problem,) = json.loads(status.stdout)["problems"]
    assert "lexical index of generation 1" in problem and "run `repolm index`" in problem
    assert "lexical index of generation 1" in run_repolm("status", str(tmp_path)).stdout

    summary = update_index(tmp_path, Config(), embedder=embedder)
    # Nothing parsed or embedded again: the documents come from the chunks stored in SQLite.
    assert (summary.reparsed, summary.embedded, summary.summaries_embedded) == (0, 0, 0)
    assert summary.generation == 2 and summary.chunks == first.chunks
    assert any("lexical" in repair for repair in summary.repairs)
    index = Index.open(tmp_path, Config(), embedder=embedder)
    assert (
        index.search("percentage discount", mode="bm25", k=1)[0].chunk.symbol == "shop.pricing.apply_discount"
    )
    index.close()
    assert index_status(tmp_path, Config())["problems"] == []
    assert update_index(tmp_path, Config(), embedder=embedder).repairs == []


def test_documents_of_deleted_chunks_are_reported_and_cleared(tmp_path: Path, embedder) -> None:
    """As left by a repolm whose deletes never reached Tantivy: searches still work (they skip chunks
    that are gone), `status` says so, and the next `repolm index` writes the generation again."""
    write_tree(tmp_path, REPO)
    update_index(tmp_path, Config(), embedder=embedder)
    index_dir = tmp_path / ".repolm"
    stale = tantivy.Index.open(str(index_dir / "lexical-1"))
    stale.register_tokenizer(ANALYZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
    writer = stale.writer(heap_size=15_000_000, num_threads=1)
    document = tantivy.Document()
    document.add_unsigned("chunk_id", 10_000)
    document.add_unsigned("file_id", 10_000)
    writer.add_document(document)
    writer.commit()
    writer.wait_merging_threads()
    index = Index.open(tmp_path, Config(), embedder=embedder)
    assert index.search("vat rate", mode="bm25", k=1)[0].chunk.symbol == "shop.tax.vat_rate"
    index.close()
    (problem,) = index_status(tmp_path, Config())["problems"]
    assert "holds 7 documents for 6 chunks; run `repolm index`" in problem
    summary = update_index(tmp_path, Config(), embedder=embedder)
    assert (summary.reparsed, summary.embedded, summary.generation) == (0, 0, 2)
    assert index_status(tmp_path, Config())["problems"] == []


def test_missing_vectors_are_reported_and_embedded_again(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    update_index(tmp_path, Config(), embedder=embedder)
    with sqlite3.connect(tmp_path / ".repolm" / "index.sqlite") as db:
        db.execute(
            "DELETE FROM embeddings WHERE hash IN (SELECT c.hash FROM chunks c"
            " JOIN files f ON f.id = c.file_id WHERE f.path = 'shop/cart.py')"
        )
    db.close()
    (problem,) = index_status(tmp_path, Config())["problems"]
    assert "3 chunks of generation 1" in problem and "run `repolm index`" in problem
    summary = update_index(tmp_path, Config(), embedder=embedder)
    assert (summary.reparsed, summary.embedded, summary.generation) == (0, 3, 1)
    assert index_status(tmp_path, Config())["problems"] == []


def test_an_unreadable_database_gives_one_line_and_is_rebuilt(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    first = update_index(tmp_path, Config(), embedder=embedder)
    index_dir = tmp_path / ".repolm"
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (index_dir / name).unlink(missing_ok=True)
    (index_dir / "index.sqlite").write_bytes(b"garbage, not sqlite " * 400)
    for args in (
        ("search", "discount", "--repo", str(tmp_path)),
        ("status", str(tmp_path)),
        ("explain", "apply_discount", "--card-only", "--repo", str(tmp_path)),
        ("ask", "What calls apply_discount?", "--repo", str(tmp_path)),
    ):
        line = _one_line_error(run_repolm(*args))
        assert "damaged" in line and "run `repolm index`" in line, (args, line)
    summary = update_index(tmp_path, Config(), embedder=embedder)
    assert (summary.generation, summary.added, summary.embedded) == (1, 4, first.embedded)
    assert any("set aside" in repair for repair in summary.repairs)
    assert index_status(tmp_path, Config())["problems"] == []


def test_a_database_damaged_inside_keeps_the_vectors_it_can_still_read(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    first = update_index(tmp_path, Config(), embedder=embedder)
    db_path = tmp_path / ".repolm" / "index.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = [row[0] for row in db.execute("SELECT pageno FROM dbstat WHERE name = 'chunks'")]
    db.close()
    with db_path.open("r+b") as handle:  # the chunks table's pages overwritten: the rest still reads
        for page in pages:
            handle.seek((page - 1) * page_size)
            handle.write(b"\xa5" * page_size)
    with pytest.raises(IndexFormatError, match=r"damaged.*run `repolm index`"):
        Index.open(tmp_path, Config(), embedder=embedder)
    summary = update_index(tmp_path, Config(), embedder=embedder)
    assert (summary.generation, summary.added, summary.reparsed) == (1, 4, 4)
    assert (summary.embedded, summary.summaries_embedded) == (0, 0)  # the vectors were carried over
    assert first.embedded > 0 and any("set aside" in repair for repair in summary.repairs)
    index = Index.open(tmp_path, Config(), embedder=embedder)
    assert index.search("percentage discount", k=1)[0].chunk.symbol == "shop.pricing.apply_discount"


def test_the_server_treats_a_damaged_index_as_missing_and_repairs_it(tmp_path: Path, embedder) -> None:
    from repolm.assist.engine import BackgroundIndexer, Engine, NoIndexError

    write_tree(tmp_path, REPO)
    update_index(tmp_path, Config(), embedder=embedder)
    _lose_lexical(tmp_path / ".repolm")
    engine = Engine(tmp_path, Config())
    done: list[object] = []
    indexer = BackgroundIndexer(engine, done=lambda summary, error: done.append(error or summary))
    with pytest.raises(NoIndexError, match="lexical index of generation 1"):
        engine.search("percentage discount")
    # Noticing the damage asked the background indexer for a repair, which ran without being told twice.
    assert indexer.wait_idle(120) and len(done) == 1
    assert [h.chunk.symbol for h in engine.search("percentage discount", k=1, mode="bm25")] == [
        "shop.pricing.apply_discount"
    ]
    assert engine.index_problem is None
