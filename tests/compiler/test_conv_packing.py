"""Packing conv2d weights for output-channel vectors changes the layout, never the result."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compiler.conv_packing import (
    PACKED_BLOCK,
    pack_weights,
    packed_conv2d_legalization,
)
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2))


def conv_onnx(path, size, cin, cout, kernel, stride=1, dilation=1, group=1):
    rng = np.random.default_rng(cin * cout + kernel + stride)
    weight = (rng.standard_normal((cout, cin // group, kernel, kernel)) * 0.2).astype(np.float32)
    pad = dilation * (kernel // 2)
    node = helper.make_node(
        "Conv", ["images", "w"], ["output"], pads=[pad] * 4, strides=[stride] * 2, dilations=[dilation] * 2, group=group
    )
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, out, out])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def legalized(path, packed: bool, lanes: int = 16):
    mod, _, _ = import_onnx(path)
    overrides = {"relax.nn.conv2d": packed_conv2d_legalization(lanes)} if packed else None
    return relax.transform.LegalizeOps(customize_legalize_map=overrides)(mod)


def tir_text(mod) -> str:
    """The TVMScript of every PrimFunc, where block names appear as T.sblock("name")."""
    return "".join(func.script() for func in mod.functions.values() if isinstance(func, tvm.tirx.PrimFunc))


def run(mod, data):
    ex = relax.build(mod, target=TARGET)
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(data)).numpy()


def test_pack_weights_puts_lanes_output_channels_together_and_pads_with_zero_filters():
    weight = np.random.default_rng(0).standard_normal((255, 3, 3, 3)).astype(np.float32)
    packed = pack_weights(weight, 16)
    assert packed.shape == (16, 3, 3, 3, 16) and packed.flags.c_contiguous
    for o in (0, 15, 16, 100, 254):
        np.testing.assert_array_equal(packed[o // 16, :, :, :, o % 16], weight[o])
    assert not packed[15, :, :, :, 15].any()  # channel 255 is a zero filter


@pytest.mark.parametrize(
    "size,cin,cout,kernel,stride,dilation,lanes",
    [
        (13, 16, 32, 3, 1, 1, 16),  # yolov3-tiny's 13 x 13 layers
        (20, 8, 255, 1, 1, 1, 16),  # YOLO head: 1x1, 255 channels padded to 256 and cropped back
        (21, 4, 16, 3, 2, 1, 16),  # stride 2, odd input
        (12, 3, 16, 3, 1, 2, 16),  # dilation
        (13, 8, 255, 3, 1, 1, 8),  # AVX2's 8 lanes
    ],
)
def test_packed_conv_is_bit_exact_with_topi(tmp_path, size, cin, cout, kernel, stride, dilation, lanes):
    path = conv_onnx(tmp_path / "c.onnx", size, cin, cout, kernel, stride, dilation)
    packed, plain = legalized(path, packed=True, lanes=lanes), legalized(path, packed=False)
    assert f'"{PACKED_BLOCK}"' in tir_text(packed) and PACKED_BLOCK not in tir_text(plain)
    data = np.random.default_rng(1).standard_normal((1, cin, size, size)).astype(np.float32)
    result = run(packed, data)
    assert result.shape[1] == cout
    np.testing.assert_array_equal(result, run(plain, data))


def test_grouped_conv_keeps_topi(tmp_path):
    path = conv_onnx(tmp_path / "g.onnx", 8, 8, 16, 3, group=2)
    assert PACKED_BLOCK not in tir_text(legalized(path, packed=True))
