"""TVM agrees with ONNX Runtime; baseline and fastscatter agree bit for bit; a bench in rounds on real models."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.deploy.stats import bootstrap_median_ci, per_round_ratios
from yolov3_tvm_opt.evaluate.bench import artifact_copy, bench_artifacts
from yolov3_tvm_opt.evaluate.images import random_input
from yolov3_tvm_opt.evaluate.report import latency_metrics, summary_table
from yolov3_tvm_opt.runtime import load_artifact


def _input(shape):
    return random_input(shape, "float32", seed=3, input_scale=1 / 255)


@pytest.mark.parametrize("model", ["tiny", pytest.param("yolov3", marks=pytest.mark.slow)])
def test_tvm_matches_onnxruntime_and_variants_are_bit_exact(model, request):
    artifacts = request.getfixturevalue(f"{model}_artifacts")  # built only for the case that runs
    data = _input(load_artifact(artifacts["baseline"]).input_shape)
    run = bench_artifacts(artifacts, data, iters=2, warmup=0, threads=2)
    assert {name: s.iters for name, s in run.stats.items()} == {"baseline": 2, "fastscatter": 2, "onnxruntime": 2}
    import onnxruntime as ort

    meta = load_artifact(artifacts["baseline"]).meta
    (reference,) = ort.InferenceSession(meta["onnx_path"], providers=["CPUExecutionProvider"]).run(
        None, {meta["input_name"]: data}
    )
    np.testing.assert_allclose(run.outputs["onnxruntime"][0], reference, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(run.outputs["baseline"][0], reference, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(run.outputs["baseline"][0], run.outputs["fastscatter"][0])
    for variant in ("baseline", "fastscatter"):  # the diff is of this variant's outputs against the peer's
        gap = np.abs(run.outputs[variant][0].astype(np.float64) - run.outputs["onnxruntime"][0])
        assert run.max_abs_diff[variant] == float(gap.max()) > 0.0
    boxes = reference[0, :, 2:4]
    assert np.isfinite(reference).all() and np.median(boxes) > 1.0  # boxes in input pixels


def test_bench_in_rounds_on_a_real_model_writes_every_ratio_with_an_interval(tiny_artifacts):
    data = _input(load_artifact(tiny_artifacts["baseline"]).input_shape)
    run = bench_artifacts(tiny_artifacts, data, iters=4, warmup=1, threads=2, profile_topk=3, seed=5)
    assert run.tvm == ["baseline", "fastscatter"] and run.peers == ["onnxruntime"]
    assert {name: s.iters for name, s in run.stats.items()} == {"baseline": 4, "fastscatter": 4, "onnxruntime": 4}
    assert max(run.max_abs_diff.values()) < 1e-2 and set(run.profile) == {"baseline", "fastscatter"}
    metrics = latency_metrics(run)
    pairs = {"speedup": ("baseline", "fastscatter"), "baseline_vs_onnxruntime": ("baseline", "onnxruntime"),
             "fastscatter_vs_onnxruntime": ("fastscatter", "onnxruntime")}
    for key, (numerator, denominator) in pairs.items():  # round i of one over round i of the other, seeded
        ratios = per_round_ratios(run.stats[numerator].samples_ms, run.stats[denominator].samples_ms)
        assert metrics[f"{key}_median"] == pytest.approx(np.median(ratios), abs=1e-4)
        low, high = bootstrap_median_ci(ratios, seed=5)
        assert (metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]) == pytest.approx((low, high), abs=1e-4)
    assert metrics["speedup"] == pytest.approx(metrics["baseline_ms"] / metrics["fastscatter_ms"], rel=1e-3)
    table = summary_table(metrics)
    assert f"speedup {metrics['speedup_median']:.2f}x [{metrics['speedup_ci_low']:.2f}, " in table
    assert "fastscatter_vs_onnxruntime" in table and "onnxruntime_p50" not in table


def test_aa_times_an_artifact_against_its_copy(tiny_artifacts):
    data = _input(load_artifact(tiny_artifacts["fastscatter"]).input_shape)
    with artifact_copy(tiny_artifacts["fastscatter"]) as copy:
        run = bench_artifacts({"a": tiny_artifacts["fastscatter"], "a_copy": copy}, data, iters=3, warmup=1, threads=2)
    assert not copy.exists()
    np.testing.assert_array_equal(run.outputs["a"][0], run.outputs["a_copy"][0])
    ratio = run.ratio("a", "a_copy")
    assert ratio.median == pytest.approx(np.median(per_round_ratios(run.stats["a"].samples_ms, run.stats["a_copy"].samples_ms)))
    assert ratio.ci_low < ratio.ci_high  # three rounds of two timers never tie: the interval has a width


def test_old_metrics_files_still_print():
    old = {"baseline_ms": 27.5, "baseline_p90_ms": 28.0, "baseline_iters": 50, "fastscatter_ms": 27.2,
           "fastscatter_p90_ms": 27.9, "fastscatter_iters": 50, "speedup": 1.011, "max_abs_diff_vs_onnxruntime": 1e-4}
    assert "speedup 1.01x  (ratio of means)" in summary_table(old)
