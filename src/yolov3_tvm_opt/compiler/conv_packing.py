"""llvm conv2d with its weights packed at compile time for output-channel vectors.

Why: in NCHW with OIHW weights the only contiguous axis a conv2d can vectorise over is the
output row, and YOLO's late layers have rows of 13 and 26: a 16-lane AVX-512 vector is mostly
empty there, and those layers hold most of the work. Packing the constant weights to
``[O / lanes, I, KH, KW, lanes]`` makes ``lanes`` output channels of one (input channel, ky, kx)
a single contiguous vector, so the schedule (``cpu_schedule``) can hold a register tile of
``lanes`` channels x a few columns, broadcasting one input pixel into ``lanes`` FMAs, whatever
the row length. Activations keep NCHW, so no layout transform is inserted anywhere in the graph.

The packing is done once in numpy while legalizing (the weights are Relax constants), so it
costs nothing at run time. When the weights are parameters of ``main`` (``--weights separate``)
the same packing is a small TE function of the weight alone, which ``LiftTransformParams`` moves
into ``main_transform_params``: it runs once when the runtime loads the weights. The sum runs over (input channel, ky, kx) in TOPI's order, so the
result is bit-identical to TOPI's conv2d. Convs it does not fit (grouped, weights computed
in the graph, other layouts or dtypes) keep TOPI's legalization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax, te, topi  # noqa: E402
from tvm.relax.transform.legalize_ops.nn import _nn_conv2d as topi_conv2d  # noqa: E402

PACKED_BLOCK = "conv2d_nchw_packed"  # the compute block's name
# A block annotation saying what a block we create is, so the schedule rules (``cpu_schedule``)
# find it whatever fusion names it: the packed conv itself, or the copy of its input it reads.
BLOCK_KIND = "yolov3_tvm_opt.block_kind"
PACKED_CONV = "packed_conv2d"
CONV_INPUT = "conv_input"


def pack_weights(weight: np.ndarray, lanes: int) -> np.ndarray:
    """OIHW -> [ceil(O / lanes), I, KH, KW, lanes]: ``lanes`` output channels contiguous.

    Output channels are padded with zero filters up to a multiple of ``lanes`` (YOLO's heads
    have 255): one wasted channel of 256 costs less than a conv schedule without full vectors.
    """
    out_channels, in_channels, kh, kw = weight.shape
    blocks = -(-out_channels // lanes)
    padded = np.zeros((blocks * lanes, in_channels, kh, kw), dtype=weight.dtype)
    padded[:out_channels] = weight
    blocked = padded.reshape(blocks, lanes, in_channels, kh, kw)
    return np.ascontiguousarray(blocked.transpose(0, 2, 3, 4, 1))


def pack_weights_te(weight: te.Tensor, lanes: int) -> te.Tensor:
    """``pack_weights`` as a TE computation, for weights that arrive at run time."""
    out_channels, in_channels, kh, kw = (int(x) for x in weight.shape)
    blocks = -(-out_channels // lanes)
    return te.compute(
        (blocks, in_channels, kh, kw, lanes),
        lambda b, i, y, x, lane: tvm.tirx.if_then_else(
            b * lanes + lane < out_channels, weight[b * lanes + lane, i, y, x], tvm.tirx.const(0, weight.dtype)
        ),
        name="pack_conv_weights",
    )


def conv_output_hw(
    height: int, width: int, kernel: tuple[int, int], strides: tuple[int, int],
    padding: tuple[int, int, int, int], dilation: tuple[int, int],
) -> tuple[int, int]:
    """Output rows and columns of a conv; ``padding`` is (top, left, bottom, right) as in Relax."""
    top, left, bottom, right = padding
    out_h = (height + top + bottom - (kernel[0] - 1) * dilation[0] - 1) // strides[0] + 1
    out_w = (width + left + right - (kernel[1] - 1) * dilation[1] - 1) // strides[1] + 1
    return out_h, out_w


def packed_conv2d(
    data: te.Tensor,
    packed: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> te.Tensor:
    """NCHW conv2d reading packed weights; ``padding`` is (top, left, bottom, right) as in Relax."""
    batch, _, height, width = (int(x) for x in data.shape)
    blocks, in_channels, kh, kw, lanes = (int(x) for x in packed.shape)
    top, left, bottom, right = padding
    out_h, out_w = conv_output_hw(height, width, (kh, kw), strides, padding, dilation)
    # 1x1 convs read the input in place: a padding block of zero width would still be a copy
    padded = data
    if any(padding):
        padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom, right], name="pad_temp", attrs={BLOCK_KIND: CONV_INPUT})
    rc = te.reduce_axis((0, in_channels), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (batch, blocks * lanes, out_h, out_w),
        lambda n, co, y, x: te.sum(
            padded[n, rc, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1]]
            * packed[co // lanes, rc, ry, rx, co % lanes],
            axis=[rc, ry, rx],
        ),
        name=PACKED_BLOCK,
        attrs={BLOCK_KIND: PACKED_CONV},
    )


def packable(call: Any, data_layouts: tuple[str, ...] = ("NCHW",)) -> bool:
    """Whether a relax.nn.conv2d call fits the packed kernel (see the module docstring).

    ``data_layouts``: the input layouts the kernel reads (int8's also reads channel-blocked u8).
    """
    attrs = call.attrs
    weight = call.args[1]
    return (
        (isinstance(weight, tvm.ir.expr.Constant) or _is_parameter(weight))
        and attrs.groups == 1
        and attrs.data_layout in data_layouts
        and attrs.kernel_layout == "OIHW"
        and attrs.out_layout in ("", "NCHW")
        and str(attrs.out_dtype or "float32") == "float32"
        and str(weight.value.dtype if isinstance(weight, tvm.ir.expr.Constant) else weight.ty.dtype) == "float32"
    )


def _is_parameter(expr: Any) -> bool:
    """A static-shaped variable: a weight passed to ``main`` rather than computed in the graph."""
    shape = getattr(expr.ty, "shape", None)
    return isinstance(expr, relax.Var) and hasattr(shape, "values") and all(hasattr(d, "value") for d in shape.values)


def packed_conv2d_legalization(lanes: int) -> Callable[[Any, Any], Any]:
    """A LegalizeOps override for relax.nn.conv2d that packs the weights for ``lanes`` lanes."""

    def legalize(bb: Any, call: Any) -> Any:
        if not packable(call):
            return topi_conv2d(bb, call)
        weight = call.args[1]
        if isinstance(weight, tvm.ir.expr.Constant):
            out_channels = int(weight.value.shape[0])
            packed = relax.const(pack_weights(weight.value.numpy(), lanes))
        else:
            out_channels = int(weight.ty.shape.values[0].value)
            packed = bb.emit_te(pack_weights_te, weight, lanes, primfunc_name_hint="pack_conv_weights")
        return emit_packed_conv(bb, call, packed_conv2d, [call.args[0], packed], out_channels, lanes, "conv2d_packed")

    return legalize


def emit_packed_conv(bb: Any, call: Any, compute: Callable[..., Any], args: list[Any], out_channels: int, lanes: int, name: str) -> Any:
    """``compute(*args, strides, padding, dilation)`` of a conv2d ``call``, its zero filters' channels cropped.

    What every packed legalization (fp32 here, ``bf16_conv``, ``int8_conv``) ends with: the
    output has ``out_channels`` padded to a multiple of ``lanes``, and the slice that drops the
    padding fuses with the bias add after it.
    """
    attrs = call.attrs
    conv = bb.call_te(
        compute,
        *args,
        tuple(int(s) for s in attrs.strides),
        tuple(int(p) for p in attrs.padding),
        tuple(int(d) for d in attrs.dilation),
        primfunc_name_hint=name,
    )
    if out_channels % lanes == 0:
        return conv
    return bb.call_te(topi.strided_slice, bb.emit(conv), [0], [out_channels], strides=[1], axes=[1], primfunc_name_hint="crop_channels")
