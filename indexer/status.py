"""`repolm status`: what the current generation holds, what the last update skipped and why."""

from __future__ import annotations

from pathlib import Path

from repolm.config import Config

from .store import Store, alive


def index_status(root: Path, config: Config) -> dict[str, object]:
    index_dir = config.index_path(root.resolve())
    store = Store.open(index_dir)
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
    }
