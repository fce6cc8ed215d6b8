"""The index's metadata store: files, chunks, symbol graph facts and the embedding cache, in SQLite.

Generations make updates atomic. Every file version is a row stamped with the generation that added
it (`gen_added`) and the one that removed it (`gen_removed`); chunks, definitions, references and
imports hang off a file version. A reader fixes a generation G when it opens and sees exactly the
file versions alive in G, so an update in progress (rows stamped G+1) is invisible until `publish`
moves `current_generation` forward in one transaction. A crash before that leaves rows stamped
above the current generation, which `recover` deletes. Rows that no reader can still see (removed
two generations ago) are purged after each publish.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import Chunk, ParsedFile

# Raised whenever what is stored changes meaning; an older index is rebuilt by `repolm index`. Format 3:
# chunks carry their summary (a definition's docstring), a member of a receiver the parser cannot name
# is referenced as `.name`.
FORMAT_VERSION = 3
DB_NAME = "index.sqlite"
# An index of an earlier format (or a damaged one), set aside while its replacement is built: the
# vectors it holds are carried over.
OUTDATED_NAME = "outdated.sqlite"
DB_COMPANIONS = ("", "-wal", "-shm", "-journal")  # suffixes of the files SQLite keeps beside a database
REPAIR = "run `repolm index` to repair it"
NO_SPACE = "no space left on device while writing the index; the previous generation is intact"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, module TEXT NOT NULL, hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, language TEXT NOT NULL, redactions INTEGER NOT NULL,
    syntax_errors INTEGER NOT NULL, gen_added INTEGER NOT NULL, gen_removed INTEGER);
CREATE INDEX IF NOT EXISTS files_by_path ON files(path);
CREATE INDEX IF NOT EXISTS files_by_module ON files(module);
CREATE INDEX IF NOT EXISTS files_by_gen ON files(gen_added, gen_removed);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, symbol TEXT NOT NULL, kind TEXT NOT NULL, scope TEXT NOT NULL,
    language TEXT NOT NULL, text TEXT NOT NULL, hash TEXT NOT NULL, summary TEXT NOT NULL,
    summary_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id);
CREATE TABLE IF NOT EXISTS definitions (
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, name TEXT NOT NULL, qualname TEXT NOT NULL,
    kind TEXT NOT NULL, scope TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    name_line INTEGER NOT NULL, name_col INTEGER NOT NULL, signature TEXT NOT NULL,
    docstring TEXT NOT NULL, bases TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS definitions_by_file ON definitions(file_id);
CREATE INDEX IF NOT EXISTS definitions_by_name ON definitions(name);
CREATE INDEX IF NOT EXISTS definitions_by_qualname ON definitions(qualname);
CREATE TABLE IF NOT EXISTS refs (
    file_id INTEGER NOT NULL, name TEXT NOT NULL, expression TEXT NOT NULL, kind TEXT NOT NULL,
    scope TEXT NOT NULL, line INTEGER NOT NULL, col INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS refs_by_file ON refs(file_id);
CREATE INDEX IF NOT EXISTS refs_by_name ON refs(name);
CREATE TABLE IF NOT EXISTS imports (
    file_id INTEGER NOT NULL, alias TEXT NOT NULL, target TEXT NOT NULL, line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS imports_by_file ON imports(file_id);
CREATE INDEX IF NOT EXISTS imports_by_target ON imports(target);
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, hash));
"""

# Tables whose rows belong to one file version.
_FILE_OWNED = ("chunks", "definitions", "refs", "imports")


class IndexFormatError(RuntimeError):
    """The folder holds no repolm index, a damaged one, or one of another format version."""


class OutdatedIndexError(IndexFormatError):
    """The folder holds an index of an earlier format version, which `repolm index` rebuilds."""


class DamagedIndexError(IndexFormatError):
    """Part of the index is missing or unreadable; `repolm index` repairs it."""

    def __init__(self, diagnosis: str, fix: str = REPAIR) -> None:
        super().__init__(f"{diagnosis}; {fix}")
        self.diagnosis = diagnosis


class IndexWriteError(RuntimeError):
    """The index could not be written (a full disk, a read-only folder); what was published stays."""


def database_error(error: sqlite3.Error, index_dir: Path | None = None) -> RuntimeError:
    """The error to report for a failure of SQLite on the index, in one line that names the fix."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    where = f" at {index_dir}" if index_dir else ""
    reason = " ".join(str(error).split())
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        rebuild = "run `repolm index` to set it aside and rebuild it"
        return DamagedIndexError(f"the index database{where} is damaged ({reason})", rebuild)
    # SHMSIZE: the WAL's shared-memory file could not grow, which on a full disk comes before FULL.
    if code == sqlite3.SQLITE_FULL or getattr(error, "sqlite_errorcode", 0) == sqlite3.SQLITE_IOERR_SHMSIZE:
        return IndexWriteError(NO_SPACE)
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return IndexWriteError(
            f"cannot open or write the index database{where} ({reason}); check the folder's permissions, "
            "or set index.index_dir to a folder repolm can write"
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return IndexWriteError(f"the index database{where} is locked ({reason}); try again once it is free")
    return IndexFormatError(f"the index database{where} failed ({reason}); {REPAIR}")


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    hash: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class StoredChunk:
    id: int
    file_id: int
    chunk: Chunk
    # The embedding cache key stored with the chunk, which vector lookups join on. It is `chunk.hash` as
    # of the indexing run that stored it: a later version's `embedding_text` may hash differently.
    hash: str


def alive(alias: str, generation: int) -> str:
    """SQL condition: the file version `alias` is part of `generation` (an int, never user text)."""
    g = int(generation)
    return f"({alias}.gen_added <= {g} AND ({alias}.gen_removed IS NULL OR {alias}.gen_removed > {g}))"


class Store:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.db = connection
        self.path = path

    @classmethod
    def open(cls, index_dir: Path, create: bool = False, read_only: bool = False) -> Store:
        """The index database in `index_dir` (which the caller has made ready when it may `create` it).
        `read_only` opens it for reading alone, which works on a read-only folder or file system."""
        db_path = index_dir / DB_NAME
        if not db_path.exists() and not create:
            raise IndexFormatError(f"no repolm index at {index_dir} (run `repolm index` first)")
        try:
            db = _connect_read_only(db_path) if read_only else _connect(db_path)
            version = _meta_value(db, "format_version")
        except sqlite3.DatabaseError as error:
            raise database_error(error, index_dir) from error
        if version is None:
            if not create:
                raise IndexFormatError(f"{db_path} is not a repolm index (no format version)")
            db.executescript(_SCHEMA)
            with _transaction(db):
                _set_meta(db, "format_version", str(FORMAT_VERSION))
                _set_meta(db, "current_generation", "0")
        elif version != str(FORMAT_VERSION):
            db.close()
            if version.isdigit() and int(version) < FORMAT_VERSION:
                raise OutdatedIndexError(
                    f"{index_dir} holds index format {version}, of an earlier repolm; this one reads format "
                    f"{FORMAT_VERSION}. Run `repolm index`: it rebuilds the index and keeps its vectors."
                )
            raise IndexFormatError(
                f"{index_dir} holds index format {version}; this repolm reads format {FORMAT_VERSION}. "
                "Delete the folder or run `repolm index --rebuild`."
            )
        return cls(db, index_dir)

    def close(self) -> None:
        self.db.close()

    # -- generations -------------------------------------------------------------------------------

    @property
    def current_generation(self) -> int:
        return int(_meta_value(self.db, "current_generation") or 0)

    def recover(self) -> int:
        """Undo what an interrupted update left behind; returns how many file versions it dropped."""
        current = self.current_generation
        with _transaction(self.db):
            stale = [
                row[0] for row in self.db.execute("SELECT id FROM files WHERE gen_added > ?", (current,))
            ]
            self._delete_file_versions(stale)
            self.db.execute("UPDATE files SET gen_removed = NULL WHERE gen_removed > ?", (current,))
        return len(stale)

    def publish(self, generation: int, summary: dict[str, object]) -> None:
        """Make `generation` the one readers open, then drop what only older readers could see."""
        previous = self.current_generation
        with _transaction(self.db):
            _set_meta(self.db, "current_generation", str(generation))
            _set_meta(self.db, "summary", json.dumps(summary))
        with _transaction(self.db):
            old = [r[0] for r in self.db.execute("SELECT id FROM files WHERE gen_removed <= ?", (previous,))]
            self._delete_file_versions(old)

    def totals(self, generation: int) -> tuple[int, int, int]:
        """(files, chunks, secrets redacted) alive in `generation`."""
        files, redactions = self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(redactions), 0) FROM files f WHERE {alive('f', generation)}"
        ).fetchone()
        (chunks,) = self.db.execute(
            f"SELECT COUNT(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE {alive('f', generation)}"
        ).fetchone()
        return int(files), int(chunks), int(redactions)

    def summary(self) -> dict[str, object]:
        raw = _meta_value(self.db, "summary")
        return json.loads(raw) if raw else {}

    # -- files -------------------------------------------------------------------------------------

    def alive_files(self, generation: int) -> dict[str, FileRow]:
        rows = self.db.execute(
            f"SELECT id, path, hash, size, mtime_ns FROM files f WHERE {alive('f', generation)}"
        )
        return {row[1]: FileRow(*row) for row in rows}

    def add_file_version(
        self,
        generation: int,
        path: str,
        module: str,
        file_hash: str,
        size: int,
        mtime_ns: int,
        language: str,
        parsed: ParsedFile,
        redactions: int,
    ) -> int:
        """Store one parsed file as a new version; the caller wraps many of these in a transaction."""
        cursor = self.db.execute(
            "INSERT INTO files (path, module, hash, size, mtime_ns, language, redactions, syntax_errors,"
            " gen_added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, module, file_hash, size, mtime_ns, language, redactions, parsed.syntax_errors, generation),
        )
        file_id = int(cursor.lastrowid or 0)
        self.db.executemany(
            "INSERT INTO chunks (file_id, start_line, end_line, symbol, kind, scope, language, text, hash,"
            " summary, summary_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    file_id,
                    c.start_line,
                    c.end_line,
                    c.symbol,
                    c.kind,
                    c.scope,
                    c.language,
                    c.text,
                    c.hash,
                    c.summary,
                    c.summary_hash,
                )
                for c in parsed.chunks
            ],
        )
        self.db.executemany(
            "INSERT INTO definitions (file_id, name, qualname, kind, scope, start_line, end_line, name_line,"
            " name_col, signature, docstring, bases) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    file_id,
                    d.name,
                    d.qualname,
                    d.kind,
                    d.scope,
                    d.start_line,
                    d.end_line,
                    d.name_line,
                    d.name_col,
                    d.signature,
                    d.docstring,
                    json.dumps(list(d.bases)),
                )
                for d in parsed.definitions
            ],
        )
        self.db.executemany(
            "INSERT INTO refs (file_id, name, expression, kind, scope, line, col)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(file_id, r.name, r.expression, r.kind, r.scope, r.line, r.col) for r in parsed.references],
        )
        self.db.executemany(
            "INSERT INTO imports (file_id, alias, target, line) VALUES (?, ?, ?, ?)",
            [(file_id, i.alias, i.target, i.line) for i in parsed.imports],
        )
        return file_id

    def touch_file(self, file_id: int, mtime_ns: int) -> None:
        """Same content, new timestamp: remember it so the next run need not read the file again."""
        self.db.execute("UPDATE files SET mtime_ns = ? WHERE id = ?", (mtime_ns, file_id))

    def remove_file_versions(self, generation: int, file_ids: Iterable[int]) -> None:
        self.db.executemany(
            "UPDATE files SET gen_removed = ? WHERE id = ?", [(generation, fid) for fid in file_ids]
        )

    def _delete_file_versions(self, file_ids: list[int]) -> None:
        for start in range(0, len(file_ids), 500):
            batch = file_ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            for table in _FILE_OWNED:
                self.db.execute(f"DELETE FROM {table} WHERE file_id IN ({marks})", batch)
            self.db.execute(f"DELETE FROM files WHERE id IN ({marks})", batch)

    # -- chunks ------------------------------------------------------------------------------------

    def chunks_of_files(self, file_ids: list[int]) -> Iterator[StoredChunk]:
        for start in range(0, len(file_ids), 500):
            batch = file_ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            yield from self._chunk_rows(f"c.file_id IN ({marks})", batch)

    def alive_chunks(self, generation: int) -> Iterator[StoredChunk]:
        yield from self._chunk_rows(alive("f", generation), [])

    def chunks_without_vector(self, generation: int, model: str) -> list[StoredChunk]:
        """Chunks alive in `generation` whose content has no vector under `model` yet."""
        missing = "NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.hash = c.hash)"
        return list(self._chunk_rows(f"{alive('f', generation)} AND {missing}", [model]))

    def summaries_without_vector(self, generation: int, model: str) -> dict[str, str]:
        """{summary hash: summary} of the alive chunks whose summary has no vector under `model` yet."""
        rows = self.db.execute(
            "SELECT c.summary_hash, c.summary FROM chunks c JOIN files f ON f.id = c.file_id"
            f" WHERE {alive('f', generation)} AND c.summary_hash != ''"
            " AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.hash = c.summary_hash)",
            (model,),
        )
        return dict(rows.fetchall())

    def chunks_by_id(self, chunk_ids: list[int]) -> dict[int, StoredChunk]:
        found: dict[int, StoredChunk] = {}
        for start in range(0, len(chunk_ids), 500):
            batch = chunk_ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            found.update((c.id, c) for c in self._chunk_rows(f"c.id IN ({marks})", batch))
        return found

    def _chunk_rows(self, condition: str, params: list[object]) -> Iterator[StoredChunk]:
        rows = self.db.execute(
            "SELECT c.id, c.file_id, c.hash, f.path, c.language, c.start_line, c.end_line, c.symbol,"
            " c.kind, c.scope, c.text, c.summary FROM chunks c JOIN files f ON f.id = c.file_id"
            f" WHERE {condition} ORDER BY c.id",
            params,
        )
        for row in rows:
            yield StoredChunk(row[0], row[1], Chunk(*row[3:]), row[2])

    # -- embeddings cache --------------------------------------------------------------------------

    def cache_embeddings(self, model: str, hashes: list[str], vectors: np.ndarray) -> None:
        rows = [(model, h, v.astype(np.float32).tobytes()) for h, v in zip(hashes, vectors, strict=True)]
        with _transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, hash, vector) VALUES (?, ?, ?)", rows
            )

    def adopt_vectors(self, other: Path) -> None:
        """Copy the embedding cache of the index database at `other` (an outdated or a damaged one)
        into this one; from a damaged one, the vectors read before the first error. They stay right:
        they are keyed by the embedder and by exactly the text it read, and those that no chunk asks
        for again are merely never looked up."""
        try:
            self.db.execute("ATTACH DATABASE ? AS other", (str(other),))  # not inside a transaction
        except sqlite3.DatabaseError:
            return
        try:
            with _transaction(self.db):
                self.db.execute(
                    "INSERT OR IGNORE INTO embeddings SELECT model, hash, vector FROM other.embeddings"
                )
        except sqlite3.DatabaseError:
            self._salvage_vectors()
        finally:
            self.db.execute("DETACH DATABASE other")

    def _salvage_vectors(self) -> None:
        """Copy vectors from the attached damaged database batch by batch, until one cannot be read."""
        insert = "INSERT OR IGNORE INTO embeddings (model, hash, vector) VALUES (?, ?, ?)"
        try:
            rows = self.db.execute("SELECT model, hash, vector FROM other.embeddings")
            while batch := rows.fetchmany(1000):
                with _transaction(self.db):
                    self.db.executemany(insert, batch)
        except sqlite3.DatabaseError:
            return

    def vector_model(self, names: tuple[str, ...]) -> str:
        """The first of an embedder's `names` (its key, then older keys) that this index holds vectors
        under; the first when it holds none. A reader uses it until a writer renames older keys."""
        for name in names:
            if self.db.execute("SELECT 1 FROM embeddings WHERE model = ? LIMIT 1", (name,)).fetchone():
                return name
        return names[0]

    def rename_vectors(self, old: str, new: str) -> None:
        """File the vectors cached under the key `old` under `new`, where `new` lacks them."""
        with _transaction(self.db):
            self.db.execute("UPDATE OR IGNORE embeddings SET model = ? WHERE model = ?", (new, old))
            self.db.execute("DELETE FROM embeddings WHERE model = ?", (old,))

    def count_without_vector(self, generation: int, model: str) -> tuple[int, int]:
        """(chunk contents, summaries) alive in `generation` that have no vector under `model`: what the
        next `repolm index` embeds."""
        (chunks,) = self.db.execute(
            "SELECT COUNT(DISTINCT c.hash) FROM chunks c JOIN files f ON f.id = c.file_id"
            f" WHERE {alive('f', generation)}"
            " AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.hash = c.hash)",
            (model,),
        ).fetchone()
        return int(chunks), len(self.summaries_without_vector(generation, model))

    def cached_vectors(self) -> int:
        """How many vectors the cache holds, of every embedder."""
        return int(self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def pin_vectors(self, models: list[str]) -> None:
        """Keep the vectors of these embedders (besides the one in use) through `prune_vectors`: the
        retriever registry pins the one a rollback would return to, so that it needs no re-embedding."""
        with _transaction(self.db):
            _set_meta(self.db, "pinned_vectors", json.dumps(sorted(set(models))))

    def pinned_vectors(self) -> list[str]:
        raw = _meta_value(self.db, "pinned_vectors")
        return json.loads(raw) if raw else []

    def prune_vectors(self, model: str) -> int:
        """Keep the cache within twice as many vectors as there are chunk rows, per embedder kept (the
        one in use, `model`, and the pinned ones): past that, drop the oldest of those that no chunk row
        uses under a kept embedder (old contents, other embedders) until it holds 1.5 times as many. Unused
        vectors are kept at all because a branch switched back, or an edit undone, finds its vectors
        again. The check only counts rows, which SQLite does from two small indexes, so it runs after
        every update; the drop reads every chunk row, so it waits for the bound. Returns how many were
        dropped."""
        kept = sorted({model, *self.pinned_vectors()})
        (chunks,) = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        cached = self.cached_vectors()
        if cached <= 2 * chunks * len(kept):
            return 0
        used = "SELECT hash FROM chunks UNION SELECT summary_hash FROM chunks WHERE summary_hash != ''"
        marks = ",".join("?" * len(kept))
        with _transaction(self.db):
            # rowid order is insertion order: INSERT OR REPLACE gives a re-embedded vector a new rowid.
            dropped = self.db.execute(
                "DELETE FROM embeddings WHERE rowid IN (SELECT rowid FROM embeddings"
                f" WHERE NOT (model IN ({marks}) AND hash IN ({used})) ORDER BY rowid LIMIT ?)",
                (*kept, cached - 3 * chunks * len(kept) // 2),
            ).rowcount
        return int(dropped)

    def alive_vectors(
        self, generation: int, model: str, summaries: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, matrix) of every alive chunk that has an embedding under `model`: of its whole
        text, or with `summaries` of its summary (chunks without one are left out)."""
        key = "c.summary_hash" if summaries else "c.hash"
        rows = self.db.execute(
            "SELECT c.id, e.vector FROM chunks c JOIN files f ON f.id = c.file_id"
            f" JOIN embeddings e ON e.model = ? AND e.hash = {key} WHERE {alive('f', generation)}"
            " ORDER BY c.id",
            (model,),
        ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        # A bytearray, not bytes: the matrix must be writable for torch to share its memory.
        matrix = np.frombuffer(bytearray(b"".join(r[1] for r in rows)), dtype=np.float32).reshape(
            len(rows), -1
        )
        return ids, matrix

    def transaction(self) -> _Transaction:
        return _transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.db.execute("COMMIT" if error is None else "ROLLBACK")


def _transaction(db: sqlite3.Connection) -> _Transaction:
    return _Transaction(db)


def _sqlite(target: str | Path, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(target, uri=uri, timeout=30, check_same_thread=False, isolation_level=None)


def _connect(db_path: Path) -> sqlite3.Connection:
    db = _sqlite(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    uri = db_path.absolute().as_uri()
    db = _sqlite(f"{uri}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # SQLite opens lazily: this reads the file
        return db
    except sqlite3.OperationalError as error:
        db.close()
        # A WAL database whose readers cannot make the -shm file they share: in a folder this process
        # cannot write (a read-only mount, another user's index) or on a full disk. With no -wal file,
        # or an empty one, everything written is in the main file, which is then read as immutable.
        unshared = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR)
        wal = db_path.with_name(db_path.name + "-wal")
        if error.sqlite_errorcode & 0xFF not in unshared or (wal.exists() and wal.stat().st_size):
            raise
    return _sqlite(f"{uri}?immutable=1", uri=True)


def is_index_database(db_path: Path) -> bool:
    """Whether `db_path` is a repolm index database (it holds the meta table with a format version)."""
    if not db_path.is_file():
        return False
    try:
        db = _connect_read_only(db_path)
    except sqlite3.DatabaseError:
        return False
    try:
        return _meta_value(db, "format_version") is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def _meta_value(db: sqlite3.Connection, key: str) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None  # no meta table: not (yet) a repolm index
    return row[0] if row else None


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
