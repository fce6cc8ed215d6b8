"""The RAFT dataset (Zhang et al. 2024) built from the training split of the index.

Each example is a prompt made by `repolm.prompt.build_prompt`, exactly as the server prompts (train =
serve), plus the answer the model should produce after it:

- `complete`: a cursor inside a definition; the answer is the rest of the line (or the new block). The
  oracle documents are the chunks that define the repository symbols the target uses (resolved through
  the symbol graph, as the evaluation resolves them); distractors are the top chunks that are not oracles
  in the ranking the server completes with (the query's hybrid ranking fused with the definitions the
  code above the cursor uses), plus one random chunk.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repolm.assist.completion import retrieval_query
from repolm.config import Progress, ServeConfig
from repolm.fim import template_named
from repolm.indexer.code_uses import definition_chunk_ids, file_lines
from repolm.indexer.graph import Symbol
from repolm.indexer.retrieval import Index
from repolm.prompt import Document, Prompt, PromptRequest, build_prompt

from .eval_targets import (
    analyze_file,
    cursor_prefix,
    cursor_suffix,
    eligible_lines,
    read_redacted,
)
from .metrics import supplied_identifiers
from .raft_examples import (
    DatasetStats,
    Example,
    RaftConfig,
    TrainingSplit,
    arrange,
    example_rng,
    fit_keeping_oracles,
    pick_distractors,
    prompted,
)
from .raft_explain import explain_examples
from .raft_plan import plan_examples
from .teacher import Teacher

CODE_DEFINITIONS = frozenset({"function", "method"})
MAX_ORACLES = 2  # oracle chunks per example: a line rarely needs more, and the budget is small
MAX_BLOCK_LINES = 8
_TOKEN_END = re.compile(r"\w+|[^\w\s]")


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
    supplies: tuple[str, ...] = ()  # names of the answer that only the oracle shows (`oracle_supplies`)


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
        chunks = [c for s in symbols for c in definition_chunk_ids(split.index, s)]
        oracles = tuple(c for c in dict.fromkeys(chunks) if split.allows(split.index._spans[c].path))
        oracles = oracles[:MAX_ORACLES]
        used = (tuple(s.qualname for s in symbols), oracles, tuple((s.path, s.name_line) for s in symbols))
        oracle_texts = [chunk.text for cid in oracles if (chunk := split.chunk(cid))]
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
                supplies: tuple[str, ...] = ()
                if oracle_texts:  # the answer's names that the oracle holds and the code above lacks
                    before = cursor_prefix(text, number, at)
                    supplies = tuple(supplied_identifiers(answer, before, oracle_texts))
                found.append(Cursor(path, number, at, kind, answer, last, *used, supplies))
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
    # Cursors where the oracle shows a name the file above does not come first: only there does reading
    # it pay, and a model trained mostly on lines the file already predicts learns to skip the snippets.
    with_oracle.sort(key=lambda found: not found[0].supplies)  # stable: still shuffled
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
    suffix = cursor_suffix(text, cursor.end_line)
    layout = split.serve.template
    template = template_named(layout, tokenizer)
    oracle_docs = [Document.from_chunk(c) for cid in cursor.oracle_chunks if (c := split.chunk(cid))]
    distractors = pick_distractors(
        split,
        retrieval_query(prefix),
        frozenset({cursor.path}),
        cursor.definitions,
        config.distractors,
        rng,
        cursor.path,
        prefix,
    )
    include = bool(oracle_docs) and rng.random() < config.oracle_probability
    documents = arrange(oracle_docs, distractors, include, rng)

    def build(chosen: list[Document]) -> Prompt:
        request = PromptRequest("complete", chosen, prefix=prefix, suffix=suffix, path=cursor.path)
        return build_prompt(request, tokenizer, split.serve.completion_budget, layout)

    try:
        prompt, documents = fit_keeping_oracles(documents, build, split.serve.completion_snippets)
    except ValueError:
        return None
    kept_prefix = prompt.kept_prefix
    in_prompt = prompted(documents, prompt)
    if template is None:
        # The serving stop rules end a line completion at the newline and a block at its dedent; the
        # newline teaches the model to stop where the editor's text would go on.
        end = line_end(tokenizer, cursor.answer, following_lines(text, cursor))
        completion = prompt.healed + cursor.answer + end
    else:  # a FIM middle ends with its family's end token, the suffix in the prompt says what follows
        completion = cursor.answer + template.end_token(tokenizer)
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
        oracle_supplies=list(cursor.supplies),
    )


# ---------------------------------------------------------------------------------------------------------
# The whole dataset


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
    stats.oracle_supplies = sum(bool(e.oracle_supplies) for e in unique)
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
        + (f" ({share:.0%} of those with an oracle)" if share is not None else "")
        + f"; {stats.oracle_supplies} need a name only the oracle shows",
        f"abstentions: {stats.abstain}; duplicates dropped: {stats.duplicates_dropped};"
        f" skipped: {stats.skipped}",
        f"mean documents per prompt: {stats.mean_documents}; built in {stats.seconds:.1f}s",
    ]
    return "\n".join(lines)
