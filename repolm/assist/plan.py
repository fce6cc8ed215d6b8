"""Graph-constrained planning (Graph-constrained Reasoning, Luo et al. 2024): the planner chooses only
among relation paths that exist in the code graph from the question's subject.

GCR decodes under a trie of the graph's paths, so every plan is valid by construction and a small model
only chooses among real options. From one symbol the options are few (a handful of relations, up to
`MAX_HOPS` of them), so the constraint is applied exactly: every option is scored, in one forward pass
over their token trie (`repolm.model.score_continuations`), and ranked by its log-likelihood.

How an option is written depends on the model:

- **a planner adapter** learned the planner's output format, so each option is scored as that output
  (`repolm.prompt.plan_completion`: relation names, a line per path, then the end of text). Lines are
  chosen one at a time as decoding would: the best option, then, while the model would rather write
  another line than end, the best of the rest given the lines before, up to `MAX_PLANS`;
- **the plain base model** never saw relation names used so (it ranks `defined_in` first for nearly any
  question), so each option is scored as its description in words (`code_graph.describe`: "the
  functions that call f") ending a sentence about what the question asks for, after a few worked
  examples (`repolm.prompt.described_plan_prompt`); it plans the best one (bench/results/graph.json).

Descriptions are scored as whole sequences (their summed log-probabilities): scoring per token favours
the long descriptions of two-hop paths, and a greedy walk down the trie commits on the first words
("the functions ...") before the words that tell callers from callees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from repolm.indexer.code_graph import RELATIONS, RelationPath, describe
from repolm.model import LoadedModel, score_continuations
from repolm.prompt import (
    PLAN_BUDGET,
    PromptRequest,
    build_prompt,
    described_plan_prompt,
    encode_prompt,
    plan_completion,
    plan_text,
)

MAX_PLANS = 3
MAX_HOPS = 2

# (prompt ids, continuations' ids) -> each continuation's log-likelihood after the prompt.
Scorer = Callable[[Sequence[int], Sequence[Sequence[int]]], list[float]]


@dataclass(frozen=True)
class RankedPlan:
    plan: RelationPath
    score: float  # its log-likelihood as the model read it (given the lines before it, for plan lines)
    ends: bool = True  # the plan ends after this one; those before it are followed too


# (question, the subject's name, the relation paths it may choose from) -> all of them, best first; the
# plan to follow is the first ones, up to and including the first that `ends`.
Planner = Callable[[str, str, Sequence[RelationPath]], list[RankedPlan]]


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def plan_prompt_ids(question: str, tokenizer: Any) -> list[int]:
    """The planner's prompt, exactly as training builds it."""
    request = PromptRequest("plan", (), question=question, relations=RELATIONS)
    return build_prompt(request, tokenizer, PLAN_BUDGET).input_ids


def next_line(
    score: Scorer,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    before: Sequence[RelationPath],
    options: Sequence[RelationPath],
) -> list[RankedPlan]:
    """Every option scored as the plan's next line after the lines `before`, best first.

    A line counts with its end: a newline (another line follows) or the end of text (the plan ends);
    without it a path would always outscore the longer paths it begins. The continuations are whole
    outputs, tokenized as training tokenizes its targets, so they hold the lines before too; those are
    common to every option and subtracted.
    """
    going_on = [_encode(tokenizer, plan_text([*before, option]) + "\n") for option in options]
    ending = [_encode(tokenizer, plan_completion([*before, option], tokenizer)) for option in options]
    head = [_encode(tokenizer, plan_text(before) + "\n")] if before else []
    scores = score(prompt_ids, [*going_on, *ending, *head])
    common = scores[-1] if head else 0.0
    ranked = []
    for number, option in enumerate(options):
        on, end = scores[number] - common, scores[len(options) + number] - common
        either = max(on, end) + math.log1p(math.exp(-abs(on - end)))  # log(P(on) + P(end))
        ranked.append(RankedPlan(option, either, end >= on))
    return sorted(ranked, key=lambda ranked_plan: -ranked_plan.score)


def plan_lines(
    score: Scorer, tokenizer: Any, prompt_ids: Sequence[int], options: Sequence[RelationPath]
) -> list[RankedPlan]:
    """Lines chosen one at a time, each the best given those before, until the model would end (or
    MAX_PLANS); then the options left, as the first line ranked them."""
    chosen: list[RankedPlan] = []
    first: list[RankedPlan] = []
    while len(chosen) < MAX_PLANS:
        taken = [ranked.plan for ranked in chosen]
        ranked = next_line(score, tokenizer, prompt_ids, taken, [o for o in options if o not in taken])
        if not ranked:
            break
        first = first or ranked
        chosen.append(ranked[0])
        if ranked[0].ends:
            break
    if chosen and not chosen[-1].ends:
        chosen[-1] = RankedPlan(chosen[-1].plan, chosen[-1].score, True)
    taken = [ranked.plan for ranked in chosen]
    return chosen + [ranked for ranked in first if ranked.plan not in taken]


def rank_described(
    score: Scorer, tokenizer: Any, question: str, name: str, options: Sequence[RelationPath]
) -> list[RankedPlan]:
    """Every option's description scored as the end of the sentence saying what `question` asks for."""
    prompt_ids = encode_prompt(tokenizer, described_plan_prompt(question))
    endings = [_encode(tokenizer, f" {describe(option, name)}.") for option in options]
    scores = score(prompt_ids, endings)
    ranked = [RankedPlan(option, total) for option, total in zip(options, scores, strict=True)]
    return sorted(ranked, key=lambda ranked_plan: -ranked_plan.score)


def model_planner(model: LoadedModel) -> Planner:
    """The loaded model as a graph-constrained planner: by the planner's output format when it carries
    an adapter (fine-tuned on plans), by descriptions when it is the plain base model."""

    def score(prompt_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        return [sum(tokens) for tokens in score_continuations(model, prompt_ids, continuations)]

    def plan(question: str, name: str, options: Sequence[RelationPath]) -> list[RankedPlan]:
        if not options:
            return []
        if model.adapter is None:
            return rank_described(score, model.tokenizer, question, name, options)
        return plan_lines(score, model.tokenizer, plan_prompt_ids(question, model.tokenizer), options)

    return plan
