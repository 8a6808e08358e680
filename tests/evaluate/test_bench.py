"""TVM agrees with ONNX Runtime; baseline and fastscatter agree bit for bit; stats and profile."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.evaluate.bench import LatencyStats, measure, profile_ops, run_bench
from yolov3_tvm_opt.evaluate.images import random_input
from yolov3_tvm_opt.runtime import create_vm, load_artifact


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


def test_measure_statistics():
    stats = measure(lambda: None, iters=20, warmup=2)
    assert stats.iters == 20 and len(stats.samples_ms) == 20
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_measure_stops_at_max_seconds():
    import time

    stats = measure(lambda: time.sleep(0.02), iters=1000, warmup=0, max_seconds=0.1)
    assert 1 <= stats.iters < 20


def test_stats_from_samples():
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0])
    assert stats.mean_ms == 2.5 and stats.min_ms == 1.0 and stats.throughput_fps == 400.0


def test_profile_finds_scatter_only_in_the_baseline(tiny_artifacts):
    data = _input((1, 3, 96, 96))
    tables = {}
    for variant in ("baseline", "fastscatter"):
        loaded = create_vm(load_artifact(tiny_artifacts[variant]), "cpu", profile=True)
        tables[variant] = profile_ops(loaded, data, runs=2, topk=None)
    base_names = [row.name for row in tables["baseline"]]
    assert any("scatter_nd" in name for name in base_names)
    assert not any("scatter" in row.name for row in tables["fastscatter"])
    assert abs(sum(row.share for row in tables["baseline"]) - 1.0) < 1e-6
    assert all(row.calls >= 1 for row in tables["baseline"])
