"""The retriever's promotion gate: a fine-tuned retriever replaces the one in use only if it finds what
one family of held-out queries needs more often, beyond noise, and what no family needs less often.

Both retrievers answer the same held-out queries (`eval_retrieval`), so the comparison is paired: a
bootstrap over queries of the per-query difference in reciprocal rank. The families are completions
(the code the next line needs), docstrings and questions (hovers, search, ask). The candidate wins when
the 95% interval of one family's mean MRR difference lies above zero and no family is worse beyond noise
in MRR or in acc@5 (what a user sees: the right code among the first five). Completion retrieval also
reads the definitions the code above the cursor uses (`code_uses.used_above`), which find much of what
the next line needs whatever the embedding model; a retriever that then finds no more for completions
but answers questions better is still the better one. acc@1 and acc@5 differences are reported beside.
"""

from __future__ import annotations

from .gate import GateDecision
from .metrics import BOOTSTRAP_RESAMPLES, Estimate, bootstrap, hit_at, reciprocal_rank

DECIDING = "completion"  # the family whose figures the decision records
FAMILIES = (DECIDING, "docstring", "question")
METRIC = "mrr"
GUARD_METRICS = (METRIC, "acc@5")


def _scores(ranks: list[int | None], metric: str) -> list[float]:
    if metric == "mrr":
        return [reciprocal_rank(r) for r in ranks]
    return [hit_at(r, int(metric.split("@")[1])) for r in ranks]


def paired(candidate: dict, incumbent: dict, family: str, metric: str, seed: int, resamples: int) -> Estimate:
    new, old = candidate[family]["ranks"], incumbent[family]["ranks"]
    if len(new) != len(old):
        raise ValueError(f"the {family} queries differ between the two evaluations")
    pairs = zip(_scores(new, metric), _scores(old, metric), strict=True)
    return bootstrap([a - b for a, b in pairs], seed, resamples)


def decide_retriever(
    candidate: dict,
    incumbent: dict,
    names: tuple[str, str],
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> GateDecision:
    """Whether the retriever evaluated in `candidate` beats the one in `incumbent` (both
    `evaluate_retrieval` results on the same split and seed); `names` = (candidate, incumbent)."""
    differences = {
        f"{family}_{metric}": paired(candidate, incumbent, family, metric, seed, resamples)
        for family in FAMILIES
        for metric in (METRIC, "acc@1", "acc@5")
        if candidate[family]["n"]
    }
    n = int(candidate[DECIDING]["n"])
    if not n:
        reason = "no held-out completion target with an oracle to judge the retriever on: not promoted"
        return GateDecision(False, reason, *names, METRIC, None, None, None, None, None, "none", 0)
    main = differences[f"{DECIDING}_{METRIC}"]
    better = [family for family in FAMILIES if (d := differences.get(f"{family}_{METRIC}")) and d.ci_low > 0]
    worse = [
        family
        for family in FAMILIES
        if any((d := differences.get(f"{family}_{m}")) and d.ci_high < 0 for m in GUARD_METRICS)
    ]
    promote = bool(better) and not worse
    shown = {key: _shown(estimate) for key, estimate in differences.items()}
    parts = []
    for family in FAMILIES:
        if f"{family}_{METRIC}" in shown:
            verdict = "worse beyond noise" if family in worse else "better" if family in better else "same"
            mrr, acc5 = shown[f"{family}_{METRIC}"], shown[f"{family}_acc@5"]
            parts.append(f"{family} MRR {mrr}, acc@5 {acc5}: {verdict}")
    reason = f"paired against {names[1]} ({n} held-out completion targets); " + "; ".join(parts)
    reason += ": promoted" if promote else ": not promoted"
    return GateDecision(
        promote, reason, *names, METRIC, candidate[DECIDING]["mrr"], incumbent[DECIDING]["mrr"],
        round(main.mean, 4), round(main.ci_low, 4), round(main.ci_high, 4), "paired_bootstrap", n,
        {key: estimate.to_json() for key, estimate in differences.items()},
    )  # fmt: skip


def _shown(estimate: Estimate) -> str:
    return f"{estimate.mean:+.4f} [{estimate.ci_low:+.4f}, {estimate.ci_high:+.4f}]"
