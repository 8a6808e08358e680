"""Robust numbers from interleaved rounds: percentiles, per-round ratios, and a bootstrap interval.

Every system is timed once per round, so round ``i`` of two systems saw the same machine state
(frequency, other load, memory placement). The ratio of their times *within* a round cancels that
drift; the median of those per-round ratios resists the odd round a neighbour's job spoiled, and
a bootstrap over rounds says how far that median could move with different luck. A 95 % interval
that contains 1.00 means the run cannot tell the two systems apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def per_round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> np.ndarray:
    """``numerator[i] / denominator[i]`` for every round both systems finished."""
    if len(numerator) != len(denominator) or not len(numerator):
        raise ValueError(f"per-round ratios need equally many rounds, at least one (got {len(numerator)} and {len(denominator)})")
    return np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def bootstrap_median_ci(
    values: Sequence[float], seed: int, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values``: resample rounds with replacement.

    Seeded, so the same samples always give the same interval (and metrics files do not churn).
    With one value the interval is that value: one round says nothing about spread.
    """
    arr = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(arr), size=(resamples, len(arr)))
    medians = np.median(arr[picks], axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Ratio:
    """How much slower ``numerator`` is than ``denominator`` (> 1: the denominator is faster)."""

    of_means: float  # mean / mean: the meaning older metrics files have
    median: float  # median of per-round ratios
    ci_low: float
    ci_high: float

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def compare(numerator: Sequence[float], denominator: Sequence[float], seed: int) -> Ratio:
    """The ratio of two systems timed in the same rounds, with its median and 95 % interval."""
    ratios = per_round_ratios(numerator, denominator)
    low, high = bootstrap_median_ci(ratios, seed)
    return Ratio(
        of_means=float(np.mean(numerator) / np.mean(denominator)),
        median=float(np.median(ratios)),
        ci_low=low,
        ci_high=high,
    )
