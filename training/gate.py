"""The promotion gate: a new adapter replaces the active one only if it is better beyond noise.

The gate metric is exact match in the hybrid arm (the evaluation JSON's `gate` field). Both models are
scored on the same targets, so the comparison is paired: a bootstrap over targets of the per-target
difference, and the candidate wins when the 95% interval of the mean difference lies above zero.
When the per-target records are missing, the rule falls back to "the candidate's lower CI bound is
above the active model's mean".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .metrics import BOOTSTRAP_RESAMPLES

GATE_ARM = "hybrid"
GATE_METRIC = "exact_match"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: str
    incumbent: str  # the active adapter's name in the eval JSON, or "base"
    candidate_mean: float | None
    incumbent_mean: float | None
    difference: float | None
    ci_low: float | None  # of the difference (paired) or of the candidate's mean (fallback)
    ci_high: float | None
    method: str  # paired_bootstrap | ci_vs_mean
    n: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _paired(evaluation: dict, candidate: str, incumbent: str) -> list[tuple[float, float]]:
    pairs = []
    for record in evaluation.get("records", []):
        models = record.get("models", {})
        try:
            pairs.append(
                (
                    float(models[candidate][GATE_ARM][GATE_METRIC]),
                    float(models[incumbent][GATE_ARM][GATE_METRIC]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return pairs


def decide(
    evaluation: dict, candidate: str, incumbent: str, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> GateDecision:
    """Whether `candidate` beats `incumbent` on the gate metric in `evaluation` (docs/EVAL_SCHEMA.md)."""
    models = evaluation.get("models", {})
    for name in (candidate, incumbent):
        if GATE_ARM not in models.get(name, {}).get("arms", {}):
            return GateDecision(
                False, f"the evaluation has no {GATE_ARM} arm for {name!r}", candidate, incumbent,
                None, None, None, None, None, "none", 0,
            )  # fmt: skip
    pairs = _paired(evaluation, candidate, incumbent)
    if pairs:
        data = np.asarray(pairs, dtype=float)
        differences = data[:, 0] - data[:, 1]
        rng = np.random.default_rng(seed)
        means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(
            axis=1
        )
        low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
        cand, inc, diff = float(data[:, 0].mean()), float(data[:, 1].mean()), float(differences.mean())
        promote = low > 0
        verdict = "above zero: promoted" if promote else "includes zero or less: not promoted"
        reason = (
            f"{GATE_ARM} exact match {cand:.3f} vs {inc:.3f} ({incumbent}); paired bootstrap 95% CI of the"
            f" difference [{low:+.3f}, {high:+.3f}] over {len(pairs)} targets {verdict}"
        )
        return GateDecision(
            promote, reason, candidate, incumbent, round(cand, 4), round(inc, 4), round(diff, 4),
            round(low, 4), round(high, 4), "paired_bootstrap", len(pairs),
        )  # fmt: skip
    new = models[candidate]["arms"][GATE_ARM][GATE_METRIC]
    old = models[incumbent]["arms"][GATE_ARM][GATE_METRIC]
    if new.get("ci_low") is None or old.get("mean") is None:
        return GateDecision(
            False, "no scored targets in the gate arm", candidate, incumbent,
            None, None, None, None, None, "none", 0,
        )  # fmt: skip
    promote = new["ci_low"] > old["mean"]
    reason = (
        f"{GATE_ARM} exact match {new['mean']:.3f} (CI low {new['ci_low']:.3f}) vs {old['mean']:.3f}"
        f" ({incumbent}): {'promoted' if promote else 'not promoted'} (unpaired rule: CI low > active mean)"
    )
    n = int(models[candidate]["arms"][GATE_ARM].get("n", 0))
    return GateDecision(
        promote, reason, candidate, incumbent, new["mean"], old["mean"], round(new["mean"] - old["mean"], 4),
        new["ci_low"], new.get("ci_high"), "ci_vs_mean", n,
    )  # fmt: skip
