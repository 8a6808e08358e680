"""int8 convs: packing and quantization exact, results equal to an int8 numpy reference, vpdpbusd in the code."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SUITE_MCPU, needs_vnni, reference_conv, write_conv_onnx

from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.int8_conv import MIN_CHANNELS, activation_qparams, channel_tile, pack_weights_int8, quantize_weights
from yolov3_tvm_opt.compiler.pipeline import lower_pipeline, optimize
from yolov3_tvm_opt.compiler.precision import int8_kernel
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.calibration import Calibration, weight_key
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU))
VNNI_TARGET = make_target(TargetOptions(cpu_threads=2, mcpu="icelake-server"))  # for builds that are not run: any machine


def build_int8(path, calibration, target=TARGET):
    mod, _, _ = import_onnx(path)
    optimized, counts = optimize(mod, target, precision="int8", calibration=calibration)
    return relax.build(optimized, target=target, relax_pipeline=lower_pipeline(target)), counts


def asm(ex):
    return "".join(m.inspect_source("asm") for m in ex.mod.imports if m.kind == "llvm")


def int8_reference(x, weight, stride, low, high):
    """The conv of the quantized values, in float64: what the int32 sums and the requantization compute exactly."""
    x_scale, zero_point = activation_qparams(low, high)
    qx = np.clip(np.rint(x / np.float32(x_scale)) + zero_point, 0, 255) - zero_point
    qw, w_scale = quantize_weights(weight)
    return reference_conv(qx.astype(np.float32), qw.astype(np.float32), stride) * x_scale * w_scale[None, :, None, None]


def test_pack_weights_int8_groups_four_input_channels_per_output_lane():
    quantized, _ = quantize_weights(np.random.default_rng(1).standard_normal((255, 6, 3, 3)).astype(np.float32))
    packed = pack_weights_int8(quantized)
    assert packed.shape == (16, 2, 3, 3, 16, 4) and packed.dtype == np.int8 and packed.flags.c_contiguous
    for o, c in ((0, 0), (15, 3), (16, 4), (100, 5), (254, 1)):
        np.testing.assert_array_equal(packed[o // 16, c // 4, :, :, o % 16, c % 4], quantized[o, c])
    assert not packed[:, 1, :, :, :, 2:].any()  # input channels 6 and 7 (pads 6 to 8) are zero
    assert not packed[15, :, :, :, 15].any()  # output channel 255 is a zero filter


def test_quantization_is_symmetric_per_output_channel_and_zero_stays_exact():
    weight = np.random.default_rng(2).standard_normal((8, 4, 3, 3)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)[:, None, None, None]
    weight[3] = 0
    quantized, scale = quantize_weights(weight)
    assert quantized.dtype == np.int8 and quantized.min() >= -127
    peaks = np.abs(quantized).reshape(8, -1).max(axis=1)
    assert (peaks[np.arange(8) != 3] == 127).all() and peaks[3] == 0  # each channel uses its own full range
    np.testing.assert_allclose(quantized * scale[:, None, None, None], weight, atol=float(scale.max()) / 2 + 1e-6)
    x_scale, zero_point = activation_qparams(-1.5, 6.0)
    assert 0 < zero_point < 255 and np.isclose(x_scale * 255, 7.5) and np.isclose(-zero_point * x_scale, -1.5, atol=x_scale / 2)
    assert activation_qparams(0.5, 2.0)[1] == 0  # a range that excludes 0 is widened to hold it (zero padding is exact)


@needs_vnni
@pytest.mark.parametrize(
    "size, cin, cout, kernel, stride",
    [(13, 32, 48, 3, 1), (12, 18, 40, 3, 2), (10, 64, 255, 1, 1), (10, 16, 64, 3, 1)],
    ids=["3x3", "3x3-stride2-channels-pad-to-groups", "1x1-head-crop-two-vectors", "3x3-two-vectors"],
)
def test_int8_conv_equals_the_int8_reference_and_uses_vpdpbusd(tmp_path, size, cin, cout, kernel, stride):
    weight, _ = write_conv_onnx(tmp_path / "c.onnx", size, cin, cout, kernel, stride=stride)
    x = np.random.default_rng(3).standard_normal((1, cin, size, size)).astype(np.float32)
    low, high = float(x.min()) * 0.8, float(x.max()) * 0.8  # a range that clips: both ends saturate
    ex, counts = build_int8(tmp_path / "c.onnx", Calibration({weight_key(weight): (low, high)}))
    assert counts["int8"] == {"int8_convs": 1, "fp32_convs": {}, "u8_outputs": [], "u8_input_convs": 0, "u8_shortcut_adds": 0}  # the image has no producer
    assert counts["conv2d_int8_default_schedules"] == 1
    assert "vpdpbusd" in asm(ex)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    expected = int8_reference(x, weight, stride, low, high)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_the_channel_tile_shares_each_broadcast_between_two_vectors_where_channels_and_rows_allow():
    # yolov3 640's rows of 20..160: 32 channels x 10 columns (20 accumulators) rather than 16 x 10 or 16 x 16
    assert [channel_tile(512, width, guard=True) for width in (20, 40, 80, 160)] == [(2, 10)] * 4
    assert channel_tile(48, 40, guard=True) == (1, 10)  # 48 channels: no pairs of vectors
    # yolov3-tiny's rows of 13, 26 and 52 have no divisor in 7..12: one vector, the tile the row allows
    assert [channel_tile(256, width, guard=True) for width in (13, 26, 52)] == [(1, 13), (1, 13), (1, 13)]
    assert channel_tile(32, 208, guard=True) == (1, 16)  # 2 x 8 accumulators are no more than 1 x 16


@pytest.mark.parametrize("mcpu", ["icelake-server", "znver4"])
def test_cross_compiling_for_a_vnni_cpu_emits_vpdpbusd_anywhere(tmp_path, mcpu):
    weight, _ = write_conv_onnx(tmp_path / "c.onnx", 8, 32, 32, 3)
    target = make_target(TargetOptions(mcpu=mcpu))
    ex, counts = build_int8(tmp_path / "c.onnx", Calibration({weight_key(weight): (-1.0, 1.0)}), target)
    assert counts["int8"]["int8_convs"] == 1 and "vpdpbusd" in asm(ex)


def test_a_cpu_without_vnni_gets_one_line():
    with pytest.raises(UserError, match="int8 kernels need AVX512-VNNI .*CPU skylake-avx512 lacks"):
        int8_kernel(make_target(TargetOptions(mcpu="skylake-avx512")))


@needs_vnni
def test_a_three_channel_conv_runs_the_row_tile_and_equals_the_int8_reference(tmp_path):
    """The first conv's shape (3 channels: one group of 4) in int8: 16 columns per vpdpbusd, weights broadcast.

    24 output channels: a second channel block half zero filters, cropped after the epilogue.
    """
    weight, _ = write_conv_onnx(tmp_path / "c.onnx", 32, 3, 24, 3)
    x = (np.random.default_rng(4).integers(0, 256, (1, 3, 32, 32)) / 255).astype(np.float32)  # pixels: exact u8 codes
    ex, counts = build_int8(tmp_path / "c.onnx", Calibration({weight_key(weight): (0.0, 1.0)}))
    assert counts["int8"]["int8_convs"] == 1 and counts["conv2d_int8_default_schedules"] == 1
    # the row tile's weights are vpdpbusd's broadcast memory operand; the channel tile's are whole vectors
    assert any("{1to16}" in line for line in asm(ex).splitlines() if "vpdpbusd" in line)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    expected = int8_reference(x, weight, 1, 0.0, 1.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_convs_int8_does_not_fit_or_would_slow_stay_fp32(tmp_path):
    """A 3-channel conv the row tile does not fit (rows of 8 columns: slower in int8) and an uncalibrated conv take the fp32 packed conv."""
    cases = {"first": (3, True), "uncalibrated": (32, False)}
    counts = {}
    for name, (cin, calibrated) in cases.items():
        weight, _ = write_conv_onnx(tmp_path / f"{name}.onnx", 8, cin, 16, 3)
        _, built = build_int8(tmp_path / f"{name}.onnx", Calibration({weight_key(weight): (-1.0, 1.0)} if calibrated else {}), VNNI_TARGET)
        counts[name] = built
        assert built["int8"]["int8_convs"] == 0 and built["conv2d_default_schedules"] == 1
    # named by their place among the convs: these calibrations know no ONNX names
    assert counts["first"]["int8"]["fp32_convs"] == {"conv #0": f"fewer than {MIN_CHANNELS} input channels (slower in int8)"}
    assert counts["uncalibrated"]["int8"]["fp32_convs"] == {"conv #0": "not calibrated"}


def test_int8_needs_a_calibration_and_embedded_weights():
    with pytest.raises(UserError, match="int8 needs activation ranges: run `yolov3-tvm calibrate"):
        CompileOptions(TargetOptions(precision="int8"))
    with pytest.raises(UserError, match="int8 builds keep their weights in model.so"):
        CompileOptions(TargetOptions(precision="int8"), weights="separate", calibration="c.json")
