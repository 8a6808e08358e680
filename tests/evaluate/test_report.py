"""The flat metrics and the table: each system's difference from ONNX Runtime, absolute and relative."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.deploy.rounds import LatencyStats
from yolov3_tvm_opt.evaluate.bench import BenchRun
from yolov3_tvm_opt.evaluate.report import latency_metrics, summary_table


def _run(reference: np.ndarray, outputs: dict[str, np.ndarray], tvm: list[str]) -> BenchRun:
    """A bench of hand-made outputs: the report reads only numbers, so none of them needs to run."""
    outputs = {"onnxruntime": reference, **outputs}
    return BenchRun(
        device="cpu", threads=2, seed=0, tvm=tvm,
        stats={name: LatencyStats.from_samples([1.0, 1.1]) for name in outputs},
        max_abs_diff={name: float(np.max(np.abs(out - reference))) for name, out in outputs.items() if name != "onnxruntime"},
        outputs={name: [out] for name, out in outputs.items()},
    )


def test_each_artifact_gets_its_own_absolute_and_relative_difference():
    # raw YOLO outputs on random [0, 255] pixels reach ~1e18; float32 rounding there is ~1e11
    reference = np.array([[1e18, -2e18, 3.0]])
    run = _run(reference, {"fp32": reference + [[1e11, 0, 0]], "bf16": reference + [[0, 4e15, 0]],
                           "openvino_f32": reference + [[0, 0, 0.5]]}, tvm=["fp32", "bf16"])
    metrics = latency_metrics(run)
    assert metrics["max_abs_diff_fp32_vs_onnxruntime"] == 1e11
    assert metrics["max_rel_diff_fp32_vs_onnxruntime"] == pytest.approx(1e11 / 2e18)
    assert metrics["max_rel_diff_bf16_vs_onnxruntime"] == pytest.approx(4e15 / 2e18)
    # the worst TVM build, under the key older files and the pipeline's checks read
    assert metrics["max_abs_diff_vs_onnxruntime"] == 4e15
    assert metrics["max_rel_diff_vs_onnxruntime"] == pytest.approx(2e-3)
    assert metrics["max_abs_diff_openvino_f32_vs_onnxruntime"] == 0.5
    lines = [line for line in summary_table(metrics).splitlines() if line.startswith("max |")]
    assert lines == [
        "max |fp32 - ORT|: 1e+11 (5e-08 of max |ORT|)",
        "max |bf16 - ORT|: 4e+15 (0.002 of max |ORT|)",
        "max |openvino_f32 - ORT|: 0.5 (2.5e-19 of max |ORT|)",
    ]
    assert not any(key.startswith("max_rel_diff") for key in summary_table(metrics).split())


def test_an_all_zero_reference_gives_a_relative_difference_of_zero_or_one():
    zero = np.zeros((1, 3))
    metrics = latency_metrics(_run(zero, {"same": zero, "off": zero + 1}, tvm=["same", "off"]))
    assert metrics["max_rel_diff_same_vs_onnxruntime"] == 0.0 and metrics["max_rel_diff_off_vs_onnxruntime"] == 1.0
