"""The retriever's promotion gate: a fine-tuned retriever replaces the one in use only if it finds the
code the next line needs more often, beyond noise, without losing the docstring and question queries.

Both retrievers answer the same held-out queries (`eval_retrieval`), so the comparison is paired: a
bootstrap over queries of the per-query difference in reciprocal rank. The candidate wins when the 95%
interval of the completion family's mean difference lies above zero and neither guard family is worse
beyond noise in MRR or in acc@5 (what a user sees: the right code among the first five). acc@1 and acc@5
differences are reported beside them.
"""

from __future__ import annotations

from .gate import GateDecision
from .metrics import BOOTSTRAP_RESAMPLES, Estimate, bootstrap, hit_at, reciprocal_rank

DECIDING = "completion"
GUARDS = ("docstring", "question")
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
        for family in (DECIDING, *GUARDS)
        for metric in (METRIC, "acc@1", "acc@5")
        if candidate[family]["n"]
    }
    n = int(candidate[DECIDING]["n"])
    if not n:
        reason = "no held-out completion target with an oracle to judge the retriever on: not promoted"
        return GateDecision(False, reason, *names, METRIC, None, None, None, None, None, "none", 0)
    main = differences[f"{DECIDING}_{METRIC}"]
    better = main.ci_low > 0
    worse = [
        family
        for family in GUARDS
        if any((d := differences.get(f"{family}_{m}")) and d.ci_high < 0 for m in GUARD_METRICS)
    ]
    promote = better and not worse
    shown = {key: _shown(estimate) for key, estimate in differences.items()}
    reason = (
        f"decided on completion MRR, paired over {n} held-out targets: {shown[f'{DECIDING}_{METRIC}']}"
        f" against {names[1]}, {'above zero' if better else 'not above zero'}"
        f" (acc@1 {shown[f'{DECIDING}_acc@1']}, acc@5 {shown[f'{DECIDING}_acc@5']})"
    )
    for family in GUARDS:
        if f"{family}_{METRIC}" in shown:
            verdict = "worse beyond noise" if family in worse else "not worse"
            reason += (
                f"; {family} MRR {shown[f'{family}_{METRIC}']}, acc@5 {shown[f'{family}_acc@5']}, {verdict}"
            )
    reason += ": promoted" if promote else ": not promoted"
    return GateDecision(
        promote, reason, *names, METRIC, candidate[DECIDING]["mrr"], incumbent[DECIDING]["mrr"],
        round(main.mean, 4), round(main.ci_low, 4), round(main.ci_high, 4), "paired_bootstrap", n,
        {key: estimate.to_json() for key, estimate in differences.items()},
    )  # fmt: skip


def _shown(estimate: Estimate) -> str:
    return f"{estimate.mean:+.4f} [{estimate.ci_low:+.4f}, {estimate.ci_high:+.4f}]"
