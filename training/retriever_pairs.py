"""Training pairs for the retriever, mined from the training split of the index.

Each pair is (query, positive chunk, hard negative chunk), the texts exactly as serving embeds them: the
query as the completion core or a user writes it, the chunks' `embedding_text`. Four sources:

- `call`: the code before a line that uses a repository symbol from another file (the serving query,
  `retrieval_query`, at the evaluation's cursor) → the chunk defining it; `first_use` when the line is
  the symbol's first use in its file, the moment retrieval matters most;
- `docstring`: a definition's docstring, first sentence, its own name left out → the definition;
- `doc`: a documentation section that names a definition in code markup → the definition;
- `question`: identifier-rich questions about a definition ("What does Session.send do?") → it.

Hard negatives come from our own BM25 and dense rankings for the query, alternating, and are never a
chunk that defines a symbol the query's line uses. Nothing comes from a file the evaluation split holds
out: no query, no positive, no negative (`TrainingSplit` and `is_held_out`, as RAFT uses them). Texts
come from the index or `read_redacted`, so secrets are redacted as everywhere.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from repolm.assist.completion import retrieval_query
from repolm.config import Progress
from repolm.indexer.code_uses import definition_chunk_ids, file_lines
from repolm.indexer.graph import Symbol
from repolm.indexer.records import DOC_LANGUAGES, Chunk
from repolm.indexer.retrieval import Index, SearchFilter
from repolm.indexer.secrets import redact
from repolm.indexer.store import alive

from .eval_split import is_held_out
from .eval_targets import analyze_file, cursor_prefix, read_redacted
from .raft_examples import RaftConfig, TrainingSplit, covers, example_rng

KINDS = ("first_use", "call", "docstring", "doc", "question")
COMPLETION_KINDS = ("first_use", "call")
DEFINITION_KINDS = frozenset({"function", "method", "class"})
NEGATIVE_DEPTH = 10  # hits read from each ranking when looking for a hard negative
DOC_QUERY_CHARS = 600  # a documentation section is cut to this much as a query
_MARKUP = re.compile(
    r"``([A-Za-z_][\w.]*)(?:\(\))?``|:\w+:`~?([A-Za-z_][\w.]*)(?:\(\))?`|`([A-Za-z_][\w.]*)\(\)`"
)
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@dataclass(frozen=True)
class PairConfig:
    max_pairs: int = 4000  # at most, per build
    # Docstring, doc and question pairs together, relative to the completion pairs: enough to keep those
    # queries working (the evaluation guards them), while training time goes mostly where the gain is.
    other_share: float = 0.5
    per_line: int = 2  # positives per completion line (a line rarely needs more)
    lookahead: int = 0  # also cursors this many code lines above a use, paired with what it uses
    seed: int = 0


@dataclass(frozen=True)
class Pair:
    kind: str
    query: str
    positive: str  # the chunk's embedding text
    negative: str  # a hard negative's embedding text ("" when the rankings offered none)
    path: str  # where the query comes from
    positive_path: str
    negative_path: str = ""


@dataclass
class PairStats:
    pairs: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    with_negative: int = 0
    training_files: int = 0
    held_out_files: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Draft:
    kind: str
    query: str
    path: str
    positives: tuple[int, ...]  # chunk ids; one pair each
    forbidden: tuple[tuple[str, int], ...]  # (path, line) of definitions no negative may cover


def mine_pairs(
    index: Index, config: PairConfig | None = None, progress: Progress | None = None
) -> tuple[list[Pair], PairStats]:
    """The pairs of the index's training split, in a stable order, and what they hold."""
    config = config or PairConfig()
    report = progress or (lambda stage, done, total: None)
    raft = RaftConfig(seed=config.seed)
    with TrainingSplit(index, raft) as split:
        drafts = _completion_drafts(split, config, report) + _definition_drafts(split, config)
        drafts += _doc_drafts(split)
        drafts = _capped(drafts, config)
        split.queries.prefetch(d.query for d in drafts)
        pairs: list[Pair] = []
        for done, draft in enumerate(drafts):
            report("negatives", done, len(drafts))
            pairs += _pairs_of(split, draft, example_rng(config.seed, "retriever", draft.kind, draft.query))
        report("negatives", len(drafts), len(drafts))
        stats = PairStats(training_files=len(split.files), held_out_files=len(split.held_out))
    stats.pairs = len(pairs)
    stats.by_kind = dict(Counter(p.kind for p in pairs))
    stats.with_negative = sum(bool(p.negative) for p in pairs)
    return pairs, stats


def pairs_hash(pairs: Sequence[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(asdict(pair), sort_keys=True).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Queries and their positives


def _completion_drafts(split: TrainingSplit, config: PairConfig, report: Progress) -> list[_Draft]:
    """At each line of a training file that uses repository symbols from other training files: the
    serving query for a cursor at the line's start (where the evaluation puts it) → their chunks."""
    drafts = []
    for done, path in enumerate(split.files):
        report("pairs", done, len(split.files))
        text = read_redacted(split.index.root, path)
        if text is None:
            continue
        try:
            facts = analyze_file(split.index, path, split.languages[path], text)
        except ValueError:  # a language the code chunker does not parse
            continue
        lines = file_lines(text)
        seen: set[str] = set()
        for number in sorted(facts.uses):
            symbols = facts.uses[number]
            first = any(s.qualname not in seen for s in symbols)
            seen.update(s.qualname for s in symbols)
            chunks = [c for s in symbols for c in definition_chunk_ids(split.index, s)]
            positives = tuple(c for c in dict.fromkeys(chunks) if split.allows(split.index._spans[c].path))
            if not positives:
                continue
            forbidden = tuple((s.path, s.name_line) for s in symbols)
            kind = "first_use" if first else "call"
            # The cursor at the line's start, and (lookahead) at the starts of the code lines just above:
            # the definition is about to be needed there too, and the small repository gets more pairs.
            for cursor in _cursor_lines(lines, number, config.lookahead):
                content = lines[cursor - 1]
                query = retrieval_query(cursor_prefix(text, cursor, len(content) - len(content.lstrip())))
                if query:
                    drafts.append(_Draft(kind, query, path, positives[: config.per_line], forbidden))
    report("pairs", len(split.files), len(split.files))
    return drafts


def _cursor_lines(lines: list[str], number: int, lookahead: int) -> list[int]:
    """`number` and up to `lookahead` non-blank lines above it, within the same indented block."""
    found = [number]
    indent = len(lines[number - 1]) - len(lines[number - 1].lstrip())
    above = number - 1
    while len(found) <= lookahead and above >= 1:
        content = lines[above - 1]
        if content.strip():
            if len(content) - len(content.lstrip()) < indent:
                break
            found.append(above)
        above -= 1
    return found


def _definition_drafts(split: TrainingSplit, config: PairConfig) -> list[_Draft]:
    """A docstring's first sentence and an identifier-rich question per definition of a training file."""
    drafts = []
    for path in split.files:
        for symbol in split.index.graph.in_file(path):
            if symbol.kind not in DEFINITION_KINDS or symbol.name.startswith("__"):
                continue
            chunks = tuple(definition_chunk_ids(split.index, symbol))
            if not chunks:
                continue
            place = ((symbol.path, symbol.name_line),)
            sentence = without_name(first_sentence(symbol.docstring), symbol.name)
            if len(sentence.split()) >= 3:
                drafts.append(_Draft("docstring", redact(sentence, path)[0], path, chunks, place))
            rng = example_rng(config.seed, "question", symbol.qualname)
            drafts.append(_Draft("question", question_about(symbol, rng), path, chunks, place))
    return drafts


def _doc_drafts(split: TrainingSplit) -> list[_Draft]:
    """A documentation section (of a file the split does not hold out) → each definition it names in
    code markup (``name``, :func:`name`, `name()`), when the name means one definition in the training
    files."""
    languages = ",".join("?" * len(DOC_LANGUAGES))
    rows = split.index.store.db.execute(
        "SELECT f.path, c.text FROM chunks c JOIN files f ON f.id = c.file_id"
        f" WHERE {alive('f', split.index.generation)} AND c.language IN ({languages}) ORDER BY c.id",
        sorted(DOC_LANGUAGES),
    )
    graph = split.index.graph
    drafts = []
    for path, text in rows:
        if is_held_out(path, split.config.eval_fraction):
            continue
        named = dict.fromkeys(next(g for g in m.groups() if g) for m in _MARKUP.finditer(text))
        for name in named:
            found = [s for s in graph.by_name(name.rsplit(".", 1)[-1]) if split.allows(s.path)]
            if len(found) != 1 or found[0].kind not in DEFINITION_KINDS:
                continue
            chunks = tuple(definition_chunk_ids(split.index, found[0]))
            if chunks:
                place = ((found[0].path, found[0].name_line),)
                drafts.append(_Draft("doc", text[:DOC_QUERY_CHARS], path, chunks, place))
    return drafts


def first_sentence(text: str) -> str:
    return " ".join(re.split(r"(?<=[.!?])\s|\n\s*\n", text.strip(), maxsplit=1)[0].split())


def without_name(sentence: str, name: str) -> str:
    """The sentence less the words holding the definition's own name: a query that repeats the name
    is found by BM25 alone and teaches the embedder nothing."""
    words = [w for w in sentence.split() if name.lower() not in re.split(r"\W+", w.lower())]
    return " ".join(words).strip()


def name_words(name: str) -> str:
    """`merge_environment_settings` / `HTTPAdapter` → "merge environment settings" / "http adapter"."""
    return " ".join(word.lower() for word in _WORDS.findall(name))


def question_about(symbol: Symbol, rng: random.Random) -> str:
    """One of the forms users ask in, naming the definition by its identifiers."""
    owner = symbol.qualname.rsplit(".", 2)[-2] if symbol.kind == "method" else ""
    dotted = f"{owner}.{symbol.name}" if owner else symbol.name
    forms = [
        f"What does {dotted} do?",
        f"Where is {dotted} defined?",
        f"How do I {name_words(symbol.name)}" + (f" with {owner}?" if owner else "?"),
        f"{name_words(symbol.name)} {name_words(owner)}".strip(),
        f"How is {symbol.name} implemented?",
    ]
    return rng.choice(forms)


# ---------------------------------------------------------------------------------------------------------
# Hard negatives and the cap


def _pairs_of(split: TrainingSplit, draft: _Draft, rng: random.Random) -> list[Pair]:
    stored = split.index.store.chunks_by_id(list(draft.positives))
    positives = [stored[c].chunk for c in draft.positives if c in stored]
    negative = _hard_negative(split, draft, positives, rng)
    return [
        Pair(
            draft.kind,
            draft.query,
            chunk.embedding_text,
            negative.embedding_text if negative else "",
            draft.path,
            chunk.path,
            negative.path if negative else "",
        )
        for chunk in positives
    ]


def _hard_negative(
    split: TrainingSplit, draft: _Draft, positives: Sequence[Chunk], rng: random.Random
) -> Chunk | None:
    """The best-ranked chunk of a training file, from BM25 or from the dense ranking (a coin decides
    which is read first), that is not the query's answer."""
    exclude = split.held_out | ({draft.path} if draft.kind in COMPLETION_KINDS else set())
    where = SearchFilter(exclude_paths=frozenset(exclude))
    answers = {(c.path, c.start_line) for c in positives}
    modes = ["bm25", "dense"]
    rng.shuffle(modes)
    for mode in modes:
        for hit in split.index.search(draft.query, mode=mode, k=NEGATIVE_DEPTH, where=where):
            chunk = hit.chunk
            if (
                chunk.language not in DOC_LANGUAGES
                and split.allows(chunk.path)
                and (chunk.path, chunk.start_line) not in answers
                and not any(covers(chunk, path, line) for path, line in draft.forbidden)
            ):
                return chunk
    return None


def _capped(drafts: list[_Draft], config: PairConfig) -> list[_Draft]:
    """The completion drafts, then the other kinds in turn up to `other_share` of them, `max_pairs` in all
    (each kind shuffled by the seed); the result in a stable order."""
    rng = random.Random(config.seed)
    queues = {kind: [d for d in drafts if d.kind == kind] for kind in KINDS}
    for queue in queues.values():
        rng.shuffle(queue)
    completion = [d for kind in COMPLETION_KINDS for d in queues.pop(kind)]
    rng.shuffle(completion)
    chosen = completion[: config.max_pairs]
    others = min(config.max_pairs - len(chosen), round(config.other_share * len(chosen)) or config.max_pairs)
    taken: list[_Draft] = []
    while len(taken) < others and any(queues.values()):
        for queue in queues.values():
            if queue and len(taken) < others:
                taken.append(queue.pop())
    return sorted(chosen + taken, key=lambda d: (KINDS.index(d.kind), d.path, d.query))
