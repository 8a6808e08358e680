"""Per-round ratios and the seeded bootstrap interval, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.deploy.stats import (
    bootstrap_median_ci,
    compare,
    per_round_ratios,
)


def test_per_round_ratios_pair_rounds_and_refuse_a_mismatch():
    assert per_round_ratios([2.0, 9.0], [1.0, 3.0]).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="equally many rounds"):
        per_round_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        per_round_ratios([], [])


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_median():
    values = np.random.default_rng(7).normal(1.0, 0.05, size=40)
    first = bootstrap_median_ci(values, seed=3)
    assert first == bootstrap_median_ci(values, seed=3)
    assert first != bootstrap_median_ci(values, seed=4)
    low, high = first
    assert values.min() <= low <= np.median(values) <= high <= values.max()


def test_bootstrap_of_identical_values_is_that_value():
    assert bootstrap_median_ci([1.25] * 9, seed=0) == (1.25, 1.25)
    assert bootstrap_median_ci([0.8], seed=0) == (0.8, 0.8)


def test_interval_narrows_with_less_noise_and_more_rounds():
    rng = np.random.default_rng(0)
    noisy = rng.normal(1.0, 0.10, size=30)
    quiet = 1.0 + (noisy - 1.0) / 10
    many = rng.normal(1.0, 0.10, size=600)
    width = {name: np.subtract(*bootstrap_median_ci(v, seed=1)[::-1]) for name, v in
             {"noisy": noisy, "quiet": quiet, "many": many}.items()}
    assert width["quiet"] == pytest.approx(width["noisy"] / 10)
    assert width["many"] < width["noisy"] / 2


def test_compare_sees_a_real_ten_percent_gap_and_not_an_absent_one():
    rng = np.random.default_rng(1)
    drift = rng.uniform(20.0, 40.0, size=50)  # the machine's state, shared by both systems in a round
    same = compare(drift * rng.normal(1, 0.01, 50), drift * rng.normal(1, 0.01, 50), seed=0)
    assert same.contains(1.0) and abs(same.median - 1.0) < 0.01
    slower = compare(1.1 * drift * rng.normal(1, 0.01, 50), drift * rng.normal(1, 0.01, 50), seed=0)
    assert not slower.contains(1.0) and slower.contains(1.1)


def test_compare_keeps_the_ratio_of_means_beside_the_median():
    ratio = compare([2.0, 4.0, 30.0], [1.0, 2.0, 10.0], seed=0)
    assert ratio.of_means == pytest.approx(36.0 / 13.0)
    assert ratio.median == 2.0
    # per-round ratios 2, 2, 3: a resample's median is 3 only when two of its three picks are the 3
    # (7/27 of the time), so the 2.5th and 97.5th percentiles of the bootstrap medians are 2 and 3
    assert (ratio.ci_low, ratio.ci_high) == (2.0, 3.0)


def test_interval_covers_the_truth_at_about_its_level():
    """Under no difference, a 95 % interval of 40 noisy rounds should contain 1.00 most of the time."""
    rng = np.random.default_rng(2)
    hits = sum(
        compare(rng.normal(30, 1.5, 40), rng.normal(30, 1.5, 40), seed=trial).contains(1.0) for trial in range(200)
    )
    assert hits >= 180
