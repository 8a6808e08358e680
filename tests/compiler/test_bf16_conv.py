"""bf16 convs: bit-exact packing and rounding, results equal to a bf16 numpy reference, vdpbf16ps in the code."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from conftest import SUITE_MCPU, needs_bf16, reference_conv, write_conv_onnx
from onnx import numpy_helper

from yolov3_tvm_opt.compiler.bf16_conv import (
    BF16_BLOCK,
    MIN_CHANNELS,
    bf16_conv2d_legalization,
    from_bf16_bits,
    pack_weights_bf16,
    to_bf16_bits,
)
from yolov3_tvm_opt.compiler.conv_packing import PACKED_BLOCK
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.pipeline import build
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU))


def run(path, data, precision):
    mod, _, _ = import_onnx(path)
    ex = build(mod, TARGET, precision=precision)
    return ex, relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(data)).numpy()


def bf16_round(values):
    return values.astype(ml_dtypes.bfloat16).astype(np.float32)


def test_to_bf16_bits_rounds_to_nearest_even_like_ml_dtypes():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.standard_normal(10000).astype(np.float32) * 100,
            # ties both ways, the largest finite values, infinities, signed zeros and denormals
            np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.4e38, -3.4e38, np.inf, -np.inf, 0.0, -0.0, 1e-40], np.float32),
        ]
    )
    expected = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(to_bf16_bits(values), expected)
    assert np.isnan(from_bf16_bits(to_bf16_bits(np.array([np.nan], np.float32))))[0]
    np.testing.assert_array_equal(from_bf16_bits(expected), bf16_round(values))


def test_pack_weights_bf16_interleaves_input_channel_pairs_per_output_lane():
    weight = np.random.default_rng(1).standard_normal((255, 5, 3, 3)).astype(np.float32)
    packed = pack_weights_bf16(weight)
    assert packed.shape == (16, 3, 3, 3, 16, 2) and packed.dtype == np.uint16 and packed.flags.c_contiguous
    bits = to_bf16_bits(weight)
    for o, c in ((0, 0), (15, 1), (16, 4), (100, 3), (254, 2)):
        np.testing.assert_array_equal(packed[o // 16, c // 2, :, :, o % 16, c % 2], bits[o, c])
    assert not packed[:, 2, :, :, :, 1].any()  # input channel 5 (pads 5 to 6) is zero
    assert not packed[15, :, :, :, 15].any()  # output channel 255 is a zero filter


@needs_bf16
def test_activations_are_rounded_to_bf16_nearest_even_in_the_kernel(tmp_path):
    """A 1x1 identity conv returns its input as the kernel rounded it: exactly bf16(x)."""
    channels = 32
    weight = np.eye(channels, dtype=np.float32)[:, :, None, None]
    write_conv_onnx(tmp_path / "c.onnx", 7, channels, channels, 1, weight=weight)
    x = np.random.default_rng(2).standard_normal((1, channels, 7, 7)).astype(np.float32)
    _, out = run(tmp_path / "c.onnx", x, "bf16")
    np.testing.assert_array_equal(out, bf16_round(x))


@needs_bf16
@pytest.mark.parametrize(
    "size,cin,cout,kernel,stride,bias",
    [
        (13, 32, 64, 3, 1, True),  # yolov3-tiny's 13 x 13 layers, with the fused bias + leaky epilogue
        (20, 16, 255, 1, 1, True),  # YOLO head: 255 channels padded to 256 and cropped back
        (21, 17, 16, 3, 2, False),  # stride 2, odd input size, odd channel count (pads to a pair)
        (26, 64, 32, 3, 1, False),  # rows of 26: a column tile that divides the row
    ],
)
def test_bf16_conv_matches_a_bf16_numpy_reference(tmp_path, size, cin, cout, kernel, stride, bias):
    weight, inits = write_conv_onnx(tmp_path / "c.onnx", size, cin, cout, kernel, stride, bias=bias, leaky=bias)
    x = np.random.default_rng(3).standard_normal((1, cin, size, size)).astype(np.float32)
    _, out = run(tmp_path / "c.onnx", x, "bf16")
    expected = reference_conv(bf16_round(x), bf16_round(weight), stride)
    if bias:
        expected += numpy_helper.to_array(inits[1])[None, :, None, None]
        expected = np.where(expected > 0, expected, 0.1 * expected)
    scale = np.abs(expected).max()
    # only the fp32 sums' rounding differs: far below bf16's own 2^-9 relative step
    assert np.abs(out - expected).max() <= 1e-5 * scale * np.sqrt(cin * kernel * kernel)
    # and bf16 really happened: fp32 weights would differ from this reference by ~2^-9
    assert np.abs(out - reference_conv(x, weight, stride)).max() > 1e-4 * scale


@needs_bf16
def test_bf16_build_runs_vdpbf16ps(tmp_path):
    write_conv_onnx(tmp_path / "c.onnx", 13, 32, 32, 3)
    mod, _, _ = import_onnx(tmp_path / "c.onnx")
    ex = build(mod, TARGET, precision="bf16")
    asm = "".join(m.inspect_source("asm") for m in ex.mod.imports if m.kind == "llvm")
    assert "vdpbf16ps" in asm


def test_narrow_convs_stay_fp32_and_the_rest_legalize_to_bf16(tmp_path):
    write_conv_onnx(tmp_path / "first.onnx", 16, MIN_CHANNELS - 1, 16, 3)
    write_conv_onnx(tmp_path / "wide.onnx", 16, MIN_CHANNELS, 16, 3)
    legalize = relax.transform.LegalizeOps(customize_legalize_map={"relax.nn.conv2d": bf16_conv2d_legalization()})

    def blocks(path):
        mod, _, _ = import_onnx(path)
        return "".join(f.script() for f in legalize(mod).functions.values() if isinstance(f, tvm.tirx.PrimFunc))

    first, wide = blocks(tmp_path / "first.onnx"), blocks(tmp_path / "wide.onnx")
    assert f'"{PACKED_BLOCK}"' in first and BF16_BLOCK not in first
    assert f'"{BF16_BLOCK}"' in wide and f'"{PACKED_BLOCK}"' not in wide

