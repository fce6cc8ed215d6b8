"""BM25 over code-aware tokens, in Tantivy.

Each generation has its own Tantivy folder `lexical-<G>`. An update starts from hard links to the
previous generation's files (Tantivy never rewrites a segment file, and replaces meta.json by
renaming), deletes the documents of changed files and adds the new ones, so the previous folder
stays a complete, readable index until the new generation is published.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import tantivy

from .records import Chunk
from .tokens import analyzed, code_tokens

ANALYZER = "code"
# What `search` matches, and how much a term found in each field weighs.
FIELD_BOOSTS = {"symbol": 2.0, "content": 1.0, "path": 0.5}
# The chunk's summary (its definition's docstring), matched as a field of its own when asked for: BM25
# normalises each field by its own length, so a short description that holds the query's words scores
# high even when the body around it is long.
SUMMARY_FIELD = "summary"
SUMMARY_BOOST = 1.0
_LOCK_FILES = {".tantivy-writer.lock", ".tantivy-meta.lock"}


def lexical_dir(index_dir: Path, generation: int) -> Path:
    return index_dir / f"lexical-{generation}"


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("chunk_id", stored=True, indexed=True, fast=True)
    builder.add_unsigned_field("file_id", indexed=True)
    for name in (*FIELD_BOOSTS, SUMMARY_FIELD):
        builder.add_text_field(name, tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def _open(path: Path) -> tantivy.Index:
    index = tantivy.Index(_schema(), path=str(path))
    analyzer = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    index.register_tokenizer(ANALYZER, analyzer)
    return index


class LexicalWriter:
    """Builds generation `generation` from `previous` (or from nothing)."""

    def __init__(self, index_dir: Path, generation: int, previous: int | None) -> None:
        target = lexical_dir(index_dir, generation)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        source = lexical_dir(index_dir, previous) if previous is not None else None
        if source is not None and (source / "meta.json").exists():
            for entry in os.scandir(source):
                if entry.is_file() and entry.name not in _LOCK_FILES:
                    os.link(entry.path, target / entry.name)
        self.index = _open(target)
        self.writer = self.index.writer(heap_size=128_000_000, num_threads=1)

    def delete_files(self, file_ids: Iterable[int]) -> None:
        for file_id in file_ids:
            self.writer.delete_documents_by_term("file_id", file_id)

    def add(self, chunk_id: int, file_id: int, chunk: Chunk) -> None:
        doc = tantivy.Document()
        doc.add_unsigned("chunk_id", chunk_id)
        doc.add_unsigned("file_id", file_id)
        doc.add_text("content", analyzed(chunk.text))
        doc.add_text("symbol", analyzed(chunk.symbol))
        doc.add_text("path", analyzed(chunk.path))
        if chunk.summary:
            doc.add_text(SUMMARY_FIELD, analyzed(chunk.summary))
        self.writer.add_document(doc)

    def commit(self) -> None:
        self.writer.commit()
        self.writer.wait_merging_threads()


class LexicalReader:
    def __init__(self, index_dir: Path, generation: int) -> None:
        path = lexical_dir(index_dir, generation)
        self.index = _open(path)
        self.searcher = self.index.searcher()

    @property
    def num_docs(self) -> int:
        return int(self.searcher.num_docs)

    def search(self, query: str, limit: int, summaries: bool = False) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) pairs over the chunks' text, symbol and path (and with `summaries`
        their summary), best first."""
        boosts = FIELD_BOOSTS | ({SUMMARY_FIELD: SUMMARY_BOOST} if summaries else {})
        terms = dict.fromkeys(code_tokens(query))
        if not terms or limit <= 0:
            return []
        clauses = [
            (
                tantivy.Occur.Should,
                tantivy.Query.boost_query(tantivy.Query.term_query(self.index.schema, field, t), boost),
            )
            for t in terms
            for field, boost in boosts.items()
        ]
        result = self.searcher.search(tantivy.Query.boolean_query(clauses), limit)
        hits = []
        for score, address in result.hits:
            doc = self.searcher.doc(address)
            hits.append((int(doc["chunk_id"][0]), float(score)))
        return hits


def remove_stale(index_dir: Path, keep: set[int]) -> None:
    """Delete lexical folders of generations no reader should open any more."""
    for entry in index_dir.glob("lexical-*"):
        suffix = entry.name.removeprefix("lexical-")
        if suffix.isdigit() and int(suffix) not in keep:
            shutil.rmtree(entry, ignore_errors=True)
