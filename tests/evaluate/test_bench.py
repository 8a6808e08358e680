"""TVM agrees with ONNX Runtime; baseline and fastscatter agree bit for bit; a bench in rounds on real models."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.evaluate.bench import artifact_copy, bench_artifacts, run_bench
from yolov3_tvm_opt.evaluate.images import random_input
from yolov3_tvm_opt.evaluate.report import latency_metrics, summary_table
from yolov3_tvm_opt.runtime import load_artifact


def _input(shape):
    return random_input(shape, "float32", seed=3, input_scale=1 / 255)


@pytest.mark.parametrize("model", ["tiny", "yolov3"])
def test_tvm_matches_onnxruntime_and_variants_are_bit_exact(model, tiny_artifacts, yolov3_artifacts):
    artifacts = {"tiny": tiny_artifacts, "yolov3": yolov3_artifacts}[model]
    data = _input(load_artifact(artifacts["baseline"]).input_shape)
    results = {v: run_bench(artifacts[v], data, iters=2, warmup=0, threads=2) for v in ("baseline", "fastscatter")}
    for result in results.values():
        assert result.max_abs_diff_vs_onnxruntime is not None
        assert result.onnxruntime is not None and result.onnxruntime.iters == 2
    import onnxruntime as ort

    meta = load_artifact(artifacts["baseline"]).meta
    (reference,) = ort.InferenceSession(meta["onnx_path"], providers=["CPUExecutionProvider"]).run(
        None, {meta["input_name"]: data}
    )
    np.testing.assert_allclose(results["baseline"].outputs[0], reference, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(results["baseline"].outputs[0], results["fastscatter"].outputs[0])
    boxes = reference[0, :, 2:4]
    assert np.isfinite(reference).all() and np.median(boxes) > 1.0  # boxes in input pixels


def test_bench_in_rounds_on_a_real_model_writes_every_ratio_with_an_interval(tiny_artifacts):
    data = _input(load_artifact(tiny_artifacts["baseline"]).input_shape)
    run = bench_artifacts(tiny_artifacts, data, iters=4, warmup=1, threads=2, profile_topk=3, seed=5)
    assert run.tvm == ["baseline", "fastscatter"] and run.peers == ["onnxruntime"]
    assert {name: s.iters for name, s in run.stats.items()} == {"baseline": 4, "fastscatter": 4, "onnxruntime": 4}
    assert max(run.max_abs_diff.values()) < 1e-2 and set(run.profile) == {"baseline", "fastscatter"}
    metrics = latency_metrics(run)
    for key in ("speedup", "baseline_vs_onnxruntime", "fastscatter_vs_onnxruntime"):
        assert metrics[f"{key}_ci_low"] <= metrics[f"{key}_median"] <= metrics[f"{key}_ci_high"]
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
    assert ratio.ci_low <= ratio.median <= ratio.ci_high


def test_old_metrics_files_still_print():
    old = {"baseline_ms": 27.5, "baseline_p90_ms": 28.0, "baseline_iters": 50, "fastscatter_ms": 27.2,
           "fastscatter_p90_ms": 27.9, "fastscatter_iters": 50, "speedup": 1.011, "max_abs_diff_vs_onnxruntime": 1e-4}
    assert "speedup 1.01x  (ratio of means)" in summary_table(old)
