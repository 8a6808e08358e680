"""Peers on the same ONNX and input as TVM: ONNX Runtime, OpenVINO, and the ones that cannot run here."""

from __future__ import annotations

import numpy as np
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.evaluate.bench import max_abs_diff
from yolov3_tvm_opt.evaluate.images import random_input
from yolov3_tvm_opt.evaluate.peers import REFERENCE, PeerInput, prepare_peers
from yolov3_tvm_opt.models.onnx_export import export_noscatter
from yolov3_tvm_opt.models.onnx_info import read_input_spec


@pytest.fixture(scope="module")
def spec(tiny_onnx) -> PeerInput:
    info = read_input_spec(tiny_onnx)
    return PeerInput(tiny_onnx, info.name, random_input(info.shape, "float32", seed=5, input_scale=1 / 255), threads=2)


def test_onnxruntime_runs_and_reports_its_outputs(spec):
    ready, skipped = prepare_peers([REFERENCE], spec)
    peer = ready[REFERENCE]
    assert skipped == {} and peer.name == REFERENCE
    assert peer.outputs[0].shape[0] == 1 and np.isfinite(peer.outputs[0]).all()
    np.testing.assert_array_equal(peer.run_once()[0], peer.outputs[0])


def test_noscatter_peer_is_skipped_without_its_onnx_and_runs_with_one(spec, tmp_path):
    ready, skipped = prepare_peers(["onnxruntime_noscatter"], spec)
    assert ready == {} and "--onnx_noscatter" in skipped["onnxruntime_noscatter"]
    noscatter = tmp_path / "noscatter.onnx"
    assert export_noscatter(spec.onnx, noscatter).rewritten  # a different graph, so equal bits prove something
    with_path = PeerInput(spec.onnx, spec.input_name, spec.data, spec.threads, onnx_noscatter=noscatter)
    ready, _ = prepare_peers([REFERENCE, "onnxruntime_noscatter"], with_path)
    # the export is exact, so the peer on it gives ONNX Runtime's bits on the original
    for ours, reference in zip(ready["onnxruntime_noscatter"].outputs, ready[REFERENCE].outputs, strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_unknown_peer_is_a_user_error_naming_the_choices(spec):
    with pytest.raises(UserError, match="openvino_f32"):
        prepare_peers(["tensorrt"], spec)


def test_openvino_f32_agrees_with_onnxruntime_and_its_default_runs(spec):
    pytest.importorskip("openvino")
    ready, skipped = prepare_peers([REFERENCE, "openvino_f32", "openvino"], spec)
    assert skipped == {} and list(ready) == [REFERENCE, "openvino_f32", "openvino"]
    reference = ready[REFERENCE].outputs
    assert max_abs_diff(ready["openvino_f32"].outputs, reference) < 1e-2
    default = ready["openvino"].outputs  # bf16 where the CPU has it: close, not exact
    assert default[0].shape == reference[0].shape and np.isfinite(default[0]).all()
    ready["openvino"].run_once()

