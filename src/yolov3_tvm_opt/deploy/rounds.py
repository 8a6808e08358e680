"""Latency in interleaved rounds: every system once per round, in a seeded shuffled order.

Timing one system after another lets any drift during the run (a neighbour's compile on a
2-core machine, frequency, a pool still spinning from the previous system) land on one system
only; a 20 % "regression" could be nothing but bad luck. In rounds, each system runs once per
round, so drift hits all of them alike and the ratio within a round cancels it (``stats.compare``
turns those ratios into a median and a 95 % interval). ``yolov3-tvm bench`` and a deploy bundle's
``run.sh`` time with the same code, so their numbers mean the same thing. numpy only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import UserError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of measured iterations; ``samples_ms`` keeps every one for plots."""

    iters: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_fps: float
    samples_ms: list[float] = field(repr=False)

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        arr = np.asarray(samples_ms, dtype=np.float64)
        mean = float(arr.mean())
        return cls(
            iters=len(samples_ms),
            mean_ms=mean,
            p50_ms=float(np.percentile(arr, 50)),
            p90_ms=float(np.percentile(arr, 90)),
            p99_ms=float(np.percentile(arr, 99)),
            min_ms=float(arr.min()),
            max_ms=float(arr.max()),
            std_ms=float(arr.std()),
            throughput_fps=1000.0 / mean if mean > 0 else float("inf"),
            samples_ms=[round(s, 4) for s in samples_ms],
        )


def time_rounds(
    systems: dict[str, Callable[[], Any]], rounds: int, warmup: int, max_seconds: float = 0.0, seed: int = 0
) -> dict[str, LatencyStats]:
    """Time every system once per round, in an order shuffled per round by ``seed``.

    A system that times itself (a remote device, on its own clock) returns its milliseconds; for
    the others the wall time of the call counts. ``warmup`` untimed rounds come first. ``max_seconds`` (0 = no bound) caps the whole call,
    warm-up included: the round in progress finishes, so every system has the same number of
    samples and ``samples_ms[i]`` of each is round ``i``. At least one round is always timed.
    """
    if rounds < 1 or warmup < 0:
        raise UserError(f"iters (rounds) must be >= 1 and warmup >= 0 (got {rounds} and {warmup})")
    if not systems:
        raise ValueError("time_rounds needs at least one system")
    rng = random.Random(seed)
    names = list(systems)
    samples: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.perf_counter() + max_seconds if max_seconds > 0 else float("inf")
    for round_index in range(warmup + rounds):
        order = rng.sample(names, len(names))
        for name in order:
            start = time.perf_counter()
            own_ms = systems[name]()
            if round_index >= warmup:
                samples[name].append(own_ms if isinstance(own_ms, float) else (time.perf_counter() - start) * 1000.0)
        if round_index >= warmup and time.perf_counter() >= deadline:
            break
    return {name: LatencyStats.from_samples(samples[name]) for name in names}
