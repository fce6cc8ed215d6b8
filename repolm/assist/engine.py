"""One workspace's live state: configuration, index, embedder, model, and the completion/explain cores.

Plain Python, shared by the language server and the `complete` / `explain` / `serve` CLI commands. The
heavy parts load lazily and once; the same `Embedder` serves index updates and queries. Index reads
are serialized with `refresh`, so a reindex never changes the generation under a running search.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from cachetools import LRUCache

from repolm.config import ACTIVE_LINK, ADAPTERS, RETRIEVER_MODEL, Config, Progress, ServeConfig
from repolm.engine_http import EngineError
from repolm.indexer.builder import IndexSummary, update_index
from repolm.indexer.code_graph import CodeGraph
from repolm.indexer.code_uses import used_above
from repolm.indexer.dense import Embedder, active_retriever_link
from repolm.indexer.graph import Symbol
from repolm.indexer.records import DOC_LANGUAGES
from repolm.indexer.retrieval import Hit, Index, SearchFilter
from repolm.indexer.store import DamagedIndexError, IndexFormatError, database_error
from repolm.model import Cancel, LoadedModel, OnText, Served, load_model, resolve_base
from repolm.prompt import Document
from repolm.remote import RemoteModel, load_remote

from .ask import GraphAnswer, answer, model_reasoner, symbol_paths
from .completion import Completer, Completion, CompletionRequest, split_at
from .explain import Explainer, Explanation, resolve_name
from .plan import model_planner
from .workspace import OutsideWorkspaceError, Workspace

logger = logging.getLogger("repolm.server")

HOVER_PATHS = 6  # graph paths a hover shows
ADAPTER_CHECK_SECONDS = 2.0  # how often a request may stat the adapter folder
QUERY_CACHE_SIZE = 256


def code_hits(
    index: Index,
    query: str,
    path: str,
    limit: int,
    serve: ServeConfig,
    mode: str | None = None,
    prefix: str = "",
    exclude: frozenset[str] = frozenset(),
) -> list[Hit]:
    """What a completion in `path` retrieves: code chunks (no docs) from other files, a few per file.

    The file being edited is left out entirely: its buffer goes to the prompt whole, and the index may
    hold an older version of it (or, in evaluation, the text after the cursor). With the text before
    the cursor (`prefix`), the definitions of what the code above the cursor uses join the ranking
    (`[serve] completion_context_weight`). The evaluation harness and the RAFT dataset call this too, so
    that they score and train on exactly the request users get; they leave out further files (`exclude`:
    the evaluation split's).
    """
    where = SearchFilter(exclude_paths=exclude | {path})
    cap = serve.completion_per_file_cap
    weight = serve.completion_context_weight
    context = used_above(index, path, prefix) if weight > 0 and prefix else []
    hits = index.search(
        query, mode=mode, k=limit * 2, where=where, per_file_cap=cap, context=context, context_weight=weight
    )
    return [hit for hit in hits if hit.chunk.language not in DOC_LANGUAGES][:limit]


class NoIndexError(RuntimeError):
    """The workspace has no usable index yet (none, or a damaged one waiting for its repair)."""


class CachingEmbedder(Embedder):
    """Query embeddings are cached: while the user types, most queries repeat the previous one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._queries: LRUCache[str, np.ndarray] = LRUCache(maxsize=QUERY_CACHE_SIZE)
        self._queries_lock = threading.Lock()

    def encode_query(self, text: str) -> np.ndarray:
        with self._queries_lock:
            vector = self._queries.get(text)
        if vector is None:  # embedded outside the lock: other queries need not wait for this one
            vector = super().encode_query(text)
            with self._queries_lock:
                self._queries[text] = vector
        return vector


class AdapterWatch:
    """Notices when the adapter (or retriever) at a path changes: a new folder behind a symlink or
    rewritten files."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp = self._stamp()
        self._checked = time.monotonic()

    def _stamp(self) -> tuple[str, float]:
        if not self.path:
            return "", 0.0
        folder = Path(self.path).expanduser().resolve()
        try:
            mtimes = [entry.stat().st_mtime for entry in os.scandir(folder) if entry.is_file()]
        except OSError:
            return str(folder), -1.0
        return str(folder), max(mtimes, default=0.0)

    def existing(self) -> str | None:
        """The adapter folder to load now; None (the plain base model) while there is none."""
        return self.path if self.path and Path(self.path).is_dir() else None

    def changed(self) -> bool:
        """True once per change; cheap to call on every request (it stats at most every few seconds)."""
        now = time.monotonic()
        if now - self._checked < ADAPTER_CHECK_SECONDS:
            return False
        self._checked = now
        stamp = self._stamp()
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        return True


class Engine:
    def __init__(self, root: Path, config: Config) -> None:
        self.root = root.resolve()
        self.workspace = Workspace(self.root)  # the language server adds the editor's other folders
        self.config = config
        self._index: Index | None = None
        self._index_lock = threading.RLock()
        self._update_lock = threading.Lock()  # index updates run one at a time
        self._embedder: CachingEmbedder | None = None
        self._model: Served | None = None
        self._model_lock = threading.Lock()
        self._planner: LoadedModel | None = None  # the embedded model, when an engine generates
        self._adapter = AdapterWatch(self._adapter_path(config))
        self._retriever = AdapterWatch(self._retriever_path(config))
        self._code_graph: tuple[int, CodeGraph] | None = None  # (generation, graph)
        self._graph_lock = threading.Lock()  # guards _code_graph
        self._graph_build_lock = threading.Lock()  # one build at a time
        self.completer: Completer | None = None
        self.explainer: Explainer | None = None
        self.index_problem: str | None = None  # why there is no usable index, while there is none
        self.request_repair: Callable[[], None] = lambda: None  # BackgroundIndexer sets its `request`

    # -- lazily loaded parts -----------------------------------------------------------------------

    @property
    def embedder(self) -> CachingEmbedder:
        if self._embedder is None:
            self._embedder = CachingEmbedder.for_repo(self.root, self.config)
        return self._embedder

    def index(self) -> Index | None:
        """The open index, opening it on first use; None while the workspace has none or a damaged one
        (`index_problem` says which; a damaged one is handed to `request_repair`)."""
        with self._index_lock:
            if self._retriever.changed():
                self._switch_retriever()
            if self._index is None:
                try:
                    self._index = Index.open(self.root, self.config, self.embedder)
                except IndexFormatError as error:
                    self._index_failed(error)
                    return None
                self.index_problem = None
            return self._index

    def _switch_retriever(self) -> None:
        """A retriever was promoted or rolled back: queries need its embedder and the index its vectors,
        which the promotion wrote before moving the link. Completions cached under the old snippets go."""
        logger.info("repolm: the retriever changed; reloading the embedder")
        if self._index is not None:
            self._index.close()
        self._index = None
        self._embedder = None
        if self.completer is not None:
            self.completer.clear_cache()

    def _require_index(self) -> Index:
        index = self.index()
        if index is None:
            raise NoIndexError(self.index_problem or "no index yet (run `repolm index`)")
        return index

    def _index_failed(self, error: IndexFormatError) -> None:
        """Log why the index cannot be used, once per reason, and ask for a repair when it is damaged.
        A repair that fails leaves the same reason, which asks for nothing more."""
        problem = str(error)
        if problem == self.index_problem:
            return
        self.index_problem = problem
        logger.warning("repolm: %s", problem)
        if isinstance(error, DamagedIndexError):
            self.request_repair()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Around index reads: damage that shows only now (a Tantivy segment, a SQLite page) closes the
        index and is handled as if found when opening it; the request gets NoIndexError."""
        try:
            yield
        except (DamagedIndexError, sqlite3.DatabaseError) as error:
            failure = error if isinstance(error, DamagedIndexError) else database_error(error)
            with self._index_lock:
                if self._index is not None:
                    self._index.close()
                self._index = None
            if isinstance(failure, IndexFormatError):
                self._index_failed(failure)
            raise NoIndexError(str(failure)) from error

    def warm_index(self) -> bool:
        """Open the index and load its vector matrices, which the first search would otherwise wait
        for (a large repository's vectors come out of SQLite); False while the workspace has none."""
        with self._index_lock:
            index = self.index()
            if index is None:
                return False
            index.dense  # noqa: B018
            index.summary_dense  # noqa: B018
            return True

    def model(self) -> Served:
        with self._model_lock:
            if self._model is None:
                serve = self.config.serve
                if self.config.model.backend == "openai":  # the engine serves the model and its adapter
                    self._model = load_remote(
                        self.config.model, resolve_base(serve.model or None), serve.model, self.root
                    )
                else:
                    self._model = load_model(base=serve.model or None, adapter=self._adapter.existing())
                self.completer = Completer(self._model, serve, self._search_code)
                self.explainer = Explainer(self._model, serve)
            elif isinstance(self._model, LoadedModel) and self._adapter.changed():
                # A newly promoted adapter: swap it in (merged into fresh base weights) without a restart.
                self._model.set_adapter(self._adapter.existing())
                self._clear_caches()
            return self._model

    def _clear_caches(self) -> None:
        if self.completer is not None:
            self.completer.clear_cache()
        if self.explainer is not None:
            self.explainer = Explainer(self._model, self.config.serve)

    def reconfigure(self, config: Config) -> None:
        """Apply new settings; a different base model reloads, a different adapter swaps in place."""
        old, self.config = self.config, config
        if old.index != config.index or old.search != config.search:
            with self._index_lock:
                if self._index is not None:
                    self._index.close()
                self._index = None
                if old.index.embedding_model != config.index.embedding_model:
                    self._embedder = None
                self._retriever = AdapterWatch(self._retriever_path(config))
        with self._model_lock:
            if self._model is None:
                return
            if old.serve.model != config.serve.model or old.model != config.model:
                self._model = None
                return
            adapter_moved = (
                old.serve.adapter != config.serve.adapter or old.index.index_dir != config.index.index_dir
            )
            if adapter_moved and isinstance(self._model, LoadedModel):
                self._adapter = AdapterWatch(self._adapter_path(config))
                self._model.set_adapter(self._adapter.existing())
            self.completer = Completer(self._model, config.serve, self._search_code)
            self.explainer = Explainer(self._model, config.serve)

    def _adapter_path(self, config: Config) -> str:
        """The configured adapter (relative to the repo root), else the registry's active one.

        Either may not exist yet: the base model serves until it appears, and the watch swaps it in."""
        if config.serve.adapter:
            path = Path(config.serve.adapter).expanduser()
            return str(path if path.is_absolute() else self.root / path)
        return str(config.index_path(self.root) / ADAPTERS / ACTIVE_LINK)

    def _retriever_path(self, config: Config) -> str:
        """The registry's active retriever model, watched unless `[index] embedding_model` fixes one."""
        if config.index.embedding_model:
            return ""
        return str(active_retriever_link(self.root, config) / RETRIEVER_MODEL)

    def _context_key(self) -> str:
        """What cached answers depend on besides the request: the index generation and the adapter."""
        index = self._index
        key = f"{index.generation if index else 0}|{self._adapter.stamp}|{self._retriever.stamp}"
        if isinstance(self._model, RemoteModel):  # the adapter the engine serves for this repository
            with suppress(EngineError):  # the request itself reports an engine that is down
                self._model.model_name()
            key += f"|{self._model.served}"
        return key

    # -- paths -------------------------------------------------------------------------------------

    def read_lines(self, buffers: Mapping[str, str]) -> Callable[[str], Sequence[str] | None]:
        """Lines of a repo file: the editor's buffer when it is open there, else the file on disk."""

        def read(path: str) -> Sequence[str] | None:
            if path in buffers:
                return buffers[path].splitlines(keepends=True)
            try:
                file = self.workspace.inside(self.root / path)  # the index may name a symlink
                return file.read_text(encoding="utf-8").splitlines(keepends=True)
            except (OSError, UnicodeDecodeError, OutsideWorkspaceError):
                return None

        return read

    # -- retrieval ---------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, mode: str | None = None, where: SearchFilter | None = None):
        if not query.strip():
            raise ValueError("the search query is empty")
        with self._reading():
            index = self._require_index()
            with self._index_lock:
                return index.search(query, mode=mode, k=k, where=where)

    def _search_code(self, query: str, path: str, prefix: str, k: int) -> list[Document]:
        """Snippets for a completion prompt; none while there is no usable index."""
        try:
            with self._reading():
                index = self.index()
                if index is None:
                    return []
                with self._index_lock:
                    hits = code_hits(index, query, path, k, self.config.serve, prefix=prefix)
                    return [Document.from_chunk(hit.chunk) for hit in hits]
        except NoIndexError:
            return []

    def _search_docs(self, query: str, k: int) -> list[Document]:
        if not query.strip():
            return []
        try:
            with self._reading():
                index = self.index()
                if index is None:
                    return []
                with self._index_lock:
                    hits = index.search(query, k=k * 5)
        except NoIndexError:
            return []
        return [Document.from_chunk(hit.chunk) for hit in hits if hit.chunk.language in DOC_LANGUAGES][:k]

    # -- features ----------------------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: Cancel = None) -> Completion:
        split_at(request.text, request.line, request.character)  # a bad position fails before any loading
        self.model()
        assert self.completer is not None
        self.index()  # opens the index on first use so the cache key names its generation
        return self.completer.complete(request, cancel, self._context_key())

    def symbol_at(self, path: str, text: str, line: int, character: int) -> Symbol | None:
        """The definition the identifier at a 0-based position refers to, in the buffer's text."""
        with self._reading():
            index = self._require_index()
            with self._index_lock:
                return index.graph.definition_at(path, line + 1, character, text)

    def symbol_named(self, name: str) -> Symbol | None:
        with self._reading():
            index = self._require_index()
            with self._index_lock:
                return resolve_name(index.graph, name)

    def explain(
        self,
        symbol: Symbol,
        path: str = "",
        buffers: Mapping[str, str] | None = None,
        with_model: bool = True,
        cancel: Cancel = None,
        wait_for_graph: bool = True,
        on_text: OnText = None,
    ) -> Explanation:
        index = self._require_index()
        if with_model:
            self.model()
        explainer = self.explainer or Explainer(None, self.config.serve)
        with self._reading():
            explanation = explainer.explain(
                index.graph,
                symbol,
                self.read_lines(buffers or {}),
                self._search_docs,
                path,
                cancel,
                self._context_key(),
                with_model,
                graph_lock=self._index_lock,
                on_text=on_text,
            )
        graph = self.code_graph() if wait_for_graph else self.code_graph_if_ready()
        if graph is None:
            return explanation
        paths = tuple(symbol_paths(graph, symbol.qualname, HOVER_PATHS))
        return dataclasses.replace(explanation, paths=paths)

    def code_graph(self) -> CodeGraph:
        """The code knowledge graph of the current generation, built on first use after each update."""
        return self._current_code_graph() or self._build_code_graph()

    def code_graph_if_ready(self) -> CodeGraph | None:
        """The current graph if it is built; otherwise None, and it is built in the background (on a
        large repository that takes seconds, which a hover must not wait for)."""
        graph = self._current_code_graph()
        if graph is None and not self._graph_build_lock.locked():
            threading.Thread(target=self._build_code_graph, name="repolm-code-graph", daemon=True).start()
        return graph

    def _current_code_graph(self) -> CodeGraph | None:
        index = self._require_index()
        with self._graph_lock:
            if self._code_graph is not None and self._code_graph[0] == index.generation:
                return self._code_graph[1]
        return None

    def _build_code_graph(self) -> CodeGraph:
        """Build from a reader of its own, so completions keep using the shared index meanwhile."""
        with self._graph_build_lock, self._reading():
            reader = Index.open(self.root, self.config, self.embedder)
            try:
                built = (reader.generation, CodeGraph.build(reader))
            finally:
                reader.close()
            with self._graph_lock:
                self._code_graph = built
            return built[1]

    def ask(self, question: str) -> tuple[GraphAnswer, CodeGraph]:
        graph = self.code_graph()
        model = self.model()
        serve = self.config.serve
        written = {"always": True, "never": False, "adapter": model.adapter is not None}[serve.ask_reasoning]
        reasoner = model_reasoner(model, serve) if serve.explain_enabled and written else None
        return answer(graph, question, model_planner(self._planning_model(model)), reasoner), graph

    def _planning_model(self, model: Served) -> LoadedModel:
        """Plans are ranked by their log-likelihood, which takes the weights at hand: with an engine
        generating, the embedded model ranks them here (about 0.2 s a question on a CPU)."""
        if isinstance(model, LoadedModel):
            return model
        with self._model_lock:
            if self._planner is None:
                self._planner = load_model()
            return self._planner

    # -- index updates -----------------------------------------------------------------------------

    def update_index(self, progress: Progress | None = None, rebuild: bool = False) -> IndexSummary:
        """Incremental update (one at a time), then move readers to the new generation."""
        with self._update_lock:
            summary = update_index(self.root, self.config, self.embedder, progress, rebuild)
        with self._index_lock:
            if self._index is None:
                self.index()
            else:
                self._index.refresh()
        return summary


class BackgroundIndexer:
    """A worker thread that runs index updates one after another; requests made meanwhile coalesce."""

    def __init__(
        self,
        engine: Engine,
        progress: Callable[[], Progress | None] = lambda: None,
        done: Callable[[IndexSummary | None, Exception | None], None] = lambda summary, error: None,
    ) -> None:
        self.engine = engine
        self._progress = progress
        self._done = done
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="repolm-indexer", daemon=True)
        engine.request_repair = self.request  # a damaged index found by a request is repaired here
        self._thread.start()

    def request(self) -> None:
        self._idle.clear()
        self._wanted.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            summary: IndexSummary | None = None
            error: Exception | None = None
            try:
                summary = self.engine.update_index(self._progress())
            except Exception as failure:  # reported to the client; the worker must survive
                error = failure
            self._done(summary, error)
            if not self._wanted.is_set():
                self._idle.set()
