"""`repolm index`: bring the on-disk index in line with the repository, touching only what changed.

Steps, each one small: discover files → compare with the current generation (size and mtime first,
content hash when they differ) → redact and parse the added or changed files → store them as a new
generation → embed chunks whose content is not in the cache → write the Tantivy generation → publish.
Nothing a reader can see changes until `Store.publish`; a crash anywhere before it is undone by
`Store.recover` on the next run.

Each run also repairs what it finds damaged, redoing only what is needed: a missing or unreadable
Tantivy generation is written again from the chunks in SQLite, vectors missing from the cache are
embedded, and an unreadable database is set aside and rebuilt with the vectors it still holds.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from repolm.config import Config, Progress

from .code_chunks import parse_code
from .code_source import module_name
from .dense import Embedder
from .discovery import SKIP_GENERATED, Discovery, FoundFile, discover, is_generated, read_source
from .doc_chunks import doc_language, parse_doc
from .index_dir import claim_index_dir, remove_store_files
from .languages import language_for_path
from .lexical import LexicalReader, LexicalWriter, remove_stale
from .records import ParsedFile, content_hash
from .secrets import redact
from .store import (
    DB_COMPANIONS,
    DB_NAME,
    NO_SPACE,
    OUTDATED_NAME,
    DamagedIndexError,
    FileRow,
    IndexWriteError,
    OutdatedIndexError,
    Store,
    StoredChunk,
    database_error,
)

LOCK_NAME = "index.lock"


class IndexBusyError(RuntimeError):
    """Another `repolm index` holds the lock on this index."""


@dataclass
class IndexSummary:
    root: str
    generation: int
    files: int = 0
    chunks: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    renamed: int = 0
    unchanged: int = 0
    reparsed: int = 0
    embedded: int = 0  # chunks embedded in this run (the rest came from the cache)
    summaries_embedded: int = 0  # definitions' summaries embedded in this run
    vectors_pruned: int = 0  # cached vectors no chunk used any more, dropped (Store.prune_vectors)
    redactions: int = 0  # secrets replaced in this run's parsed files
    redactions_total: int = 0
    syntax_error_files: int = 0
    invalid_utf8_files: int = 0
    recovered_file_versions: int = 0  # left behind by an interrupted run and undone
    repairs: list[str] = field(default_factory=list)  # damaged stores found and rebuilt by this run
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _ParsedSource:
    found: FoundFile
    language: str
    file_hash: str
    parsed: ParsedFile
    redactions: int


def parse_source(path: str, text: str, max_chunk_lines: int) -> tuple[str, ParsedFile, int] | None:
    """Redact, then chunk one file: (language, parsed, redactions), or None if no chunker applies."""
    language = language_for_path(path) or doc_language(path, text)
    if language is None:
        return None
    clean, redactions = redact(text, path)
    if language_for_path(path):
        parsed = parse_code(path, language, clean, max_chunk_lines=max_chunk_lines)
    else:
        parsed = ParsedFile(chunks=parse_doc(path, clean, max_chunk_lines=max_chunk_lines))
    return language, parsed, len(redactions)


@contextmanager
def index_lock(index_dir: Path) -> Iterator[None]:
    """Held for a whole update; a second one fails at once rather than waiting behind it."""
    lock = FileLock(index_dir / LOCK_NAME)
    try:
        lock.acquire(blocking=False)
    except Timeout as error:
        raise IndexBusyError(f"another `repolm index` is updating {index_dir}") from error
    try:
        yield
    finally:
        lock.release()


def update_index(
    root: Path,
    config: Config,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> IndexSummary:
    """Index `root` incrementally; returns what was done. `embedder=None` loads the configured one."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    index_dir = config.index_path(root)
    report = progress or (lambda stage, done, total: None)
    clock = _StageClock()
    with _write_errors(index_dir):
        claim_index_dir(index_dir)
        with index_lock(index_dir):
            if rebuild:
                remove_store_files(index_dir)
            try:
                return _open_and_update(root, config, index_dir, embedder, report, clock, [])
            except DamagedIndexError as error:
                _set_aside(index_dir)
                repair = f"{error.diagnosis}: set aside and rebuilt, keeping the vectors it still held"
                return _open_and_update(root, config, index_dir, embedder, report, clock, [repair])


def embed_generation(root: Path, config: Config, embedder: Embedder, progress: Progress | None = None) -> int:
    """Give every chunk and summary of the published generation a vector from `embedder`, beside the
    vectors of the embedder in use (nothing is published or pruned): a candidate retriever is evaluated,
    and a promoted one served, from these. Returns how many texts were embedded."""
    index_dir = config.index_path(root.resolve())
    report = progress or (lambda stage, done, total: None)
    with _write_errors(index_dir), index_lock(index_dir):
        store = Store.open(index_dir)
        try:
            generation = store.current_generation
            chunks = {
                c.hash: c.chunk.embedding_text for c in store.chunks_without_vector(generation, embedder.name)
            }
            todo = chunks | store.summaries_without_vector(generation, embedder.name)
            _embed_missing(store, embedder, todo, report)
        finally:
            store.close()
    return len(todo)


def _open_and_update(
    root: Path,
    config: Config,
    index_dir: Path,
    embedder: Embedder | None,
    report: Progress,
    clock: _StageClock,
    repairs: list[str],
) -> IndexSummary:
    try:
        store = Store.open(index_dir, create=True)
    except OutdatedIndexError:
        _set_aside(index_dir)
        store = Store.open(index_dir, create=True)
    try:
        _adopt_outdated_vectors(store, index_dir)
        return _update(root, config, store, embedder, report, clock, repairs)
    except sqlite3.DatabaseError as error:  # a page found damaged only now, inside the database
        failure = database_error(error, index_dir)
        if isinstance(failure, DamagedIndexError):
            raise failure from error
        raise
    finally:
        store.close()


@contextmanager
def _write_errors(index_dir: Path) -> Iterator[None]:
    """Storage refusing a write (full, read-only) ends the run with one line; nothing was published."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        failure = database_error(error, index_dir)
        if isinstance(failure, IndexWriteError):
            raise failure from error
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise IndexWriteError(NO_SPACE) from error
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise IndexWriteError(
                f"cannot write the index at {index_dir} ({error.strerror}); searches still read it. Make the "
                "folder writable, or set index.index_dir to a folder repolm can write"
            ) from error
        raise
    except ValueError as error:  # Tantivy reports I/O errors as ValueError, with the OS error's text
        if f"(os error {errno.ENOSPC})" in str(error):
            raise IndexWriteError(NO_SPACE) from error
        raise


def _update(
    root: Path,
    config: Config,
    store: Store,
    embedder: Embedder | None,
    report: Progress,
    clock: _StageClock,
    repairs: list[str],
) -> IndexSummary:
    recovered = store.recover()
    current = store.current_generation
    generation = current + 1
    summary = IndexSummary(str(root), current, recovered_file_versions=recovered, repairs=repairs)
    lexical_damage = _lexical_damage(store, current)
    if lexical_damage:
        summary.repairs.append(f"{lexical_damage}: written again from the chunks in the index")

    with clock("discovery"):
        found = discover(root, config.index)
        known = store.alive_files(current)
        to_parse, unchanged = _changed_files(root, found, known, store, config.index.max_file_bytes)
    report("discovery", len(found.files), len(found.files))

    with clock("parsing"):
        parsed: list[_ParsedSource] = []
        for done, item in enumerate(to_parse, 1):
            source = _parse_one(root, item, config, found)
            if source is not None:
                parsed.append(source)
            report("parsing", done, len(to_parse))

    parsed_paths = {p.found.path for p in parsed}
    gone = [row for path, row in known.items() if path not in unchanged]  # changed, removed or now skipped
    new_hashes = {p.file_hash for p in parsed if p.found.path not in known}
    summary.renamed = sum(1 for row in gone if row.path not in parsed_paths and row.hash in new_hashes)
    summary.added = sum(1 for p in parsed if p.found.path not in known) - summary.renamed
    summary.changed = sum(1 for p in parsed if p.found.path in known)
    summary.removed = sum(1 for row in gone if row.path not in parsed_paths) - summary.renamed
    summary.unchanged = len(unchanged)
    summary.reparsed = len(parsed)
    summary.redactions = sum(p.redactions for p in parsed)
    summary.syntax_error_files = sum(1 for p in parsed if p.parsed.syntax_errors)

    changed = bool(parsed or gone or current == 0 or lexical_damage)
    new_chunks: list[StoredChunk] = []
    if changed:
        with clock("graph"), store.transaction():
            store.remove_file_versions(generation, [row.id for row in gone])
            new_ids = [
                store.add_file_version(
                    generation,
                    p.found.path,
                    module_name(p.found.path),
                    p.file_hash,
                    p.found.size,
                    p.found.mtime_ns,
                    p.language,
                    p.parsed,
                    p.redactions,
                )
                for p in parsed
            ]
        new_chunks = list(store.chunks_of_files(new_ids))
    with clock("embedding"):
        # Every chunk and summary of the generation without a vector from this embedder: the new ones,
        # and all of them once the embedding model or its token cap changed, even when no file did.
        embedder = embedder or Embedder.for_repo(root, config)
        store.rename_vectors(embedder.legacy_name, embedder.name)
        embedded = generation if changed else current
        # Keyed by the stored hash, which lookups join on: one vector per content, and found again even
        # for a chunk stored when `embedding_text` was made differently (then the embedder's name differs).
        chunks = {
            c.hash: c.chunk.embedding_text for c in store.chunks_without_vector(embedded, embedder.name)
        }
        summaries = store.summaries_without_vector(embedded, embedder.name)
        _embed_missing(store, embedder, chunks | summaries, report)
        summary.embedded, summary.summaries_embedded = len(chunks), len(summaries)
    if changed:
        with clock("lexical"):
            if current and not lexical_damage:  # the previous generation's documents, less the gone
                writer = LexicalWriter(store.path, generation, current)
                writer.delete_files(row.id for row in gone)
            else:  # every document of the generation, from its chunks
                writer = LexicalWriter(store.path, generation, None)
                new_chunks = list(store.alive_chunks(generation))
            for done, stored in enumerate(new_chunks, 1):
                writer.add(stored.id, stored.file_id, stored.chunk)
                if done % 500 == 0:
                    report("lexical", done, len(new_chunks))
            writer.commit()
        summary.generation = generation
    _fill_totals(summary, store, found)
    summary.seconds = clock.seconds
    if summary.generation == generation:
        store.publish(generation, summary.to_json())
        remove_stale(store.path, keep={generation, current})
    # After the publish, which purges the chunk rows no reader can see: their vectors count as unused.
    summary.vectors_pruned = store.prune_vectors(embedder.name)
    return summary


def _lexical_damage(store: Store, generation: int) -> str | None:
    """What is wrong with the Tantivy folder of the published `generation`, if anything."""
    if generation == 0:
        return None
    try:
        LexicalReader.checked(store.path, generation, store.totals(generation)[1])
    except DamagedIndexError as error:
        return error.diagnosis
    return None


def _changed_files(
    root: Path, found: Discovery, known: dict[str, FileRow], store: Store, max_bytes: int
) -> tuple[list[FoundFile], set[str]]:
    """Files to parse, and the paths whose stored version is still right."""
    to_parse: list[FoundFile] = []
    unchanged: set[str] = set()
    for item in found.files:
        row = known.get(item.path)
        if row is None:
            to_parse.append(item)
        elif (row.size, row.mtime_ns) == (item.size, item.mtime_ns):
            unchanged.add(item.path)
        else:
            source = read_source(root, item.path, max_bytes)
            if not isinstance(source, str) and content_hash(source.text) == row.hash:
                store.touch_file(row.id, item.mtime_ns)
                unchanged.add(item.path)
            else:
                to_parse.append(item)
    return to_parse, unchanged


def _parse_one(root: Path, item: FoundFile, config: Config, found: Discovery) -> _ParsedSource | None:
    source = read_source(root, item.path, config.index.max_file_bytes)
    if isinstance(source, str):
        found.skip(item.path, source)
        return None
    if is_generated(item.path, source.text):
        found.skip(item.path, SKIP_GENERATED)
        return None
    if source.replaced_invalid_utf8:
        found.invalid_utf8.append(item.path)
    result = parse_source(item.path, source.text, config.index.max_chunk_lines)
    if result is None:
        found.skip(item.path, "unsupported file type")
        return None
    language, parsed, redactions = result
    return _ParsedSource(item, language, content_hash(source.text), parsed, redactions)


def _embed_missing(store: Store, embedder: Embedder, todo: dict[str, str], report: Progress) -> None:
    """Embed each {cache key: text} and cache the vectors under their keys."""
    # Similar lengths side by side: each batch is padded to its longest text, so this saves work.
    keys = sorted(todo, key=lambda key: len(todo[key]))
    step = 2048  # commit to the cache in slices (~15 s of CPU work): a killed run keeps what it embedded
    for start in range(0, len(keys), step):
        batch = keys[start : start + step]
        store.cache_embeddings(embedder.name, batch, embedder.encode([todo[k] for k in batch]))
        report("embedding", min(start + step, len(keys)), len(keys))


def _fill_totals(summary: IndexSummary, store: Store, found: Discovery) -> None:
    summary.files, summary.chunks, summary.redactions_total = store.totals(summary.generation)
    summary.skipped = dict(Counter(found.skipped).most_common())
    summary.skipped_examples = found.examples
    summary.invalid_utf8_files = len(found.invalid_utf8)


def _set_aside(index_dir: Path) -> None:
    """Move an outdated or damaged index's database aside (with its WAL files, so that it stays whole)
    and remove the rest of the index's files, so that a new index is built in their place."""
    for suffix in DB_COMPANIONS:
        if (index_dir / f"{DB_NAME}{suffix}").exists():
            os.replace(index_dir / f"{DB_NAME}{suffix}", index_dir / f"{OUTDATED_NAME}{suffix}")
    remove_store_files(index_dir, keep=OUTDATED_NAME)


def _adopt_outdated_vectors(store: Store, index_dir: Path) -> None:
    """Carry the vectors of an index set aside into the new one, then delete it. A run killed before
    the delete does this again (the copy is one transaction that skips vectors already there)."""
    outdated = index_dir / OUTDATED_NAME
    if not outdated.exists():
        return
    store.adopt_vectors(outdated)
    for suffix in DB_COMPANIONS:
        (index_dir / f"{OUTDATED_NAME}{suffix}").unlink(missing_ok=True)


class _StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 3)
