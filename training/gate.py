"""The promotion gate: a new adapter replaces the active one only if it is better beyond noise.

Both models complete the same held-out targets, so the comparison is paired: a bootstrap over targets
of the per-target difference. The gate decides on edit similarity in the hybrid arm (what users get):
the candidate wins when the 95% interval of the mean difference lies above zero, and identifier F1
(did it name the right things) is not worse beyond noise. Exact match is reported, never gated: a 135M
model completes a few lines in a hundred exactly, so one line moves it by a third. When the
per-target records are missing, the rule falls back to "the candidate's lower CI bound is above the
active model's mean".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .metrics import BOOTSTRAP_RESAMPLES, Estimate, bootstrap

GATE_ARM = "hybrid"
GATE_METRIC = "edit_similarity"  # decides
GUARD_METRIC = "identifier_f1"  # may not be worse beyond noise
REPORTED = ("exact_match",)  # shown beside them, never gated


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: str
    incumbent: str  # the active adapter's name in the eval JSON, or "base"
    metric: str  # the one that decided
    candidate_mean: float | None
    incumbent_mean: float | None
    difference: float | None
    ci_low: float | None  # of the difference (paired) or of the candidate's mean (fallback)
    ci_high: float | None
    method: str  # paired_bootstrap | ci_vs_mean | none
    n: int
    # Every scored metric's paired difference (mean, ci_low, ci_high), the deciding one included.
    differences: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _paired(evaluation: dict, candidate: str, incumbent: str, metric: str) -> list[tuple[float, float]]:
    pairs = []
    for record in evaluation.get("records", []):
        models = record.get("models", {})
        try:
            pairs.append(
                (float(models[candidate][GATE_ARM][metric]), float(models[incumbent][GATE_ARM][metric]))
            )
        except (KeyError, TypeError, ValueError):
            continue
    return pairs


def _difference(pairs: list[tuple[float, float]], seed: int, resamples: int) -> Estimate:
    return bootstrap([new - old for new, old in pairs], seed, resamples)


def _shown(estimate: Estimate) -> str:
    return f"{estimate.mean:+.4f} [{estimate.ci_low:+.4f}, {estimate.ci_high:+.4f}]"


def decide(
    evaluation: dict, candidate: str, incumbent: str, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> GateDecision:
    """Whether `candidate` beats `incumbent` in `evaluation` (docs/EVAL_SCHEMA.md), and why."""
    models = evaluation.get("models", {})
    for name in (candidate, incumbent):
        if GATE_ARM not in models.get(name, {}).get("arms", {}):
            reason = f"the evaluation has no {GATE_ARM} arm for {name!r}"
            return GateDecision(
                False, reason, candidate, incumbent, GATE_METRIC, None, None, None, None, None, "none", 0
            )
    pairs = {m: _paired(evaluation, candidate, incumbent, m) for m in (GATE_METRIC, GUARD_METRIC, *REPORTED)}
    if pairs[GATE_METRIC]:
        return _paired_decision(pairs, candidate, incumbent, seed, resamples)
    return _unpaired_decision(models, candidate, incumbent)


def _paired_decision(
    pairs: dict[str, list[tuple[float, float]]], candidate: str, incumbent: str, seed: int, resamples: int
) -> GateDecision:
    differences = {m: _difference(p, seed, resamples) for m, p in pairs.items() if p}
    main, guard = differences[GATE_METRIC], differences.get(GUARD_METRIC)
    better = main.ci_low > 0
    guarded = guard is None or guard.ci_high >= 0
    promote = better and guarded
    n = len(pairs[GATE_METRIC])
    reason = (
        f"decided on {GATE_METRIC.replace('_', ' ')} in the {GATE_ARM} arm, paired over {n} targets"
        f" (exact match, a few lines in a hundred at this model size, is reported, not gated):"
        f" {_shown(main)} against {incumbent}, " + ("above zero" if better else "not above zero")
    )
    if guard is not None:
        reason += f"; {GUARD_METRIC.replace('_', ' ')} {_shown(guard)}, " + (
            "not worse" if guarded else "worse beyond noise"
        )
    for metric in REPORTED:
        if metric in differences:
            reason += f"; {metric.replace('_', ' ')} {_shown(differences[metric])}"
    reason += ": promoted" if promote else ": not promoted"
    means = [sum(column) / n for column in zip(*pairs[GATE_METRIC], strict=True)]
    return GateDecision(
        promote, reason, candidate, incumbent, GATE_METRIC, round(means[0], 4), round(means[1], 4),
        round(main.mean, 4), round(main.ci_low, 4), round(main.ci_high, 4), "paired_bootstrap", n,
        {metric: estimate.to_json() for metric, estimate in differences.items()},
    )  # fmt: skip


def _unpaired_decision(models: dict, candidate: str, incumbent: str) -> GateDecision:
    new = models[candidate]["arms"][GATE_ARM].get(GATE_METRIC, {})
    old = models[incumbent]["arms"][GATE_ARM].get(GATE_METRIC, {})
    if new.get("ci_low") is None or old.get("mean") is None:
        reason = "no scored targets in the gate arm"
        return GateDecision(
            False, reason, candidate, incumbent, GATE_METRIC, None, None, None, None, None, "none", 0
        )
    promote = new["ci_low"] > old["mean"]
    reason = (
        f"{GATE_ARM} {GATE_METRIC.replace('_', ' ')} {new['mean']:.4f} (CI low {new['ci_low']:.4f}) vs"
        f" {old['mean']:.4f} ({incumbent}): {'promoted' if promote else 'not promoted'}"
        " (unpaired rule, the per-target records are missing: CI low > active mean)"
    )
    n = int(models[candidate]["arms"][GATE_ARM].get("n", 0))
    return GateDecision(
        promote, reason, candidate, incumbent, GATE_METRIC, new["mean"], old["mean"],
        round(new["mean"] - old["mean"], 4), new["ci_low"], new.get("ci_high"), "ci_vs_mean", n,
    )  # fmt: skip
