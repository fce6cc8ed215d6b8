"""The prompt contract: one pure function turns a request into model input, for serving and for training.

RAFT training examples are built with `build_prompt` too, so the model is fine-tuned on exactly the layout
it is served with (train = serve).

Completion uses a plain-code layout because SmolLM2-135M has no fill-in-the-middle tokens: retrieved
snippets, each under a `# Path: file:start-end` comment, then `# Path: <current file>` and the code before
the cursor, which the model simply continues. The suffix is not used: without FIM training a small model
reads code after the cursor as more code to continue, and the runtime's stop rules (end of line, dedent)
bound the completion instead.

A model with fill-in-the-middle tokens (repolm.fim: Qwen2.5-Coder, StarCoder2, DeepSeek-Coder, CodeLlama,
CodeGemma) gets its family's template instead: the code after the cursor as the suffix, the snippets in
the family's repository layout where it has one (as path comments at the head of the prefix where not).

Explain uses the tokenizer's chat template with numbered sources and asks for the RAFT answer format:
citations as `path:line`, verbatim quotes between ##begin_quote## and ##end_quote##, and `<ANSWER>: ...`.

Plan (Reasoning on Graphs) uses the chat template too: a question in, relation paths of the code graph
out, one per line with relations joined by `PLAN_SEPARATOR`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from repolm.fim import FimTemplate, template_named
from repolm.vocab import vocab_of

# A completion prompt keeps at least this share of the budget for the code before the cursor before any
# snippet is added; what the snippets leave over goes back to the prefix.
PREFIX_SHARE = 0.5
# A snippet cut shorter than this many lines carries too little to be worth its header.
MIN_SNIPPET_LINES = 3
# A prefix that must be cut starts on a line number divisible by this (see `_fit_prefix`).
PREFIX_ANCHOR_LINES = 8
# A FIM prompt's share of the budget for the code after the cursor, taken from the prefix's share.
SUFFIX_SHARE = 0.15
# Tokens of the snippets' share kept free for the prompt's own headers and token merges at the seams.
SNIPPET_MARGIN = 48

_LINE_COMMENT = {
    ".js": "//",
    ".jsx": "//",
    ".mjs": "//",
    ".ts": "//",
    ".tsx": "//",
    ".go": "//",
    ".rs": "//",
    ".java": "//",
}

EXPLAIN_INSTRUCTIONS = (
    "Answer the question using the numbered sources from the code base. Cite the lines you rely on as "
    "path:line. Quote the supporting source text verbatim between ##begin_quote## and ##end_quote##. "
    "End with a line that starts with <ANSWER>: followed by the final answer."
)


PLAN_SEPARATOR = " > "
PLAN_BUDGET = 256  # prompt tokens: the instructions and one question
# Followed by the request's relation names (the code graph's), comma-separated, and a full stop.
PLAN_INSTRUCTIONS = (
    "Plan how to answer the question from the code graph. Give up to three relation paths that lead from "
    "the symbol in the question to the answer, one per line, relations joined by ' > '. Relations: "
)


class ChunkLike(Protocol):
    """What a Document is made from: an index chunk (repolm.indexer.records.Chunk) or anything shaped so."""

    @property
    def path(self) -> str: ...
    @property
    def start_line(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def symbol(self) -> str: ...


@dataclass(frozen=True)
class Document:
    path: str  # repository-relative, POSIX separators
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    symbol: str = ""

    @classmethod
    def from_chunk(cls, chunk: ChunkLike) -> Document:
        return cls(chunk.path, chunk.start_line, chunk.end_line, chunk.text, chunk.symbol)


@dataclass(frozen=True)
class PromptRequest:
    task: Literal["complete", "explain", "plan"]
    documents: Sequence[Document]  # best first
    prefix: str = ""  # the current file's text before the cursor
    suffix: str = ""  # the current file's text after the cursor (read by FIM templates only)
    question: str = ""
    path: str = ""  # the current file
    relations: Sequence[str] = ()  # plan: the relation names of the code graph that paths may use


@dataclass(frozen=True)
class Prompt:
    text: str
    input_ids: list[int]
    documents: tuple[Document, ...]  # the ones that fit, best first; a cut one has its end_line lowered
    healed: str  # removed from the end of the prefix by token healing; the generation must start with it
    prefix_start: int = 0  # completion: where the kept code before the cursor starts in `text`
    prefix_end: int | None = None  # ... and where it ends (a FIM prompt goes on with the suffix)

    @property
    def kept_prefix(self) -> str:
        """The code before the cursor that the prompt holds, healed text included."""
        return self.text[self.prefix_start : self.prefix_end] + self.healed


def comment_prefix(path: str) -> str:
    return _LINE_COMMENT.get(PurePosixPath(path).suffix.lower(), "#")


def build_prompt(request: PromptRequest, tokenizer: Any, budget: int, template: str = "auto") -> Prompt:
    """The model input for `request`, at most `budget` tokens long. Deterministic. `template` names the
    completion layout (`[serve] template`): "auto" recognises a FIM family from the tokenizer."""
    if request.task == "complete":
        fim = template_named(template, tokenizer)
        if fim is not None:
            return _build_infill(request, tokenizer, budget, fim)
        return _build_completion(request, tokenizer, budget)
    if request.task == "explain":
        return _build_explain(request, tokenizer, budget)
    if request.task == "plan":
        return _build_plan(request, tokenizer, budget)
    raise ValueError(f"unknown task {request.task!r}")


def completion_from_generation(prompt: Prompt, generated: str) -> str:
    """Exactly the text to insert at the cursor, given what the model generated after `prompt.text`.

    The generation should start with `prompt.healed` (the runtime constrains it to); that part is already
    in the editor. If it does not, keep only what still fits after the user's text.
    """
    healed = prompt.healed
    common = 0
    while common < min(len(healed), len(generated)) and healed[common] == generated[common]:
        common += 1
    missing, rest = healed[common:], generated[common:]
    if missing.strip():  # the model contradicts what the user typed: nothing sensible to insert
        return ""
    if missing or _ends_in_indentation(healed):
        # The editor already placed the cursor (and its indentation): the insertion must not start
        # with another newline or a second level of indentation.
        return rest.lstrip() if missing else rest.lstrip(" \t")
    return rest


def _ends_in_indentation(text: str) -> bool:
    last_line = text.rsplit("\n", 1)[-1]
    return "\n" in text and not last_line.strip()


# ---------------------------------------------------------------------------------------------------------
# Completion


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """A prompt's token ids as the model reads them: after the start-of-text token its tokenizer puts
    before every text (Gemma's and Llama's `<bos>`, without which they write garbage; SmolLM2's adds
    none), unless the text already opens with it (a chat template writes it). Training tokenizes
    prompts with this too."""
    ids = _encode(tokenizer, text)
    with_start, plain = tokenizer("x", add_special_tokens=True)["input_ids"], _encode(tokenizer, "x")
    start = list(with_start[: len(with_start) - len(plain)]) if with_start[-len(plain) :] == plain else []
    return ids if ids[: len(start)] == start else start + ids


def _count(tokenizer: Any, text: str) -> int:
    return len(_encode(tokenizer, text))


def _largest(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [0, n] with fits(k), for a monotone `fits` (true up to some k); binary search."""
    low, high = 0, n
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def path_header(path: str, document: Document | None = None) -> str:
    """The comment line that says where the code below it comes from: a snippet's span, or (without
    `document`) the current file `path`. Written in the current file's comment syntax, so that the
    whole prompt reads as one file of its language."""
    where = f"{document.path}:{document.start_line}-{document.end_line}" if document else path or "untitled"
    return f"{comment_prefix(path)} Path: {where}\n"


def _snippet(document: Document, path: str) -> str:
    text = document.text if document.text.endswith("\n") else document.text + "\n"
    return f"{path_header(path, document)}{text}\n"


def _tail(lines: list[str], count: int) -> str:
    return "".join(lines[len(lines) - count :])


def _fit_prefix(tokenizer: Any, lines: list[str], limit: int) -> str:
    """The most recent whole lines of the prefix that fit in `limit` tokens, starting on an anchor line.

    Cut at the exact fit, the prefix would lose its first line whenever the user adds one (or types a
    few characters), and every prompt after that point would differ from the last one, so the model's
    KV cache would hold nothing past the snippets. Starting on a line number divisible by
    PREFIX_ANCHOR_LINES keeps the start in place for several lines of writing, at the price of a few
    lines of context; a prefix too short to reach an anchor keeps its exact fit.
    """
    count = _largest(len(lines), lambda k: _count(tokenizer, _tail(lines, k)) <= limit)
    start = len(lines) - count
    anchored = -(-start // PREFIX_ANCHOR_LINES) * PREFIX_ANCHOR_LINES
    if len(lines) - anchored > PREFIX_ANCHOR_LINES:
        start = anchored
    return "".join(lines[start:])


def _fit_document(document: Document, fits: Callable[[Document], bool]) -> Document | None:
    """`document` whole, or cut after its first lines, so that `fits` holds; None if too little is left."""
    if fits(document):
        return document
    lines = _lines(document.text)

    def first(k: int) -> Document:
        return replace(document, text="".join(lines[:k]), end_line=document.start_line + k - 1)

    keep = _largest(len(lines), lambda k: fits(first(k)))
    return first(keep) if keep >= MIN_SNIPPET_LINES else None


def _completion_text(documents: Sequence[Document], path: str, prefix: str) -> str:
    # Best snippet last, next to the code: small models attend most to what is closest.
    snippets = "".join(_snippet(d, path) for d in reversed(documents))
    return f"{snippets}{path_header(path)}{prefix}"


def fit_snippets(documents: Sequence[Document], path: str, tokenizer: Any, budget: int) -> list[Document]:
    """Snippets cut (whole lines) to a fixed share of the budget, before they meet the prefix.

    `_select` gives snippets whatever room the prefix leaves, cutting the last one to fit; since the
    snippets open the prompt, a prefix one token longer (a keystroke) would change the prompt's first
    tokens and throw away the model's whole KV cache. Snippets that fit the room the prefix can never
    take (the prefix is held to PREFIX_SHARE of the budget) keep the head of the prompt the same.
    """
    room = int(budget * (1 - PREFIX_SHARE)) - SNIPPET_MARGIN
    kept: list[Document] = []
    for document in documents:
        whole = _lines(document.text)
        lines = list(whole)
        header = path_header(path, document)
        while lines and len(tokenizer(header + "".join(lines) + "\n")["input_ids"]) > room:
            lines.pop()
        if not lines or (len(lines) < len(whole) and len(lines) < MIN_SNIPPET_LINES):
            break  # cut to too little to be worth its header: the room is spent
        if len(lines) < len(whole):
            document = replace(document, text="".join(lines), end_line=document.start_line + len(lines) - 1)
        kept.append(document)
        room -= len(tokenizer(header + "".join(lines) + "\n")["input_ids"])
    return kept


def _select(
    documents: Sequence[Document], request: PromptRequest, tokenizer: Any, budget: int
) -> tuple[tuple[Document, ...], str]:
    """Documents (rank order) and the prefix's kept tail that together fit in `budget` tokens."""
    header = _completion_text((), request.path, "")
    lines = _lines(request.prefix)
    room = budget - _count(tokenizer, header)
    prefix = _fit_prefix(tokenizer, lines, min(room, int(budget * PREFIX_SHARE)))
    room -= _count(tokenizer, prefix)
    chosen: list[Document] = []
    for document in documents:
        fitted = _fit_document(
            document, lambda d, room=room: _count(tokenizer, _snippet(d, request.path)) <= room
        )
        if fitted is not None:
            chosen.append(fitted)
            room -= _count(tokenizer, _snippet(fitted, request.path))
        if fitted is not document:  # cut or dropped: the budget is spent
            break
    # What the snippets left over goes back to the prefix.
    prefix = _fit_prefix(tokenizer, lines, room + _count(tokenizer, prefix))
    return tuple(chosen), prefix


def _build_completion(request: PromptRequest, tokenizer: Any, budget: int) -> Prompt:
    documents = fit_snippets(request.documents, request.path, tokenizer, budget)
    limit = budget
    while True:
        # Pieces are counted one by one, but tokens can merge across their seams: check the whole and
        # shrink the allowance until it truly fits.
        chosen, prefix = _select(documents, request, tokenizer, limit)
        text = _completion_text(chosen, request.path, prefix)
        cut = _healing_cut(text, len(text) - len(prefix), tokenizer)
        input_ids = encode_prompt(tokenizer, text[:cut])
        if len(input_ids) <= budget or limit <= 0:
            break
        limit -= len(input_ids) - budget
    if len(input_ids) > budget:
        raise ValueError(f"budget {budget} is too small for the prompt's fixed header")
    return Prompt(text[:cut], input_ids, chosen, text[cut:], prefix_start=len(text) - len(prefix))


def _infill_snippet(template: FimTemplate, document: Document, path: str) -> str:
    text = document.text if document.text.endswith("\n") else document.text + "\n"
    return template.file(document.path, text) if template.repository_layout else _snippet(document, path)


def _fit_suffix(tokenizer: Any, suffix: str, limit: int) -> str:
    """The first whole lines of the code after the cursor that fit in `limit` tokens."""
    lines = _lines(suffix)
    return "".join(lines[: _largest(len(lines), lambda k: _count(tokenizer, "".join(lines[:k])) <= limit)])


def _build_infill(request: PromptRequest, tokenizer: Any, budget: int, template: FimTemplate) -> Prompt:
    """A FIM prompt. The snippets take the same fixed share of the budget as in the plain layout (a
    prompt head that stays put across keystrokes keeps the KV cache); the suffix up to SUFFIX_SHARE;
    the code before the cursor the rest. Nothing is healed: the model writes the middle after its own
    token."""
    suffix = _fit_suffix(tokenizer, request.suffix, int(budget * SUFFIX_SHARE))
    room = int(budget * (1 - PREFIX_SHARE)) - SNIPPET_MARGIN
    chosen: list[Document] = []

    def cost(document: Document) -> int:
        return _count(tokenizer, _infill_snippet(template, document, request.path))

    for document in request.documents:
        fitted = _fit_document(document, lambda d, room=room: cost(d) <= room)
        if fitted is not None:
            chosen.append(fitted)
            room -= cost(fitted)
        if fitted is not document:
            break
    snippets = "".join(_infill_snippet(template, d, request.path) for d in reversed(chosen))
    head = snippets if template.repository_layout else f"{snippets}{path_header(request.path)}"
    opening, closing = template.around(head, request.path, suffix)
    lines = _lines(request.prefix)
    limit = budget - len(encode_prompt(tokenizer, opening + closing))
    while True:  # tokens merge at the seams: shrink the allowance until the whole fits
        prefix = _fit_prefix(tokenizer, lines, max(limit, 0))
        text = f"{opening}{prefix}{closing}"
        input_ids = encode_prompt(tokenizer, text)
        if len(input_ids) <= budget or limit <= 0:
            break
        limit -= len(input_ids) - budget
    if len(input_ids) > budget:
        raise ValueError(f"budget {budget} is too small for the prompt's fixed header")
    return Prompt(text, input_ids, tuple(chosen), "", len(opening), len(opening) + len(prefix))


# ---------------------------------------------------------------------------------------------------------
# Token healing


_TRAILING_WORD = re.compile(r"\w+\Z")


def _healing_cut(text: str, prefix_start: int, tokenizer: Any) -> int:
    """Where the prompt should end so that its last token is a natural boundary for what follows.

    A prompt ending in "\\n    " ends on a newline-plus-indent token that the tokenizer would have merged
    with the next code, and the model then emits a newline first; a partial identifier ("pu" for "push")
    splits a word into unusual tokens. So the prompt stops before the trailing whitespace run, or backs
    up exactly one token when the text ends inside a word or on a token some longer token extends; the
    removed text is what the completion must start with. Backing up a whole identifier instead would let
    greedy decoding re-spell it from odd pieces (" apply_" as " " "a" "pp"...) and drift to another
    word. Healing never reaches into the snippets or the header.
    """
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if not offsets or prefix_start == len(text):
        return len(text)
    body = text.rstrip()
    if len(body) < len(text):
        boundary = len(body)
    elif _TRAILING_WORD.search(text) or vocab_of(tokenizer).extendable(text[offsets[-1][0] :].encode()):
        boundary = offsets[-1][0]
    else:
        return len(text)
    # Cut at the start of the token that overlaps the boundary (" push" carries its leading space) ...
    cut = min((start for start, end in offsets if end > boundary), default=boundary)
    # ... and before whitespace-only tokens left in front of it (digits are single tokens, so
    # "[1, 2" would otherwise end on a lone space token).
    preceding = [start for start, end in offsets if end <= cut]
    while preceding and not text[preceding[-1] : cut].strip():
        cut = preceding.pop()
    return max(cut, prefix_start)


# ---------------------------------------------------------------------------------------------------------
# Explain


def _source(number: int, document: Document) -> str:
    return (
        f"[{number}] {document.path}:{document.start_line}-{document.end_line}\n{document.text.rstrip()}\n\n"
    )


def _chat(tokenizer: Any, instructions: str, user: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": instructions}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{instructions}\n\n{user}\n\nAnswer:\n"


def _explain_text(tokenizer: Any, request: PromptRequest, documents: Sequence[Document]) -> str:
    sources = "".join(_source(n, d) for n, d in enumerate(documents, start=1))
    where = f"The user is editing {request.path}.\n" if request.path else ""
    return _chat(tokenizer, EXPLAIN_INSTRUCTIONS, f"Sources:\n\n{sources}{where}Question: {request.question}")


def _build_explain(request: PromptRequest, tokenizer: Any, budget: int) -> Prompt:
    """Sources go in rank order while the whole prompt fits; the first that does not is cut or dropped."""
    documents: list[Document] = []

    def fits(document: Document) -> bool:
        text = _explain_text(tokenizer, request, [*documents, document])
        return len(encode_prompt(tokenizer, text)) <= budget

    for document in request.documents:
        fitted = _fit_document(document, fits)
        if fitted is not None:
            documents.append(fitted)
        if fitted is not document:
            break
    text = _explain_text(tokenizer, request, documents)
    input_ids = encode_prompt(tokenizer, text)
    if len(input_ids) > budget:
        raise ValueError(f"budget {budget} is too small for the question and instructions")
    return Prompt(text, input_ids, tuple(documents), "")


# ---------------------------------------------------------------------------------------------------------
# Plan


def plan_text(plans: Iterable[Sequence[str]]) -> str:
    """Relation paths as the planner writes them: one per line, relations joined by PLAN_SEPARATOR."""
    return "\n".join(PLAN_SEPARATOR.join(plan) for plan in plans)


def plan_completion(plans: Iterable[Sequence[str]], tokenizer: Any) -> str:
    """A planner's whole output: the plan text, then the end-of-text token. Training targets are this,
    and serving scores the allowed plans as this."""
    return plan_text(plans) + (tokenizer.eos_token or "")


# A plan in words, for a model never trained on relation names (the plain base model): worked examples,
# then the question and the start of a sentence saying what it asks for, which the description of each
# allowed relation path (repolm.indexer.code_graph.describe) may end. The examples' symbols are made up.
DESCRIBED_PLAN_EXAMPLES = (
    ("Who calls Loader.load_settings?", "the functions that call load_settings"),
    ("What functions are called by Parser.feed?", "the functions feed calls"),
    ("Which tests check text.slugify?", "the tests that call slugify"),
    ("Which classes extend store.BaseStore?", "the subclasses of BaseStore"),
    ("What errors can Client.connect raise?", "the exceptions connect raises"),
    ("Where is config.Settings described in the docs?", "the docs that mention Settings"),
    ("Which methods replace Reader.close?", "the methods that override close"),
)


def described_plan_prompt(question: str) -> str:
    """The text a plan description (" " + description + ".") continues."""
    shown = "".join(f"Question: {q}\nThe question asks for {a}.\n\n" for q, a in DESCRIBED_PLAN_EXAMPLES)
    return f"{shown}Question: {question}\nThe question asks for"


def _build_plan(request: PromptRequest, tokenizer: Any, budget: int) -> Prompt:
    if not request.relations:
        raise ValueError("a plan request needs the code graph's relation names (PromptRequest.relations)")
    instructions = f"{PLAN_INSTRUCTIONS}{', '.join(request.relations)}."
    text = _chat(tokenizer, instructions, f"Question: {request.question}")
    input_ids = encode_prompt(tokenizer, text)
    if len(input_ids) > budget:
        raise ValueError(f"budget {budget} is too small for the question and instructions")
    return Prompt(text, input_ids, (), "")
