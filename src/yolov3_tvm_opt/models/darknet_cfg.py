"""Darknet cfg parsing, .weights reading and seeded synthetic weights, with numpy alone.

Split from the ONNX export (``darknet``) so a host with only numpy can rebuild a synthetic model's
weights from its seed: a deploy bundle ships the seed and the calibration numbers instead of
250 MB of weights. That rebuild must give the very bytes the build machine hashed, so it does no
matrix products (BLAS sums in an order that varies with the library and the CPU): the forward
pass that calibrates the synthetic weights (``synthetic_calibration``) runs only on the build
machine, and what it finds is shipped as numbers; ``synthetic_weights`` given those numbers is
random draws and elementwise float32 arithmetic, which IEEE 754 rounds the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..core.errors import UserError
from ..core.weights_file import weights_bytes

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


def check_size(layers: Sequence[Layer], size: int) -> None:
    step = total_stride(layers)
    if size <= 0 or size % step:
        raise UserError(f"input size {size} is not a positive multiple of the network stride {step}; pick e.g. {step * 13}")


def grid_sizes(layers: Sequence[Layer], size: int) -> list[int]:
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


def conv_param_names(layer: Layer) -> tuple[str, str]:
    """The ONNX initializer names of a conv's folded weight and bias (``conv_{i}`` as OpenCV names it)."""
    return f"conv_{layer.index}.weight", f"conv_{layer.index}.bias"


def named_conv_weights(cfg_text: str, weights: bytes) -> list[tuple[str, np.ndarray]]:
    """Every conv's folded weight and bias under its ONNX initializer name, in graph order."""
    layers = build_layers(parse_cfg(cfg_text))
    named = []
    for layer, conv in zip(_conv_layers(layers), load_weights(layers, weights)):
        weight_name, bias_name = conv_param_names(layer)
        named += [(weight_name, conv.weight), (bias_name, conv.bias)]
    return named


def _seeded_draws(layers: Sequence[Layer], seed: int) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """The probe image, then each conv's raw weights, drawn lazily from one seeded stream."""
    rng = np.random.default_rng(seed)
    probe = total_stride(layers) * 8  # 8 cells at the coarsest grid: statistics then hold up to 640 px
    x = rng.random((3, probe, probe), dtype=np.float32)

    def weights() -> Iterator[np.ndarray]:
        for layer in _conv_layers(layers):
            fan_in = layer.in_channels * layer.size * layer.size
            weight = rng.standard_normal((layer.channels, layer.in_channels, layer.size, layer.size), dtype=np.float32)
            weight *= np.float32(1 / np.sqrt(fan_in))
            yield weight

    return x, weights()


def _scaled(layers: Sequence[Layer], layer: Layer, weight: np.ndarray, mean: np.ndarray, var: np.float32) -> tuple[list[np.ndarray], np.ndarray]:
    """One conv's .weights chunks given its calibration, and the scale its output takes."""
    f = layer.channels
    var_f = np.full(f, var, np.float32)
    if layer.batch_normalize:  # beta 0, gamma 1: the folded conv computes (z - mean) * scale
        scale = 1 / np.sqrt(var_f + BN_EPS)
        return [np.zeros(f, np.float32), np.ones(f, np.float32), mean, var_f, weight.ravel()], scale
    target = np.ones(f, np.float32)
    head = layers[layer.index + 1] if layer.index + 1 < len(layers) else None
    if head is not None and head.kind == "yolo":
        attrs = 5 + head.classes
        target[2::attrs], target[3::attrs] = WH_STD, WH_STD
    scale = target / np.sqrt(var_f)
    return [-mean * scale, (weight * scale[:, None, None, None]).ravel()], scale


def synthetic_calibration(cfg_text: str, seed: int = 0) -> np.ndarray:
    """The numbers that scale the seeded weights, found by a numpy forward pass (build machine only).

    No full YOLOv3 weights are reachable, and plain random weights either vanish or explode through
    the 23 residual additions and make exp() in the box decode overflow. So, LSUV-style: run a numpy
    forward on a seeded random image and give each conv the batch-norm statistics (mean per channel,
    variance of the whole layer) that make its output zero-mean, unit-std there. Head convs have no
    batch norm, so their weights and bias are scaled directly, w/h channels to std WH_STD so exp()
    gives boxes near the anchors. Statistics taken on noise do not carry over exactly to photos
    (a real photo at 640 px reached ~100x the calibrated scale at the heads), so WH_STD is small
    enough that even then exp() stays finite: boxes of tens to ~1000 px on photos and on noise.

    Returns float32 [per conv: its channels' means, then the layer's variance], in cfg order.
    The forward uses matrix products, so these numbers are computed once and shipped, never redone.
    """
    layers = build_layers(parse_cfg(cfg_text))
    x, draws = _seeded_draws(layers, seed)
    numbers: list[np.ndarray] = []
    outs: list[np.ndarray] = []
    for layer in layers:
        if layer.kind != "convolutional":
            outs.append(_np_forward_layer(layer, outs, x))
            continue
        src = outs[layer.inputs[0]] if layer.inputs[0] >= 0 else x
        weight = next(draws)
        z = _np_conv(src, layer, weight)
        mean, var = z.mean((1, 2)), z.var()
        numbers += [mean, np.array([var], np.float32)]
        _, scale = _scaled(layers, layer, weight, mean, var)
        z = (z - mean[:, None, None]) * scale[:, None, None]
        outs.append(np.where(z > 0, z, LEAKY_SLOPE * z) if layer.activation == "leaky" else z)
    return np.concatenate(numbers).astype(np.float32)


def synthetic_weights(cfg_text: str, seed: int = 0, calibration: np.ndarray | None = None) -> bytes:
    """Seeded stand-in weights as a Darknet .weights file, scaled so activations look like a trained net's.

    ``calibration`` (from ``synthetic_calibration``; computed when not given) fixes the scale of
    each conv; with it this is random draws and elementwise work only, byte-identical on any host
    with the same numpy. Good for latency and plumbing only: the detections are meaningless.
    """
    layers = build_layers(parse_cfg(cfg_text))
    if calibration is None:
        calibration = synthetic_calibration(cfg_text, seed)
    needed = sum(layer.channels + 1 for layer in _conv_layers(layers))
    if calibration.size != needed:
        raise UserError(f"the calibration holds {calibration.size} numbers but this cfg needs {needed}; "
                        "pass the calibration written for this model")
    _, draws = _seeded_draws(layers, seed)
    chunks: list[np.ndarray] = [np.array([0, 2, 0], np.int32).view(np.float32), np.zeros(2, np.float32)]
    pos = 0
    for layer in _conv_layers(layers):
        mean, var = calibration[pos:pos + layer.channels], calibration[pos + layer.channels]
        pos += layer.channels + 1
        chunks += _scaled(layers, layer, next(draws), mean, var)[0]
    return np.concatenate(chunks).tobytes()


def synthetic_weights_file(
    manifest: dict[str, Any], classes: int, seed: int, calibration: np.ndarray
) -> tuple[list[bytes], dict[str, Any]]:
    """Synthetic YOLOv3's weights laid out as ``manifest`` lists them (``core.weights_file``), and their record.

    The build machine calls it to prove a seed regenerates the shipped file, and a deploy host to
    write that file; both compare the record's sha256 with the manifest's. A tensor the manifest
    lists and YOLOv3 lacks raises KeyError.
    """
    cfg = yolov3_cfg(classes=classes)
    named = dict(named_conv_weights(cfg, synthetic_weights(cfg, seed, calibration)))
    return weights_bytes([(t["name"], named[t["name"]]) for t in manifest["tensors"]])


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
