"""Retrieval alone on held-out files: does the retriever find what the next line, a docstring or a
question needs? No model runs, so a retriever candidate is judged in seconds, per query family:

- `completion`: the evaluation's completion targets (`sample_targets`) that have oracle chunks, queried
  exactly as the completion core queries (`retrieval_query` of the redacted text before the cursor,
  through `code_hits`); the same ranks `repolm eval` reports as its arms' acc@k and MRR;
- `docstring`: a held-out definition's docstring, first sentence, its name left out → the definition;
- `question`: an identifier-rich question about a held-out definition → the definition.

Each family keeps its per-query ranks, so two retrievers compare query by query (`retriever_gate`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from repolm.assist.completion import retrieval_query
from repolm.assist.engine import code_hits
from repolm.config import Progress, ServeConfig
from repolm.indexer.code_uses import definition_chunk_ids
from repolm.indexer.graph import Symbol
from repolm.indexer.retrieval import Index

from . import metrics
from .eval_split import EvalSplit
from .eval_targets import code_files, cursor_prefix, read_redacted, sample_targets
from .retriever_pairs import DEFINITION_KINDS, first_sentence, question_about, without_name

FAMILIES = ("completion", "docstring", "question")
RANKED = 10  # as training/evaluate.py: hits kept per query for acc@k and MRR
QueryOf = Callable[[str], str]  # the text before the cursor -> the completion's retrieval query


@dataclass(frozen=True)
class RetrievalEvalOptions:
    split: EvalSplit
    limit: int = 200  # completion targets sampled (those with an oracle are scored)
    definitions: int = 200  # held-out definitions asked about (docstring and question families)
    seed: int = 0
    mode: str = "hybrid"


def family_summary(ranks: list[int | None]) -> dict[str, object]:
    return {
        "n": len(ranks),
        "acc@1": metrics.mean([metrics.hit_at(r, 1) for r in ranks]),
        "acc@5": metrics.mean([metrics.hit_at(r, 5) for r in ranks]),
        "mrr": metrics.mean([metrics.reciprocal_rank(r) for r in ranks]),
        "ranks": ranks,
    }


def evaluate_retrieval(
    index: Index,
    options: RetrievalEvalOptions,
    serve: ServeConfig | None = None,
    query_of: QueryOf = retrieval_query,
    progress: Progress | None = None,
) -> dict[str, dict[str, object]]:
    """{family: n, acc@1, acc@5, mrr and the per-query ranks} on the split's held-out files."""
    serve = serve or ServeConfig()
    report = progress or (lambda stage, done, total: None)
    return {
        "completion": family_summary(completion_ranks(index, options, serve, query_of, report)),
        **{
            family: family_summary(ranks)
            for family, ranks in definition_ranks(index, options, report).items()
        },
    }


def completion_ranks(
    index: Index, options: RetrievalEvalOptions, serve: ServeConfig, query_of: QueryOf, report: Progress
) -> list[int | None]:
    targets = [
        t for t in sample_targets(index, options.split, options.limit, options.seed) if t.oracle_chunks
    ]
    texts = {path: read_redacted(index.root, path) or "" for path in {t.path for t in targets}}
    ranks = []
    for done, target in enumerate(targets):
        report("retrieval", done, len(targets))
        prefix = cursor_prefix(texts[target.path], target.line, target.column)
        query = query_of(prefix)
        hits = code_hits(index, query, target.path, RANKED, serve, options.mode, prefix)
        ranking = [hit.chunk_id for hit in hits]
        ranks.append(metrics.first_relevant_rank(ranking, frozenset(target.oracle_chunks)) if query else None)
    report("retrieval", len(targets), len(targets))
    return ranks


def held_out_definitions(index: Index, split: EvalSplit, limit: int, seed: int) -> list[Symbol]:
    """Up to `limit` definitions of the held-out code files, a seeded sample in a stable order."""
    found = [
        symbol
        for path in split.files(sorted(code_files(index)))
        for symbol in index.graph.in_file(path)
        if symbol.kind in DEFINITION_KINDS and not symbol.name.startswith("__")
    ]
    random.Random(seed).shuffle(found)
    return sorted(found[:limit], key=lambda s: (s.path, s.start_line))


def definition_ranks(
    index: Index, options: RetrievalEvalOptions, report: Progress
) -> dict[str, list[int | None]]:
    """Docstring and question queries about held-out definitions, searched as `repolm search` does."""
    ranks: dict[str, list[int | None]] = {"docstring": [], "question": []}
    symbols = held_out_definitions(index, options.split, options.definitions, options.seed)
    for done, symbol in enumerate(symbols):
        report("questions", done, len(symbols))
        relevant = frozenset(definition_chunk_ids(index, symbol))
        if not relevant:
            continue
        sentence = without_name(first_sentence(symbol.docstring), symbol.name)
        queries = {"question": question_about(symbol, random.Random(f"{options.seed}:{symbol.qualname}"))}
        if len(sentence.split()) >= 3:
            queries["docstring"] = sentence
        for family, query in queries.items():
            hits = index.search(query, mode=options.mode, k=RANKED)
            ranks[family].append(metrics.first_relevant_rank([h.chunk_id for h in hits], relevant))
    report("questions", len(symbols), len(symbols))
    return ranks
