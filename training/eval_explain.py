"""Grounding checks for "explain this symbol", on documented symbols of the evaluation split.

Explanations come from the real explain core (`repolm.assist.explain.Explainer`) and are judged on what
the user would see (the verified text):

- `cites_definition`: share of explanations citing the symbol's defining file at a line of its definition;
- `citation_precision`: citations that point into a source the model was given / all citations it wrote
  (the verifier drops the others before display, so this measures the model, not the display);
- `quotes_verbatim`: share of the displayed quoted spans (fenced blocks, inline code other than bare
  names) found verbatim (whitespace-normalised) in the sources — must be 1.0; an inline name such as
  `pkg.mod.func` is an identifier, judged by the next check;
- `unknown_identifiers`: code-looking names in the displayed text that occur nowhere in the repository
  (nor among the language's builtins and keywords) — must be 0.
"""

from __future__ import annotations

import builtins
import keyword
import random
import re
from collections.abc import Sequence

from repolm.assist.explain import Explainer, Explanation, is_name
from repolm.config import Progress, ServeConfig
from repolm.indexer.code_uses import CALLABLE_KINDS
from repolm.indexer.graph import Symbol
from repolm.indexer.records import DOC_LANGUAGES
from repolm.indexer.retrieval import Index
from repolm.indexer.store import alive
from repolm.model import LoadedModel
from repolm.prompt import Document

from .eval_split import EvalSplit
from .eval_targets import read_redacted

_CITATION = re.compile(r"(?<![\w/.-])([\w.-]+(?:/[\w.-]+)*\.\w+):(\d+)")
_FENCE = re.compile(r"```[\w+-]*\n?(.*?)```", re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL = re.compile(r"https?://\S+")
# Outside code spans only names that look like code count: snake_case, camelCase, dotted, or called.
_CODE_LIKE = re.compile(
    r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b|\b[A-Za-z_]\w*(?=\()|\b\w*_\w*\b|\b[a-z]+[A-Z]\w*\b"
)
_KNOWN = frozenset(dir(builtins)) | frozenset(keyword.kwlist)


def documented_symbols(index: Index, split: EvalSplit) -> list[Symbol]:
    """Functions, methods and classes with a docstring, defined where the split allows targets."""
    rows = index.store.db.execute(
        f"SELECT DISTINCT f.path FROM files f WHERE {alive('f', index.generation)} ORDER BY f.path"
    )
    paths = split.files([row[0] for row in rows])
    found = []
    for path in paths:
        found += [
            s
            for s in index.graph.in_file(path)
            if s.docstring.strip() and s.kind in CALLABLE_KINDS and split.allows(path, s.name_line)
        ]
    return found


def repository_vocabulary(index: Index) -> frozenset[str]:
    """Every identifier-shaped word in the indexed text (code and docs)."""
    words: set[str] = set()
    rows = index.store.db.execute(
        f"SELECT c.text FROM chunks c JOIN files f ON f.id = c.file_id WHERE {alive('f', index.generation)}"
    )
    for (text,) in rows:
        words.update(_IDENTIFIER.findall(text))
    return frozenset(words)


def _squash(text: str) -> str:
    return " ".join(text.split())


def quoted_spans(text: str) -> list[str]:
    fenced = [m.group(1).strip() for m in _FENCE.finditer(text) if m.group(1).strip()]
    rest = _FENCE.sub(" ", text)
    return fenced + [m.group(1).strip() for m in _INLINE.finditer(rest) if m.group(1).strip()]


def mentioned_identifiers(text: str) -> set[str]:
    """Names in code spans, plus code-looking names in the prose (citations and URLs left out)."""
    text = _URL.sub(" ", _CITATION.sub(" ", text))
    names: set[str] = set()
    for span in quoted_spans(text):
        names.update(_IDENTIFIER.findall(span))
    prose = _INLINE.sub(" ", _FENCE.sub(" ", text))
    for match in _CODE_LIKE.finditer(prose):
        names.update(_IDENTIFIER.findall(match.group()))
    return names


def judge(explanation: Explanation, symbol: Symbol, vocabulary: frozenset[str]) -> dict[str, object]:
    """The grounding facts of one displayed explanation."""
    text = explanation.text
    citations = [(path, int(line)) for path, line in _CITATION.findall(text)]
    cites_definition = any(
        path == symbol.path and symbol.start_line <= line <= symbol.end_line for path, line in citations
    )
    haystacks = [_squash(d.text) for d in explanation.sources]
    quotes = [span for span in quoted_spans(text) if not is_name(span)]
    verbatim = [q for q in quotes if any(_squash(q) in haystack for haystack in haystacks)]
    unknown = sorted(name for name in mentioned_identifiers(text) if name not in vocabulary | _KNOWN)
    return {
        "qualname": symbol.qualname,
        "location": f"{symbol.path}:{symbol.name_line}",
        "text": text,
        "cites_definition": cites_definition,
        "citations": len(citations),
        "citations_dropped": len(explanation.dropped_citations),
        "quotes": len(quotes),
        "quotes_verbatim": len(verbatim),
        "quotes_dropped": len(explanation.dropped_quotes),
        "unknown_identifiers": unknown,
        "latency_ms": round(sum(explanation.timings.values()) * 1000, 1),
    }


def summarize(judged: Sequence[dict]) -> dict[str, object]:
    cited = sum(j["citations"] for j in judged)
    written = cited + sum(j["citations_dropped"] for j in judged)
    quotes = sum(j["quotes"] for j in judged)
    return {
        "n": len(judged),
        "cites_definition": round(sum(j["cites_definition"] for j in judged) / len(judged), 4)
        if judged
        else None,
        "citation_precision": round(cited / written, 4) if written else None,
        "citations_written": written,
        "quotes_verbatim": round(sum(j["quotes_verbatim"] for j in judged) / quotes, 4) if quotes else None,
        "quotes_shown": quotes,
        "quotes_dropped": sum(j["quotes_dropped"] for j in judged),
        "unknown_identifiers": sum(len(j["unknown_identifiers"]) for j in judged),
        "records": list(judged),
    }


def evaluate_explanations(
    index: Index,
    model: LoadedModel,
    serve: ServeConfig,
    split: EvalSplit,
    limit: int,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Explain up to `limit` documented held-out symbols (seeded sample) and summarize the checks."""
    report = progress or (lambda stage, done, total: None)
    symbols = documented_symbols(index, split)
    chosen = sorted(random.Random(seed).sample(symbols, min(limit, len(symbols))), key=lambda s: s.qualname)
    vocabulary = repository_vocabulary(index)
    explainer = Explainer(model, serve)

    def read_lines(path: str) -> list[str] | None:
        text = read_redacted(index.root, path)
        return None if text is None else text.splitlines(keepends=True)

    def docs(query: str, k: int) -> list[Document]:
        # As Engine._search_docs: the configured mode, documentation chunks only.
        hits = index.search(query, k=k * 5)
        return [
            Document(h.chunk.path, h.chunk.start_line, h.chunk.end_line, h.chunk.text, h.chunk.symbol)
            for h in hits
            if h.chunk.language in DOC_LANGUAGES
        ][:k]

    judged = []
    for done, symbol in enumerate(chosen):
        report("explain", done, len(chosen))
        explanation = explainer.explain(index.graph, symbol, read_lines, docs, cache_key=str(model.adapter))
        judged.append(judge(explanation, symbol, vocabulary))
    report("explain", len(chosen), len(chosen))
    return summarize(judged)
