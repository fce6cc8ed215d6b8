"""`repolm status`: what the current generation holds, what the last update skipped and why, and
whether its stores agree with it (with the fix for each problem found)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from repolm.config import Config

from .dense import Embedder, EmbeddingModelError
from .lexical import LexicalReader
from .store import DamagedIndexError, Store, alive, database_error


def index_status(root: Path, config: Config) -> dict[str, object]:
    index_dir = config.index_path(root.resolve())
    store = Store.open(index_dir, read_only=True)
    try:
        generation = store.current_generation
        files, chunks, redactions = store.totals(generation)
        languages = dict(
            store.db.execute(
                f"SELECT language, COUNT(*) FROM files WHERE {alive('files', generation)}"
                " GROUP BY language ORDER BY COUNT(*) DESC"
            ).fetchall()
        )
        last = store.summary()
        vectors = store.cached_vectors()
        problems = _problems(store, generation, chunks, root, config) if generation else []
    except sqlite3.DatabaseError as error:
        raise database_error(error, index_dir) from error
    finally:
        store.close()
    return {
        "root": str(root.resolve()),
        "index_dir": str(index_dir),
        "generation": generation,
        "files": files,
        "chunks": chunks,
        "languages": languages,
        "redactions": redactions,
        "vectors_cached": vectors,  # chunk and docstring vectors, kept within Store.prune_vectors' bound
        "skipped": last.get("skipped", {}),
        "skipped_examples": last.get("skipped_examples", {}),
        "syntax_error_files": last.get("syntax_error_files", 0),
        "invalid_utf8_files": last.get("invalid_utf8_files", 0),
        "index_bytes": sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file()),
        "problems": problems,  # each ends with its fix; empty when the stores agree with the generation
    }


def _problems(store: Store, generation: int, chunks: int, root: Path, config: Config) -> list[str]:
    """What is wrong with the published generation's stores: its Tantivy folder, and its vectors
    under the embedder in use."""
    problems = []
    try:
        LexicalReader.checked(store.path, generation, chunks)
    except DamagedIndexError as error:
        problems.append(str(error))
    try:
        embedder = Embedder.for_repo(root, config)
        model = store.vector_model((embedder.name, embedder.legacy_name))
    except EmbeddingModelError as error:
        return [*problems, f"{error}; fix index.embedding_model"]
    counts = zip(store.count_without_vector(generation, model), ("chunks", "docstrings"), strict=True)
    missing = [f"{n} {what}" for n, what in counts if n]
    if missing:
        problems.append(
            f"{' and '.join(missing)} of generation {generation} have no vector from the embedding model in "
            "use; run `repolm index` to embed them"
        )
    return problems
