"""Timing in interleaved rounds: every system once per round, seeded order, a cap on the whole run."""

from __future__ import annotations

import time

import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.deploy.rounds import LatencyStats, time_rounds


def test_stats_from_samples():
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0])
    assert stats.mean_ms == 2.5 and stats.min_ms == 1.0 and stats.throughput_fps == 400.0


def _recorder(calls: list[str], name: str, seconds: float = 0.0):
    def run_once() -> None:
        calls.append(name)
        if seconds:
            time.sleep(seconds)

    return run_once


def test_rounds_time_every_system_once_per_round_in_a_seeded_shuffled_order():
    calls: list[str] = []
    names = ["a", "b", "c"]
    stats = time_rounds({n: _recorder(calls, n) for n in names}, rounds=30, warmup=2, seed=11)
    assert all(s.iters == 30 for s in stats.values()) and list(stats) == names
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) == 32 and all(sorted(r) == names for r in rounds)
    assert {r[0] for r in rounds} == set(names)  # no system always goes first
    again: list[str] = []
    time_rounds({n: _recorder(again, n) for n in names}, rounds=30, warmup=2, seed=11)
    assert again == calls
    other: list[str] = []
    time_rounds({n: _recorder(other, n) for n in names}, rounds=30, warmup=2, seed=12)
    assert other != calls


def test_max_seconds_caps_the_whole_bench_after_the_round_in_progress():
    calls: list[str] = []
    stats = time_rounds({n: _recorder(calls, n, 0.01) for n in ("a", "b")}, rounds=1000, warmup=1, max_seconds=0.2)
    assert 1 <= stats["a"].iters == stats["b"].iters < 20
    assert len(calls) == 2 * (stats["a"].iters + 1)


def test_rounds_refuse_zero_rounds():
    with pytest.raises(UserError, match="rounds"):
        time_rounds({"a": lambda: None}, rounds=0, warmup=0)
