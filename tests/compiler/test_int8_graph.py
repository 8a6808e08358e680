"""The u8 chain: which convs write u8, and outputs bit-identical to quantizing in each conv's input copy."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import SUITE_MCPU, needs_vnni
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.int8_conv import Int8Report, activation_qparams
from yolov3_tvm_opt.compiler.int8_graph import POOL_FUNC, chain_u8
from yolov3_tvm_opt.compiler.pipeline import lower_pipeline, optimize
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.calibration import Calibration, load_calibration, weight_key
from yolov3_tvm_opt.core.options import BenchOptions, TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm
from yolov3_tvm_opt.evaluate.calibrate import calibrate

tvm = load_tvm()

from tvm import relax  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU))


def write_graph(path, edges):
    """A small ONNX: convs ``a`` (16 -> 16 channels) and ``b`` / ``c`` (16 -> 32), 3x3, leaky ReLU after each.

    ``edges`` picks how ``a``'s activation reaches ``b`` (and ``c``): "pool" (a max pool between),
    "output" (also a model output, so read in fp32), "two_ranges" (``b`` through a pool, ``c``
    directly: two different calibrated ranges). Returns the calibration every conv has a range in.
    """
    rng = np.random.default_rng(5)
    weights = {name: (rng.standard_normal((cout, 16, 3, 3)) * 0.2).astype(np.float32) for name, cout in (("a", 16), ("b", 32), ("c", 32))}
    nodes = [helper.make_node("Conv", ["images", "a"], ["a_conv"], pads=[1] * 4), helper.make_node("LeakyRelu", ["a_conv"], ["a_out"], alpha=0.1)]
    b_input, outputs = "a_out", [("b_out", 32, 8)]
    if edges in ("pool", "two_ranges"):
        nodes.append(helper.make_node("MaxPool", ["a_out"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
        b_input, outputs = "pooled", [("b_out", 32, 4)]
    if edges == "output":
        outputs.append(("a_out", 16, 8))
    if edges == "two_ranges":
        nodes += [helper.make_node("Conv", ["a_out", "c"], ["c_conv"], pads=[1] * 4), helper.make_node("LeakyRelu", ["c_conv"], ["c_out"], alpha=0.1)]
        outputs.append(("c_out", 32, 8))
    nodes += [helper.make_node("Conv", [b_input, "b"], ["b_conv"], pads=[1] * 4), helper.make_node("LeakyRelu", ["b_conv"], ["b_out"], alpha=0.1)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, s, s]) for name, c, s in outputs],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ranges = {"a": (-1.0, 1.0), "b": (-0.5, 3.0), "c": (-2.0, 3.0)}
    return Calibration(
        {weight_key(w): ranges[name] for name, w in weights.items()}, names={weight_key(w): name for name, w in weights.items()}
    )


def test_a_conv_writes_u8_only_where_every_reader_takes_the_same_u8(tmp_path):
    """Through a pool: ``a`` writes u8. A model output reading ``a``, or two int8 readers with different ranges: fp32.

    With two ranges the pool quantizes what it writes (b still reads u8) and c quantizes its own input.
    """
    # (convs writing u8, int8 convs reading u8, u8 tensors in the graph)
    expected = {"pool": (["a"], 1, 2), "output": ([], 0, 0), "two_ranges": ([], 1, 1)}
    for edges, (outputs, readers, tensors) in expected.items():
        calibration = write_graph(tmp_path / f"{edges}.onnx", edges)
        mod, _, _ = import_onnx(tmp_path / f"{edges}.onnx")
        report = Int8Report()
        chained = chain_u8(mod, calibration, report)
        assert (report.u8_outputs, report.u8_inputs) == (outputs, readers), edges
        u8 = [b for b in chained["main"].body.blocks[0].bindings if str(getattr(b.var.ty, "dtype", "")) == "uint8"]
        assert len(u8) == tensors, edges
        if edges == "pool":  # a's channel tile writes whole blocks of 16 channels, and the pool keeps them
            assert [len(b.var.ty.shape.values) for b in u8] == [5, 5]
        # a pool writing u8 whose padding no window reads is our own loop nest, already scheduled
        assert ([gv.name_hint for gv in chained.functions if gv.name_hint.startswith(POOL_FUNC)] != []) == (edges != "output"), edges


def run(mod, calibration, x, chain):
    optimized, counts = optimize(mod, TARGET, precision="int8", calibration=calibration, u8_chain=chain)
    ex = relax.build(optimized, target=TARGET, relax_pipeline=lower_pipeline(TARGET))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy(), counts["int8"]


@needs_vnni
def test_yolov3_tiny_in_u8_from_conv_to_conv_is_bit_identical_to_quantizing_in_each_conv(tiny_onnx, photos, tmp_path):
    """Quantizing where an activation is produced rounds the same floats the conv's input copy rounded."""
    pipeline = BenchOptions()
    calibrate(tiny_onnx, next(iter(photos.values())).parent, tmp_path / "c.json", None, pipeline.input_scale, pipeline.letterbox)
    calibration = load_calibration(tmp_path / "c.json")
    mod, _, _ = import_onnx(tiny_onnx)
    x = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    reference, plain = run(mod, calibration, x, chain=False)
    chained, report = run(mod, calibration, x, chain=True)
    assert plain["u8_outputs"] == [] and plain["u8_input_convs"] == 0
    # conv_8's output feeds a pool and the route concat, two ranges: it stays fp32 (both quantize in the consumer)
    assert report["u8_outputs"] == ["conv_0", "conv_2", "conv_4", "conv_6", "conv_10", "conv_12", "conv_13", "conv_14", "conv_18", "conv_21"]
    # every conv in int8; all but the first (it reads the image) read u8, the heads (conv_15, conv_22) included
    assert (report["int8_convs"], report["u8_input_convs"]) == (13, 12)
    np.testing.assert_array_equal(chained, reference)


def write_shortcut(path, x):
    """A residual block: ``a`` (16 -> 16, 3x3, leaky ReLU), ``b`` (the same) reading ``a``, output ``a + b``.

    ``a`` feeds an int8 conv and the add, as the input of a Darknet-53 block does. Returns the
    calibration, with ``b``'s input range ``a``'s fp32 range on ``x`` and a margin for int8's ``a``
    (so nothing clamps).
    """
    import onnxruntime

    rng = np.random.default_rng(6)
    weights = {name: (rng.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32) for name in ("a", "b")}
    nodes = [
        helper.make_node("Conv", ["images", "a"], ["a_conv"], pads=[1] * 4),
        helper.make_node("LeakyRelu", ["a_conv"], ["a_out"], alpha=0.1),
        helper.make_node("Conv", ["a_out", "b"], ["b_conv"], pads=[1] * 4),
        helper.make_node("LeakyRelu", ["b_conv"], ["b_out"], alpha=0.1),
        helper.make_node("Add", ["a_out", "b_out"], ["sum"]),
    ]

    def save(outputs):
        graph = helper.make_graph(
            nodes,
            "shortcut",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 16, 8, 8])],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16, 8, 8]) for name in outputs],
            [numpy_helper.from_array(w, name) for name, w in weights.items()],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    save(["sum", "a_out"])
    a = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["a_out"], {"images": x})[0]
    save(["sum"])
    margin = 0.1 * float(a.max() - a.min())
    ranges = {"a": (float(x.min()), float(x.max())), "b": (float(a.min()) - margin, float(a.max()) + margin)}
    return Calibration({weight_key(w): ranges[name] for name, w in weights.items()}, names={weight_key(w): name for name, w in weights.items()})


@needs_vnni
def test_a_shortcut_add_reads_its_operand_in_u8_off_by_at_most_half_a_step(tmp_path):
    """``a``'s readers are ``b`` (int8) and the add: ``a`` is written in u8 only, and the add dequantizes it.

    Against every int8 conv quantizing its own input (``b`` then reads the same u8, the add ``a``
    in fp32), the sum moves by the rounding of ``a`` alone: at most half of ``b``'s input step.
    """
    x = np.random.default_rng(1).random((1, 16, 8, 8), dtype=np.float32)
    calibration = write_shortcut(tmp_path / "s.onnx", x)
    mod, _, _ = import_onnx(tmp_path / "s.onnx")
    report = Int8Report()
    chain_u8(mod, calibration, report)
    assert (report.u8_outputs, report.u8_inputs, report.u8_shortcuts) == (["a"], 1, 1)
    reference, _ = run(mod, calibration, x, chain=False)
    chained, counts = run(mod, calibration, x, chain=True)
    assert counts["u8_shortcut_adds"] == 1
    step, _ = activation_qparams(*calibration.ranges[next(k for k, n in calibration.names.items() if n == "b")])
    error = np.abs(chained - reference)
    assert 0 < error.max() <= step / 2 * (1 + 1e-5)


@needs_vnni
def test_a_concat_of_nchw_and_blocked_u8_reads_them_in_one_layout_bit_identically(tmp_path):
    """``concat(images, a)`` into ``b``: the image's u8 is NCHW (no conv writes it), ``a``'s blocked.

    The concat reads both blocked (the image relaid as it is copied), and ``b``'s output is the
    one every conv quantizing its own input gives.
    """
    rng = np.random.default_rng(7)
    weights = {"a": (rng.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32), "b": (rng.standard_normal((16, 32, 1, 1)) * 0.2).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["images", "a"], ["a_conv"], pads=[1] * 4),
        helper.make_node("LeakyRelu", ["a_conv"], ["a_out"], alpha=0.1),
        helper.make_node("Concat", ["images", "a_out"], ["route"], axis=1),
        helper.make_node("Conv", ["route", "b"], ["b_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "route",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [1, 16, 8, 8])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "r.onnx"))
    calibration = Calibration(
        {weight_key(w): r for w, r in ((weights["a"], (0.0, 1.0)), (weights["b"], (-1.0, 3.0)))},
        names={weight_key(w): name for name, w in weights.items()},
    )
    mod, _, _ = import_onnx(tmp_path / "r.onnx")
    chained = chain_u8(mod, calibration, Int8Report())
    concat = next(b for b in chained["main"].body.blocks[0].bindings if "concat" in str(b.value.op if hasattr(b.value, "op") else ""))
    assert [len(f.ty.shape.values) for f in concat.value.args[0].fields] == [5, 5]
    x = rng.random((1, 16, 8, 8), dtype=np.float32)
    reference, _ = run(mod, calibration, x, chain=False)
    out, report = run(mod, calibration, x, chain=True)
    assert (report["u8_outputs"], report["u8_input_convs"]) == (["a"], 1)
    np.testing.assert_array_equal(out, reference)
