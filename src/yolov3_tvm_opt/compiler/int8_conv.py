"""llvm conv2d in int8 with int32 accumulation: one ``vpdpbusd`` per (column, group of 4 input channels).

Why: ``vpdpbusd`` (AVX512-VNNI, Intel since Cascade Lake, AMD since Zen 4) multiplies 64 u8 x s8
pairs and adds them into 16 int32 lanes: 64 MACs per instruction, four times an fp32 FMA. Lane j
of ``vpdpbusd acc, a, b`` adds ``a[4j..4j+3] . b[4j..4j+3]``; with ``b`` = 16 output channels x 4
input channels and ``a`` = one pixel's 4 input channels broadcast to all lanes as one 32-bit
value, each lane accumulates its own output channel, the same register tile as ``bf16_conv``.

Quantization (static, post-training; the ranges come from calibration, ``evaluate.calibrate``):

* weights: symmetric per output channel, ``q = round(w / s_w[o])`` with ``s_w[o] = max|w[o]| / 127``,
  packed at compile time to ``[O / 16, I / 4, KH, KW, 16, 4]`` int8 (I padded with zero channels,
  O with zero filters, as in ``conv_packing``);
* activations: asymmetric u8, because leaky ReLU and SiLU outputs are signed and ``vpdpbusd``
  takes its activations unsigned: ``q = clamp(round(x / s_x) + zp, 0, 255)`` over the calibrated
  range (widened to hold 0, so zero padding is exactly ``zp``);
* the zero point is compensated in the epilogue, folded into one per-channel offset:
  ``out[o] = s_x s_w[o] acc[o] - s_x s_w[o] zp sum(q_w[o])``, i.e. int32 accumulator times a
  per-channel scale plus a per-channel bias, one FMA per output before the graph's own bias and
  activation, which fuse into the same epilogue and run in fp32 on the tile.

The conv's input copy, the ``CONV_INPUT`` producer block the fp32 conv already has for its
padding, packs the input as u8, 4 channels per 32-bit word, padding included. Where the
activation arrives in u8 (``int8_graph`` moved its quantization into the producing conv's
epilogue) the copy only moves bytes; where it arrives in fp32 (its producer has readers that need
fp32) the copy quantizes it, so quantizing never adds a pass of its own. u8 written by a channel
tile arrives channel-blocked (``U8_LAYOUT``), and the tile writes its u8 output that way, a
column's 16 channels as 16 neighbouring bytes (``_schedule_int8``). Convs it does not fit (grouped, weights given
at run time, no calibrated range) and convs with fewer than ``MIN_CHANNELS`` input channels that the
row tile does not fit take the fp32 packed legalization, so an int8 build is always complete;
``Int8Report`` says which went where.

A conv with one group of 4 input channels (YOLO's first: 3 channels and a zero-point channel)
has only KH x KW ``vpdpbusd`` per output; in the channel tile each broadcasts a pixel and writes
its 16 channels 16 planes apart, which made it slower than fp32. Its row tile
(``_schedule_int8_rows``) turns the instruction around: 16 columns of one output channel per
``vpdpbusd``, the input read as a vector of 16 words, the weights broadcast from memory, and the
tile written back as rows.
The heads run in int8 like every other conv (their requantized outputs are fp32 all the same): on
yolov3-tiny 416 they hold the accuracy contract and make the model faster (docs/precision.md).

The reduction over a group of 4 is tensorized with a description like TVM's own (the one
``tvm.s_tir.tensor_intrin.x86`` registers as ``dot_16x4_vnni``), but reading the 4 u8 as the
bytes of one 32-bit word and with the accumulator in ``local`` scope, where our register tile keeps it; the instruction is LLVM's
``llvm.x86.avx512.vpdpbusd.512``, called directly (integer vectors pass through TVM's codegen).
The LLVM in TVM 0.27's wheel declares it on ``<64 x i8>`` operands (older LLVMs, and TVM's own
``dot_16x4_vnni``, on ``<16 x i32>``, which this LLVM rejects), hence our implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.calibration import Calibration, weight_key
from ..core.tvm_loader import load_tvm
from .conv_packing import BLOCK_KIND, CONV_INPUT, conv_output_hw, emit_packed_conv, packable, packed_conv2d_legalization

tvm = load_tvm()

from tvm import relax, s_tir, te, tirx  # noqa: E402
from tvm.s_tir import TensorIntrin  # noqa: E402
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule  # noqa: E402
from tvm.script import tirx as T  # noqa: E402

INT8_BLOCK = "conv2d_int8_packed"  # the accumulating block's name
INT8_CONV = "int8_conv2d"  # its BLOCK_KIND annotation, which the schedule rule looks for
QUANT_BLOCK = "int8_quantize"  # the input copy that quantizes, a CONV_INPUT
# Input channels below which a conv stays fp32 unless the row tile fits it (``row_tile_fits``): in the
# channel tile the first conv (3 channels) measured slower than fp32, 1.5x alone at 416.
MIN_CHANNELS = 16
LANES = 16  # int32 lanes of a zmm register: the output channels of one vpdpbusd
GROUP = 4  # input channels summed per lane by one vpdpbusd
DOT_INTRIN = "yolov3_tvm_vpdpbusd_16x4"
ROW_DOT_INTRIN = "yolov3_tvm_vpdpbusd_row_16x4"  # 16 columns of one output channel (``_schedule_int8_rows``)
VNNI_FEATURE = "avx512vnni"  # LLVM's name for the CPU feature behind vpdpbusd
# u8 activations between int8 convs (``int8_graph``) are channel-blocked, ``[N, C / 16, H, W, 16]``:
# the 16 channels of a pixel that one register of the tile holds are 16 neighbouring bytes.
U8_BLOCK = LANES
U8_LAYOUT = f"NCHW{U8_BLOCK}c"


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of asymmetric u8 over [low, high], widened to hold 0 (zero padding must be exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero_point = int(np.clip(np.rint(-low / scale), 0, 255))
    return scale, zero_point


def quantize_weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OIHW fp32 -> (int8 OIHW, per-output-channel scale), symmetric in [-127, 127].

    -128 is left out so the range is symmetric; an all-zero filter gets scale 1 (its outputs are 0).
    """
    peak = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1).astype(np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
    return quantized, scale


def pack_weights_int8(quantized: np.ndarray) -> np.ndarray:
    """int8 OIHW -> ``[ceil(O / 16), ceil(I / 4), KH, KW, 16, 4]``: what one ``vpdpbusd`` reads as its 64 bytes."""
    out_channels, in_channels, kh, kw = quantized.shape
    blocks, groups = -(-out_channels // LANES), -(-in_channels // GROUP)
    padded = np.zeros((blocks * LANES, groups * GROUP, kh, kw), dtype=np.int8)
    padded[:out_channels, :in_channels] = quantized
    blocked = padded.reshape(blocks, LANES, groups, GROUP, kh, kw)
    return np.ascontiguousarray(blocked.transpose(0, 2, 4, 5, 1, 3))


def requant_constants(quantized: np.ndarray, w_scale: np.ndarray, x_scale: float, zero_point: int) -> tuple[np.ndarray, np.ndarray]:
    """Per padded output channel (scale, offset) with ``out = acc * scale + offset`` (module docstring)."""
    blocks = -(-quantized.shape[0] // LANES)
    scale = np.zeros(blocks * LANES, np.float32)
    offset = np.zeros(blocks * LANES, np.float32)
    scale[: len(w_scale)] = w_scale * np.float32(x_scale)
    sums = quantized.reshape(quantized.shape[0], -1).astype(np.int64).sum(axis=1)
    offset[: len(w_scale)] = -scale[: len(w_scale)] * np.float32(zero_point * sums)
    return scale, offset


def quantize_u8(value: Any, x_scale: float, zero_point: int) -> Any:
    """``u8(clamp(nearbyint(value / x_scale + zero_point), 0, 255))`` as a TIR expression of an fp32 ``value``.

    One expression for every place that quantizes an activation (a conv's input copy, a producer's
    epilogue in ``int8_graph``), so wherever it runs it rounds the same float the same way. The
    division is a multiplication by the float32 inverse, as it always was.
    """
    scaled = value * tirx.const(1.0 / x_scale, "float32") + tirx.const(zero_point, "float32")
    return tirx.max(tirx.min(tirx.nearbyint(scaled), tirx.const(255.0, "float32")), tirx.const(0.0, "float32")).astype("uint8")


def _byte(word: Any, k: Any) -> Any:
    """Byte ``k`` (0 = lowest) of a uint32 word, in the exact form the tensor intrinsic's description uses."""
    return tirx.bitwise_and(tirx.shift_right(word, k.astype("uint32") * tirx.const(8, "uint32")), tirx.const(255, "uint32"))


def int8_conv2d(
    data: te.Tensor,
    packed: te.Tensor,
    scale: te.Tensor,
    offset: te.Tensor,
    x_scale: float,
    zero_point: int,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> te.Tensor:
    """NCHW conv2d through int8: quantize + pad the input to u8 words of 4 channels, sum in int32, requantize to fp32.

    ``data`` is fp32 NCHW, or u8 already quantized with (``x_scale``, ``zero_point``) where the
    activation arrives in u8 (``int8_graph``): NCHW, or channel-blocked (``U8_LAYOUT``, 5-D).
    The copy then only packs and pads it. The words are 32-bit, channel 4g + k in byte k, the
    value ``vpdpbusd`` broadcasts, written with one store (4 separate byte stores cost more than
    the bytes): ``[N, C / 4, H + pads, W + pads]``, or ``[N, C / 16, H + pads, W + pads, 4]`` from
    blocked u8, where each word is 4 neighbouring bytes of the input and the copy moves 16 at a
    time. Padding (and the padded channels) hold the zero point, the u8 image of 0.0.
    """
    blocked = len(data.shape) == 5
    if blocked:
        batch, channel_blocks, height, width, block = (int(x) for x in data.shape)
        channels = channel_blocks * block
    else:
        batch, channels, height, width = (int(x) for x in data.shape)
    blocks, groups, kh, kw, lanes, group = (int(x) for x in packed.shape)
    top, left, bottom, right = padding
    out_h, out_w = conv_output_hw(height, width, (kh, kw), strides, padding, dilation)
    quantized_input = str(data.dtype) == "uint8"  # already u8 (``int8_graph``): the copy only regroups and pads

    def pack(n: Any, g: Any, y: Any, x: Any) -> Any:
        iy, ix = y - top, x - left
        value = tirx.const(0, "uint32")
        for k in range(group):
            c = g * group + k
            if blocked:
                byte = data[n, c // block, iy, ix, c % block]
            else:
                byte = data[n, tirx.min(c, channels - 1), iy, ix]
            byte = (byte if quantized_input else quantize_u8(byte, x_scale, zero_point)).astype("uint32")
            if channels % group:  # the last group's missing channels hold the zero point
                byte = tirx.if_then_else(c < channels, byte, tirx.const(zero_point, "uint32"))
            value = tirx.bitwise_or(value, tirx.shift_left(byte, tirx.const(8 * k, "uint32")))
        inside = tirx.all(iy >= 0, iy < height, ix >= 0, ix < width)
        return tirx.if_then_else(inside, value, tirx.const(zero_point * 0x01010101, "uint32"))

    padded_hw = (height + top + bottom, width + left + right)
    if blocked:
        per_block = block // group
        words = te.compute(
            (batch, channel_blocks, *padded_hw, per_block),
            lambda n, b, y, x, j: pack(n, b * per_block + j, y, x),
            name=QUANT_BLOCK,
            attrs={BLOCK_KIND: CONV_INPUT},
        )

        def word(n: Any, g: Any, y: Any, x: Any) -> Any:
            return words[n, g // per_block, y, x, g % per_block]
    else:
        words = te.compute((batch, groups, *padded_hw), pack, name=QUANT_BLOCK, attrs={BLOCK_KIND: CONV_INPUT})

        def word(n: Any, g: Any, y: Any, x: Any) -> Any:
            return words[n, g, y, x]

    rc = te.reduce_axis((0, groups), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rk = te.reduce_axis((0, group), name="rk")
    acc = te.compute(
        (batch, blocks * lanes, out_h, out_w),
        lambda n, co, y, x: te.sum(
            _byte(word(n, rc, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1]), rk).astype("int32")
            * packed[co // lanes, rc, ry, rx, co % lanes, rk].astype("int32"),
            axis=[rc, ry, rx, rk],
        ),
        name=INT8_BLOCK,
        attrs={BLOCK_KIND: INT8_CONV},
    )
    return te.compute(acc.shape, lambda n, co, y, x: acc[n, co, y, x].astype("float32") * scale[co] + offset[co], name="requantize")


@dataclass
class Int8Report:
    """Which convs an int8 legalization ran in int8 and which stayed fp32, and why (meta.json's ``int8``).

    A conv is named by its ONNX node (from the calibration file), or by its place among the
    model's convs where the file does not know it.
    """

    int8: list[str] = field(default_factory=list)
    fp32: dict[str, str] = field(default_factory=dict)  # conv -> why it stayed fp32
    u8_outputs: list[str] = field(default_factory=list)  # convs whose epilogue writes u8 (``int8_graph``)
    u8_inputs: int = 0  # int8 convs that read u8 (the rest quantize their fp32 input in their input copy)
    u8_shortcuts: int = 0  # shortcut adds reading an operand in u8 (``int8_graph``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "int8_convs": len(self.int8),
            "fp32_convs": dict(self.fp32),
            "u8_outputs": list(self.u8_outputs),
            "u8_input_convs": self.u8_inputs,
            "u8_shortcut_adds": self.u8_shortcuts,
        }


def row_tile_fits(call: Any) -> bool:
    """Whether an int8 conv2d call gets the row tile: one group of input channels, unit column stride, rows of whole vectors.

    The same test ``_schedule_int8`` makes on the TIR (one reduction group, output columns a
    multiple of 16); a column stride would make the 16 input words not contiguous.
    """
    return call.args[1].value.shape[1] <= GROUP and int(call.attrs.strides[1]) == 1 and int(call.ty.shape[3]) % LANES == 0


def _weight_key(call: Any) -> str:
    """The calibration file's key of a conv2d call's weight; "" for a weight given at run time."""
    constant = isinstance(call.args[1], tvm.ir.expr.Constant)
    return weight_key(call.args[1].value.numpy()) if constant else ""


def conv_name(call: Any, calibration: Calibration, default: str) -> str:
    """A conv2d call's ONNX node name where the calibration file knows its weight, else ``default``."""
    return calibration.names.get(_weight_key(call), default)


def fp32_reason(call: Any, calibration: Calibration) -> str | None:
    """Why a relax.nn.conv2d call stays fp32 (not packable, too few channels, not calibrated); None: int8.

    The one decision both the legalization and the graph step (``int8_graph``) take.
    """
    key = _weight_key(call)
    return (
        "not packable" if not packable(call, ("NCHW", U8_LAYOUT)) or not key
        else f"fewer than {MIN_CHANNELS} input channels (slower in int8)"
        if call.args[1].value.shape[1] < MIN_CHANNELS and not row_tile_fits(call)
        else "not calibrated" if key not in calibration.ranges
        else None
    )


def input_qparams(call: Any, calibration: Calibration) -> tuple[float, int]:
    """(scale, zero point) an int8 conv call quantizes its input with (``fp32_reason`` None)."""
    return activation_qparams(*calibration.ranges[_weight_key(call)])


def int8_conv2d_legalization(calibration: Calibration, report: Int8Report) -> Callable[[Any, Any], Any]:
    """A LegalizeOps override for relax.nn.conv2d: int8 where a calibrated range fits, fp32 packed elsewhere.

    ``report`` records which conv went where.
    """
    fallback = packed_conv2d_legalization(LANES)

    def legalize(bb: Any, call: Any) -> Any:
        index = len(report.int8) + len(report.fp32)
        name = conv_name(call, calibration, f"conv #{index}")
        reason = fp32_reason(call, calibration)
        if reason is not None:
            report.fp32[name] = reason
            return fallback(bb, call)
        report.int8.append(name)
        weight = call.args[1].value.numpy()
        x_scale, zero_point = input_qparams(call, calibration)
        quantized, w_scale = quantize_weights(weight)
        scale, offset = requant_constants(quantized, w_scale, x_scale, zero_point)
        args = [call.args[0], relax.const(pack_weights_int8(quantized)), relax.const(scale), relax.const(offset), x_scale, zero_point]
        return emit_packed_conv(bb, call, int8_conv2d, args, weight.shape[0], LANES, "conv2d_int8")

    return legalize


@T.prim_func(s_tir=True)
def _dot_desc(
    A: T.Buffer((1,), "uint32", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:1], B[0:16, 0:4])
        T.writes(C[0:16])
        # int64 loops: Relax shapes are int64, and the byte index appears in the value
        for i, k in T.grid(T.int64(16), T.int64(4)):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.Cast(
                    "int32", T.bitwise_and(T.shift_right(A[0], T.Cast("uint32", vk) * T.uint32(8)), T.uint32(255))
                ) * T.Cast("int32", B[vi, vk])


@T.prim_func(s_tir=True)
def _dot_impl(
    A: T.Buffer((1,), "uint32", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:1], B[0:16, 0:4])
        T.writes(C[0:16])
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], "int32x16"),
            T.reinterpret(T.broadcast(T.reinterpret(A[0], dtype="int32"), 16), dtype="int8x64"),
            B.vload([0, 0], "int8x64"),
            dtype="int32x16",
        )


TensorIntrin.register(DOT_INTRIN, _dot_desc, _dot_impl, override=True)


@T.prim_func(s_tir=True)
def _row_dot_desc(
    A: T.Buffer((16,), "uint32", offset_factor=1),
    B: T.Buffer((4,), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:16], B[0:4])
        T.writes(C[0:16])
        for i, k in T.grid(T.int64(16), T.int64(4)):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.Cast(
                    "int32", T.bitwise_and(T.shift_right(A[vi], T.Cast("uint32", vk) * T.uint32(8)), T.uint32(255))
                ) * T.Cast("int32", B[vk])


@T.prim_func(s_tir=True)
def _row_dot_impl(
    A: T.Buffer((16,), "uint32", offset_factor=1),
    B: T.Buffer((4,), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:16], B[0:4])
        T.writes(C[0:16])
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], "int32x16"),
            T.reinterpret(A.vload([0], "uint32x16"), dtype="int8x64"),
            T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), 16), dtype="int8x64"),
            dtype="int32x16",
        )


TensorIntrin.register(ROW_DOT_INTRIN, _row_dot_desc, _row_dot_impl, override=True)

# TVM 0.27 marks round, floor, exp... vectorizable but not nearbyint, so a vectorized loop that
# quantizes (``quantize_u8``) was scalarized whole (a u8 conv epilogue ran at half speed). It is an
# elementwise LLVM intrinsic like round (``llvm.nearbyint.v16f32``: one ``vrndscaleps``).
if tvm.ir.Op.get("tirx.nearbyint").get_attr("TVectorizable") is None:
    tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", True)


def channel_tile(channels: int, width: int, guard: bool) -> tuple[int, int]:
    """(zmm of output channels, columns) of the channel tile for a conv's (padded) output channels and row width.

    One zmm (16 channels) x up to 16 columns reloads a broadcast word for every ``vpdpbusd``;
    two zmm (32 channels) x a divisor of the row up to 12 columns use each broadcast twice, with
    up to 24 of the 32 registers accumulating. Two are taken where the channels split into 32s
    and they hold more accumulators than one. Rows of 13, 26 or 52 (yolov3-tiny's) have no
    divisor in 7..12 and keep one; at 208 (2 x 8 against 1 x 16) two made yolov3-tiny 416 0.99x
    [0.98, 1.00] as fast as main's build, one 1.01x [1.00, 1.02]. Alone on this 2-core Emerald
    Rapids (time_evaluator, 2 threads, best of 7), yolov3 640's convs went: 3x3 256->512 at 40x40
    7.46 -> 5.57 ms and at 20x20 1.59 -> 1.37 ms (10 columns: 10 accumulators -> 20), 1x1
    512->256 at 40x40 1.78 -> 1.04 ms and 256->128 at 80x80 2.17 -> 1.42 ms; the 3x3s at 80x80
    and 160x160 (16 columns before) measured the same (6.08 / 6.12, 7.33 / 7.21 ms). The 40x40
    conv now runs about 2.65 G ``vpdpbusd``/s per core, against 3.7 G/s for independent
    register-only chains on this CPU (docs/performance.md).
    """
    from . import cpu_schedule as cpu

    one = cpu._column_tile(width, LANES, 24, guard)
    two = cpu._divisor_at_most(width, 12)
    return (2, two) if channels % (2 * LANES) == 0 and 2 * two > one else (1, one)


def _schedule_int8(func: tirx.PrimFunc) -> s_tir.Schedule | None:
    """The fp32 packed conv's register tile (``cpu_schedule``), its innermost (16 x 4) reduction one ``vpdpbusd``.

    One or two zmm of output channels (``channel_tile``) x up to 16 columns, the accumulators in
    registers, requantization, bias and activation applied as the tile is written back (column
    by column into blocked u8, channel by channel into NCHW), (channel block, row) tasks in
    parallel, and the quantizing input copy its own parallel pass.
    """
    # imported here: cpu_schedule lists this rule among its own, so it imports this module first
    from . import cpu_schedule as cpu

    sch = s_tir.Schedule(func)
    conv = cpu._conv_block(sch, INT8_CONV)
    if conv is None:
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 8:
        return None
    n, co, oh, ow, rc, ry, rx, rk = loops
    if cpu._extent(sch, rc) == 1 and cpu._extent(sch, ow) % LANES == 0:  # ``row_tile_fits``
        return _schedule_int8_rows(sch)
    cropped = any(
        [int(d) for d in sch.get(block).writes[0].source.shape] != [int(d) for d in sch.get(conv).writes[0].source.shape]
        for block in cpu._elementwise_chain(sch, conv)
    )
    vectors, w_tile = channel_tile(cpu._extent(sch, co), cpu._extent(sch, ow), guard=not cropped)
    rows_outer = cpu._rows_outer(sch, conv, cpu._extent(sch, co) // (vectors * LANES), cpu._extent(sch, oh))
    co_outer, co_vector, co_inner = sch.split(co, [None, vectors, LANES])
    ow_outer, ow_inner = sch.split(ow, [None, w_tile])
    outer = (oh, co_outer) if rows_outer else (co_outer, oh)
    sch.reorder(n, *outer, ow_outer, rc, ry, rx, ow_inner, co_vector, co_inner, rk)
    local = sch.cache_write(conv, 0, "local")
    sch.transform_layout(conv, ("write", 0), lambda b, c, y, x: (b, y, x, c))
    sch.reverse_compute_at(local, ow_outer)
    for consumer in cpu._elementwise_chain(sch, local):
        sch.reverse_compute_inline(consumer)
    sch.unroll(ow_inner)
    sch.unroll(co_vector)
    tasks = sch.fuse(n, *outer)
    sch.parallel(tasks)
    init = sch.decompose_reduction(conv, rc)
    for producer in sch.get_producers(conv):
        if cpu._is_padding(sch, producer):
            _schedule_input_copy(sch, producer)
    sch.vectorize(sch.get_loops(init)[-1])
    if len(sch.get(local).writes[0].source.shape) == 5:
        # a channel-blocked u8 output (``U8_LAYOUT``): each column's 16 channels are one vector,
        # read from its accumulator and stored as 16 neighbouring bytes
        channel, column = sch.get_loops(local)[-2:]
        sch.reorder(column, channel)
        sch.vectorize(sch.split(channel, [None, LANES])[1])
    else:
        # NCHW: each channel's columns are one vector, gathered from the column accumulators
        sch.vectorize(sch.get_loops(local)[-1])
    sch.tensorize(co_inner, DOT_INTRIN)  # last: it replaces the conv block
    return sch


def _schedule_int8_rows(sch: s_tir.Schedule) -> s_tir.Schedule:
    """A tile of 16 columns x 16 output channels, each ``vpdpbusd`` 16 columns of one channel.

    For convs with one group of 4 input channels (``row_tile_fits``; the first conv): lane j sums
    the 4 bytes of input column x + j with one output channel's 4 weights, broadcast from memory
    (``vpdpbusd``'s ``{1to16}`` operand). One input vector serves all 16 channels, and the
    accumulators are rows of the NCHW output, written back through the epilogue as they are.
    On yolov3-tiny 416 the first conv took 0.62x of its fp32 time (docs/precision.md).
    """
    from . import cpu_schedule as cpu

    conv = cpu._conv_block(sch, INT8_CONV)
    n, co, oh, ow, rc, ry, rx, rk = sch.get_loops(conv)
    co_outer, co_inner = sch.split(co, [None, LANES])
    ow_outer, ow_inner = sch.split(ow, [None, LANES])
    sch.reorder(n, oh, co_outer, ow_outer, rc, ry, rx, co_inner, ow_inner, rk)
    local = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(local, ow_outer)
    for consumer in cpu._elementwise_chain(sch, local):
        sch.reverse_compute_inline(consumer)
    sch.unroll(co_inner)
    tasks = sch.fuse(n, oh, co_outer)
    sch.parallel(tasks)
    init = sch.decompose_reduction(conv, rc)
    for producer in sch.get_producers(conv):
        if cpu._is_padding(sch, producer):
            _schedule_input_copy(sch, producer)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(local)[-1])
    sch.tensorize(ow_inner, ROW_DOT_INTRIN)
    return sch


def _schedule_input_copy(sch: s_tir.Schedule, block: Any) -> None:
    """The input copy ``[N, C / 4, H + p, W + p]`` (words): (n, group, row) tasks in parallel, each a row of words.

    Fusing all the loops into one parallel loop (the generic ``_parallel_spatial``) paid a
    division and three remainders per word; per row they are paid once.
    """
    n, g, y, *_ = sch.get_loops(block)
    sch.parallel(sch.fuse(n, g, y))


class Int8Conv2D(CPUScheduleRule):
    """A fused function around one ``int8_conv2d`` block; None (not mine) for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Any, tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        try:
            return _schedule_int8(func)
        except (s_tir.ScheduleError, RuntimeError, ValueError):
            return None
