from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.models import darknet, darknet_cfg

TINY_HEAD_CONVS = ("conv_15", "conv_22")  # Darknet layer indices of yolov3-tiny's two head convs
TINY_ANCHORS = {"conv_15": [(81, 82), (135, 169), (344, 319)], "conv_22": [(10, 14), (23, 27), (37, 58)]}


def _run(model: onnx.ModelProto, x: np.ndarray, extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Run in ONNX Runtime, exposing intermediate tensors `extra` as additional outputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for name in extra:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})


def _image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, size, size), dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_cfg_weights(tiny_files) -> tuple[str, bytes]:
    return tiny_files.cfg.read_text(), tiny_files.weights.read_bytes()


@pytest.fixture(scope="module")
def yolov3_weights() -> bytes:
    """Synthetic YOLOv3's seed-0 weights, what ``darknet_to_onnx(cfg, None, size)`` draws, for every size.

    Their calibration is a numpy forward of Darknet-53 at 256 px; computed once, not once per size.
    """
    return darknet_cfg.synthetic_weights(darknet_cfg.yolov3_cfg(), seed=0)


def test_parse_cfg_keeps_sections_and_drops_comments():
    sections = darknet_cfg.parse_cfg("[net]\n# c\nwidth=416 ; w\n\n[convolutional]\nfilters = 16\n[yolo]\nmask=0,1\n")
    assert sections == [{"type": "net", "width": "416"}, {"type": "convolutional", "filters": "16"},
                        {"type": "yolo", "mask": "0,1"}]
    with pytest.raises(UserError, match="key=value"):
        darknet_cfg.parse_cfg("[net]\nwidth 416\n")
    with pytest.raises(UserError, match=r"\[net\]"):
        darknet_cfg.parse_cfg("[convolutional]\nfilters=16\n")


@pytest.mark.skipif(not hasattr(cv2.dnn, "readNetFromDarknet"),
                    reason="OpenCV 5 removed the Darknet importer; install opencv-python-headless<5")
def test_tiny_matches_opencv_darknet_reader(tiny_files, tiny_cfg_weights):
    """OpenCV's own Darknet reader is an independent implementation of the same network."""
    size = 160
    x = _image(size)
    output, *heads = _run(darknet.darknet_to_onnx(*tiny_cfg_weights, size), x, TINY_HEAD_CONVS)

    net = cv2.dnn.readNetFromDarknet(str(tiny_files.cfg), str(tiny_files.weights))
    net.setInput(x)
    yolo_layers = list(net.getUnconnectedOutLayersNames())
    ref = net.forward(list(TINY_HEAD_CONVS) + yolo_layers)
    for ours, theirs in zip(heads, ref[:2]):
        np.testing.assert_allclose(ours, theirs, atol=1e-3)

    # OpenCV's yolo rows run (y, x, anchor) with x, y, w, h divided by the input size; ours (anchor, y, x) in pixels.
    rows = np.concatenate([r.reshape(h.shape[2], h.shape[3], 3, 85).transpose(2, 0, 1, 3).reshape(-1, 85)
                           for r, h in zip(ref[2:], heads)])
    np.testing.assert_allclose(output[0, :, 4], rows[:, 4], atol=1e-3)
    np.testing.assert_allclose(output[0, :, :4] / size, rows[:, :4], rtol=1e-3, atol=1e-4)


def test_tiny_head_is_darknet_decode_via_scatternd(tiny_cfg_weights):
    """Decode the raw head convs by hand and check the in-place ScatterND graph agrees."""
    size = 128
    model = darknet.darknet_to_onnx(*tiny_cfg_weights, size)
    output, *heads = _run(model, _image(size, seed=1), TINY_HEAD_CONVS)
    expected = []
    for name, raw in zip(TINY_HEAD_CONVS, heads):
        side = raw.shape[-1]
        p = raw.reshape(3, 85, side, side).transpose(0, 2, 3, 1)
        y = 1 / (1 + np.exp(-p))
        jj, ii = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        y[..., 0] = (y[..., 0] + ii) * size / side
        y[..., 1] = (y[..., 1] + jj) * size / side
        y[..., 2:4] = np.exp(p[..., 2:4]) * np.array(TINY_ANCHORS[name])[:, None, None, :]
        expected.append(y.reshape(-1, 85))
    np.testing.assert_allclose(output[0], np.concatenate(expected), rtol=1e-4, atol=1e-4)

    scatters = [n for n in model.graph.node if n.op_type == "ScatterND"]
    assert len(scatters) == 4
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    index = inits[scatters[1].input[1]]  # the stride-32 head's w/h write
    assert index.dtype == np.int64 and index.shape == (1, 3, 4, 4, 2, 5)
    assert index[0, 2, 3, 1].tolist() == [[0, 2, 3, 1, 2], [0, 2, 3, 1, 3]]


def test_metadata_names_and_weights_note(tiny_cfg_weights):
    model = darknet.darknet_to_onnx(*tiny_cfg_weights, 64, names=[f"n{i}" for i in range(80)], source="test")
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["names"])[:2] == ["n0", "n1"]
    assert meta["stride"] == "32" and meta["source"] == "test" and meta["weights"] == "darknet"
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["output"]


def test_bad_sizes_and_weights_are_user_errors(tiny_cfg_weights):
    cfg, weights = tiny_cfg_weights
    with pytest.raises(UserError, match="multiple of the network stride 32"):
        darknet.darknet_to_onnx(cfg, weights, 100)
    with pytest.raises(UserError, match="floats but the cfg needs"):
        darknet.darknet_to_onnx(cfg, weights[:-4], 64)
    with pytest.raises(UserError, match="floats but the cfg needs"):
        darknet.darknet_to_onnx(cfg, weights + bytes(8), 64)
    with pytest.raises(UserError, match="class names"):
        darknet.darknet_to_onnx(cfg, weights, 64, names=["a", "b"])
    with pytest.raises(UserError, match="not supported"):
        darknet.darknet_to_onnx(cfg.replace("activation=leaky", "activation=mish", 1), weights, 64)


def test_synthetic_weights_are_seeded(tiny_cfg_weights):
    cfg, real = tiny_cfg_weights
    first = darknet_cfg.synthetic_weights(cfg, seed=3)
    assert first == darknet_cfg.synthetic_weights(cfg, seed=3)
    assert first != darknet_cfg.synthetic_weights(cfg, seed=4)
    assert len(first) == len(real)  # a valid .weights file for this cfg (same header layout)


def test_yolov3_cfg_is_the_darknet_layout():
    layers = darknet_cfg.build_layers(darknet_cfg.parse_cfg(darknet_cfg.yolov3_cfg()))
    assert len(layers) == 107
    routes = {layer.index: layer.inputs for layer in layers if layer.kind == "route"}
    assert routes == {83: (79,), 86: (85, 61), 95: (91,), 98: (97, 36)}
    assert sum(layer.kind == "shortcut" for layer in layers) == 23
    assert [(layer.index, layer.stride, layer.anchors[0]) for layer in layers if layer.kind == "yolo"] == [
        (82, 32, (116, 90)), (94, 16, (30, 61)), (106, 8, (10, 13))]


@pytest.mark.slow
def test_yolov3_at_640_has_25200_rows_and_6_scatternd(yolov3_weights):
    model = darknet.darknet_to_onnx(darknet_cfg.yolov3_cfg(), yolov3_weights, 640)
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 25200, 85]
    assert sum(n.op_type == "ScatterND" for n in model.graph.node) == 6
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.name.startswith("conv_"))
    assert params == 61_949_149 - 26_304  # YOLOv3's 62.0 M, less the batch-norm scales folded into the convs


@pytest.mark.slow  # a YOLOv3 forward at 128 px in ONNX Runtime, after the weights' 256 px calibration
def test_yolov3_synthetic_activations_are_realistic(yolov3_weights):
    size = 128
    model = darknet.darknet_to_onnx(darknet_cfg.yolov3_cfg(), yolov3_weights, size)
    out = _run(model, _image(size, seed=2))[0][0]
    assert out.shape == (3 * (4 * 4 + 8 * 8 + 16 * 16), 85)
    assert np.isfinite(out).all()
    assert 1 < np.median(out[:, 2]) < 4 * size and 1 < np.median(out[:, 3]) < 4 * size
    assert 0 <= out[:, 0].min() and out[:, 0].max() <= size  # centres stay inside the image
    objectness = out[:, 4]
    assert 0.05 < objectness.std() and 0.1 < np.median(objectness) < 0.9


@pytest.mark.slow  # a YOLOv3 forward at 320 px in ONNX Runtime, after the weights' 256 px calibration
def test_yolov3_synthetic_boxes_stay_finite_on_a_photo(yolov3_weights, photos):
    """Calibrated on noise, the weights must still give image-sized boxes on a real photo."""
    from yolov3_tvm_opt.evaluate.images import model_input

    size = 320
    model = darknet.darknet_to_onnx(darknet_cfg.yolov3_cfg(), yolov3_weights, size)
    x, _ = model_input((1, 3, size, size), "float32", photos["motorcycle_left"], 1 / 255, letterbox=True)
    out = _run(model, x)[0][0]
    assert np.isfinite(out).all()
    assert out[:, 2:4].max() < 8 * size and 1 < np.median(out[:, 2:4]) < size


def test_synthetic_weights_regenerate_from_shipped_calibration_alone():
    """With the calibration given, the weights come from draws and elementwise work: same bytes, no forward."""
    cfg = darknet_cfg.yolov3_cfg(classes=2)
    calibration = darknet_cfg.synthetic_calibration(cfg, seed=3)
    assert darknet_cfg.synthetic_weights(cfg, seed=3, calibration=calibration) == darknet_cfg.synthetic_weights(cfg, seed=3)
    with pytest.raises(UserError, match="calibration holds"):
        darknet_cfg.synthetic_weights(cfg, seed=3, calibration=calibration[:-1])
