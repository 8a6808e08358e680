"""The peers' own int8 on the real yolov3-tiny (96 px): ONNX Runtime's QDQ and OpenVINO's NNCF, on our calibration photos."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.evaluate.calibrate import calibration_inputs, calibration_photos
from yolov3_tvm_opt.evaluate.peer_int8 import decode_nodes, not_quantized, quantize_peers
from yolov3_tvm_opt.evaluate.peers import INT8_MANIFEST, REFERENCE, PeerInput, int8_peers, prepare_peers
from yolov3_tvm_opt.models.onnx_export import export_noscatter
from yolov3_tvm_opt.models.onnx_info import read_input_spec
from yolov3_tvm_opt.models.sources import build_model

SCALE = 1 / 255


@pytest.fixture(scope="module")
def photo_dir(photos) -> Path:
    return next(iter(photos.values())).parent


@pytest.fixture(scope="module")
def quantized(tiny_onnx, photo_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("peers") / "peers_int8"
    quantize_peers(tiny_onnx, photo_dir, out, None, SCALE, True)
    return out


@pytest.fixture(scope="module")
def inputs(tiny_onnx, photo_dir) -> list[np.ndarray]:
    """What both quantizers were calibrated on: the photos as calibrate preprocesses them."""
    return list(calibration_inputs(calibration_photos(photo_dir), read_input_spec(tiny_onnx), SCALE, True))


def _fp32(tiny_onnx, inputs) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    return [session.run(None, {session.get_inputs()[0].name: x})[0] for x in inputs]


def _assert_close_to_fp32(int8: list[np.ndarray], fp32: list[np.ndarray]) -> None:
    """Each photo's int8 outputs are far closer to its own fp32 outputs than fp32's of the next photo are.

    The bound is the model's own scale of difference: the mean |change| of scores and of boxes
    (columns 4: and :4) from one photo to another, in fp32. A quantization that lost the
    photo's content (wrong scale, clipped activations, a miscalibrated layer) lands at that
    distance or beyond; the u8 steps of min/max ranges through 13 convs measure at most 0.29 of it
    (ONNX Runtime) and 0.22 (NNCF) on yolov3-tiny at 96 px.
    """
    for i, (ours, reference) in enumerate(zip(int8, fp32, strict=True)):
        other = fp32[(i + 1) % len(fp32)]
        for columns in (slice(4, None), slice(0, 4)):
            error = np.abs(ours[..., columns] - reference[..., columns]).mean()
            between_photos = np.abs(other[..., columns] - reference[..., columns]).mean()
            assert error < 0.5 * between_photos, (i, columns, error, between_photos)


@pytest.mark.parametrize("source", ["yolov3-tiny", "yolov3-tiny-torch"])
def test_the_decode_is_everything_after_the_heads_and_nothing_before(source, tmp_path):
    """What ONNX Runtime's quantizer must leave float: closed downstream, and no node of it leads to a conv."""
    build_model(source, 96, tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx").graph
    decode = set(decode_nodes(graph))
    produced_by_decode = {out for node in graph.node if node.name in decode for out in node.output}
    for node in graph.node:
        if set(node.input) & produced_by_decode:
            assert node.name in decode and node.op_type != "Conv", node.name
    heads = {node.output[0] for node in graph.node if node.op_type == "Conv" and node.name not in decode}
    assert {"Sigmoid", "Concat"} <= {node.op_type for node in graph.node if node.name in decode}
    assert any(set(node.input) & heads for node in graph.node if node.name in decode)  # it starts at the heads


def test_onnxruntime_int8_is_qdq_keeps_the_decode_float_and_stays_close(quantized, tiny_onnx, inputs):
    manifest = json.loads((quantized / INT8_MANIFEST).read_text())
    assert manifest["precision"] == "int8" and manifest["skipped"] == {} and len(manifest["photos"]) == len(inputs)
    model = onnx.load(quantized / manifest["systems"]["onnxruntime_int8"])
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["Conv"] > 0  # every conv's weights at least
    weights = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert weights and all(len(w.dims) in (1, 4) for w in weights)
    # the decode after the heads computes in float: no output of its nodes is quantized
    quantized_inputs = {node.input[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    decode = [node for node in model.graph.node if node.name in set(manifest["onnxruntime_int8_float_nodes"])]
    assert {"Sigmoid", "Exp", "Concat"} <= {node.op_type for node in decode}
    assert not any(set(node.output) & quantized_inputs for node in decode)
    import onnxruntime as ort

    session = ort.InferenceSession(str(quantized / manifest["systems"]["onnxruntime_int8"]), providers=["CPUExecutionProvider"])
    _assert_close_to_fp32([session.run(None, {session.get_inputs()[0].name: x})[0] for x in inputs], _fp32(tiny_onnx, inputs))


def test_openvino_int8_runs_int8_convolutions_and_stays_close(quantized, tiny_onnx, inputs):
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(quantized / "openvino_int8.xml"), "CPU", {"INFERENCE_NUM_THREADS": 2})
    precisions = Counter(
        (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str)) for op in compiled.get_runtime_model().get_ordered_ops()
    )
    assert precisions[("Convolution", "u8")] + precisions[("Convolution", "i8")] > 0, precisions
    _assert_close_to_fp32([compiled(x)[0] for x in inputs], _fp32(tiny_onnx, inputs))


def test_a_bench_times_both_int8_peers_from_the_directory(quantized, tiny_onnx, inputs):
    spec = PeerInput(tiny_onnx, read_input_spec(tiny_onnx).name, inputs[0], threads=2, int8_dir=quantized)
    assert int8_peers(quantized) == ["onnxruntime_int8", "openvino_int8"]
    ready, skipped = prepare_peers([REFERENCE, *int8_peers(quantized)], spec)
    assert skipped == {} and list(ready) == [REFERENCE, "onnxruntime_int8", "openvino_int8"]
    ready["openvino_int8"].run_once()


def test_without_nncf_the_openvino_peer_is_skipped_with_one_line(tiny_onnx, photo_dir, inputs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # what `import nncf` does where it is not installed: ImportError
    manifest = quantize_peers(tiny_onnx, photo_dir, tmp_path / "q", None, SCALE, True)
    assert list(manifest["systems"]) == ["onnxruntime_int8"]
    spec = PeerInput(tiny_onnx, read_input_spec(tiny_onnx).name, inputs[0], threads=2, int8_dir=tmp_path / "q")
    ready, skipped = prepare_peers([REFERENCE, *int8_peers(tmp_path / "q")], spec)
    assert list(ready) == [REFERENCE, "onnxruntime_int8"]
    assert skipped["openvino_int8"].startswith("nncf is not installed") and "\n" not in skipped["openvino_int8"]


def test_other_precisions_ask_for_no_int8_peer_and_a_stale_directory_is_refused(quantized, tiny_onnx, inputs, tmp_path):
    not_quantized(tmp_path / "fp32", "fp32")
    assert int8_peers(tmp_path / "fp32") == []
    spec = PeerInput(tiny_onnx, read_input_spec(tiny_onnx).name, inputs[0], threads=2, int8_dir=tmp_path / "fp32")
    assert "target.precision is int8" in prepare_peers(["onnxruntime_int8"], spec)[1]["onnxruntime_int8"]
    assert "--peers_int8" in prepare_peers(["onnxruntime_int8"], PeerInput(tiny_onnx, spec.input_name, spec.data, 2))[1]["onnxruntime_int8"]
    other = tmp_path / "noscatter.onnx"
    export_noscatter(tiny_onnx, other)  # the same network, another file: its int8 must come from itself
    stale = PeerInput(other, spec.input_name, spec.data, 2, int8_dir=quantized)
    with pytest.raises(UserError, match="quantized from another ONNX"):
        prepare_peers(["onnxruntime_int8"], stale)


def test_a_torch_export_below_opset_13_is_quantized_into_a_model_onnx_runtime_loads(photo_dir, tmp_path):
    """torch writes opset 12 by default; per-channel QDQ needs DequantizeLinear's axis (opset 13), so the model moves up first."""
    build_model("yolov3-tiny-torch", 96, tmp_path / "m.onnx")
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version < 13
    quantize_peers(tmp_path / "m.onnx", photo_dir, tmp_path / "peers", None, SCALE, True)
    manifest = json.loads((tmp_path / "peers" / INT8_MANIFEST).read_text())
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "peers" / manifest["systems"]["onnxruntime_int8"]), providers=["CPUExecutionProvider"])
    (x,) = list(calibration_inputs(calibration_photos(photo_dir), read_input_spec(tmp_path / "m.onnx"), SCALE, True))[:1]
    assert np.isfinite(session.run(None, {session.get_inputs()[0].name: x})[0]).all()
