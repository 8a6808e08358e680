"""The reduced-precision accuracy contract, on yolov3-tiny 416 with its real weights and the sample photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_bf16, needs_vnni

from yolov3_tvm_opt.compiler.fast_scatter import apply_fast_scatter
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.pipeline import build
from yolov3_tvm_opt.compiler.precision import mixed_precision_fp16
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import BenchOptions, TargetOptions
from yolov3_tvm_opt.evaluate.accuracy import compare_builds, compare_outputs
from yolov3_tvm_opt.evaluate.images import model_input
from yolov3_tvm_opt.runtime import create_vm, load_artifact

PIPELINE = BenchOptions()
WITH_DETECTIONS = ("coffee", "grace_hopper", "motorcycle_left")


def _photo_dir(photos: dict[str, Path]) -> Path:
    return next(iter(photos.values())).parent


def _output(artifact_dir: Path, photo: Path) -> tuple[np.ndarray, dict, tuple[int, int]]:
    artifact = load_artifact(artifact_dir)
    data, image = model_input(artifact.input_shape, "float32", photo, PIPELINE.input_scale, letterbox=True)
    return create_vm(artifact).run(data)[0], artifact.meta, (image.height, image.width)


def test_a_build_holds_the_contract_against_itself(tiny416_artifact, photos):
    result = compare_builds(tiny416_artifact, tiny416_artifact, _photo_dir(photos), PIPELINE.input_scale, True)
    assert result.passed and result.max_box_diff_px == 0.0 and result.max_score_diff == 0.0
    boxes = {p.photo.rsplit(".", 1)[0]: p.reference_boxes for p in result.photos}
    assert all(boxes[name] > 0 for name in WITH_DETECTIONS), boxes
    total = 2 * sum(boxes.values())  # each build's boxes, each matched in the other
    assert result.agreement() == {"iou_0.5": [total, total], "iou_0.9": [total, total]}
    assert json.loads(json.dumps(result.to_json()))["passed"] is True


@pytest.mark.parametrize("shift, holds", [(0.02, True), (0.3, False)])
def test_boxes_moved_past_the_iou_bar_break_the_contract(tiny416_artifact, photos, shift, holds):
    output, meta, image_hw = _output(tiny416_artifact, photos["motorcycle_left"])
    moved = output.copy()
    moved[..., 0] += shift * moved[..., 2]  # every box slides right by a fraction of its width
    result = compare_outputs("motorcycle_left", output, moved, meta, image_hw, letterbox=True)
    assert (not result.unmatched) == holds
    assert {u.reported_by for u in result.unmatched} == (set() if holds else {"reference", "candidate"})
    # a box slid by 30% of its width still overlaps its twin by IoU 0.7 / 1.3: the same object, not the contract's 0.9
    assert result.box_ious and min(result.box_ious) >= (0.9 if holds else 0.5)
    assert result.max_box_diff_px == pytest.approx(float(np.max(shift * output[..., 2])), rel=1e-4)
    assert result.max_score_diff == 0.0


def test_a_lost_object_breaks_the_contract(tiny416_artifact, photos):
    output, meta, image_hw = _output(tiny416_artifact, photos["motorcycle_left"])
    dimmed = output.copy()
    dimmed[..., 4] *= 0.3  # objectness drops: the reference's boxes find no match scoring >= 0.25
    result = compare_outputs("motorcycle_left", output, dimmed, meta, image_hw, letterbox=True)
    assert result.unmatched and all(u.reported_by == "reference" for u in result.unmatched)


@pytest.mark.slow
@needs_bf16
def test_llvm_bf16_holds_the_contract_at_416(tiny416_artifact, tiny416_bf16_artifact, photos):
    result = compare_builds(tiny416_artifact, tiny416_bf16_artifact, _photo_dir(photos), PIPELINE.input_scale, True)
    print(result.summary())
    assert result.passed
    assert result.max_score_diff > 0.0  # the rounding is real: bf16 is not fp32 under another name


@pytest.mark.slow
@needs_vnni
def test_llvm_int8_holds_the_contract_at_416(tiny416_artifact, tiny416_int8_artifact, photos):
    """Calibrated on the sample photos, every conv in int8, the first and the heads included (meta.json says so)."""
    result = compare_builds(tiny416_artifact, tiny416_int8_artifact, _photo_dir(photos), PIPELINE.input_scale, True)
    print(result.summary())
    assert result.passed
    assert result.max_score_diff > 0.0  # int8 is not fp32 under another name
    fp32 = load_artifact(tiny416_int8_artifact).meta["int8"]["fp32_convs"]
    assert fp32 == {}


@pytest.mark.slow
def test_the_fp16_graph_holds_the_contract_on_cpu(tiny416_artifact, photos):
    """The cuda fp16 build's mixed-precision graph, built for llvm: its numerics without a GPU."""
    from yolov3_tvm_opt.core.tvm_loader import load_tvm

    tvm = load_tvm()
    meta = load_artifact(tiny416_artifact).meta
    mod, _, _ = import_onnx(Path(meta["onnx_path"]))
    mod, overrides, _ = apply_fast_scatter(mod)
    executable = build(mixed_precision_fp16(mod), make_target(TargetOptions(cpu_threads=2)), overrides)
    vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
    worst = []
    for name in WITH_DETECTIONS:
        reference, _, image_hw = _output(tiny416_artifact, photos[name])
        data, _ = model_input(meta["input_shape"], "float32", photos[name], PIPELINE.input_scale, letterbox=True)
        fp16 = vm["main"](tvm.runtime.tensor(data, tvm.cpu())).numpy()
        result = compare_outputs(name, reference, fp16, meta, image_hw, letterbox=True)
        print(name, result)
        assert not result.unmatched, result
        worst.append(result.max_score_diff)
    assert max(worst) > 0.0
