"""BM25 over code-aware tokens, in Tantivy.

Each generation has its own Tantivy folder `lexical-<G>`. An update starts from hard links to the
previous generation's files (Tantivy never rewrites a segment file, and replaces meta.json by
renaming), deletes the documents of changed files and adds the new ones, so the previous folder
stays a complete, readable index until the new generation is published.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import tantivy

from .records import Chunk
from .store import DamagedIndexError
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
LEXICAL_PREFIX = "lexical-"


def lexical_dir(index_dir: Path, generation: int) -> Path:
    return index_dir / f"{LEXICAL_PREFIX}{generation}"


def _damaged(generation: int, problem: object) -> DamagedIndexError:
    reason = " ".join(str(problem).split())  # Tantivy's messages may span lines
    return DamagedIndexError(f"the lexical index of generation {generation} is missing or damaged ({reason})")


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
        # By query: tantivy-py's delete by term builds a signed term, which matches no unsigned field.
        ids = list(file_ids)
        if ids:
            gone = tantivy.Query.term_set_query(self.index.schema, "file_id", ids)
            self.writer.delete_documents_by_query(gone)

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
    """One generation's Tantivy index; raises DamagedIndexError when it is missing or unreadable."""

    def __init__(self, index_dir: Path, generation: int) -> None:
        path = lexical_dir(index_dir, generation)
        self.generation = generation
        if not (path / "meta.json").is_file():  # opening a folder without one would create an index
            raise _damaged(generation, f"no {path / 'meta.json'}")
        try:
            self.index = _open(self._readable(path))
            self.searcher = self.index.searcher()
        except ValueError as error:  # how Tantivy reports missing or corrupt files
            raise _damaged(generation, error) from error

    def _readable(self, path: Path) -> Path:
        """`path`, or a private copy of it when this process cannot write there (a read-only mount,
        another user's index): Tantivy takes a lock file in the folder to open even a reader."""
        if os.access(path, os.W_OK):
            return path
        self._copy = tempfile.TemporaryDirectory(prefix="repolm-lexical-")  # removed with the reader
        ignore = shutil.ignore_patterns(*_LOCK_FILES)
        return Path(shutil.copytree(path, Path(self._copy.name) / path.name, ignore=ignore))

    @classmethod
    def checked(cls, index_dir: Path, generation: int, chunks: int, stale_ok: bool = False) -> LexicalReader:
        """The reader, once it has been seen to hold one document for each of the generation's
        `chunks`, as every generation written by `repolm index` does. With `stale_ok` it may hold more:
        searches skip documents of chunks that are gone, and a repolm whose deletes did not reach
        Tantivy (before `delete_files` used a query) left such documents behind."""
        reader = cls(index_dir, generation)
        if reader.num_docs < chunks or (reader.num_docs > chunks and not stale_ok):
            raise DamagedIndexError(
                f"the lexical index of generation {generation} holds {reader.num_docs} documents for "
                f"{chunks} chunks"
            )
        return reader

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
        try:
            result = self.searcher.search(tantivy.Query.boolean_query(clauses), limit)
            docs = [(self.searcher.doc(address), score) for score, address in result.hits]
        except ValueError as error:  # a segment damaged where opening it did not look
            raise _damaged(self.generation, error) from error
        return [(int(doc["chunk_id"][0]), float(score)) for doc, score in docs]


def remove_stale(index_dir: Path, keep: set[int]) -> None:
    """Delete lexical folders of generations no reader should open any more."""
    for entry in index_dir.glob(f"{LEXICAL_PREFIX}*"):
        suffix = entry.name.removeprefix(LEXICAL_PREFIX)
        if suffix.isdigit() and int(suffix) not in keep:
            shutil.rmtree(entry, ignore_errors=True)
