"""What the RAFT example builders share: the dataset settings, the example record, the training split
of the index, and how an example's documents are picked, shuffled and fitted around its oracles.

The completion (`raft_dataset`), explain (`raft_explain`) and plan (`raft_plan`) builders all use these;
`raft_dataset.build_dataset` puts their examples together.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from repolm.assist.engine import code_hits
from repolm.config import ServeConfig
from repolm.indexer.records import DOC_LANGUAGES, Chunk
from repolm.indexer.retrieval import Index, SearchFilter
from repolm.prompt import Document, Prompt

from .eval_split import DEFAULT_FRACTION, is_held_out
from .eval_targets import code_files, repository_line_counts


@dataclass(frozen=True)
class RaftConfig:
    """How the dataset is built. The defaults are RAFT's (P = 0.8); prompts are laid out by the serving
    settings (`ServeConfig`: budgets, snippet count and cap), exactly as the server lays them out."""

    oracle_probability: float = 0.8  # P: examples whose prompt holds the oracle documents
    distractors: int = 3  # per example: (distractors - 1) hard negatives, then one random chunk
    completion_examples: int = 600  # at most, per build
    explain_examples: int = 200
    plan_examples: int = 200  # relational questions → relation paths (graph-grounded answers)
    no_oracle_share: float = 0.25  # completion targets using no repository symbol, relative to the rest
    mid_line_share: float = 0.3  # cursors inside the line rather than at its first character
    block_share: float = 0.15  # targets on the first line of a block whose answer is the whole block
    answer_lines: int = 1  # lines an answer runs to from its cursor (within the definition)
    eval_fraction: float = DEFAULT_FRACTION  # the evaluation split's held-out share (never trained on)
    seed: int = 0


@dataclass
class Example:
    id: str
    task: str  # complete | explain | plan
    path: str  # the target's file (complete) or the symbol's file (explain)
    line: int
    documents: list[dict[str, Any]]  # in prompt order: path, start_line, end_line, symbol, oracle, text
    oracle_available: bool  # the target has oracle documents at all (P applies to these)
    oracle_included: bool  # at least one oracle document is in the prompt
    answer: str  # the target text proper (what the editor would insert / the explanation)
    source_spans: list[dict[str, Any]]  # where the answer comes from: path, start_line, end_line
    symbols: list[str]  # qualnames the target uses (complete) or is about (explain)
    prompt: str  # build_prompt(...).text
    completion: str  # what training appends after the prompt's tokens: prompt.healed + answer (+ end)
    prefix: str = ""  # complete: the code before the cursor that the prompt kept
    question: str = ""  # explain, plan
    # complete: line | name | mid_line | block; explain: what | returns | arguments | used; plan: the
    # question kind (callers | callees | implementers | overrides | documented | tests | raises)
    kind: str = ""
    abstain: bool = False  # explain: the answer says the sources do not contain it
    quotes: list[str] = field(default_factory=list)  # explain: verbatim quoted spans
    oracle_supplies: list[str] = field(default_factory=list)  # complete: names only the oracle shows

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def document_json(document: Document, oracle: bool) -> dict[str, Any]:
    return {
        "path": document.path,
        "start_line": document.start_line,
        "end_line": document.end_line,
        "symbol": document.symbol,
        "oracle": oracle,
        "text": document.text,
    }


def example_rng(seed: int, *key: object) -> random.Random:
    """A generator per example, so one example does not change when others are added or removed."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass
class DatasetStats:
    examples: int = 0
    by_task: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    with_oracle_available: int = 0  # examples that have oracle documents at all
    oracle_included: int = 0
    oracle_supplies: int = 0  # completion examples whose answer uses a name only the oracle shows
    abstain: int = 0
    duplicates_dropped: int = 0
    skipped: int = 0  # targets whose prompt could not be built
    training_files: int = 0
    held_out_files: int = 0
    mean_documents: float = 0.0
    mean_prompt_chars: float = 0.0
    seconds: float = 0.0

    @property
    def oracle_share(self) -> float | None:
        """P as realised: oracle-in-prompt over the examples that had an oracle to include."""
        if not self.with_oracle_available:
            return None
        return round(self.oracle_included / self.with_oracle_available, 4)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "oracle_share": self.oracle_share}


# ---------------------------------------------------------------------------------------------------------
# The training split of the index


class BatchedQueries:
    """The index's query embedder with vectors computed ahead in batches.

    One query at a time costs a full forward pass each, and a batch of many costs a few of them. The
    builder knows every query before it searches, so it embeds them first.
    """

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def prefetch(self, queries: Iterable[str]) -> None:
        missing = list(dict.fromkeys(q for q in queries if q not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self.embedder.encode(missing), strict=True))

    def encode_query(self, text: str) -> np.ndarray:
        vector = self.vectors.get(text)
        return vector if vector is not None else self.embedder.encode_query(text)


class TrainingSplit:
    """The index seen through the training split: what may be a target and what may be a document."""

    def __init__(self, index: Index, config: RaftConfig, serve: ServeConfig | None = None) -> None:
        self.index = index
        self.config = config
        self.serve = serve or ServeConfig()
        self.languages = code_files(index)
        self.files = [p for p in self.languages if not is_held_out(p, config.eval_fraction)]
        self.held_out = frozenset(p for p in self.languages if is_held_out(p, config.eval_fraction))
        # Lines of the evaluation files: a training target repeating one would leak its answer.
        self.held_out_lines = repository_line_counts(index.root, sorted(self.held_out))
        self._random_pool: list[int] | None = None
        self.queries = BatchedQueries(index.query_embedder)
        self._embedder = index.embedder

    def __enter__(self) -> TrainingSplit:
        # Both matrices loaded before the swap: finding the vectors' key takes the real embedder.
        self.index.dense  # noqa: B018
        self.index.summary_dense  # noqa: B018
        self.index.embedder = self.queries  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        self.index.embedder = self._embedder

    def allows(self, path: str) -> bool:
        return path in self.languages and path not in self.held_out

    def chunk_ids_of_files(self) -> list[int]:
        """Code chunks of the training files, in id order (the pool random distractors come from)."""
        if self._random_pool is None:
            spans = self.index._spans
            self._random_pool = sorted(cid for cid, span in spans.items() if self.allows(span.path))
        return self._random_pool

    def search(
        self, query: str, exclude: frozenset[str], k: int, path: str = "", prefix: str = ""
    ) -> list[Chunk]:
        """The retriever's top code chunks, never from the evaluation files or `exclude`.

        For a cursor in `path` with `prefix` above it, the ranking is the one the server completes with
        (`code_hits`: the query's hybrid ranking fused with the definitions the code above uses), so the
        hard negatives are the snippets the model will be handed beside the oracle when it is served.
        """
        hidden = exclude | self.held_out
        if path:
            hits = code_hits(self.index, query, path, k, self.serve, "hybrid", prefix, hidden)
        else:
            where = SearchFilter(exclude_paths=hidden)
            cap = self.serve.completion_per_file_cap
            hits = self.index.search(query, mode="hybrid", k=k, where=where, per_file_cap=cap)
        return [h.chunk for h in hits if h.chunk.language not in DOC_LANGUAGES and self.allows(h.chunk.path)]

    def chunk(self, chunk_id: int) -> Chunk | None:
        stored = self.index.store.chunks_by_id([chunk_id]).get(chunk_id)
        return stored.chunk if stored else None


def covers(chunk: Chunk | Document, path: str, line: int) -> bool:
    return chunk.path == path and chunk.start_line <= line <= chunk.end_line


def pick_distractors(
    split: TrainingSplit,
    query: str,
    exclude_paths: frozenset[str],
    forbidden: Sequence[tuple[str, int]],
    count: int,
    rng: random.Random,
    path: str = "",
    prefix: str = "",
) -> list[Document]:
    """`count - 1` hard negatives from the retriever (as it ranks for a completion in `path` after
    `prefix`, when given), then one random chunk.

    `forbidden` lists (path, line) places the answer comes from (a used symbol's definition): a chunk
    covering one would be an oracle in disguise, so it is never a distractor.
    """
    if count <= 0:
        return []

    def allowed(chunk: Chunk) -> bool:
        return chunk.path not in exclude_paths and not any(covers(chunk, p, n) for p, n in forbidden)

    found = split.search(query, exclude_paths, count + 8, path, prefix)
    hard = [c for c in found if allowed(c)][: count - 1]
    chosen = {(c.path, c.start_line, c.end_line) for c in hard}
    pool = split.chunk_ids_of_files()
    for _ in range(20):  # a few tries: the pool is mostly allowed chunks
        if not pool:
            break
        chunk = split.chunk(rng.choice(pool))
        if (
            chunk is not None
            and chunk.language not in DOC_LANGUAGES
            and allowed(chunk)
            and (chunk.path, chunk.start_line, chunk.end_line) not in chosen
        ):
            hard.append(chunk)
            break
    return [Document.from_chunk(c) for c in hard]


def arrange(
    oracles: Sequence[Document], distractors: Sequence[Document], include_oracle: bool, rng: random.Random
) -> list[tuple[Document, bool]]:
    """The documents of one example with their oracle flags, shuffled."""
    documents = [(d, True) for d in oracles] if include_oracle else []
    documents += [(d, False) for d in distractors]
    rng.shuffle(documents)
    return documents


def _without_last_distractor(documents: list[tuple[Document, bool]]) -> list[tuple[Document, bool]] | None:
    distractors = [i for i, (_, oracle) in enumerate(documents) if not oracle]
    if not distractors:
        return None
    return documents[: distractors[-1]] + documents[distractors[-1] + 1 :]


def fit_keeping_oracles(
    documents: list[tuple[Document, bool]],
    build: Callable[[list[Document]], Prompt],
    offered: int | None = None,
) -> tuple[Prompt, list[tuple[Document, bool]]]:
    """The prompt for `documents`, at most `offered` of them (as many as the server offers a prompt);
    where there are more, or the budget would drop an oracle, distractors go instead.

    Without this a shuffled oracle placed late is cut by the budget more often than a distractor, and
    the realised oracle share falls well below P.
    """
    while offered is not None and len(documents) > offered:
        fewer = _without_last_distractor(documents)
        if fewer is None:
            break
        documents = fewer
    while True:
        prompt = build([d for d, _ in documents])
        kept = {(d.path, d.start_line) for d in prompt.documents}
        lost = any(oracle and (d.path, d.start_line) not in kept for d, oracle in documents)
        fewer = _without_last_distractor(documents) if lost else None
        if fewer is None:
            return prompt, documents
        documents = fewer


def prompted(documents: Sequence[tuple[Document, bool]], prompt: Prompt) -> list[dict[str, Any]]:
    """The documents that made it into the prompt (possibly cut to fit), with their oracle flags."""
    flags = {(d.path, d.start_line): oracle for d, oracle in documents}
    return [document_json(d, flags[(d.path, d.start_line)]) for d in prompt.documents]
