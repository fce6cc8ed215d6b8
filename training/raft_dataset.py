"""The RAFT dataset (Zhang et al. 2024) built from the training split of the index.

Each example is a prompt made by `repolm.prompt.build_prompt`, exactly as the server prompts (train =
serve), plus the answer the model should produce after it:

- `complete`: a cursor inside a definition; the answer is the rest of the line (or the new block). The
  oracle documents are the chunks that define the repository symbols the target uses (resolved through
  the symbol graph, as the evaluation resolves them); distractors are the hybrid retriever's top chunks
  for the serving query that are not oracles, plus one random chunk.
- `explain`: questions about a symbol answered in steps that quote the sources verbatim
  (`raft_explain.py`), or an abstention when the oracle is absent.

With probability P the oracles are in the prompt; the documents are shuffled with a per-example seed so
that the model learns to find the oracle wherever it sits and to ignore distractors. Files the evaluation
split holds out never contribute a target, a prefix or a document. The JSONL fields are described in
docs/RAFT_DATASET.md.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from repolm.indexer.graph import Symbol
from repolm.indexer.records import DOC_LANGUAGES, Chunk
from repolm.indexer.retrieval import Index, SearchFilter

from repolm.assist.completion import retrieval_query
from repolm.config import ServeConfig
from repolm.prompt import Document, Prompt, PromptRequest, build_prompt

from .eval_split import DEFAULT_FRACTION, is_held_out
from .eval_targets import (
    analyze_file,
    code_files,
    cursor_prefix,
    eligible_lines,
    file_lines,
    oracle_chunk_ids,
    read_redacted,
    repository_line_counts,
)
from .raft_explain import explain_examples
from .raft_plan import plan_examples
from .teacher import Teacher

Progress = Callable[[str, int, int], None]

CODE_DEFINITIONS = frozenset({"function", "method"})
MAX_ORACLES = 2  # oracle chunks per example: a line rarely needs more, and the budget is small
MAX_BLOCK_LINES = 8
_TOKEN_END = re.compile(r"\w+|[^\w\s]")


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


# ---------------------------------------------------------------------------------------------------------
# The training split of the index


class BatchedQueries:
    """The index's query embedder with vectors computed ahead in batches.

    One query at a time costs a full forward pass each (~0.6 s on a busy 2-core CPU); a batch of 64
    costs about 2 s in all. The builder knows every query before it searches, so it embeds them first.
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

    def search(self, query: str, exclude: frozenset[str], k: int) -> list[Chunk]:
        """The hybrid retriever's top code chunks, never from the evaluation files or `exclude`."""
        where = SearchFilter(exclude_paths=exclude | self.held_out)
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
) -> list[Document]:
    """`count - 1` hard negatives from the retriever, then one random chunk.

    `forbidden` lists (path, line) places the answer comes from (a used symbol's definition): a chunk
    covering one would be an oracle in disguise, so it is never a distractor.
    """
    if count <= 0:
        return []

    def allowed(chunk: Chunk) -> bool:
        return chunk.path not in exclude_paths and not any(covers(chunk, p, n) for p, n in forbidden)

    hard = [c for c in split.search(query, exclude_paths, k=count + 8) if allowed(c)][: count - 1]
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


# ---------------------------------------------------------------------------------------------------------
# Completion examples


@dataclass(frozen=True)
class Cursor:
    path: str
    line: int  # 1-based
    column: int  # 0-based cursor column in the line
    kind: str  # line | name | mid_line | block
    answer: str  # the text after the cursor that the model must produce
    end_line: int  # last line of the answer
    symbols: tuple[str, ...]
    oracle_chunks: tuple[int, ...]
    definitions: tuple[tuple[str, int], ...]  # (path, name_line) of the used symbols


def _block_answer(lines: list[str], number: int, column: int) -> tuple[str, int]:
    """The new block from the cursor on: lines indented at least as deep as the first, up to a limit."""
    indent = column
    taken = [lines[number - 1][column:].rstrip()]
    last = number
    for following in range(number + 1, min(len(lines), number + MAX_BLOCK_LINES - 1) + 1):
        content = lines[following - 1]
        if content.strip() and len(content) - len(content.lstrip()) < indent:
            break
        taken.append(content.rstrip())
        last = following
    while taken and not taken[-1].strip():
        taken.pop()
        last -= 1
    return "\n".join(taken), last


def _rest_of_definition(lines: list[str], number: int, column: int, end: int, count: int) -> tuple[str, int]:
    """The answer from the cursor: the rest of its line and up to `count - 1` lines after it, within the
    definition (which ends at line `end`), trailing blank lines left out."""
    taken = [lines[number - 1][column:].rstrip()]
    last = number
    for following in range(number + 1, min(end, number + count - 1) + 1):
        taken.append(lines[following - 1].rstrip())
        last = following
    while len(taken) > 1 and not taken[-1].strip():
        taken.pop()
        last -= 1
    return "\n".join(taken), last


def _name_columns(content: str, column: int, symbols: Sequence[Symbol]) -> list[int]:
    """Columns after `column` where a used symbol's name starts (`utils.|get_auth(`): where the model has
    to write a name only the oracle defines."""
    found: set[int] = set()
    for symbol in symbols:
        match = re.compile(rf"(?<!\w){re.escape(symbol.name)}(?!\w)").search(content, column + 1)
        if match:
            found.add(match.start())
    return sorted(found)


def _cursors_in_file(
    split: TrainingSplit, path: str, text: str, rng: random.Random
) -> tuple[list[Cursor], list[Cursor]]:
    """Candidate cursors of one file: (using repository symbols, using none).

    A line using repository symbols offers several cut points: its first character, as the evaluation
    cuts, and the start of each used name on it, where the model must write what only the oracle shows.
    Any other line offers one: its first character, a random place inside it, or (after a line ending in
    `:`) the whole new block, as the server completes one.
    """
    config = split.config
    language = split.languages[path]
    try:
        facts = analyze_file(split.index, path, language, text)
    except ValueError:  # a language the code chunker does not parse
        return [], []
    inside = [s for s in split.index.graph.in_file(path) if s.kind in CODE_DEFINITIONS]
    lines = file_lines(text)
    with_oracle: list[Cursor] = []
    without: list[Cursor] = []
    for number in sorted(eligible_lines(language, text)):
        content = lines[number - 1]
        if split.held_out_lines[content.strip()]:
            continue
        ends = [s.end_line for s in inside if s.start_line < number <= s.end_line]
        if not ends:
            continue  # the cut point is inside a definition's body
        definition_end = min(ends)
        column = len(content) - len(content.lstrip())
        symbols = facts.uses.get(number, [])
        chunks = [c for s in symbols for c in oracle_chunk_ids(split.index, s)]
        oracles = tuple(c for c in dict.fromkeys(chunks) if split.allows(split.index._spans[c].path))
        oracles = oracles[:MAX_ORACLES]
        used = (tuple(s.qualname for s in symbols), oracles, tuple((s.path, s.name_line) for s in symbols))
        places: list[tuple[str, int]] = []  # (kind, column) of the line's cursors
        answers: dict[int, tuple[str, int]] = {}  # column -> (answer, its last line), when not the rest
        if oracles:
            places = [("line", column)] + [("name", at) for at in _name_columns(content, column, symbols)]
        else:
            # The server completes a block when the cursor's line follows one ending in ":" (opens_block).
            previous = lines[number - 2] if number > 1 else ""
            roll = rng.random()
            cuts = [m.end() for m in _TOKEN_END.finditer(content, column)][:-1]
            if previous.rstrip().endswith(":") and roll < config.block_share:
                places = [("block", column)]
                answers[column] = _block_answer(lines, number, column)
            elif roll < config.block_share + config.mid_line_share and cuts:
                places = [("mid_line", rng.choice(cuts))]
            else:
                places = [("line", column)]
        for kind, at in places:
            answer, last = answers.get(at) or _rest_of_definition(
                lines, number, at, definition_end, config.answer_lines
            )
            if answer.strip():
                found = with_oracle if oracles else without
                found.append(Cursor(path, number, at, kind, answer, last, *used))
    return with_oracle, without


def completion_cursors(split: TrainingSplit, progress: Progress) -> list[tuple[Cursor, str]]:
    """Cursors sampled from the training files: all that use repository symbols first, then a share of
    the others, up to the configured number; each with its file's (redacted) text."""
    config = split.config
    rng = random.Random(config.seed)
    with_oracle: list[tuple[Cursor, str]] = []
    without: list[tuple[Cursor, str]] = []
    for done, path in enumerate(split.files):
        progress("cursors", done, len(split.files))
        text = read_redacted(split.index.root, path)
        if text is None:
            continue
        found, plain = _cursors_in_file(split, path, text, example_rng(config.seed, path))
        with_oracle += [(c, text) for c in found]
        without += [(c, text) for c in plain]
    progress("cursors", len(split.files), len(split.files))
    rng.shuffle(with_oracle)
    rng.shuffle(without)
    limit = config.completion_examples
    plain_count = min(len(without), int(config.no_oracle_share * min(len(with_oracle), limit)) or 1)
    chosen = with_oracle[: max(0, limit - plain_count)] + without[:plain_count]
    return chosen[:limit]


def following_lines(text: str, cursor: Cursor) -> str:
    """The file after the answer's last line, up to and including the next line with code."""
    taken = []
    for line in file_lines(text)[cursor.end_line :]:
        taken.append(line)
        if line.strip():
            break
    return "\n".join(taken)


def line_end(tokenizer: Any, answer: str, following: str) -> str:
    """The newline after `answer` as the file's own tokenization spells it.

    Byte-level tokenizers merge a newline with the next line's indentation ("\n       " before " for"),
    so in code a bare "\n" token comes only before an unindented line or at the end of the file.
    Completions that all ended in one taught the model to open indented lines with it: at such a cursor,
    greedy decoding then spelled the indentation out a space at a time and drifted (9 of 150 evaluation
    lines came out empty against the base model's 0). So the answer ends with the token that holds the
    newline when the following lines are tokenized with it; alone at the end of the completion, that
    whitespace run tokenizes the same.
    """
    sample = f"{answer}\n{following}"
    offsets = tokenizer(sample, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    newline = len(answer)
    end = next((stop for start, stop in offsets if start <= newline < stop), newline + 1)
    return sample[newline:end]


def completion_example(split: TrainingSplit, cursor: Cursor, text: str, tokenizer: Any) -> Example | None:
    config = split.config
    rng = example_rng(config.seed, "complete", cursor.path, cursor.line, cursor.column)
    prefix = cursor_prefix(text, cursor.line, cursor.column)
    oracle_docs = [Document.from_chunk(c) for cid in cursor.oracle_chunks if (c := split.chunk(cid))]
    distractors = pick_distractors(
        split,
        retrieval_query(prefix),
        frozenset({cursor.path}),
        cursor.definitions,
        config.distractors,
        rng,
    )
    include = bool(oracle_docs) and rng.random() < config.oracle_probability
    documents = arrange(oracle_docs, distractors, include, rng)

    def build(chosen: list[Document]) -> Prompt:
        request = PromptRequest("complete", chosen, prefix=prefix, path=cursor.path)
        return build_prompt(request, tokenizer, split.serve.completion_budget)

    try:
        prompt, documents = fit_keeping_oracles(documents, build, split.serve.completion_snippets)
    except ValueError:
        return None
    kept_prefix = prompt.text[prompt.prefix_start :] + prompt.healed
    in_prompt = prompted(documents, prompt)
    # The serving stop rules end a line completion at the newline and a block at its dedent; the
    # newline teaches the model to stop where the editor's text would go on.
    end = line_end(tokenizer, cursor.answer, following_lines(text, cursor))
    completion = prompt.healed + cursor.answer + end
    return Example(
        id="",
        task="complete",
        path=cursor.path,
        line=cursor.line,
        documents=in_prompt,
        oracle_available=bool(oracle_docs),
        oracle_included=any(d["oracle"] for d in in_prompt),
        answer=cursor.answer,
        source_spans=[{"path": cursor.path, "start_line": cursor.line, "end_line": cursor.end_line}],
        symbols=list(cursor.symbols),
        prompt=prompt.text,
        completion=completion,
        prefix=kept_prefix,
        kind=cursor.kind,
    )


# ---------------------------------------------------------------------------------------------------------
# The whole dataset


@dataclass
class DatasetStats:
    examples: int = 0
    by_task: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    with_oracle_available: int = 0  # examples that have oracle documents at all
    oracle_included: int = 0
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


def example_id(example: Example) -> str:
    digest = hashlib.blake2b(digest_size=10)
    for part in (example.task, example.prompt, example.completion):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return f"{example.task[0]}-{digest.hexdigest()}"


def build_dataset(
    index: Index,
    tokenizer: Any,
    config: RaftConfig | None = None,
    serve: ServeConfig | None = None,
    teacher: Teacher | None = None,
    progress: Progress | None = None,
) -> tuple[list[Example], DatasetStats]:
    """Every example of the dataset (deduplicated, in a stable order) and its statistics; prompts are laid
    out by `serve`'s settings, as the server lays them out."""
    started = time.perf_counter()
    config = config or RaftConfig()
    report = progress or (lambda stage, done, total: None)
    with TrainingSplit(index, config, serve) as split:
        stats = DatasetStats(training_files=len(split.files), held_out_files=len(split.held_out))
        examples: list[Example] = []
        cursors = completion_cursors(split, report)
        split.queries.prefetch(retrieval_query(cursor_prefix(text, c.line, c.column)) for c, text in cursors)
        for done, (cursor, text) in enumerate(cursors):
            report("complete", done, len(cursors))
            example = completion_example(split, cursor, text, tokenizer)
            if example is None:
                stats.skipped += 1
                continue
            examples.append(example)
        examples += explain_examples(split, tokenizer, teacher, stats, report)
        examples += plan_examples(split, tokenizer)
    unique = deduplicate(examples, stats)
    stats.examples = len(unique)
    stats.by_task = dict(Counter(e.task for e in unique))
    stats.by_kind = dict(Counter(f"{e.task}:{e.kind}" for e in unique))
    stats.with_oracle_available = sum(e.oracle_available for e in unique)
    stats.oracle_included = sum(e.oracle_included for e in unique)
    stats.abstain = sum(e.abstain for e in unique)
    if unique:
        stats.mean_documents = round(sum(len(e.documents) for e in unique) / len(unique), 2)
        stats.mean_prompt_chars = round(sum(len(e.prompt) for e in unique) / len(unique), 1)
    stats.seconds = round(time.perf_counter() - started, 2)
    return unique, stats


def deduplicate(examples: Iterable[Example], stats: DatasetStats) -> list[Example]:
    seen: dict[str, Example] = {}
    for example in examples:
        example.id = example_id(example)
        if example.id in seen:
            stats.duplicates_dropped += 1
            continue
        seen[example.id] = example
    return sorted(seen.values(), key=lambda e: (e.task, e.path, e.line, e.id))


def write_jsonl(examples: Sequence[Example], path: Path) -> str:
    """Write the dataset atomically; returns its hash (the adapters' manifests record it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    digest = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as handle:
        for example in examples:
            line = json.dumps(example.to_json(), ensure_ascii=False, sort_keys=True) + "\n"
            digest.update(line.encode("utf-8"))
            handle.write(line)
    tmp.replace(path)
    return digest.hexdigest()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def format_stats(stats: DatasetStats) -> str:
    share = stats.oracle_share
    lines = [
        f"examples: {stats.examples} ({', '.join(f'{k} {v}' for k, v in sorted(stats.by_task.items()))})",
        f"kinds: {', '.join(f'{k} {v}' for k, v in sorted(stats.by_kind.items()))}",
        f"files: {stats.training_files} training, {stats.held_out_files} held out for evaluation",
        f"oracle in prompt: {stats.oracle_included} examples"
        + (f" ({share:.0%} of those with an oracle)" if share is not None else ""),
        f"abstentions: {stats.abstain}; duplicates dropped: {stats.duplicates_dropped};"
        f" skipped: {stats.skipped}",
        f"mean documents per prompt: {stats.mean_documents}; built in {stats.seconds:.1f}s",
    ]
    return "\n".join(lines)
