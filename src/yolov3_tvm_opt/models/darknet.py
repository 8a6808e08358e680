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
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from ..core.errors import UserError

OPSET = 17
IR_VERSION = 8  # the IR that opset 17 shipped with; newer IRs are refused by older runtimes
INPUT_NAME = "images"
OUTPUT_NAME = "output"
LEAKY_SLOPE = 0.1
# Batch norm is folded as gamma / sqrt(var + BN_EPS). Darknet divides by sqrt(var) + 1e-6 instead;
# on yolov3-tiny 1e-6 inside the sqrt matches OpenCV's Darknet importer (our test oracle) to 3e-5,
# while 1e-5 is off by 3e-3 and 0 by 3e-4, because some channels have near-zero variance.
WH_STD = 0.01  # see synthetic_weights: keeps exp(t_wh) finite on photos, not only on noise
BN_EPS = 1e-6
SYNTHETIC_NOTE = "synthetic-seeded, for latency only"

_ACTIVATIONS = ("leaky", "linear")


def parse_cfg(text: str) -> list[dict[str, str]]:
    """Split a Darknet cfg into sections: each a dict with `type` (e.g. "convolutional") + options.

    Values stay strings because their meaning depends on the section; `#` and `;` start comments.
    """
    sections: list[dict[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UserError(f"cfg line {lineno}: section header {line!r} lacks ']'; fix the cfg file")
            sections.append({"type": line[1:-1].strip().lower()})
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][key.strip()] = value.strip()
        else:
            raise UserError(
                f"cfg line {lineno}: {line!r} is neither '[section]' nor 'key=value' inside a section; "
                "fix the cfg file"
            )
    if not sections or sections[0]["type"] not in ("net", "network"):
        raise UserError("the cfg does not start with a [net] section; pass a Darknet .cfg file")
    return sections


@dataclass(frozen=True)
class Layer:
    """One Darknet layer with its options resolved; `stride` is input pixels per output cell."""

    index: int
    kind: str
    inputs: tuple[int, ...]  # absolute layer indices; -1 is the network input
    channels: int
    stride: int
    in_channels: int = 0
    size: int = 1  # conv/maxpool kernel size, upsample factor
    step: int = 1  # conv/maxpool stride
    pads: tuple[int, int] = (0, 0)  # padding before, after (per spatial axis)
    batch_normalize: bool = False
    activation: str = "linear"
    anchors: tuple[tuple[float, float], ...] = ()
    classes: int = 0
    scale_x_y: float = 1.0


@dataclass(frozen=True)
class ConvWeights:
    """A convolution with batch norm already folded in: weight [F, C, K, K] and bias [F]."""

    weight: np.ndarray
    bias: np.ndarray


def _opt_int(sec: dict[str, str], where: str, key: str, default: int | None = None) -> int:
    value = sec.get(key)
    if value is None:
        if default is None:
            raise UserError(f"{where}: option '{key}' is missing; add it to the cfg")
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{where}: option {key}={value!r} is not an integer; fix the cfg") from None


def _opt_ints(sec: dict[str, str], where: str, key: str) -> list[int]:
    try:
        return [int(v) for v in sec.get(key, "").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{where}: option {key}={sec[key]!r} is not a list of integers; fix the cfg") from None


def _resolve(index: int, ref: int, where: str) -> int:
    """Darknet references layers relatively (negative) or absolutely; both must point backwards."""
    target = index + ref if ref < 0 else ref
    if not 0 <= target < index:
        raise UserError(f"{where}: layer reference {ref} points outside layers 0..{index - 1}; fix the cfg")
    return target


def build_layers(sections: list[dict[str, str]]) -> list[Layer]:
    """Resolve every section after [net] into a Layer, checking what the ONNX export supports."""
    net = sections[0]
    in_channels = _opt_int(net, "[net]", "channels", 3)
    if in_channels != 3:
        raise UserError(f"[net] channels={in_channels}, but only 3-channel images are supported; use an RGB model")
    layers: list[Layer] = []
    for index, sec in enumerate(sections[1:]):
        kind = sec["type"]
        where = f"layer {index} [{kind}]"
        c_in, s_in = (layers[-1].channels, layers[-1].stride) if layers else (in_channels, 1)
        if kind == "convolutional":
            size = _opt_int(sec, where, "size", 1)
            step = _opt_int(sec, where, "stride", 1)
            pad = size // 2 if _opt_int(sec, where, "pad", 0) else _opt_int(sec, where, "padding", 0)
            activation = sec.get("activation", "logistic")
            if activation not in _ACTIVATIONS:
                raise UserError(f"{where}: activation={activation} is not supported (only {_ACTIVATIONS}); use a YOLOv3 cfg")
            if _opt_int(sec, where, "groups", 1) != 1:
                raise UserError(f"{where}: grouped convolutions are not supported; use a YOLOv3 cfg")
            layer = Layer(
                index, kind, (index - 1,), _opt_int(sec, where, "filters"), s_in * step, in_channels=c_in,
                size=size, step=step, pads=(pad, pad),
                batch_normalize=bool(_opt_int(sec, where, "batch_normalize", 0)), activation=activation,
            )
        elif kind == "maxpool":
            size = _opt_int(sec, where, "size", 1)
            step = _opt_int(sec, where, "stride", 1)
            total = _opt_int(sec, where, "padding", size - 1)
            # Darknet pads `total` cells, total//2 before: yolov3-tiny's size-2 stride-1 pool pads right/bottom.
            layer = Layer(index, kind, (index - 1,), c_in, s_in * step, size=size, step=step,
                          pads=(total // 2, total - total // 2))
        elif kind == "route":
            refs = _opt_ints(sec, where, "layers")
            if not 1 <= len(refs) <= 4 or "groups" in sec:
                raise UserError(f"{where}: needs 1 to 4 'layers' and no 'groups'; use a YOLOv3 cfg")
            inputs = tuple(_resolve(index, r, where) for r in refs)
            strides = {layers[i].stride for i in inputs}
            if len(strides) != 1:
                raise UserError(f"{where}: routes layers of different resolutions {inputs}; fix the cfg")
            layer = Layer(index, kind, inputs, sum(layers[i].channels for i in inputs), strides.pop())
        elif kind == "upsample":
            factor = _opt_int(sec, where, "stride", 2)
            if s_in % factor:
                raise UserError(f"{where}: upsampling by {factor} above stride {s_in} is not supported; fix the cfg")
            layer = Layer(index, kind, (index - 1,), c_in, s_in // factor, size=factor)
        elif kind == "shortcut":
            other = _resolve(index, _opt_int(sec, where, "from"), where)
            if sec.get("activation", "linear") != "linear":
                raise UserError(f"{where}: only activation=linear shortcuts are supported; use a YOLOv3 cfg")
            if layers[other].channels != c_in or layers[other].stride != s_in:
                raise UserError(f"{where}: adds layers of different shapes; fix the cfg")
            layer = Layer(index, kind, (index - 1, other), c_in, s_in)
        elif kind == "yolo":
            classes = _opt_int(sec, where, "classes", 20)
            flat = _opt_ints(sec, where, "anchors")
            pairs = [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
            mask = _opt_ints(sec, where, "mask") or list(range(len(pairs)))
            if not pairs or any(not 0 <= m < len(pairs) for m in mask):
                raise UserError(f"{where}: mask {mask} does not index into {len(pairs)} anchors; fix the cfg")
            if _opt_int(sec, where, "new_coords", 0):
                raise UserError(f"{where}: new_coords=1 (scaled-YOLOv4 decode) is not supported; use a YOLOv3 cfg")
            if c_in != len(mask) * (5 + classes):
                raise UserError(
                    f"{where}: the conv before it has {c_in} filters but {len(mask)} anchors x (5 + {classes} classes) "
                    f"needs {len(mask) * (5 + classes)}; fix 'filters' in the cfg"
                )
            try:
                scale_x_y = float(sec.get("scale_x_y", "1"))
            except ValueError:
                raise UserError(f"{where}: scale_x_y={sec['scale_x_y']!r} is not a number; fix the cfg") from None
            layer = Layer(index, kind, (index - 1,), c_in, s_in,
                          anchors=tuple(pairs[m] for m in mask), classes=classes, scale_x_y=scale_x_y)
        else:
            raise UserError(f"{where}: layer type [{kind}] is not supported; use a YOLOv3 or YOLOv3-tiny cfg")
        layers.append(layer)
    heads = [layer for layer in layers if layer.kind == "yolo"]
    if not heads:
        raise UserError("the cfg has no [yolo] layer; pass a YOLOv3-style detection cfg")
    if len({h.classes for h in heads}) != 1:
        raise UserError("the [yolo] layers disagree on 'classes'; fix the cfg")
    return layers


def total_stride(layers: Sequence[Layer]) -> int:
    """The input size must be a multiple of this so every layer's grid divides evenly."""
    return max(layer.stride for layer in layers)


def _check_size(layers: Sequence[Layer], size: int) -> None:
    step = total_stride(layers)
    if size <= 0 or size % step:
        raise UserError(f"input size {size} is not a positive multiple of the network stride {step}; pick e.g. {step * 13}")


def _grid_sizes(layers: Sequence[Layer], size: int) -> list[int]:
    """Exact spatial side of each layer's output for a square input, with Darknet's formulas."""
    sides: list[int] = []
    for layer in layers:
        inputs = {sides[i] if i >= 0 else size for i in layer.inputs}
        side = inputs.pop()
        if layer.kind in ("convolutional", "maxpool"):
            side = (side + sum(layer.pads) - layer.size) // layer.step + 1
        elif layer.kind == "upsample":
            side *= layer.size
        if inputs or side != size // layer.stride:
            raise UserError(f"layer {layer.index} [{layer.kind}]: grid size does not divide evenly at size {size}; "
                            "fix the cfg's padding")
        sides.append(side)
    return sides


def _conv_layers(layers: Sequence[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.kind == "convolutional"]


def _fold(weight: np.ndarray, beta: np.ndarray, gamma: np.ndarray, mean: np.ndarray, var: np.ndarray) -> ConvWeights:
    scale = gamma / np.sqrt(var + BN_EPS)
    return ConvWeights((weight * scale[:, None, None, None]).astype(np.float32),
                       (beta - mean * scale).astype(np.float32))


def load_weights(layers: Sequence[Layer], data: bytes) -> list[ConvWeights]:
    """Read a Darknet .weights file into per-conv folded weights, refusing any size mismatch.

    Layout: int32 major, minor, revision; `seen` as int64 when major*10+minor >= 2 (else int32);
    then per conv: bias (BN beta), and with batch_normalize gamma, mean, var; then the weights.
    """
    if len(data) < 12:
        raise UserError(f"the weights file is only {len(data)} bytes; pass a complete Darknet .weights file")
    major, minor, _revision = np.frombuffer(data, np.int32, 3)
    offset = 12 + (8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4)
    floats = np.frombuffer(data, np.float32, (len(data) - offset) // 4, offset)
    needed = sum(
        c.channels * (4 if c.batch_normalize else 1) + c.channels * c.in_channels * c.size * c.size
        for c in _conv_layers(layers)
    )
    if floats.size != needed or (len(data) - offset) % 4:
        raise UserError(
            f"the weights file holds {len(data) - offset} bytes of floats but the cfg needs {needed} floats; "
            "pass the .weights file that belongs to this cfg"
        )
    out: list[ConvWeights] = []
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        pos += n
        return floats[pos - n:pos]

    for c in _conv_layers(layers):
        bias = take(c.channels)
        if c.batch_normalize:
            gamma, mean, var = take(c.channels), take(c.channels), take(c.channels)
        weight = take(c.channels * c.in_channels * c.size * c.size).reshape(c.channels, c.in_channels, c.size, c.size)
        if c.batch_normalize:
            out.append(_fold(weight, bias, gamma, mean, var))
        else:
            out.append(ConvWeights(weight.copy(), bias.copy()))
    return out


def _np_conv(x: np.ndarray, layer: Layer, weight: np.ndarray) -> np.ndarray:
    """Convolution (no bias) of a [C, H, W] array by im2col + one matmul."""
    p0, p1 = layer.pads
    xp = np.pad(x, ((0, 0), (p0, p1), (p0, p1)))
    windows = sliding_window_view(xp, (layer.size, layer.size), axis=(1, 2))[:, ::layer.step, ::layer.step]
    ho, wo = windows.shape[1:3]
    cols = windows.transpose(1, 2, 0, 3, 4).reshape(ho * wo, -1)
    return (cols @ weight.reshape(weight.shape[0], -1).T).T.reshape(-1, ho, wo)


def _np_forward_layer(layer: Layer, outs: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Every non-conv layer in numpy, mirroring the ONNX nodes emitted by `_emit_layer`."""
    first = outs[layer.inputs[0]] if layer.inputs[0] >= 0 else x
    if layer.kind == "maxpool":
        p0, p1 = layer.pads
        xp = np.pad(first, ((0, 0), (p0, p1), (p0, p1)), constant_values=-np.inf)
        return sliding_window_view(xp, (layer.size, layer.size), axis=(1, 2))[:, ::layer.step, ::layer.step].max((3, 4))
    if layer.kind == "route":
        return np.concatenate([outs[i] for i in layer.inputs])
    if layer.kind == "upsample":
        return first.repeat(layer.size, 1).repeat(layer.size, 2)
    if layer.kind == "shortcut":
        return first + outs[layer.inputs[1]]
    return first  # yolo: decoding happens only in the exported head


def synthetic_weights(cfg_text: str, seed: int = 0) -> bytes:
    """Seeded stand-in weights as a Darknet .weights file, scaled so activations look like a trained net's.

    No full YOLOv3 weights are reachable, and plain random weights either vanish or explode through
    the 23 residual additions and make exp() in the box decode overflow. So, LSUV-style: run a numpy
    forward on a seeded random image and give each conv the batch-norm statistics (mean per channel,
    variance of the whole layer) that make its output zero-mean, unit-std there. Head convs have no
    batch norm, so their weights and bias are scaled directly, w/h channels to std WH_STD so exp()
    gives boxes near the anchors. Statistics taken on noise do not carry over exactly to photos
    (a real photo at 640 px reached ~100x the calibrated scale at the heads), so WH_STD is small
    enough that even then exp() stays finite: boxes of tens to ~1000 px on photos and on noise.
    Good for latency and plumbing only: the detections are meaningless.
    """
    layers = build_layers(parse_cfg(cfg_text))
    probe = total_stride(layers) * 8  # 8 cells at the coarsest grid: statistics then hold up to 640 px
    rng = np.random.default_rng(seed)
    x = rng.random((3, probe, probe), dtype=np.float32)
    chunks: list[np.ndarray] = [np.array([0, 2, 0], np.int32).view(np.float32), np.zeros(2, np.float32)]
    outs: list[np.ndarray] = []
    for layer in layers:
        if layer.kind != "convolutional":
            outs.append(_np_forward_layer(layer, outs, x))
            continue
        src = outs[layer.inputs[0]] if layer.inputs[0] >= 0 else x
        f, fan_in = layer.channels, layer.in_channels * layer.size * layer.size
        weight = rng.standard_normal((f, layer.in_channels, layer.size, layer.size), dtype=np.float32)
        weight *= np.float32(1 / np.sqrt(fan_in))
        z = _np_conv(src, layer, weight)
        mean = z.mean((1, 2))
        var = np.full(f, z.var(), np.float32)
        if layer.batch_normalize:  # beta 0, gamma 1: the folded conv computes (z - mean) * scale
            scale = 1 / np.sqrt(var + BN_EPS)
            chunks += [np.zeros(f, np.float32), np.ones(f, np.float32), mean, var, weight.ravel()]
        else:
            target = np.ones(f, np.float32)
            head = layers[layer.index + 1] if layer.index + 1 < len(layers) else None
            if head is not None and head.kind == "yolo":
                attrs = 5 + head.classes
                target[2::attrs], target[3::attrs] = WH_STD, WH_STD
            scale = target / np.sqrt(var)
            chunks += [-mean * scale, (weight * scale[:, None, None, None]).ravel()]
        z = (z - mean[:, None, None]) * scale[:, None, None]
        outs.append(np.where(z > 0, z, LEAKY_SLOPE * z) if layer.activation == "leaky" else z)
    return np.concatenate(chunks).tobytes()


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
        out = g.op("Conv", [first, g.const(f"conv_{i}.weight", w.weight), g.const(f"conv_{i}.bias", w.bias)],
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
    synthetic and for latency only).
    """
    layers = build_layers(parse_cfg(cfg_text))
    _check_size(layers, size)
    sides = _grid_sizes(layers, size)
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
    })
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def yolov3_cfg(classes: int = 80) -> str:
    """The full YOLOv3 cfg (Darknet-53 + 3 heads, 107 layers), generated so nobody pastes it by hand.

    Layer numbering matches Darknet's yolov3.cfg, so the routes -1,61 and -1,36 reach the ends of
    the stride-16 and stride-8 residual stages.
    """
    anchors = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
    parts = ["[net]\nbatch=1\nwidth=416\nheight=416\nchannels=3\n"]

    def conv(filters: int, size: int, stride: int = 1, bn: bool = True) -> None:
        bn_line = "batch_normalize=1\n" if bn else ""
        act = "leaky" if bn else "linear"
        parts.append(f"[convolutional]\n{bn_line}filters={filters}\nsize={size}\nstride={stride}\npad=1\nactivation={act}\n")

    conv(32, 3)
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        conv(filters, 3, 2)
        for _ in range(blocks):
            conv(filters // 2, 1)
            conv(filters, 3)
            parts.append("[shortcut]\nfrom=-3\nactivation=linear\n")
    for mask, width, skip in (("6,7,8", 512, None), ("3,4,5", 256, 61), ("0,1,2", 128, 36)):
        if skip is not None:
            parts.append("[route]\nlayers = -4\n")
            conv(width, 1)
            parts.append("[upsample]\nstride=2\n")
            parts.append(f"[route]\nlayers = -1, {skip}\n")
        for _ in range(3):
            conv(width, 1)
            conv(width * 2, 3)
        conv(3 * (5 + classes), 1, bn=False)
        parts.append(f"[yolo]\nmask = {mask}\nanchors = {anchors}\nclasses={classes}\nnum=9\n")
    return "\n".join(parts)
