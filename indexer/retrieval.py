"""Reading the index: one generation's BM25, dense vectors and symbol graph, fused at query time.

An `Index` pins the generation that was current when it opened, so a concurrent `repolm index`
never changes what it sees; `refresh` moves it to a newer generation when one is published.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from repolm.config import SEARCH_MODES, Config, SearchConfig

from .dense import DenseMatrix, Embedder
from .graph import SymbolGraph
from .lexical import LexicalReader
from .records import Chunk
from .store import IndexFormatError, Store, alive, database_error


@dataclass(frozen=True)
class SearchFilter:
    """What retrieval must not return (evaluation: "nothing after the cursor in the target file")."""

    exclude_paths: frozenset[str] = frozenset()
    # (path, first_line, last_line): chunks overlapping these lines are dropped.
    exclude_ranges: tuple[tuple[str, int, int], ...] = ()

    def allows(self, path: str, start_line: int, end_line: int) -> bool:
        if path in self.exclude_paths:
            return False
        return not any(
            path == p and start_line <= last and end_line >= first for p, first, last in self.exclude_ranges
        )


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    chunk: Chunk
    score: float

    def to_json(self, with_text: bool = False) -> dict[str, object]:
        result: dict[str, object] = {
            "path": self.chunk.path,
            "start_line": self.chunk.start_line,
            "end_line": self.chunk.end_line,
            "symbol": self.chunk.symbol,
            "kind": self.chunk.kind,
            "language": self.chunk.language,
            "score": round(self.score, 6),
        }
        if with_text:
            result["text"] = self.chunk.text
        return result


@dataclass(frozen=True)
class _Span:
    path: str
    start_line: int
    end_line: int


@dataclass
class Index:
    root: Path
    config: Config
    store: Store
    generation: int
    embedder: Embedder | None = None
    _spans: dict[int, _Span] = field(default_factory=dict)
    lexical: LexicalReader = field(init=False, repr=False)  # opened and checked by `_load`

    @classmethod
    def open(cls, root: Path, config: Config, embedder: Embedder | None = None) -> Index:
        """Open the current generation for reading; raises IndexFormatError when there is no usable
        index (DamagedIndexError, naming the fix, when part of it is missing or unreadable)."""
        root = root.resolve()
        store = Store.open(config.index_path(root), read_only=True)
        try:
            index = cls(root, config, store, store.current_generation, embedder)
            index._load()
        except sqlite3.DatabaseError as error:
            store.close()
            raise database_error(error, store.path) from error
        except BaseException:
            store.close()
            raise
        return index

    def close(self) -> None:
        self.store.close()

    def refresh(self) -> bool:
        """Move to the newest published generation; True if there was one."""
        newest = self.store.current_generation
        if newest == self.generation:
            return False
        self.generation = newest
        for cached in ("dense", "summary_dense", "graph"):
            self.__dict__.pop(cached, None)
        self._load()
        return True

    def _load(self) -> None:
        rows = self.store.db.execute(
            "SELECT c.id, f.path, c.start_line, c.end_line FROM chunks c JOIN files f ON f.id = c.file_id"
            f" WHERE {alive('f', self.generation)}"
        )
        self._spans = {row[0]: _Span(*row[1:]) for row in rows}
        if self.generation == 0:
            raise IndexFormatError(f"the index at {self.store.path} has no complete generation yet")
        # Opened with the generation and checked against it, so that a lost or damaged Tantivy folder
        # shows (with its fix) when the index opens, not as a failure of some later search.
        chunks = len(self._spans)
        self.lexical = LexicalReader.checked(self.store.path, self.generation, chunks, stale_ok=True)

    # -- the three stores, loaded on first use -----------------------------------------------------

    @cached_property
    def dense(self) -> DenseMatrix:
        ids, vectors = self.store.alive_vectors(self.generation, self.vector_model)
        return DenseMatrix(ids, vectors)

    @cached_property
    def summary_dense(self) -> DenseMatrix:
        ids, vectors = self.store.alive_vectors(self.generation, self.vector_model, summaries=True)
        return DenseMatrix(ids, vectors)

    @property
    def vector_model(self) -> str:
        """The key of the query embedder's vectors in this index, looked up on every load: an index
        written by an older repolm holds them under an older key until a writer renames it."""
        embedder = self.query_embedder
        return self.store.vector_model((embedder.name, embedder.legacy_name))

    @cached_property
    def graph(self) -> SymbolGraph:
        return SymbolGraph(self.store, self.generation)

    @property
    def query_embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = Embedder.for_repo(self.root, self.config)
        return self.embedder

    @property
    def chunk_count(self) -> int:
        return len(self._spans)

    # -- search ------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        mode: str | None = None,
        k: int = 10,
        where: SearchFilter | None = None,
        per_file_cap: int | None = None,
        context: Sequence[int] = (),
        context_weight: float = 1.0,
    ) -> list[Hit]:
        """The top `k` chunks for `query`. `context` is a ranking of chunk ids known to matter (best
        first), fused with the query's ranking by reciprocal rank, its ranks weighing `context_weight`
        times the query's."""
        settings = self.config.search
        mode = mode or settings.mode
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        if k <= 0 or not query.strip():  # nothing to look for: any hit would be arbitrary
            return []
        where = where or SearchFilter()
        cap = settings.per_file_cap if per_file_cap is None else per_file_cap
        pool = max(settings.candidates, k * 4)
        ranked = self._ranked(query, mode, pool, settings)
        if context:
            known = [(chunk_id, 0.0) for chunk_id in context]
            ranked = reciprocal_rank_fusion([ranked, known], settings.rrf_k, (1.0, context_weight))
        chosen: list[tuple[int, float]] = []
        per_file: Counter[str] = Counter()
        for chunk_id, score in ranked:
            span = self._spans.get(chunk_id)
            if span is None or not where.allows(span.path, span.start_line, span.end_line):
                continue
            if cap and per_file[span.path] >= cap:
                continue
            per_file[span.path] += 1
            chosen.append((chunk_id, score))
            if len(chosen) == k:
                break
        stored = self.store.chunks_by_id([chunk_id for chunk_id, _ in chosen])
        return [Hit(cid, stored[cid].chunk, score) for cid, score in chosen if cid in stored]

    def _ranked(self, query: str, mode: str, pool: int, settings: SearchConfig) -> list[tuple[int, float]]:
        if mode == "bm25":
            return self._lexical_ranking(query, pool, settings)
        if mode == "dense":
            return self._dense_ranking(query, pool, settings)
        lexical = self._lexical_ranking(query, pool, settings)
        dense = self._dense_ranking(query, pool, settings)
        if settings.fusion == "weighted":
            return weighted_fusion([(lexical, 1.0 - settings.dense_weight), (dense, settings.dense_weight)])
        return reciprocal_rank_fusion([lexical, dense], settings.rrf_k)

    # With `summaries`, each retriever also reads the definitions' docstrings (`Chunk.summary`), so
    # that every mode sees the same text and hybrid differs from the others only by fusing them.
    def _lexical_ranking(self, query: str, pool: int, settings: SearchConfig) -> list[tuple[int, float]]:
        return self.lexical.search(query, pool, summaries=settings.summaries)

    def _dense_ranking(self, query: str, pool: int, settings: SearchConfig) -> list[tuple[int, float]]:
        vector = self.query_embedder.encode_query(query)
        whole = self.dense.search(vector, pool)
        if not settings.summaries:
            return whole
        return nearest_of([whole, self.summary_dense.search(vector, pool)])[:pool]


def nearest_of(rankings: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Several vectors per item: each item at its best similarity (the top of the union of the lists'
    tops is the true top by that score)."""
    best: dict[int, float] = {}
    for ranking in rankings:
        for item, score in ranking:
            if item not in best or score > best[item]:
                best[item] = score
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))


def reciprocal_rank_fusion(
    rankings: list[list[tuple[int, float]]], k: int = 60, weights: Sequence[float] = ()
) -> list[tuple[int, float]]:
    """Cormack et al.'s RRF: each list adds weight / (k + rank) for the items it ranks (rank from 1;
    weight 1 unless `weights` gives the lists' own)."""
    scores: dict[int, float] = {}
    for number, ranking in enumerate(rankings):
        weight = weights[number] if weights else 1.0
        for rank, (item, _) in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def weighted_fusion(rankings: list[tuple[list[tuple[int, float]], float]]) -> list[tuple[int, float]]:
    """Min-max normalise each (ranking, weight)'s scores to [0, 1], then sum them weighted; missing
    means 0."""
    scores: dict[int, float] = {}
    for ranking, weight in rankings:
        if not ranking:
            continue
        values = [score for _, score in ranking]
        low, high = min(values), max(values)
        spread = high - low or 1.0
        for item, score in ranking:
            scores[item] = scores.get(item, 0.0) + weight * (score - low) / spread
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
