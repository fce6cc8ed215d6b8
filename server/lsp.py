"""The repolm language server: one decorated function per LSP feature, each a thin adapter.

Handlers convert protocol types to plain values, call the `Engine` (in a worker thread, so the event
loop keeps reading `$/cancelRequest` and newer requests) and convert the answer back. Every handler is
wrapped: a bad request gets a JSON-RPC error with a readable message and the server keeps running.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol
from pygls.uris import to_fs_path

from repolm.assist.completion import Completion, CompletionRequest, Latest, PositionError
from repolm.assist.engine import BackgroundIndexer, Engine, NoIndexError
from repolm.assist.explain import Explanation
from repolm.assist.workspace import Workspace
from repolm.config import Config, ConfigError, Progress, load_config
from repolm.engine_http import EngineError
from repolm.indexer.builder import IndexBusyError, IndexSummary

from .settings import apply_settings
from .transport import TRANSPORT_ERROR, FrameReader, RequestId, request_id

logger = logging.getLogger("repolm.server")

PROGRESS_INTERVAL = 0.2  # seconds between $/progress reports
REINDEX_TIMEOUT = 300.0
# Problems with the request itself (answered as InvalidParams), as opposed to bugs (InternalError).
# LSP's RequestFailed: a well-formed request whose answer could not be made (the engine is down).
REQUEST_FAILED = -32803
_USER_ERRORS = (PositionError, NoIndexError, ConfigError, ValueError, TypeError, KeyError, IndexBusyError)

T = TypeVar("T")
_REJECTED = "$/repolm/rejected"  # stands in for a request that was already answered with an error


class DocumentError(ValueError):
    """A document the server cannot work on: unknown, binary or too large."""


class RepolmProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not deserialize without replying; the client then waits
    forever. Answer it with the InvalidParams error instead."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            msg_id = data.get("id")
            if "method" not in data or not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
                raise
            self._send_response(msg_id, error=error.to_response_error())
            return JsonRPCNotification(method=_REJECTED, jsonrpc="2.0", params=None)


class RepolmServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "repolm",
            "0.1.0",
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=RepolmProtocol,
        )
        self.engine: Engine | None = None
        self.indexer: BackgroundIndexer | None = None
        self.file_config: Config = Config()  # repolm.toml; editor settings apply on top of it
        self.latest = Latest()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reader: FrameReader | None = None  # what `serve` reads the client's messages through
        self._progress_token: str | None = None

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Garbage on the wire goes to the client's log, not into a pop-up for the user."""
        if isinstance(error, json.JSONDecodeError):  # a well-framed body that is not JSON
            reason = f"a message that is not JSON ({error.msg} at character {error.pos})"
            self.reject(reason, request_id(error.doc), JsonRpcParseError)
            return
        self.log(f"repolm: {type(error).__name__}: {error}", types.MessageType.Warning)

    def reject(
        self, reason: str, request: RequestId | None, error: type[JsonRpcException] = JsonRpcInvalidRequest
    ) -> None:
        """Report a message that could not be read (on the event loop): in the client's log, and as the
        error answer to its request when its id could be read, so that the client does not wait forever."""
        message = f"repolm: skipped {reason}"
        logger.warning("%s", message)
        self.window_log_message(types.LogMessageParams(types.MessageType.Warning, message))
        if request is not None:
            self.protocol._send_response(request, error=error(message).to_response_error())

    # -- helpers used by the handlers --------------------------------------------------------------

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise NoIndexError("the server is not initialized yet")
        return self.engine

    def call_soon(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function` on the event loop: protocol output must not be written from worker threads."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(function, *args)

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.call_soon(self.window_log_message, types.LogMessageParams(kind, message))

    def document(self, uri: str) -> tuple[Path, str]:
        """The file path and current text of a document: the open buffer, else the file on disk."""
        if not isinstance(uri, str) or not uri:
            raise DocumentError("missing document uri")
        path = to_fs_path(uri)
        if path is None:
            raise DocumentError(f"{uri}: only file:// documents are supported")
        engine = self.require_engine()
        # Open in the editor or not, a document outside the workspace is never worked on.
        resolved = engine.workspace.inside(Path(path))
        document = self.workspace.text_documents.get(uri)
        if document is not None:
            text = document.source
        else:
            try:
                size = os.path.getsize(resolved)
                if size > engine.config.serve.max_document_bytes:
                    raise DocumentError(f"{uri}: too large ({size} bytes)")
                text = resolved.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise DocumentError(f"{uri}: not an open document or a readable text file") from error
        if len(text) > engine.config.serve.max_document_bytes:
            raise DocumentError(f"{uri}: too large for completion ({len(text)} characters)")
        if "\0" in text:
            raise DocumentError(f"{uri}: binary content")
        return resolved, text

    def cursor(self, uri: str, position: types.Position) -> CompletionRequest:
        """A completion request at an LSP position (UTF-16 units by default) converted to code points."""
        path, text = self.document(uri)
        lines = text.splitlines()
        if not lines or text.endswith(("\n", "\r")):
            lines.append("")
        if not 0 <= position.line < len(lines) or position.character < 0:
            raise PositionError(f"line {position.line} is outside the document ({len(lines)} lines)")
        line = lines[position.line]
        codec = self.workspace.position_codec
        units, column = 0, 0
        for char in line:
            if units >= position.character:
                break
            units += codec.client_num_units(char)
            column += 1
        return CompletionRequest(self.require_engine().workspace.relative(path), text, position.line, column)

    def start_progress(self, title: str) -> Progress:
        """Begin a work-done progress (when the client supports it); returns the `report` callback."""
        window = self.client_capabilities.window
        if not (window and window.work_done_progress):
            return lambda stage, done, total: None
        token = self._progress_token = str(uuid.uuid4())
        progress = self.work_done_progress

        def begin() -> None:
            progress.create(token)
            progress.begin(token, types.WorkDoneProgressBegin(title=title, percentage=0))

        self.call_soon(begin)
        last = [0.0]

        def report(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL and done < total:
                return
            last[0] = now
            percentage = int(100 * done / total) if total else None
            value = types.WorkDoneProgressReport(message=f"{stage} {done}/{total}", percentage=percentage)
            self.call_soon(progress.report, token, value)

        return report

    def stream_text(self, token: types.ProgressToken, title: str) -> Callable[[str], None]:
        """Begin a work-done progress under the client's `token`; the callback reports the text so far
        as its message, at most every PROGRESS_INTERVAL. `finish_stream` ends it."""
        progress = self.work_done_progress
        self.call_soon(progress.begin, token, types.WorkDoneProgressBegin(title=title))
        last = [0.0]

        def report(text: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                self.call_soon(progress.report, token, types.WorkDoneProgressReport(message=text))

        return report

    def finish_stream(self, token: types.ProgressToken) -> None:
        def end() -> None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd())
            self.work_done_progress.tokens.pop(token, None)  # pygls keeps each begun token otherwise

        self.call_soon(end)

    def end_progress(self, message: str) -> None:
        token, self._progress_token = self._progress_token, None
        if token is not None:
            self.call_soon(self.work_done_progress.end, token, types.WorkDoneProgressEnd(message=message))

    def index_done(self, summary: IndexSummary | None, error: Exception | None) -> None:
        if error is not None:
            self.end_progress(f"indexing failed: {error}")
            self.log(f"repolm: indexing failed: {error}", types.MessageType.Error)
        else:
            self.end_progress("index up to date")
            self.log(f"repolm: index updated: {summary.to_json() if summary else {}}")


server = RepolmServer()


# Requests' engine work (retrieval, the model) runs on this one thread. Every Python thread that calls
# into torch gets an OpenMP team of its own, and a team's workers spin for a while after each operation:
# requests hopping between the default executor's threads left teams fighting for the cores, which
# nearly doubled latency (bench/NOTES.md, Language server). The model serves one request at a time
# anyway (`LoadedModel.lock`).
_ENGINE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repolm-engine")


async def in_thread(function: Callable[[], T], cancel: threading.Event | None = None) -> T:
    """Run engine work on the engine thread, off the event loop; a `$/cancelRequest` (task
    cancellation) sets `cancel`, and work still queued is dropped."""
    try:
        return await asyncio.get_running_loop().run_in_executor(_ENGINE_THREAD, function)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()
        raise


def guarded(handler: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn any failure of a request handler into a JSON-RPC error; the server never goes down."""

    @functools.wraps(handler)
    async def wrapper(ls: RepolmServer, *args: Any) -> T:
        try:
            return await handler(ls, *args)
        except (asyncio.CancelledError, JsonRpcException):
            raise
        except (DocumentError, *_USER_ERRORS) as error:
            raise JsonRpcInvalidParams(f"repolm: {error}") from error
        except EngineError as error:  # the engine is down or slow: no bug of ours, the next request may work
            raise JsonRpcException(f"repolm: {error}", code=REQUEST_FAILED) from error
        except Exception as error:
            logger.exception("repolm: %s failed", handler.__name__)
            raise JsonRpcInternalError(f"repolm: {type(error).__name__}: {error}") from error

    return wrapper


def guarded_notification(handler: Callable[..., None]) -> Callable[..., None]:
    """Notifications have no reply: failures are logged to the client instead."""

    @functools.wraps(handler)
    def wrapper(ls: RepolmServer, *args: Any) -> None:
        try:
            handler(ls, *args)
        except Exception as error:
            logger.exception("repolm: %s failed", handler.__name__)
            ls.log(f"repolm: {handler.__name__}: {error}", types.MessageType.Warning)

    return wrapper


# ---------------------------------------------------------------------------------------------------------
# Lifecycle and workspace


@server.feature(types.INITIALIZE)
@guarded_notification
def initialize(ls: RepolmServer, params: types.InitializeParams) -> None:
    ls.loop = asyncio.get_running_loop()
    folders = _workspace_folders(ls)
    # The engine indexes one folder: the client's root, else its first workspace folder.
    root = Path(ls.workspace.root_path or (folders[0] if folders else os.getcwd()))
    try:
        ls.file_config = load_config(root)
    except ConfigError as error:
        ls.log(f"repolm: {error}; using defaults", types.MessageType.Warning)
    config, problems = apply_settings(ls.file_config, params.initialization_options, root)
    for problem in problems:
        ls.log(f"repolm: initializationOptions: {problem}; ignored", types.MessageType.Warning)
    ls.engine = Engine(root, config)
    ls.engine.workspace = Workspace(root, folders)
    if ls.reader is not None:
        ls.reader.framer.max_bytes = config.serve.max_message_bytes


def _workspace_folders(ls: RepolmServer) -> list[Path]:
    """The client's workspace folders: documents in any of them are answered, documents elsewhere are
    refused. Retrieval, symbols and the index come from the engine's root alone."""
    paths = (to_fs_path(folder.uri) for folder in ls.workspace.folders.values())
    return [Path(path) for path in paths if path]


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
@guarded_notification
def did_change_workspace_folders(ls: RepolmServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    engine = ls.require_engine()  # pygls has updated `ls.workspace.folders` already
    engine.workspace = Workspace(engine.root, _workspace_folders(ls))


@server.feature(TRANSPORT_ERROR)
@guarded_notification
def transport_error(ls: RepolmServer, params: Any) -> None:
    """Stands in the message stream for what `FrameReader` could not read (see repolm.server.transport)."""
    while ls.reader is not None and ls.reader.rejected:
        rejected = ls.reader.rejected.popleft()
        ls.reject(rejected.reason, rejected.request_id)


@server.feature(types.INITIALIZED)
@guarded_notification
def initialized(ls: RepolmServer, params: types.InitializedParams) -> None:
    engine = ls.require_engine()

    def progress() -> Progress:
        return ls.start_progress("repolm: indexing")

    ls.indexer = BackgroundIndexer(engine, progress, ls.index_done)
    _watch_files(ls)
    threading.Thread(target=_warm_up, args=(ls, engine), name="repolm-warm-up", daemon=True).start()


def _warm_up(ls: RepolmServer, engine: Engine) -> None:
    """Open (or build) the index, load its vectors and the models, so that the first completion does not
    wait for them."""
    try:
        if not engine.warm_index() and ls.indexer is not None:
            ls.indexer.request()
        engine.model()
        _ = engine.embedder.model
    except Exception as error:  # reported, never fatal: completions fall back to no retrieval
        ls.log(f"repolm: warm-up failed: {error}", types.MessageType.Error)


def _watch_files(ls: RepolmServer) -> None:
    """Ask the client to send `didChangeWatchedFiles` for the workspace, when it can register dynamically."""
    workspace = ls.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern="**/*")]
    )
    registration = types.Registration(
        id=str(uuid.uuid4()), method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
    )
    ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
@guarded_notification
def did_save(ls: RepolmServer, params: types.DidSaveTextDocumentParams) -> None:
    if ls.indexer is not None:
        ls.indexer.request()


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
@guarded_notification
def did_change_watched_files(ls: RepolmServer, params: types.DidChangeWatchedFilesParams) -> None:
    engine = ls.require_engine()
    index_dir = engine.config.index_path(engine.root)
    changes = [c for c in params.changes if not (to_fs_path(c.uri) or "").startswith(str(index_dir))]
    if changes and ls.indexer is not None:  # our own index writes must not trigger another update
        ls.indexer.request()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
@guarded_notification
def did_change_configuration(ls: RepolmServer, params: types.DidChangeConfigurationParams) -> None:
    engine = ls.require_engine()
    config, problems = apply_settings(ls.file_config, params.settings, engine.root)
    for problem in problems:
        ls.log(f"repolm: settings: {problem}; ignored", types.MessageType.Warning)
    engine.reconfigure(config)


# ---------------------------------------------------------------------------------------------------------
# Completion


async def _complete(ls: RepolmServer, uri: str, position: types.Position) -> Completion | None:
    engine = ls.require_engine()
    request = ls.cursor(uri, position)
    flag = ls.latest.start()  # a newer request cancels this one through `flag`
    result = await in_thread(lambda: engine.complete(request, flag), flag)
    if result.finish_reason == "cancelled" or not result.text:
        return None
    return result


@server.feature(
    types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " ", "="])
)
@guarded
async def completion(ls: RepolmServer, params: types.CompletionParams) -> types.CompletionList:
    result = await _complete(ls, params.text_document.uri, params.position)
    if result is None:
        return types.CompletionList(is_incomplete=True, items=[])
    here = types.Range(params.position, params.position)
    item = types.CompletionItem(
        label=result.text.strip().split("\n", 1)[0],
        kind=types.CompletionItemKind.Snippet if result.multiline else types.CompletionItemKind.Text,
        detail="repolm",
        text_edit=types.TextEdit(range=here, new_text=result.text),
        insert_text_format=types.InsertTextFormat.PlainText,
        insert_text_mode=types.InsertTextMode.AsIs,  # the text carries its own indentation
        filter_text=result.text,
        sort_text="0",
    )
    # Incomplete: the answer depends on every keystroke, so the editor must ask again as the user types.
    return types.CompletionList(is_incomplete=True, items=[item])


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
@guarded
async def inline_completion(
    ls: RepolmServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    result = await _complete(ls, params.text_document.uri, params.position)
    if result is None:
        return types.InlineCompletionList(items=[])
    here = types.Range(params.position, params.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=result.text, range=here)])


# ---------------------------------------------------------------------------------------------------------
# Hover and commands


@server.feature(types.TEXT_DOCUMENT_HOVER)
@guarded
async def hover(ls: RepolmServer, params: types.HoverParams) -> types.Hover | None:
    engine = ls.require_engine()
    request = ls.cursor(params.text_document.uri, params.position)
    symbol = await in_thread(
        lambda: engine.symbol_at(request.path, request.text, request.line, request.character)
    )
    if symbol is None:
        return None
    cancel = threading.Event()
    buffers = {request.path: request.text}
    explanation = await in_thread(
        lambda: engine.explain(symbol, request.path, buffers, cancel=cancel, wait_for_graph=False), cancel
    )
    markdown = explanation.markdown()
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=markdown))


@server.command("repolm.search")
@guarded
async def search_command(ls: RepolmServer, *args: Any) -> list[dict[str, object]]:
    """Arguments: query, then optionally k and mode (or one object with those keys)."""
    options = _arguments(args, ("query", "k", "mode"))
    query, k, mode = options.get("query"), options.get("k", 10), options.get("mode")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("repolm.search needs a query string")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise ValueError("k must be an integer from 1 to 100")
    if mode is not None and not isinstance(mode, str):
        raise ValueError("mode must be bm25, dense or hybrid")
    engine = ls.require_engine()
    hits = await in_thread(lambda: engine.search(query, k=k, mode=mode))
    return [hit.to_json() for hit in hits]


@server.command("repolm.explain")
@guarded
async def explain_command(ls: RepolmServer, *args: Any) -> dict[str, object]:
    """Arguments: uri, line, character (0-based, as in LSP), or a symbol name. An object argument may
    add a `workDoneToken` the client made: the explanation is then streamed as that progress's reports
    (each the text so far) before the answer arrives."""
    engine = ls.require_engine()
    options = _arguments(args, ("uri", "line", "character"))
    token = options.get("workDoneToken")
    if token is not None and (not isinstance(token, str | int) or isinstance(token, bool)):
        raise ValueError("workDoneToken must be a string or an integer")
    buffers: dict[str, str] = {}
    path = ""
    if "symbol" in options or (len(args) == 1 and isinstance(args[0], str)):
        name = options.get("symbol", options.get("uri"))
        if not isinstance(name, str) or not name:
            raise ValueError("repolm.explain needs a symbol name or uri, line, character")
        symbol = await in_thread(lambda: engine.symbol_named(name))
        missing = f"no definition of {name!r} in the index"
    else:
        line, character = options.get("line"), options.get("character")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (line, character)):
            raise ValueError("line and character must be integers")
        request = ls.cursor(options.get("uri", ""), types.Position(line=line, character=character))
        path, buffers = request.path, {request.path: request.text}
        symbol = await in_thread(
            lambda: engine.symbol_at(path, request.text, request.line, request.character)
        )
        missing = f"no symbol with a definition in the index at {path}:{line + 1}:{character + 1}"
    if symbol is None:
        return {"card": None, "explanation": missing}
    cancel = threading.Event()
    stream = None if token is None else ls.stream_text(token, f"repolm: explaining {symbol.qualname}")
    try:
        explanation: Explanation = await in_thread(
            lambda: engine.explain(symbol, path, buffers, cancel=cancel, on_text=stream), cancel
        )
    finally:
        if token is not None:
            ls.finish_stream(token)
    return explanation.to_json()


@server.command("repolm.ask")
@guarded
async def ask_command(ls: RepolmServer, *args: Any) -> dict[str, object]:
    """Argument: a question about the code; answers as `repolm ask --json` does."""
    question = _arguments(args, ("question",)).get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("repolm.ask needs a question string")
    engine = ls.require_engine()
    result, graph = await in_thread(lambda: engine.ask(question))
    return result.to_json(graph)


@server.command("repolm.reindex")
@guarded
async def reindex_command(ls: RepolmServer, *args: Any) -> dict[str, object]:
    """Update the index now and wait for it; answers with the new generation."""
    engine = ls.require_engine()
    if ls.indexer is None:
        raise NoIndexError("the server is not initialized yet")
    indexer = ls.indexer
    indexer.request()
    # A wait, not engine work: on the engine thread it would hold up every request until the index is done.
    finished = await asyncio.to_thread(indexer.wait_idle, REINDEX_TIMEOUT)
    index = engine.index()
    return {"done": finished, "generation": index.generation if index else 0}


def _arguments(args: tuple[Any, ...], names: tuple[str, ...]) -> dict[str, Any]:
    """Command arguments given positionally or as a single object."""
    if len(args) == 1 and isinstance(args[0], dict):
        return dict(args[0])
    if len(args) > len(names):
        raise ValueError(f"expected at most {len(names)} arguments ({', '.join(names)})")
    return dict(zip(names, args, strict=False))


def serve(tcp: tuple[str, int] | None = None) -> None:
    """Run the server over stdio, or over TCP at (host, port) for one client.

    Either way pygls reads through a `FrameReader` (oversized and malformed messages are skipped), with
    the default size limit until `initialize` names the workspace and its repolm.toml."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    limit = Config().serve.max_message_bytes
    if tcp is None:
        server.reader = FrameReader(sys.stdin.buffer, limit)
        server.start_io(server.reader, sys.stdout.buffer)  # type: ignore[arg-type]  # reads as pygls does
        return
    family = socket.getaddrinfo(*tcp, type=socket.SOCK_STREAM)[0][0]  # IPv4 or IPv6, as the host names
    with socket.create_server(tcp, family=family) as listener:
        connection, _ = listener.accept()
    with connection, connection.makefile("rb") as incoming, connection.makefile("wb") as outgoing:
        server.reader = FrameReader(incoming, limit)
        server.start_io(server.reader, outgoing)  # type: ignore[arg-type]
