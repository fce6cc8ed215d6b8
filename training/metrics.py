"""Scores for one completion, retrieval ranks, and the statistics over many (bootstrap CIs, percentiles).

Pure functions over strings and numbers, so each is pinned by hand-computed cases in the tests.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BOOTSTRAP_RESAMPLES = 1000
# Words a model knows without reading anything: Python's keywords and builtins (`return`, `len`).
_COMMON_WORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


def exact_match(prediction: str, target: str) -> float:
    """1.0 when the completed line is the target; trailing whitespace does not count."""
    return float(prediction.rstrip() == target.rstrip())


def edit_similarity(prediction: str, target: str) -> float:
    """1 − Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    a, b = prediction.rstrip(), target.rstrip()
    if not a and not b:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


def identifier_f1(prediction: str, target: str) -> float:
    """F1 of the identifier multisets: did the completion name the right things, in whatever layout."""
    predicted, expected = Counter(IDENTIFIER.findall(prediction)), Counter(IDENTIFIER.findall(target))
    if not predicted and not expected:
        return 1.0
    common = sum((predicted & expected).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def supplied_identifiers(target: str, before: str, context: Sequence[str]) -> list[str]:
    """The target's identifiers that the context holds and the code before the cursor does not: what
    reading the context can add (CrossCodeEval's test for a line that needs cross-file context)."""
    seen = set(IDENTIFIER.findall(before)) | _COMMON_WORDS
    offered = {name for text in context for name in IDENTIFIER.findall(text)}
    return sorted({name for name in IDENTIFIER.findall(target) if name in offered and name not in seen})


def first_relevant_rank(ranked: Sequence[int], relevant: frozenset[int]) -> int | None:
    """1-based rank of the first relevant item, None when none was retrieved."""
    for rank, item in enumerate(ranked, 1):
        if item in relevant:
            return rank
    return None


def hit_at(rank: int | None, k: int) -> float:
    return float(rank is not None and rank <= k)


def reciprocal_rank(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, float | None]:
        """Rounded; None where there were no samples (NaN is not JSON)."""
        values = {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}
        return {key: None if value != value else round(value, 4) for key, value in values.items()}


def bootstrap(values: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate:
    """The mean with a percentile-bootstrap 95% confidence interval (seeded, so reports are reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(data.mean()), float(low), float(high))


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95)) -> list[float]:
    if not values:
        return [float("nan")] * len(points)
    return [float(p) for p in np.percentile(np.asarray(values, dtype=float), points)]


def mean(values: Sequence[float]) -> float | None:
    """The mean rounded for reports; None without values."""
    return round(sum(values) / len(values), 4) if values else None


def rounded(value: float) -> float | None:
    return None if value != value else round(value, 1)  # NaN (no samples) is not JSON
