"""Darknet cfg + weights -> ONNX, with the YOLO head exported the way Ultralytics/torch exports look.

Why our own converter: the only pretrained weights we can reach are Darknet files (yolov3-tiny),
there are no reachable full YOLOv3 weights at all, and we want no torch dependency. The graph we
emit must still look like what users bring: the decode writes box centres and sizes back into the
sigmoid tensor *in place*, which torch's exporter turns into ScatterND nodes with a constant index
tensor listing every 5-D position. Those ScatterND nodes are what the fast scatter_nd pass targets,
so the head below reproduces them exactly:

    conv [1, A*(5+C), ny, nx] -> Reshape [1, A, 5+C, ny, nx] -> Transpose [1, A, ny, nx, 5+C] = p
    y  = Sigmoid(p)
    y1 = ScatterND(y,  idx[..., c in 0..1], (y[..., 0:2] + grid) * stride)
    y2 = ScatterND(y1, idx[..., c in 2..3], Exp(p[..., 2:4]) * anchor_grid)
    Reshape [1, A*ny*nx, 5+C]; Concat all heads (in cfg order) on axis 1 -> `output` [1, N, 5+C]

Rows are (cx, cy, w, h in input pixels, objectness, class probabilities), as Darknet decodes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.errors import UserError
from .darknet_cfg import (
    LEAKY_SLOPE,
    SYNTHETIC_NOTE,
    ConvWeights,
    Layer,
    build_layers,
    check_size,
    conv_param_names,
    grid_sizes,
    load_weights,
    parse_cfg,
    synthetic_weights,
    total_stride,
)
from .onnx_info import OUTPUT_NAME, SEED_PROP

OPSET = 17
IR_VERSION = 8  # the IR that opset 17 shipped with; newer IRs are refused by older runtimes
INPUT_NAME = "images"


class _Graph:
    """Collects nodes and constant initializers while the network is walked layer by layer."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output


def _emit_layer(g: _Graph, layer: Layer, names: list[str], w: ConvWeights | None) -> str:
    """Emit one non-head layer; conv outputs are named `conv_{i}` like OpenCV's Darknet importer."""
    i = layer.index
    first = names[layer.inputs[0]] if layer.inputs[0] >= 0 else INPUT_NAME
    if layer.kind == "convolutional":
        assert w is not None
        p0, p1 = layer.pads
        weight_name, bias_name = conv_param_names(layer)
        out = g.op("Conv", [first, g.const(weight_name, w.weight), g.const(bias_name, w.bias)],
                   f"conv_{i}", kernel_shape=[layer.size] * 2, strides=[layer.step] * 2, pads=[p0, p0, p1, p1])
        if layer.activation == "leaky":
            out = g.op("LeakyRelu", [out], f"leaky_{i}", alpha=LEAKY_SLOPE)
        return out
    if layer.kind == "maxpool":
        p0, p1 = layer.pads
        return g.op("MaxPool", [first], f"maxpool_{i}", kernel_shape=[layer.size] * 2,
                    strides=[layer.step] * 2, pads=[p0, p0, p1, p1])
    if layer.kind == "route":
        if len(layer.inputs) == 1:
            return first
        return g.op("Concat", [names[j] for j in layer.inputs], f"route_{i}", axis=1)
    if layer.kind == "upsample":
        scales = g.const(f"upsample_{i}.scales", np.array([1, 1, layer.size, layer.size], np.float32))
        return g.op("Resize", [first, "", scales], f"upsample_{i}", mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    assert layer.kind == "shortcut", layer.kind
    return g.op("Add", [first, names[layer.inputs[1]]], f"shortcut_{i}")


def _scatter_index(anchors: int, side: int, first_channel: int) -> np.ndarray:
    """Every 5-D position (0, a, j, i, c) for c in first_channel..+1, as torch's exporter spells it."""
    b, a, j, i, c = np.meshgrid([0], np.arange(anchors), np.arange(side), np.arange(side),
                                np.arange(first_channel, first_channel + 2), indexing="ij")
    return np.stack([b, a, j, i, c], axis=-1).astype(np.int64)


def _emit_head(g: _Graph, layer: Layer, conv: str, side: int) -> str:
    """The YOLO decode with two in-place ScatterND writes (see the module docstring)."""
    n, attrs, k = len(layer.anchors), 5 + layer.classes, f"yolo_{layer.index}"
    shape5 = g.const(f"{k}.shape5", np.array([1, n, attrs, side, side], np.int64))
    p = g.op("Transpose", [g.op("Reshape", [conv, shape5], f"{k}_reshape")], f"{k}_transpose", perm=[0, 1, 3, 4, 2])
    y = g.op("Sigmoid", [p], f"{k}_sigmoid")

    def channels(src: str, lo: int, name: str) -> str:
        return g.op("Slice", [src, g.const(f"{k}.{name}.starts", np.array([lo], np.int64)),
                              g.const(f"{k}.{name}.ends", np.array([lo + 2], np.int64)),
                              g.const(f"{k}.{name}.axes", np.array([4], np.int64))], f"{k}_{name}")

    jj, ii = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    s = layer.scale_x_y
    grid = np.stack([ii, jj], -1)[None, None].astype(np.float32) - np.float32(0.5 * (s - 1))
    xy = channels(y, 0, "xy_sigmoid")
    if s != 1:
        xy = g.op("Mul", [xy, g.const(f"{k}.scale_x_y", np.array(s, np.float32))], f"{k}_xy_scaled")
    xy = g.op("Add", [xy, g.const(f"{k}.grid", grid)], f"{k}_xy_cells")
    xy = g.op("Mul", [xy, g.const(f"{k}.stride", np.array(layer.stride, np.float32))], f"{k}_xy")
    y = g.op("ScatterND", [y, g.const(f"{k}.xy_index", _scatter_index(n, side, 0)), xy], f"{k}_scatter_xy")

    anchor_grid = np.array(layer.anchors, np.float32).reshape(1, n, 1, 1, 2)
    wh = g.op("Exp", [channels(p, 2, "wh_raw")], f"{k}_wh_exp")
    wh = g.op("Mul", [wh, g.const(f"{k}.anchor_grid", anchor_grid)], f"{k}_wh")
    y = g.op("ScatterND", [y, g.const(f"{k}.wh_index", _scatter_index(n, side, 2)), wh], f"{k}_scatter_wh")
    rows = g.const(f"{k}.rows", np.array([1, -1, attrs], np.int64))
    return g.op("Reshape", [y, rows], f"{k}_rows")


def darknet_to_onnx(
    cfg_text: str,
    weights: bytes | None,
    size: int,
    *,
    names: Sequence[str] | None = None,
    source: str = "darknet",
    seed: int = 0,
) -> onnx.ModelProto:
    """Convert a Darknet YOLO cfg + .weights (None: `synthetic_weights(seed)`) to a static ONNX model.

    Input `images` is float32 [1, 3, size, size], already scaled by the caller (1/255 for Darknet
    weights); [net] width/height are ignored. Output `output` is [1, N, 5 + classes]. Metadata:
    `names` (JSON list), `stride`, `source`, and `weights` ("darknet", or a note that they are
    synthetic and for latency only); synthetic weights' seed also as `weights_seed` (``SEED_PROP``).
    """
    layers = build_layers(parse_cfg(cfg_text))
    check_size(layers, size)
    sides = grid_sizes(layers, size)
    classes = next(layer.classes for layer in layers if layer.kind == "yolo")
    if names is None:
        names = [f"class_{i}" for i in range(classes)]
    if len(names) != classes:
        raise UserError(f"got {len(names)} class names for a {classes}-class cfg; pass the names file of this model")
    convs = iter(load_weights(layers, synthetic_weights(cfg_text, seed) if weights is None else weights))

    g = _Graph()
    outs: list[str] = []
    heads: list[str] = []
    for layer in layers:
        if layer.kind == "yolo":
            heads.append(_emit_head(g, layer, outs[layer.inputs[0]], sides[layer.index]))
            outs.append(outs[layer.inputs[0]])
        else:
            w = next(convs) if layer.kind == "convolutional" else None
            outs.append(_emit_layer(g, layer, outs, w))
    g.op("Concat", heads, OUTPUT_NAME, axis=1)

    rows = sum(len(h.anchors) * sides[h.index] ** 2 for h in layers if h.kind == "yolo")
    graph = helper.make_graph(
        g.nodes, "darknet_yolo",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, rows, 5 + classes])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="yolov3_tvm_opt.darknet", ir_version=IR_VERSION)
    helper.set_model_props(model, {
        "names": json.dumps(list(names)),
        "stride": str(total_stride(layers)),
        "source": source,
        "weights": "darknet" if weights is not None else f"{SYNTHETIC_NOTE} (seed {seed})",
        **({} if weights is not None else {SEED_PROP: str(seed)}),
    })
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
