"""What torch's TorchScript exporter writes for an ultralytics YOLOv3 (v9 era), written without torch.

Users bring models exported by ultralytics' ``export.py``: ``torch.onnx.export(..., opset 12)``
with the TorchScript exporter (``dynamo=False`` in torch 2.x). Such a file differs from our
Darknet conversion (``models.darknet``) in ways that matter to every reader of it:

- every conv is followed by SiLU, exported as ``Mul(x, Sigmoid(x))``;
- the Detect head decodes in place (``y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + grid) * stride``,
  ``y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * anchor_grid``): two ScatterND per head, whose index
  tensors torch builds through Constant -> ConstantOfShape / Mul / Equal / Where / Expand /
  Unsqueeze / Concat chains and whose updates it reshapes to a shape computed from Shape nodes;
- the three raw head tensors [1, 3, ny, nx, 85] are graph outputs after ``output``;
- the tiny model's ``ZeroPad2d`` is a Pad whose pads torch computes through a chain.

The node patterns below are those torch 2.13 writes for the ultralytics modules (``Conv``,
``Bottleneck``, ``nn.Upsample``, ``Concat``, ``Detect``), with torch's node names, from the
layer lists of ultralytics' ``yolov3.yaml`` (Darknet-53 backbone; Detect is ``model.28``) and
``yolov3-tiny.yaml`` (``model.20``). Batch norm is fused into the convs, as ``export.py`` does.
Weights are seeded draws: right for latency and for exactness checks, meaningless for detections.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.errors import UserError
from .darknet import INPUT_NAME
from .darknet_cfg import SYNTHETIC_NOTE
from .onnx_info import OUTPUT_NAME

OPSET = 12  # what ultralytics' export.py of that era passes
IR_VERSION = 7  # what torch writes with opset 12
STRIDE = 32
INT64_MAX = np.iinfo(np.int64).max

# (anchors in pixels per head, strides), in Detect's order: finest grid first
FULL_ANCHORS = (((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)), ((116, 90), (156, 198), (373, 326)))
TINY_ANCHORS = (((10, 14), (23, 27), (37, 58)), ((81, 82), (135, 169), (344, 319)))


class _TorchGraph:
    """Nodes named as torch names them (``/model.3/conv/Conv``), Constant nodes, and seeded weights."""

    def __init__(self, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self._names: Counter[str] = Counter()

    def op(self, op_type: str, inputs: Sequence[str], scope: str, **attrs: object) -> str:
        base = f"{scope}/{op_type}"
        k = self._names[base]
        self._names[base] += 1
        name = base if k == 0 else f"{base}_{k}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [f"{name}_output_0"], name=name, **attrs))
        return f"{name}_output_0"

    def const(self, value: object, scope: str, dtype: type = np.int64) -> str:
        return self.op("Constant", [], scope, value=numpy_helper.from_array(np.asarray(value, dtype)))

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, c1: int, c2: int, k: int, s: int, scope: str, act: bool = True, gain: float = 1.0) -> str:
        """ultralytics ``Conv`` with its batch norm fused: Conv + SiLU (``x * sigmoid(x)``)."""
        w = self.rng.standard_normal((c2, c1, k, k), dtype=np.float32) * np.float32(gain / np.sqrt(c1 * k * k))
        b = self.rng.standard_normal(c2, dtype=np.float32) * np.float32(0.1)
        prefix = scope.strip("/").replace("/", ".")
        conv_scope = f"{scope}/conv" if act else scope
        y = self.op("Conv", [x, self.weight(f"{prefix}.conv.weight" if act else f"{prefix}.weight", w),
                             self.weight(f"{prefix}.conv.bias" if act else f"{prefix}.bias", b)], conv_scope,
                    dilations=[1, 1], group=1, kernel_shape=[k, k], pads=[k // 2] * 4, strides=[s, s])
        if not act:
            return y
        return self.op("Mul", [y, self.op("Sigmoid", [y], f"{scope}/act")], f"{scope}/act")

    def bottleneck(self, x: str, c1: int, c2: int, shortcut: bool, scope: str) -> str:
        """ultralytics ``Bottleneck`` (e=0.5): 1x1 to c2/2, 3x3 back, + x when shapes allow."""
        y = self.conv(self.conv(x, c1, c2 // 2, 1, 1, f"{scope}/cv1"), c2 // 2, c2, 3, 1, f"{scope}/cv2", gain=0.5)
        return self.op("Add", [x, y], scope) if shortcut and c1 == c2 else y

    def zero_pad(self, x: str, pads: Sequence[int], scope: str) -> str:
        """``nn.ZeroPad2d((left, right, top, bottom))``: torch turns the list into ONNX pads through a chain."""
        zeros = self.op("ConstantOfShape", [self.const([4], scope)], scope,
                        value=numpy_helper.from_array(np.zeros(1, np.int64)))
        pairs = self.op("Reshape", [self.op("Concat", [self.const(list(pads), scope), zeros], scope, axis=0),
                                    self.const([-1, 2], scope)], scope)
        flipped = self.op("Slice", [pairs, self.const([-1], scope), self.const([-INT64_MAX], scope),
                                    self.const([0], scope), self.const([-1], scope)], scope)
        flat = self.op("Reshape", [self.op("Transpose", [flipped], scope, perm=[1, 0]), self.const([-1], scope)], scope)
        onnx_pads = self.op("Cast", [flat], scope, to=TensorProto.INT64)
        return self.op("Pad", [x, onnx_pads, self.const(0.0, scope, np.float32)], scope, mode="constant")

    def upsample(self, x: str, scope: str) -> str:
        roi = self.const(np.zeros(0), scope, np.float32)
        scales = self.const([1.0, 1.0, 2.0, 2.0], scope, np.float32)
        return self.op("Resize", [x, roi, scales], scope, coordinate_transformation_mode="asymmetric",
                       cubic_coeff_a=-0.75, mode="nearest", nearest_mode="floor")

    def index_chain(self, shape: Sequence[int], lo: int, scope: str) -> str:
        """ScatterND indices of ``y[..., lo:lo+2]`` as torch spells them: one Expand per axis, then Concat."""
        target = self.const(list(shape), scope)
        axes = []
        for axis, extent in enumerate(shape):
            values = np.arange(lo, lo + 2) if axis == 4 else np.arange(extent).reshape([extent] + [1] * (4 - axis))
            if axis == 0:
                values = np.zeros((1, 1, 1, 1, 1), np.int64)
            ones = self.op("ConstantOfShape", [self.const([5], scope)], scope,
                           value=numpy_helper.from_array(np.zeros(1, np.int64)))
            minus = self.op("Mul", [ones, self.const(-1, scope)], scope)
            dims = self.op("Where", [self.op("Equal", [target, minus], scope), ones, target], scope)
            expanded = self.op("Expand", [self.const(values, scope), dims], scope)
            axes.append(self.op("Unsqueeze", [expanded], scope, axes=[-1]))
        return self.op("Concat", axes, scope, axis=-1)

    def scatter(self, y: str, update: str, shape: Sequence[int], lo: int, scope: str) -> str:
        """``y[..., lo:lo+2] = update``: updates expanded and reshaped to a shape read from Shape nodes."""
        box = self.op("Slice", [y, self.const([lo], scope), self.const([lo + 2], scope), self.const([4], scope),
                                self.const([1], scope)], scope)
        update = self.op("Expand", [update, self.op("Shape", [box], scope)], scope)
        indices = self.index_chain(shape, lo, scope)
        tail = self.op("Slice", [self.op("Shape", [y], scope), self.const([5], scope), self.const([INT64_MAX], scope),
                                 self.const([0], scope)], scope)
        update_shape = self.op("Concat", [self.const(list(shape), scope), tail], scope, axis=0)
        return self.op("ScatterND", [y, indices, self.op("Reshape", [update, update_shape], scope)], scope)

    def detect_head(self, x: str, c1: int, i: int, side: int, anchors: Sequence[tuple[int, int]], stride: int,
                    classes: int, scope: str) -> tuple[str, str]:
        """One head of ``Detect``: its raw [1, na, ny, nx, no] tensor and its decoded rows [1, -1, no]."""
        na, no = len(anchors), 5 + classes
        conv = self.conv(x, c1, na * no, 1, 1, f"{scope}/m.{i}", act=False)
        dims = [self.op("Unsqueeze", [self.op("Gather", [self.op("Shape", [conv], scope), self.const(d, scope)],
                                               scope, axis=0)], scope, axes=[0]) for d in (0, 2, 3)]
        view = self.op("Concat", [dims[0], self.const([na], scope), self.const([no], scope), dims[1], dims[2]],
                       scope, axis=0)
        raw = self.op("Transpose", [self.op("Reshape", [conv, view], scope)], scope, perm=[0, 1, 3, 4, 2])
        y = self.op("Sigmoid", [raw], scope)
        shape = [1, na, side, side, 2]

        def channels(src: str, lo: int) -> str:
            return self.op("Slice", [src, self.const([lo], scope), self.const([lo + 2], scope), self.const([4], scope),
                                     self.const([1], scope)], scope)

        jj, ii = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        grid = np.stack([ii, jj], -1)[None, None].astype(np.float32)
        xy = self.op("Mul", [channels(y, 0), self.const(2.0, scope, np.float32)], scope)
        xy = self.op("Sub", [xy, self.const(0.5, scope, np.float32)], scope)
        xy = self.op("Add", [xy, self.const(grid, scope, np.float32)], scope)
        xy = self.op("Mul", [xy, self.const(float(stride), scope, np.float32)], scope)
        y = self.scatter(y, xy, shape, 0, scope)
        anchor_grid = self.weight(f"onnx::Mul_anchor_grid_{i}", np.array(anchors, np.float32).reshape(1, na, 1, 1, 2))
        wh = self.op("Mul", [channels(y, 2), self.const(2.0, scope, np.float32)], scope)
        wh = self.op("Mul", [self.op("Pow", [wh, self.const(2.0, scope, np.float32)], scope), anchor_grid], scope)
        y = self.scatter(y, wh, shape, 2, scope)
        return raw, self.op("Reshape", [y, self.const([1, -1, no], scope)], scope)


def _full(g: _TorchGraph, x: str) -> list[tuple[str, int]]:
    """ultralytics yolov3.yaml: Darknet-53 (layers 0-10), the head (11-27); Detect reads 27, 22, 15."""
    outs: list[tuple[str, int]] = []  # (tensor, channels) per layer

    def add(t: str, c: int) -> None:
        outs.append((t, c))

    def conv(c2: int, k: int, s: int = 1, frm: int = -1) -> None:
        t, c1 = outs[frm] if outs else (x, 3)
        add(g.conv(t, c1, c2, k, s, f"/model.{len(outs)}"), c2)

    def bottlenecks(c2: int, n: int, shortcut: bool = True) -> None:
        t, c1 = outs[-1]
        scope = f"/model.{len(outs)}"
        for j in range(n):
            t = g.bottleneck(t, c1 if j == 0 else c2, c2, shortcut, scope if n == 1 else f"{scope}/m.{j}")
        add(t, c2)

    def up_cat(skip: int) -> None:
        t, c = outs[-1]
        add(g.upsample(t, f"/model.{len(outs)}"), c)
        t, c = outs[-1]
        add(g.op("Concat", [t, outs[skip][0]], f"/model.{len(outs)}", axis=1), c + outs[skip][1])

    conv(32, 3)
    for c2, n in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        conv(c2, 3, 2)
        bottlenecks(c2, n)
    bottlenecks(1024, 1, False)
    conv(512, 1), conv(1024, 3), conv(512, 1), conv(1024, 3)  # 12-15: P5/32
    conv(256, 1, frm=-2)
    up_cat(8)
    bottlenecks(512, 1, False), bottlenecks(512, 1, False)
    conv(256, 1), conv(512, 3)  # 22: P4/16
    conv(128, 1, frm=-2)
    up_cat(6)
    bottlenecks(256, 1, False), bottlenecks(256, 2, False)  # 27: P3/8
    return [outs[27], outs[22], outs[15]]


def _tiny(g: _TorchGraph, x: str) -> list[tuple[str, int]]:
    """ultralytics yolov3-tiny.yaml: convs and max pools, ZeroPad2d before the stride-1 pool; Detect reads 19, 15."""
    outs: list[tuple[str, int]] = []

    def conv(c2: int, k: int, frm: int = -1) -> None:
        t, c1 = outs[frm] if outs else (x, 3)
        outs.append((g.conv(t, c1, c2, k, 1, f"/model.{len(outs)}"), c2))

    def pool(s: int) -> None:
        t, c = outs[-1]
        outs.append((g.op("MaxPool", [t], f"/model.{len(outs)}", ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2],
                          pads=[0, 0, 0, 0], strides=[s, s]), c))

    for c2 in (16, 32, 64, 128, 256):
        conv(c2, 3)
        pool(2)
    conv(512, 3)
    t, c = outs[-1]
    outs.append((g.zero_pad(t, [0, 1, 0, 1], f"/model.{len(outs)}"), c))
    pool(1)
    conv(1024, 3), conv(256, 1), conv(512, 3)  # 15: P5/32
    conv(128, 1, frm=-2)
    t, c = outs[-1]
    outs.append((g.upsample(t, f"/model.{len(outs)}"), c))
    t, c = outs[-1]
    outs.append((g.op("Concat", [t, outs[8][0]], f"/model.{len(outs)}", axis=1), c + outs[8][1]))
    conv(256, 3)  # 19: P4/16
    return [outs[19], outs[15]]


def torch_yolo_to_onnx(size: int, *, tiny: bool = False, names: Sequence[str] | None = None, seed: int = 0) -> onnx.ModelProto:
    """The ONNX torch would export for ultralytics YOLOv3 (``tiny``: YOLOv3-tiny) at ``size``, seeded weights.

    Input ``images`` [1, 3, size, size]; outputs ``output`` [1, N, 5 + classes] (N = 25200 at 640
    for the full model), then the raw head tensors [1, 3, ny, nx, 5 + classes].
    """
    if size <= 0 or size % STRIDE:
        raise UserError(f"input size {size} is not a positive multiple of the network stride {STRIDE}; pick e.g. 416")
    names = list(names) if names is not None else [f"class_{i}" for i in range(80)]
    g = _TorchGraph(seed)
    features = (_tiny if tiny else _full)(g, INPUT_NAME)
    anchors = TINY_ANCHORS if tiny else FULL_ANCHORS
    strides = (16, 32) if tiny else (8, 16, 32)
    detect = f"/model.{20 if tiny else 28}"
    heads = [g.detect_head(t, c, i, size // s, a, s, len(names), detect)
             for i, ((t, c), a, s) in enumerate(zip(features, anchors, strides))]
    g.nodes.append(helper.make_node("Concat", [rows for _, rows in heads], [OUTPUT_NAME], name=f"{detect}/Concat_out", axis=1))
    no = 5 + len(names)
    rows = sum(len(a) * (size // s) ** 2 for a, s in zip(anchors, strides))
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, rows, no])]
    outputs += [helper.make_tensor_value_info(raw, TensorProto.FLOAT, [1, len(a), size // s, size // s, no])
                for (raw, _), a, s in zip(heads, anchors, strides)]
    graph = helper.make_graph(g.nodes, "main_graph",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, size, size])],
                              outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch",
                              producer_version="2.13.0", ir_version=IR_VERSION)
    helper.set_model_props(model, {"stride": str(STRIDE), "names": json.dumps(names),
                                   "source": f"ultralytics yolov3{'-tiny' if tiny else ''} as torch exports it",
                                   "weights": f"{SYNTHETIC_NOTE} (seed {seed})"})
    onnx.checker.check_model(model)
    return model
