"""llvm conv2d in bf16 with fp32 accumulation: one ``vdpbf16ps`` per (column, input-channel pair).

Why: our fp32 packed conv runs at the FMA peak of the CPU (16 MACs per instruction). On CPUs
with AVX512_BF16, ``vdpbf16ps`` does 32 MACs per instruction (16 fp32 lanes, each summing two
bf16 products), so the same register tile does twice the work per instruction. OpenVINO
switches to bf16 by default on such CPUs; this is the same trade (8-bit mantissa inputs, fp32
sums and epilogue).

Layout, chosen for the instruction: lane j of ``vdpbf16ps acc, a, b`` adds
``a[2j] * b[2j] + a[2j+1] * b[2j+1]``. With ``b`` = 16 output channels x 2 input channels
interleaved, and ``a`` = one pixel's input-channel pair broadcast to all 16 lanes as one 32-bit
value, each lane accumulates its own output channel. So:

* weights are packed at compile time (numpy, round-to-nearest-even) to
  ``[O / 16, I / 2, KH, KW, 16, 2]`` uint16 (bf16 bits), I padded to even with zeros and O to a
  multiple of 16 with zero filters (YOLO's 255-channel heads, as in ``conv_packing``);
* each conv converts its fp32 NCHW input once to a padded bf16 pair layout
  ``[N, C / 2, H + pads, W + pads]`` uint32, channel pairs in one word (the ``CONV_INPUT`` producer block of the same function,
  scheduled as its own parallel pass like the fp32 padding copy), so no layout change leaks
  into the graph: activations between layers stay fp32 NCHW, and the epilogue (bias, leaky,
  residual) runs in fp32 on the accumulators;
* the inner (16 channels x 2 input channels) reduction is tensorized into a call of a small
  LLVM IR helper that bitcasts its int32 vectors to ``<32 x bfloat>`` and calls
  ``llvm.x86.avx512bf16.dpbf16ps.512``. TVM 0.27 cannot pass bf16 vectors to the intrinsic
  itself (its codegen lowers bfloat16 to i16, the intrinsic wants ``bfloat``), so the helper is
  linked in with ``pragma_import_llvm`` and inlined (``alwaysinline``).

Convs it does not fit (grouped, non-constant weights, other layouts or dtypes) keep the fp32
packed legalization, so a bf16 build is always complete. So do convs with fewer than
``MIN_CHANNELS`` input channels (YOLO's first conv, C = 3): their reduction is too short for
bf16 to win (3 channels pad to 2 pairs, a third of it zeros) and the conversion pass would
read the largest activation of the network; measured, bf16 was slower there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.tvm_loader import load_tvm
from .conv_packing import BLOCK_KIND, CONV_INPUT, conv_output_hw, emit_packed_conv, packable, packed_conv2d_legalization

tvm = load_tvm()

from tvm import relax, te, tirx  # noqa: E402
from tvm.s_tir import TensorIntrin  # noqa: E402
from tvm.script import tirx as T  # noqa: E402

BF16_BLOCK = "conv2d_bf16_packed"  # the compute block's name
BF16_CONV = "bf16_conv2d"  # its BLOCK_KIND annotation, which the schedule rule looks for
PAIR_BLOCK = "bf16_pairs"  # the conversion block, a CONV_INPUT: scheduled like the fp32 padding copy
MIN_CHANNELS = 16  # input channels below which a conv stays fp32 (see the module docstring)
LANES = 16  # fp32 lanes of a zmm register: the output channels of one vdpbf16ps
DOT_INTRIN = "yolov3_tvm_dpbf16ps_16x2"
HELPER = "yolov3_tvm_dpbf16ps"

# linkonce_odr: every conv function imports the helper into the one LLVM module, and the copies
# must merge; alwaysinline: a call per instruction would spill the register tile
HELPER_IR = f"""
define linkonce_odr <16 x float> @{HELPER}(<16 x float> %acc, <16 x i32> %a, <16 x i32> %b) #0 {{
  %x = bitcast <16 x i32> %a to <32 x bfloat>
  %y = bitcast <16 x i32> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %x, <32 x bfloat> %y)
  ret <16 x float> %r
}}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
attributes #0 = {{ alwaysinline nounwind readnone }}
"""


def to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16), rounding to nearest even as the hardware does.

    NaNs stay NaNs (quiet); rounding alone could carry a NaN's payload into infinity.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return rounded


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> the fp32 values they hold (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def pack_weights_bf16(weight: np.ndarray) -> np.ndarray:
    """OIHW fp32 -> ``[ceil(O / 16), ceil(I / 2), KH, KW, 16, 2]`` bf16 bits (uint16).

    The last two axes are what one ``vdpbf16ps`` reads as its 32 bf16 weights: 16 output
    channels, each with an adjacent input-channel pair. Padding channels are zero.
    """
    out_channels, in_channels, kh, kw = weight.shape
    blocks, pairs = -(-out_channels // LANES), -(-in_channels // 2)
    padded = np.zeros((blocks * LANES, pairs * 2, kh, kw), dtype=np.float32)
    padded[:out_channels, :in_channels] = weight
    blocked = padded.reshape(blocks, LANES, pairs, 2, kh, kw)
    return np.ascontiguousarray(to_bf16_bits(blocked.transpose(0, 2, 4, 5, 1, 3)))


def _widen(bits: Any) -> Any:
    """bf16 bits (uint16) -> fp32, in the exact form the tensor intrinsic's description uses."""
    return tirx.reinterpret("float32", tirx.shift_left(bits.astype("uint32"), tirx.const(16, "uint32")))


def _widen_half(pair: Any, half: Any) -> Any:
    """One bf16 of a packed pair (uint32: channel 2c low, 2c + 1 high) -> fp32, ``half`` 0 or 1."""
    shift = half.astype("uint32") * tirx.const(16, "uint32")
    return tirx.reinterpret("float32", tirx.shift_left(tirx.shift_right(pair, shift), tirx.const(16, "uint32")))


def _narrow(value: Any) -> Any:
    """fp32 -> bf16 bits in the low half of a uint32, round to nearest even (activations are finite)."""
    bits = tirx.reinterpret("uint32", value)
    odd = tirx.bitwise_and(tirx.shift_right(bits, tirx.const(16, "uint32")), tirx.const(1, "uint32"))
    return tirx.shift_right(bits + tirx.const(0x7FFF, "uint32") + odd, tirx.const(16, "uint32"))


def bf16_conv2d(
    data: te.Tensor,
    packed: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> te.Tensor:
    """NCHW fp32 conv2d through bf16: convert + pad the input to pairs, then sum in fp32.

    The pairs are ``[N, C / 2, H + pads, W + pads]`` uint32, channel 2c in the low half and
    2c + 1 in the high half: one 32-bit value is exactly what ``vdpbf16ps`` broadcasts, and the
    conversion is an elementwise pass over rows that vectorises like the fp32 padding copy.
    """
    batch, channels, height, width = (int(x) for x in data.shape)
    blocks, pairs, kh, kw, lanes, _ = (int(x) for x in packed.shape)
    top, left, bottom, right = padding
    out_h, out_w = conv_output_hw(height, width, (kh, kw), strides, padding, dilation)

    def pair(n: Any, cp: Any, y: Any, x: Any) -> Any:
        iy, ix = y - top, x - left
        low = _narrow(data[n, cp * 2, iy, ix])
        high = _narrow(data[n, tirx.min(cp * 2 + 1, channels - 1), iy, ix])
        if channels % 2:  # the last pair's high half is a zero channel
            high = tirx.if_then_else(cp * 2 + 1 < channels, high, tirx.const(0, "uint32"))
        inside = tirx.all(iy >= 0, iy < height, ix >= 0, ix < width)
        value = tirx.bitwise_or(low, tirx.shift_left(high, tirx.const(16, "uint32")))
        return tirx.if_then_else(inside, value, tirx.const(0, "uint32"))

    pairs_data = te.compute(
        (batch, pairs, height + top + bottom, width + left + right), pair, name=PAIR_BLOCK, attrs={BLOCK_KIND: CONV_INPUT}
    )
    rc = te.reduce_axis((0, pairs), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rp = te.reduce_axis((0, 2), name="rp")
    return te.compute(
        (batch, blocks * lanes, out_h, out_w),
        lambda n, co, y, x: te.sum(
            _widen_half(pairs_data[n, rc, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1]], rp)
            * _widen(packed[co // lanes, rc, ry, rx, co % lanes, rp]),
            axis=[rc, ry, rx, rp],
        ),
        name=BF16_BLOCK,
        attrs={BLOCK_KIND: BF16_CONV},
    )


def bf16_conv2d_legalization() -> Callable[[Any, Any], Any]:
    """A LegalizeOps override for relax.nn.conv2d: bf16 packed weights where the kernel fits,
    the fp32 packed conv elsewhere."""
    fallback = packed_conv2d_legalization(LANES)

    def legalize(bb: Any, call: Any) -> Any:
        if not packable(call) or call.args[1].value.shape[1] < MIN_CHANNELS:
            return fallback(bb, call)
        weight = call.args[1].value.numpy()
        packed = relax.const(pack_weights_bf16(weight))
        return emit_packed_conv(bb, call, bf16_conv2d, [call.args[0], packed], weight.shape[0], LANES, "conv2d_bf16")

    return legalize


@T.prim_func(s_tir=True)
def _dot_desc(
    A: T.Buffer((1,), "uint32", offset_factor=1),
    B: T.Buffer((16, 2), "uint16", offset_factor=1),
    C: T.Buffer((16,), "float32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:1], B[0:16, 0:2])
        T.writes(C[0:16])
        # int64 loops: Relax shapes are int64, and the pair half index appears in the value
        for i, k in T.grid(T.int64(16), T.int64(2)):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.reinterpret(
                    "float32", T.shift_left(T.shift_right(A[0], T.Cast("uint32", vk) * T.uint32(16)), T.uint32(16))
                ) * T.reinterpret("float32", T.shift_left(T.Cast("uint32", B[vi, vk]), T.uint32(16)))


@T.prim_func(s_tir=True)
def _dot_impl(
    A: T.Buffer((1,), "uint32", offset_factor=1),
    B: T.Buffer((16, 2), "uint16", offset_factor=1),
    C: T.Buffer((16,), "float32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:1], B[0:16, 0:2])
        T.writes(C[0:16])
        C[T.ramp(T.int32(0), 1, 16)] = T.call_extern(
            "float32x16",
            HELPER,
            C.vload([0], "float32x16"),
            T.broadcast(T.reinterpret(A[0], dtype="int32"), 16),
            T.reinterpret(B.vload([0, 0], "uint16x32"), dtype="int32x16"),
        )


TensorIntrin.register(DOT_INTRIN, _dot_desc, _dot_impl, override=True)
