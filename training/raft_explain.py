"""RAFT explanation examples: questions about a symbol, answered from the code itself.

Each answer is a few steps, each quoting a line of a source verbatim between ##begin_quote## and
##end_quote## with its `path:line`, and ends with `<ANSWER>: ...` — the format the explain prompt asks
for. The facts come from the index: the signature, the docstring, `return` lines of the body, and the
call sites (callers in training files). When the prompt lacks the oracle the answer says the sources do
not contain it: the model learns to abstain instead of inventing. An optional teacher (an
OpenAI-compatible endpoint) may phrase answers; its answer is kept only if every quote is verbatim.
"""

from __future__ import annotations

import ast
import random
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from repolm.config import Progress
from repolm.indexer.code_uses import CALLABLE_KINDS, definition_chunk_ids
from repolm.indexer.graph import Symbol
from repolm.prompt import Document, Prompt, PromptRequest, build_prompt

from .raft_examples import (
    DatasetStats,
    Example,
    TrainingSplit,
    arrange,
    example_rng,
    fit_keeping_oracles,
    pick_distractors,
    prompted,
)

if TYPE_CHECKING:
    from .teacher import Teacher

BEGIN, END = "##begin_quote##", "##end_quote##"
ANSWER = "<ANSWER>:"
ABSTAIN_ANSWER = "The sources do not contain the answer."
MAX_CALLERS = 2
MAX_RETURNS = 2
_QUOTED = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.DOTALL)


@dataclass(frozen=True)
class Fact:
    """One line a step of the answer quotes, and how the step introduces it."""

    path: str
    line: int
    lead: str  # "Source {where} defines it:" — `{where}` becomes path:line
    span: int = 1  # lines quoted (a signature can span several)
    needle: str = ""  # quote only this part of the line (a docstring's first line) when set


@dataclass(frozen=True)
class Question:
    kind: str  # what | returns | arguments | used
    text: str
    facts: tuple[Fact, ...]  # the first one is required: without it the sources cannot answer
    answer: str  # after <ANSWER>:
    oracle_places: tuple[tuple[str, int], ...]  # (path, line) each oracle chunk must cover
    missing: str  # "what it returns": what an abstention says the sources do not tell


def quoted_spans(text: str) -> list[str]:
    return [match.group(1) for match in _QUOTED.finditer(text)]


def _first_sentence(docstring: str) -> str:
    first = docstring.strip().split("\n\n", 1)[0].strip().split("\n", 1)[0].strip()
    return first


def _python_parameters(signature: str) -> list[str] | None:
    header = textwrap.dedent(signature).strip()
    if not header.startswith(("def ", "async def ")):
        return None
    try:
        tree = ast.parse(header.rstrip(":") + ":\n    pass\n")
    except SyntaxError:
        return None
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    arguments = function.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    if arguments.vararg:
        names.append("*" + arguments.vararg.arg)
    if arguments.kwarg:
        names.append("**" + arguments.kwarg.arg)
    return [n for n in names if n not in {"self", "cls"}]


def _return_lines(lines: Sequence[str], symbol: Symbol) -> list[tuple[int, str]]:
    """`return <value>` lines of the symbol's own body (1-based line numbers)."""
    found = []
    for number in range(symbol.name_line + 1, min(symbol.end_line, len(lines)) + 1):
        stripped = lines[number - 1].strip()
        if stripped.startswith("return ") and len(stripped) > len("return "):
            found.append((number, stripped[len("return ") :]))
    return found


def questions_for(split: TrainingSplit, symbol: Symbol, oracle: Document) -> list[Question]:
    """Every question the index can answer about `symbol`, given its oracle chunk."""
    lines = oracle.text.split("\n")

    def line_of(number: int) -> str:
        offset = number - oracle.start_line
        return lines[offset] if 0 <= offset < len(lines) else ""

    definition = (symbol.path, symbol.name_line)
    signature_lines = max(1, len(symbol.signature.strip().split("\n")))
    sig = Fact(symbol.path, symbol.name_line, "Source {where} defines it:", span=signature_lines)
    found: list[Question] = []
    summary = _first_sentence(symbol.docstring)
    what_facts = [sig]
    if summary:
        doc_line = next(
            (n for n in range(symbol.name_line, symbol.end_line + 1) if summary in line_of(n)), None
        )
        if doc_line is not None:
            what_facts.append(Fact(symbol.path, doc_line, "Its docstring at {where} says", needle=summary))
    file_lines = [line_of(n) for n in range(1, oracle.end_line + 1)]
    returns = _return_lines(file_lines, symbol) if symbol.kind != "class" else []
    callees = split.index.graph.callees(symbol.qualname)
    described = summary or (
        f"it returns {returns[0][1]}" if returns else f"a {symbol.kind} named {symbol.name}"
    )
    if callees:
        described += "; it calls " + ", ".join(c.name for c in callees[:3])
    found.append(
        Question(
            "what",
            f"What does {symbol.kind} {symbol.qualname} do, and how is it used?",
            tuple(what_facts),
            described,
            (definition,),
            "what it does",
        )
    )
    if returns:
        facts = tuple(Fact(symbol.path, n, "It returns at {where}:") for n, _ in returns[:MAX_RETURNS])
        values = " or ".join(value for _, value in returns[:MAX_RETURNS])
        found.append(
            Question(
                "returns",
                f"What does {symbol.qualname} return?",
                facts,
                values,
                (definition,),
                "what it returns",
            )
        )
    parameters = _python_parameters(symbol.signature) if symbol.kind in {"function", "method"} else None
    if parameters:
        found.append(
            Question(
                "arguments",
                f"Which arguments does {symbol.qualname} take?",
                (sig,),
                ", ".join(parameters),
                (definition,),
                "which arguments it takes",
            )
        )
    callers = [u for u in split.index.graph.callers(symbol.qualname) if split.allows(u.path)][:MAX_CALLERS]
    if callers:
        facts = tuple(Fact(u.path, u.line, "It is called at {where}:") for u in callers)
        where = "; ".join(f"{u.scope or u.path} ({u.path}:{u.line})" for u in callers)
        found.append(
            Question(
                "used",
                f"Where is {symbol.qualname} used?",
                facts,
                f"It is called in {where}.",
                tuple((u.path, u.line) for u in callers),
                "where it is used",
            )
        )
    return found


def _quote(fact: Fact, documents: Sequence[Document]) -> str | None:
    """The fact's line(s) as they appear in a present document, or None when no document has them."""
    for document in documents:
        if document.path != fact.path or not (
            document.start_line <= fact.line and fact.line + fact.span - 1 <= document.end_line
        ):
            continue
        lines = document.text.split("\n")
        offset = fact.line - document.start_line
        body = "\n".join(lines[offset : offset + fact.span]).strip()
        if fact.needle:
            return fact.needle if fact.needle in body else None
        return body or None
    return None


def compose_answer(question: Question, documents: Sequence[Document], qualname: str) -> tuple[str, bool]:
    """The stepwise quoted answer from the documents in the prompt, or an abstention: (text, abstained)."""
    steps = []
    for fact in question.facts:
        quote = _quote(fact, documents)
        if quote is None:
            if not steps:  # the required fact is missing: the sources cannot answer
                break
            continue
        steps.append(f"{fact.lead.format(where=f'{fact.path}:{fact.line}')} {BEGIN}{quote}{END}")
    if not steps:
        text = (
            f"None of the sources shows the code that would tell {question.missing} for {qualname}.\n"
            f"{ANSWER} {ABSTAIN_ANSWER}"
        )
        return text, True
    return "\n".join([*steps, f"{ANSWER} {question.answer}"]), False


def teacher_user_message(documents: Sequence[Document], question: str) -> str:
    sources = "".join(
        f"[{n}] {d.path}:{d.start_line}-{d.end_line}\n{d.text.rstrip()}\n\n"
        for n, d in enumerate(documents, 1)
    )
    return f"Sources:\n\n{sources}Question: {question}"


def acceptable(answer: str, documents: Sequence[Document]) -> bool:
    """A teacher answer is used only if it has the answer line and every quote is verbatim in a source."""
    quotes = quoted_spans(answer)
    return (
        ANSWER in answer
        and bool(quotes)
        and all(q.strip() and any(q.strip() in d.text for d in documents) for q in quotes)
    )


def explain_examples(
    split: TrainingSplit,
    tokenizer: Any,
    teacher: Teacher | None,
    stats: DatasetStats,
    progress: Progress,
) -> list[Example]:
    config = split.config
    symbols = [
        s
        for path in split.files
        for s in split.index.graph.in_file(path)
        if s.kind in CALLABLE_KINDS and not s.name.startswith("__")
    ]
    random.Random(config.seed).shuffle(symbols)
    # Questions are asked of the first symbols only (a few are skipped): embed their queries in one batch.
    split.queries.prefetch(_query(s) for s in symbols[: 2 * config.explain_examples])
    examples: list[Example] = []
    for done, symbol in enumerate(symbols):
        if len(examples) >= config.explain_examples:
            break
        progress("explain", done, len(symbols))
        chunk_ids = definition_chunk_ids(split.index, symbol)
        chunk = split.chunk(chunk_ids[0]) if chunk_ids else None
        if chunk is None:
            continue
        rng = example_rng(config.seed, "explain", symbol.qualname)
        question = rng.choice(questions_for(split, symbol, Document.from_chunk(chunk)))
        oracles = []
        for path, line in question.oracle_places:
            ids = definition_chunk_ids(split.index, _at(symbol, path, line))
            if ids and (found := split.chunk(ids[0])) is not None:
                oracles.append(Document.from_chunk(found))
        if not oracles:
            continue
        distractors = pick_distractors(
            split,
            _query(symbol),
            frozenset(),
            [*question.oracle_places, (symbol.path, symbol.name_line)],
            config.distractors,
            rng,
        )
        include = rng.random() < config.oracle_probability
        documents = arrange(oracles, distractors, include, rng)

        def build(chosen: list[Document], question: Question = question) -> Prompt:
            request = PromptRequest("explain", chosen, question=question.text)
            return build_prompt(request, tokenizer, split.serve.explain_budget)

        try:
            prompt, documents = fit_keeping_oracles(documents, build)
        except ValueError:
            stats.skipped += 1
            continue
        answer, abstained = compose_answer(question, prompt.documents, symbol.qualname)
        if teacher is not None and not abstained:
            proposed = teacher.answer(teacher_user_message(prompt.documents, question.text))
            if proposed and acceptable(proposed, prompt.documents):
                answer = proposed.strip()
        in_prompt = prompted(documents, prompt)
        examples.append(
            Example(
                id="",
                task="explain",
                path=symbol.path,
                line=symbol.name_line,
                documents=in_prompt,
                oracle_available=True,
                oracle_included=any(d["oracle"] for d in in_prompt),
                answer=answer,
                source_spans=[
                    {"path": f.path, "start_line": f.line, "end_line": f.line + f.span - 1}
                    for f in question.facts
                    if not abstained
                ],
                symbols=[symbol.qualname],
                prompt=prompt.text,
                # The chat turn ends with the end-of-turn token: the model learns where to stop.
                completion=answer + (tokenizer.eos_token or ""),
                question=question.text,
                kind=question.kind,
                abstain=abstained,
                quotes=quoted_spans(answer),
            )
        )
    progress("explain", len(symbols), len(symbols))
    return examples


def _query(symbol: Symbol) -> str:
    return f"{symbol.name} {symbol.docstring}".strip()


def _at(symbol: Symbol, path: str, line: int) -> Symbol:
    """A symbol-shaped place for `definition_chunk_ids`, which only reads the path and the name's line."""
    return Symbol(symbol.qualname, symbol.name, symbol.kind, path, line, line, line, 0, "", "", ())
