"""Planning examples (Reasoning on Graphs): a relational question in, the relation paths to follow out.

Questions come from `graph_questions` about entities defined in the training split's files only; the
target is the question's planning target (relation sequences of the shortest paths to its answers).
The prompt is the shared contract's `plan` task, exactly as `repolm ask` prompts the planner.
"""

from __future__ import annotations

from typing import Any

from repolm.indexer.code_graph import RELATIONS, CodeGraph
from repolm.prompt import PLAN_BUDGET, PromptRequest, build_prompt, plan_completion

from .graph_questions import questions
from .raft_examples import Example, TrainingSplit


def plan_examples(split: TrainingSplit, tokenizer: Any) -> list[Example]:
    config = split.config
    if config.plan_examples <= 0:
        return []
    graph = CodeGraph.build(split.index)
    asked = questions(graph, lambda node: split.allows(node.path), config.plan_examples, config.seed)
    examples = []
    for question in asked:
        request = PromptRequest("plan", (), question=question.question, relations=RELATIONS)
        prompt = build_prompt(request, tokenizer, PLAN_BUDGET)
        node = graph.nodes[question.entity]
        examples.append(
            Example(
                id="",
                task="plan",
                path=node.path,
                line=node.line,
                documents=[],
                oracle_available=False,
                oracle_included=False,
                answer=question.plan_text,
                source_spans=[],
                symbols=[question.entity],
                prompt=prompt.text,
                completion=plan_completion(question.plans, tokenizer),
                question=question.question,
                kind=question.kind,
            )
        )
    return examples
