""" "Explain this symbol": a symbol card straight from the graph, then a model-written explanation.

Plain Python (no protocol types): the hover, the `repolm.explain` command and `repolm explain` call it.

The card is instant and exact (signature, docstring, definition and uses as `path:line`). The explanation
is grounded: the model sees only the gathered sources, and before anything is shown every quote is
checked verbatim against them and every `path:line` citation must point into one of them; what fails
is dropped rather than displayed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from cachetools import LRUCache

from repolm.config import ServeConfig
from repolm.engine_http import EngineError
from repolm.indexer.graph import Symbol, SymbolGraph
from repolm.indexer.secrets import redact
from repolm.model import Cancel, OnText, Served, generate
from repolm.prompt import Document, PromptRequest, build_prompt

MAX_DEFINITION_LINES = 40
MAX_USES_SHOWN = 10  # in the card
CALLER_SOURCES = 3  # callers whose surrounding lines go to the model
CALLER_CONTEXT = 2  # lines either side of a call
CALLEE_SOURCES = 3
CALLEE_LINES = 6  # a callee's signature and docstring are what the explanation needs of it
DOC_SOURCES = 2

ReadLines = Callable[[str], Sequence[str] | None]  # repo-relative path -> the file's lines (None: unreadable)
DocSearch = Callable[[str, int], Sequence[Document]]  # (query, k) -> documentation chunks, best first

_QUOTE = re.compile(r"##begin_quote##(.*?)(?:##end_quote##|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[\w+-]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def is_name(span: str) -> bool:
    """Whether an inline code span is only a (dotted) name, possibly called: `a.b.c` or `f()`."""
    return bool(_DOTTED_NAME.fullmatch(span.strip().removesuffix("()")))


_CITATION = re.compile(r"\[?(?<![\w/.-])([\w.-]+(?:/[\w.-]+)*\.\w+):(\d+)(?:-(\d+))?\]?")
_ANSWER = re.compile(r"<ANSWER>:\s*")


@dataclass(frozen=True)
class UseSite:
    path: str
    line: int
    scope: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f" (in `{self.scope}`)" if self.scope else "")


@dataclass(frozen=True)
class SymbolCard:
    qualname: str
    kind: str
    signature: str
    docstring: str
    path: str
    line: int  # where the name is defined (1-based)
    callers: tuple[UseSite, ...]
    callees: tuple[str, ...]  # qualnames

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"

    def markdown(self) -> str:
        parts = [f"```\n{self.signature or self.qualname}\n```", f"**{self.kind}** `{self.qualname}`"]
        if self.docstring:
            parts.append(self.docstring.strip())
        parts.append(f"Defined at {self.location}")
        if self.callers:
            shown = "\n".join(f"- {use}" for use in self.callers[:MAX_USES_SHOWN])
            more = len(self.callers) - MAX_USES_SHOWN
            parts.append(f"Used at:\n{shown}" + (f"\n- … and {more} more" if more > 0 else ""))
        else:
            parts.append("No callers found in the index.")
        if self.callees:
            parts.append("Calls: " + ", ".join(f"`{name}`" for name in self.callees))
        return "\n\n".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "qualname": self.qualname,
            "kind": self.kind,
            "signature": self.signature,
            "docstring": self.docstring,
            "location": self.location,
            "callers": [f"{use.path}:{use.line}" for use in self.callers],
            "callees": list(self.callees),
        }


@dataclass(frozen=True)
class Verified:
    text: str
    dropped_quotes: tuple[str, ...] = ()
    dropped_citations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Explanation:
    card: SymbolCard
    text: str  # verified; a plain statement when there was nothing to ground an explanation in
    sources: tuple[Document, ...]
    dropped_quotes: tuple[str, ...] = ()
    dropped_citations: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    paths: tuple[str, ...] = ()  # code graph paths from the symbol, every edge checked (rendered)

    def markdown(self) -> str:
        parts = [self.card.markdown()]
        if self.paths:
            parts.append("Graph paths:\n" + "\n".join(f"- `{path}`" for path in self.paths))
        if self.text:
            parts.append(f"---\n\n{self.text}")
        return "\n\n".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "card": self.card.to_json(),
            "card_markdown": self.card.markdown(),
            "explanation": self.text,
            "sources": [f"{d.path}:{d.start_line}-{d.end_line}" for d in self.sources],
            "dropped_quotes": list(self.dropped_quotes),
            "dropped_citations": list(self.dropped_citations),
            "paths": list(self.paths),
            "timings_ms": {stage: round(seconds * 1000, 1) for stage, seconds in self.timings.items()},
        }


# ---------------------------------------------------------------------------------------------------------
# Resolution and the card


def resolve_name(graph: SymbolGraph, name: str) -> Symbol | None:
    """A qualified name, or a plain name defined exactly once (the first one if there are several)."""
    found = graph.by_qualname(name)
    if found is not None:
        return found
    candidates = graph.by_name(name.rsplit(".", 1)[-1])
    narrowed = [s for s in candidates if s.qualname.endswith("." + name) or s.qualname == name]
    return (narrowed or candidates or [None])[0]


def symbol_card(graph: SymbolGraph, symbol: Symbol) -> SymbolCard:
    uses = graph.callers(symbol.qualname) or graph.importers(symbol.qualname)
    callers = tuple(UseSite(use.path, use.line, use.scope) for use in uses)
    callees = tuple(callee.qualname for callee in graph.callees(symbol.qualname))
    return SymbolCard(
        symbol.qualname,
        symbol.kind,
        symbol.signature,
        symbol.docstring,
        symbol.path,
        symbol.name_line,
        callers,
        callees,
    )


# ---------------------------------------------------------------------------------------------------------
# Sources


def _excerpt(read_lines: ReadLines, path: str, first: int, last: int, symbol: str = "") -> Document | None:
    lines = read_lines(path)
    if not lines:
        return None
    first, last = max(1, first), min(len(lines), last)
    if first > last:
        return None
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines[first - 1 : last])
    return Document(path, first, last, text, symbol)


def redacted(read_lines: ReadLines) -> ReadLines:
    """`read_lines` with every file's secrets redacted, each file once: open buffers and files on disk
    are read as they are, unlike the index's text."""
    files: dict[str, Sequence[str] | None] = {}

    def read(path: str) -> Sequence[str] | None:
        if path not in files:
            lines = read_lines(path)
            files[path] = None if lines is None else redact("".join(lines), path)[0].splitlines(keepends=True)
        return files[path]

    return read


def gather_sources(
    graph: SymbolGraph, symbol: Symbol, card: SymbolCard, read_lines: ReadLines, docs: DocSearch | None
) -> list[Document]:
    """The definition, a few call sites, the callees' signatures and matching doc sections; best first."""
    read_lines = redacted(read_lines)
    found: list[Document | None] = [
        _excerpt(
            read_lines,
            symbol.path,
            symbol.start_line,
            min(symbol.end_line, symbol.start_line + MAX_DEFINITION_LINES - 1),
            symbol.qualname,
        )
    ]
    for use in card.callers[:CALLER_SOURCES]:
        found.append(
            _excerpt(read_lines, use.path, use.line - CALLER_CONTEXT, use.line + CALLER_CONTEXT, use.scope)
        )
    for name in card.callees[:CALLEE_SOURCES]:
        callee = graph.by_qualname(name)
        if callee is not None:
            end = min(callee.end_line, callee.start_line + CALLEE_LINES - 1)
            found.append(_excerpt(read_lines, callee.path, callee.start_line, end, callee.qualname))
    if docs is not None:
        query = f"{symbol.name} {symbol.docstring}".strip()
        found.extend(docs(query, DOC_SOURCES))
    return [document for document in found if document is not None]


# ---------------------------------------------------------------------------------------------------------
# Verification


def _squash(text: str) -> str:
    # Whitespace differences (a quote re-indented or joined onto one line) do not change what is quoted.
    return " ".join(text.split())


def verify(text: str, sources: Sequence[Document]) -> Verified:
    """Keep only quotes found verbatim in `sources` and citations that point into one of them."""
    haystacks = [_squash(document.text) for document in sources]
    sources_text = "\n".join(document.text for document in sources)
    dropped_quotes: list[str] = []
    dropped_citations: list[str] = []

    def found(quote: str) -> bool:
        needle = _squash(quote)
        return bool(needle) and any(needle in haystack for haystack in haystacks)

    def quote(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if found(body):
            return f"\n```\n{body}\n```\n"
        dropped_quotes.append(body)
        return ""

    def fence(match: re.Match[str]) -> str:
        return quote(match) if match.group(1).strip() else ""

    def inline(match: re.Match[str]) -> str:
        # A name is often written qualified (`pkg.mod.Class`) where the source only has `Class`; the
        # name's own part must still be in the sources, so nothing invented gets through.
        name = match.group(1).strip().removesuffix("()").rsplit(".", 1)[-1]
        named = is_name(match.group(1)) and re.search(rf"\b{name}\b", sources_text)
        if found(match.group(1)) or named:
            return match.group(0)
        dropped_quotes.append(match.group(1))
        return ""

    def citation(match: re.Match[str]) -> str:
        path, line = match.group(1), int(match.group(2))
        if any(d.path == path and d.start_line <= line <= d.end_line for d in sources):
            return f"{path}:{line}"
        dropped_citations.append(match.group(0).strip("[]"))
        return ""

    text = _QUOTE.sub(quote, text)
    # Fenced blocks are verified (and re-emitted) before inline spans, whose backticks they contain.
    pieces = re.split(r"(\n```\n.*?\n```\n)", _FENCE.sub(fence, text), flags=re.DOTALL)
    kept = []
    for piece in pieces:
        if piece.startswith("\n```\n"):
            kept.append(piece)
        else:
            kept.append(_CITATION.sub(citation, _INLINE_CODE.sub(inline, piece)))
    cleaned = _ANSWER.sub("**Answer:** ", "".join(kept))
    cleaned = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n{3,}", "\n\n", cleaned)).strip()
    return Verified(cleaned, tuple(dropped_quotes), tuple(dropped_citations))


# ---------------------------------------------------------------------------------------------------------
# The explainer


def explain_question(symbol: Symbol) -> str:
    return f"What does {symbol.kind} {symbol.qualname} do, and how is it used?"


class Explainer:
    """Cards and explanations, with explanations cached per (context, symbol): hovering twice is free."""

    def __init__(self, model: Served | None, config: ServeConfig, cache_size: int = 64) -> None:
        self.model = model
        self.config = config
        self._cache: LRUCache[tuple[str, str], Explanation] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()

    def explain(
        self,
        graph: SymbolGraph,
        symbol: Symbol,
        read_lines: ReadLines,
        docs: DocSearch | None = None,
        path: str = "",
        cancel: Cancel = None,
        cache_key: str = "",
        with_model: bool = True,
        graph_lock: AbstractContextManager[object] | None = None,
        on_text: OnText = None,
    ) -> Explanation:
        """The card, and unless `with_model` is false an explanation. `graph_lock` is held while the
        graph and index are read, and released before the (slow) generation, whose text so far goes to
        `on_text` as it grows (unverified: the returned explanation is the one to keep)."""
        with graph_lock or nullcontext():
            started = time.perf_counter()
            card = symbol_card(graph, symbol)
            timings = {"card": time.perf_counter() - started}
            if not with_model or self.model is None or not self.config.explain_enabled:
                return Explanation(card, "", (), timings=timings)
            key = (cache_key, symbol.qualname)
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None:
                return cached
            mark = time.perf_counter()
            sources = gather_sources(graph, symbol, card, read_lines, docs)
            timings["gather"] = time.perf_counter() - mark
        if not sources:
            text = (
                f"Nothing relevant to `{symbol.qualname}` was found in the index, so there is no explanation."
            )
            return Explanation(card, text, (), timings=timings)
        mark = time.perf_counter()
        prompt = build_prompt(
            PromptRequest("explain", sources, question=explain_question(symbol), path=path),
            self.model.tokenizer,
            self.config.explain_budget,
        )
        try:
            generation = generate(
                self.model,
                prompt.input_ids,
                max_new_tokens=self.config.explain_max_tokens,
                cancel=cancel,
                draft_tokens=self.config.draft_tokens,
                int8=self.config.int8_decoding,
                prompt_caches=self.config.prompt_caches,
                on_text=on_text,
            )
        except EngineError as error:  # the card still shows; the next hover asks the engine again
            return Explanation(card, f"No explanation: {error}.", (), timings=timings)
        timings["generate"] = time.perf_counter() - mark
        verified = verify(generation.text, prompt.documents)
        text = verified.text
        if not any(ch.isalnum() for ch in text):
            text = "The model's explanation could not be verified against the sources, so none is shown."
        elif generation.finish_reason == "length":
            text += " …"
        result = Explanation(
            card,
            text,
            prompt.documents,
            verified.dropped_quotes,
            verified.dropped_citations,
            timings,
        )
        if generation.finish_reason != "cancelled":
            with self._lock:
                self._cache[key] = result
        return result
