"""Calibration: each conv input's min/max over every photo, one line for a bad folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.core.calibration import load_calibration, weight_key
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import BenchOptions
from yolov3_tvm_opt.evaluate.calibrate import calibrate, not_calibrated
from yolov3_tvm_opt.evaluate.images import load_image, preprocess

PIPELINE = BenchOptions()
SIZE = 32


def chain_onnx(path, synthetic=False):
    """images -> conv a (3 -> 8) -> leaky -> conv b (8 -> 16) -> leaky -> conv c (16 -> 4) -> output; c is the head."""
    rng = np.random.default_rng(0)
    weights = {name: (rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in
               (("wa", (8, 3, 3, 3)), ("wb", (16, 8, 3, 3)), ("wc", (4, 16, 1, 1)))}
    nodes = [
        helper.make_node("Conv", ["images", "wa"], ["a"], pads=[1] * 4, name="conv_a"),
        helper.make_node("LeakyRelu", ["a"], ["la"], alpha=0.1),
        helper.make_node("Conv", ["la", "wb"], ["b"], pads=[1] * 4, name="conv_b"),
        helper.make_node("LeakyRelu", ["b"], ["lb"], alpha=0.1),
        helper.make_node("Conv", ["lb", "wc"], ["output"], name="conv_c"),
    ]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, SIZE, SIZE])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if synthetic:
        helper.set_model_props(model, {"weights": "synthetic (seed 0)"})
    onnx.save(model, str(path))
    return weights


def conv_same(x, weight):
    """float64 stride-1 'same' conv, NCHW x OIHW."""
    pad = weight.shape[2] // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((1, weight.shape[0], x.shape[2], x.shape[3]))
    for ky in range(weight.shape[2]):
        for kx in range(weight.shape[3]):
            patch = padded[:, :, ky : ky + x.shape[2], kx : kx + x.shape[3]]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, ky, kx].astype(np.float64))
    return out


def leaky(x):
    return np.where(x > 0, x, 0.1 * x)


@pytest.fixture
def photo_dir(photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("motorcycle_left", "chelsea"):
        shutil.copy(photos[name], folder / photos[name].name)
    return folder


def test_ranges_are_each_conv_inputs_min_and_max_over_every_photo(tmp_path, photo_dir):
    weights = chain_onnx(tmp_path / "m.onnx")
    result = calibrate(tmp_path / "m.onnx", photo_dir, tmp_path / "c.json", None, PIPELINE.input_scale, True)
    assert json.loads((tmp_path / "c.json").read_text()) == result
    assert result["photos"] == ["chelsea.png", "motorcycle_left.png"] and not result["synthetic_weights"]
    assert (result["input_scale"], result["letterbox"]) == (PIPELINE.input_scale, True)
    inputs = {"conv_a": [], "conv_b": [], "conv_c": []}
    for photo in sorted(photo_dir.iterdir()):
        x = preprocess(load_image(photo), (1, 3, SIZE, SIZE), PIPELINE.input_scale, letterbox=True)
        la = leaky(conv_same(x, weights["wa"]))
        inputs["conv_a"].append(x)
        inputs["conv_b"].append(la)
        inputs["conv_c"].append(leaky(conv_same(la, weights["wb"])))
    convs = result["convs"]
    for node, weight in zip(inputs, weights.values()):
        entry = convs[weight_key(weight)]
        assert entry["node"] == node
        values = np.concatenate([v.ravel() for v in inputs[node]])
        np.testing.assert_allclose([entry["low"], entry["high"]], [values.min(), values.max()], rtol=1e-4, atol=1e-5)
    loaded = load_calibration(tmp_path / "c.json")
    assert set(loaded.ranges) == {weight_key(w) for w in weights.values()}
    assert loaded.names == {weight_key(w): node for node, w in zip(inputs, weights.values())}


def test_synthetic_weights_are_said(tmp_path, photo_dir):
    chain_onnx(tmp_path / "m.onnx", synthetic=True)
    assert calibrate(tmp_path / "m.onnx", photo_dir, tmp_path / "c.json", None, PIPELINE.input_scale, True)["synthetic_weights"]


def test_an_empty_folder_or_one_with_other_files_is_one_line_and_writes_nothing(tmp_path, photo_dir):
    chain_onnx(tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no JPEG or PNG photos"):
        calibrate(tmp_path / "m.onnx", empty, tmp_path / "c.json", None, PIPELINE.input_scale, True)
    (photo_dir / "notes.txt").write_text("not a photo")
    with pytest.raises(UserError, match=r"holds files that are not JPEG or PNG photos \(notes.txt\)"):
        calibrate(tmp_path / "m.onnx", photo_dir, tmp_path / "c.json", None, PIPELINE.input_scale, True)
    assert not (tmp_path / "c.json").exists()


def test_a_build_that_needs_no_ranges_gets_a_file_that_only_changes_with_the_precision(tmp_path):
    not_calibrated(tmp_path / "a.json", "fp32")
    not_calibrated(tmp_path / "b.json", "fp32")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    with pytest.raises(UserError, match="holds no activation ranges"):
        load_calibration(tmp_path / "a.json")
