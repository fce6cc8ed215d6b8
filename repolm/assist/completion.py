"""Code completion at a cursor: neighbourhood query → retrieval from other files → prompt → greedy decode.

Plain Python (no protocol types): the LSP adapter and `repolm complete` both call `Completer.complete`.

The open buffer may differ from what the index holds, so the current file is never retrieved from: its
text before the cursor goes to the model directly as the prompt's prefix, and retrieval brings in the
rest of the repository (where the helpers the user is about to call are defined).
"""

from __future__ import annotations

import hashlib
import keyword
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from repolm.config import ServeConfig
from repolm.fim import stop_tokens, template_named
from repolm.indexer.secrets import REDACTION_MARKER, redact_split
from repolm.model import Cancel, Served, StopRules, generate
from repolm.prompt import (
    Document,
    Prompt,
    PromptRequest,
    build_prompt,
    completion_from_generation,
)

RECENT_LINES = 8  # lines before the cursor whose identifiers make up the query
STEADY_CANDIDATES = 2  # times the snippet count: how far down the ranking the last snippets may sink
MAX_QUERY_TERMS = 40

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+)?import\s+(.+)$")
# Words that say nothing about which helper is meant; keeping them would only dilute BM25.
_NOISE = frozenset(keyword.kwlist) | {
    "self",
    "cls",
    "this",
    "return",
    "None",
    "True",
    "False",
    "const",
    "let",
    "var",
    "function",
    "func",
    "new",
    "int",
    "str",
    "float",
    "bool",
    "len",
    "print",
    "range",
    REDACTION_MARKER.strip("[]"),  # where a secret was: it would pull in other files' secrets
}

# (query, current path, text before the cursor, k) -> documents, best first
Search = Callable[[str, str, str, int], Sequence[Document]]


class PositionError(ValueError):
    """A cursor position outside the document."""


@dataclass(frozen=True)
class CompletionRequest:
    path: str  # repository-relative when inside the repository
    text: str  # the buffer as the editor has it, unsaved edits included
    line: int  # 0-based
    character: int  # 0-based, in code points


@dataclass(frozen=True)
class Completion:
    text: str  # to insert at the cursor exactly as is
    multiline: bool
    finish_reason: str  # stop | length | cancelled | cached | disabled
    documents: tuple[Document, ...]  # the snippets the prompt carried
    query: str
    timings: dict[str, float]  # seconds per stage
    prefill_tokens: int = 0  # prompt tokens the model had to run (the rest came from its KV cache)

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "multiline": self.multiline,
            "finish_reason": self.finish_reason,
            "query": self.query,
            "documents": [f"{d.path}:{d.start_line}-{d.end_line}" for d in self.documents],
            "timings_ms": {stage: round(seconds * 1000, 1) for stage, seconds in self.timings.items()},
            "prefill_tokens": self.prefill_tokens,
        }


# ---------------------------------------------------------------------------------------------------------
# The pure steps


def split_at(text: str, line: int, character: int) -> tuple[str, str]:
    """The buffer before and after a cursor; a column past the line's end means the end of the line."""
    lines = text.splitlines(keepends=True)
    if text == "" or text.endswith(("\n", "\r")):
        lines.append("")  # the empty last line the editor shows after a final newline
    if not 0 <= line < len(lines) or character < 0:
        raise PositionError(f"position {line}:{character} is outside the document ({len(lines)} lines)")
    current = lines[line]
    body = current.rstrip("\r\n")
    column = min(character, len(body))
    offset = sum(len(previous) for previous in lines[:line]) + column
    return text[:offset], text[offset:]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def opens_block(prefix: str) -> bool:
    """The cursor sits on an empty (or indentation-only) line right after a line ending in `:` or `{`."""
    before, _, current = prefix.rpartition("\n")
    if current.strip() or not before.strip():
        return False
    previous = before.rstrip("\r").rsplit("\n", 1)[-1].rstrip()
    return previous.endswith((":", "{"))


def stop_rules(prefix: str, multiline: bool, stop_strings: Sequence[str] = ()) -> StopRules:
    """Single-line: stop at the end of the line. Multi-line: stop when a line leaves the new block.
    Either way at any of `stop_strings` (a FIM family's control tokens)."""
    if not multiline:
        return StopRules(single_line=True, stop_strings=tuple(stop_strings))
    before, _, current = prefix.rpartition("\n")
    previous = before.rsplit("\n", 1)[-1]
    block_indent = max(_indent(current), _indent(previous) + 1)
    return StopRules(base_indent=block_indent, stop_strings=tuple(stop_strings))


def retrieval_query(prefix: str) -> str:
    """Identifiers of the lines above the cursor (nearest first), then the modules they were imported from.

    The lines just above say what the user is doing; an import of a name used there says which module
    of the repository defines it, which is where retrieval should look. Imports the nearby code does
    not use are left out: a test file importing dozens of names otherwise drowns the query, and the
    chunk the completion needs ranks much lower (bench/NOTES.md, Completion quality). The line
    being typed is left out on purpose: the query (hence the snippets at the head of the prompt) then
    stays the same for every keystroke on a line, so the model's KV cache is reused and only the new
    characters are run.
    """
    lines = prefix.splitlines()[:-1] if not prefix.endswith("\n") else prefix.splitlines()
    recent = [line for line in lines if line.strip()][-RECENT_LINES:]
    terms: list[str] = []
    for line in reversed(recent):
        terms += _IDENTIFIER.findall(line)
    used = set(terms)
    for line in lines:
        match = _IMPORT.match(line)
        if match:
            module, names = match.groups()
            bound = [name for name in _IDENTIFIER.findall(names) if name in used]
            if bound:
                terms += _IDENTIFIER.findall(module or "") + bound
    unique = dict.fromkeys(term for term in terms if term not in _NOISE and term != "import")
    return " ".join(list(unique)[:MAX_QUERY_TERMS])


def insertion_text(prompt: Prompt, generated: str, prefix: str, suffix: str, multiline: bool) -> str:
    """The text to insert at the cursor, from what the model generated after the prompt.

    `completion_from_generation` removes the healed text the editor already has; on top of that the
    insertion never starts with a line break (the cursor's line is where the user wants code) and a
    single-line insertion does not repeat what already follows the cursor (an auto-closed bracket).
    """
    text = completion_from_generation(prompt, generated)
    if text.lstrip(" \t").startswith(("\n", "\r")):
        return ""  # the model ended the line: nothing belongs on this one
    if not prefix.rsplit("\n", 1)[-1].strip():
        text = text.lstrip(" \t")  # the editor already placed the indentation
    if multiline:
        return "\n".join(line.rstrip() for line in text.rstrip().splitlines())
    text = text.split("\n", 1)[0].rstrip()
    rest_of_line = suffix.split("\n", 1)[0].strip()
    if rest_of_line and text.endswith(rest_of_line):
        text = text[: -len(rest_of_line)].rstrip()
    return text


def steady_snippets(previous: Sequence[Document], candidates: Sequence[Document], k: int) -> list[Document]:
    """The previous request's snippets while any of them is still among the candidates, else the top `k`
    candidates.

    Snippets open the prompt, so a new set costs a prefill of the whole prompt. When the user moves on to
    the next line, the query gains that line's names and the ranking shifts, mostly among snippets that
    all stay relevant; keeping the previous ones keeps the model's KV cache, and only the lines written
    since are run. One is enough: requiring more renews the set, and re-runs most of the prompt, on many
    more lines, while kept snippets lose little quality against fresh ones (docs/PERFORMANCE.md,
    Language server). When the user goes elsewhere the candidates change wholesale and
    the snippets follow; a new index generation starts afresh, and each recent file keeps its own.
    """
    if any(document in candidates for document in previous):
        return list(previous)
    return list(candidates[:k])


# ---------------------------------------------------------------------------------------------------------
# The completer: retrieval, prompt, model, cache, "the latest request wins"


class Latest:
    """Cancel flags where starting a request cancels the one before: only the newest keystroke matters."""

    def __init__(self) -> None:
        self._flag: threading.Event | None = None
        self._lock = threading.Lock()

    def start(self) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            if self._flag is not None:
                self._flag.set()
            self._flag = flag
        return flag


class Completer:
    def __init__(self, model: Served, config: ServeConfig, search: Search | None = None) -> None:
        self.model = model
        self.config = config
        self.search = search
        self._cache: LRUCache[str, Completion] = LRUCache(maxsize=config.completion_cache_size)
        self._cache_lock = threading.Lock()
        # The last snippets of each recent file, under (context, path): a reindex starts afresh, and coming
        # back from another file finds the prompt's head as it was, which the model's cache of that
        # prompt (repolm.model._PromptCaches) still holds. As many files as prompt caches are kept.
        self._snippets: LRUCache[tuple[str, str], Sequence[Document]] = LRUCache(
            maxsize=max(1, config.prompt_caches)
        )

    def clear_cache(self) -> None:
        """Forget the cached answers and the files' snippets: the next request starts cold."""
        with self._cache_lock:
            self._cache.clear()
            self._snippets.clear()

    def complete(self, request: CompletionRequest, cancel: Cancel = None, cache_key: str = "") -> Completion:
        """Complete at the request's cursor. `cache_key` names what else the answer depends on (the
        index generation, the adapter): a repeated identical request is answered from the LRU cache."""
        prefix, suffix = split_at(request.text, request.line, request.character)
        multiline = opens_block(prefix)
        if not self.config.completion_enabled:
            return Completion("", multiline, "disabled", (), "", {})
        template = template_named(self.config.template, self.model.tokenizer)
        # The plain layout reads only the rest of the cursor's line after it; a FIM template all of it.
        read_suffix = suffix if template is not None else suffix.split("\n", 1)[0]
        key = _cache_key(cache_key, request.path, prefix, read_suffix, self.config)
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None:
            return Completion(cached.text, multiline, "cached", cached.documents, cached.query, {})
        timings: dict[str, float] = {}
        started = time.perf_counter()
        # The buffer is the one text the index did not redact: from here on, the query, the prompt and
        # the answer see it with its secrets replaced (the cache key above stays on the raw text).
        prefix, suffix = redact_split(request.text, request.path, len(prefix))
        mark = time.perf_counter()
        timings["redact"] = mark - started
        query = retrieval_query(prefix)
        documents: Sequence[Document] = ()
        if self.search is not None and query:
            k = self.config.completion_snippets
            candidates = self.search(query, request.path, prefix, STEADY_CANDIDATES * k)
            documents = self._steady_snippets((cache_key, request.path), candidates, k)
        timings["retrieve"] = time.perf_counter() - mark
        mark = time.perf_counter()
        prompt = build_prompt(
            PromptRequest("complete", documents, prefix=prefix, suffix=suffix, path=request.path),
            self.model.tokenizer,
            self.config.completion_budget,
            self.config.template,
        )
        timings["prompt"] = time.perf_counter() - mark
        mark = time.perf_counter()
        limit = self.config.block_max_tokens if multiline else self.config.completion_max_tokens
        generation = generate(
            self.model,
            prompt.input_ids,
            max_new_tokens=limit,
            stop=stop_rules(prefix, multiline, stop_tokens(template)),
            cancel=cancel,
            healed=prompt.healed,
            draft_tokens=self.config.draft_tokens,
            int8=self.config.int8_decoding,
            prompt_caches=self.config.prompt_caches,
        )
        timings["generate"] = time.perf_counter() - mark
        timings["prefill"] = generation.prefill_seconds  # up to the end of its first pass, within "generate"
        timings["total"] = time.perf_counter() - started
        text = insertion_text(prompt, generation.text, prefix, suffix, multiline)
        result = Completion(
            text,
            multiline,
            generation.finish_reason,
            prompt.documents,
            query,
            timings,
            generation.prefill_tokens,
        )
        if generation.finish_reason != "cancelled":
            self._remember(key, result)
        return result

    def _steady_snippets(
        self, place: tuple[str, str], candidates: Sequence[Document], k: int
    ) -> list[Document]:
        with self._cache_lock:
            documents = steady_snippets(self._snippets.get(place, ()), candidates, k)
            self._snippets[place] = documents
        return documents

    def _remember(self, key: str, result: Completion) -> None:
        with self._cache_lock:
            if self._cache.maxsize:  # a size of 0 turns the cache off (LRUCache would refuse the item)
                self._cache[key] = result


def _cache_key(context: str, path: str, prefix: str, suffix: str, config: ServeConfig) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in (context, path, prefix, suffix, repr(config)):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()
