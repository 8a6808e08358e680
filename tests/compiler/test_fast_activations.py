"""SiLU and HardSwish convs vectorise (no scalar expf, epilogue inlined) and stay within 1e-5 of ONNX Runtime."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compiler.fast_activations import EXP_MAX, EXP_MIN, FastActivations, fast_exp, fast_sigmoid
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.pipeline import build, optimize
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax, s_tir, te  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2))
BOUND = 1e-5  # max |diff| / max |reference| against ONNX Runtime fp32


def activation_nodes(x: str, y: str, act: str) -> list[onnx.NodeProto]:
    """What torch exports for ``act`` at opset 12 (SiLU, HardSwish via HardSigmoid) or 14 (HardSwish)."""
    if act == "silu":
        return [helper.make_node("Sigmoid", [x], [f"{y}_gate"]), helper.make_node("Mul", [x, f"{y}_gate"], [y])]
    if act == "hardswish_v12":
        return [helper.make_node("HardSigmoid", [x], [f"{y}_gate"], alpha=1 / 6), helper.make_node("Mul", [x, f"{y}_gate"], [y])]
    if act == "hardswish":
        return [helper.make_node("HardSwish", [x], [y])]
    return [helper.make_node("HardSigmoid", [x], [y])]


def conv_act_onnx(path, act: str, size: int = 24, cin: int = 8, cout: int = 32):
    rng = np.random.default_rng(cout)
    inits = [
        numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.5).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"),
    ]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1] * 4), *activation_nodes("c", "output", act)]
    graph = helper.make_graph(
        nodes,
        "conv_act",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, size, size])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return path


def leaky_to_silu(src, dst):
    """Our Darknet model with every LeakyRelu replaced by SiLU, as torch exports it."""
    model = onnx.load(str(src))
    nodes = []
    for node in model.graph.node:
        nodes += activation_nodes(node.input[0], node.output[0], "silu") if node.op_type == "LeakyRelu" else [node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return dst


def run(path, data):
    mod, _, _ = import_onnx(path)
    executable = build(mod, TARGET)
    outputs = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(data))
    outputs = [outputs] if isinstance(outputs, tvm.runtime.Tensor) else list(outputs)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": data})
    return executable, [o.numpy() for o in outputs], reference


def llvm_asm(executable) -> str:
    return "".join(m.inspect_source("asm") for m in executable.mod.imports if m.kind == "llvm")


def conv_functions_asm(executable) -> dict[str, str]:
    """The assembly of each fused conv function (and its outlined parallel bodies), by name."""
    functions = re.findall(r"^(\w+):\n(.*?)^\.Lfunc_end", llvm_asm(executable), re.M | re.S)
    return {name: body for name, body in functions if name.startswith("fused_conv2d")}


def relative_error(ours, reference) -> float:
    return float(np.max(np.abs(ours.astype(np.float64) - reference)) / np.max(np.abs(reference)))


@pytest.mark.parametrize("act", ["silu", "hardswish", "hardswish_v12", "hardsigmoid"])
def test_activation_is_inlined_into_the_vectorised_conv_epilogue(tmp_path, act):
    """No libm expf, and no block after the conv: the activation runs in the tile's vector write-back."""
    path = conv_act_onnx(tmp_path / "m.onnx", act)
    mod, _, _ = import_onnx(path)
    optimized, counts = optimize(mod, TARGET)
    assert counts["conv2d_default_schedules"] == 1
    (conv,) = [f for gv, f in optimized.functions_items() if gv.name_hint.startswith("fused_conv2d")]
    sch = s_tir.Schedule(conv)
    blocks = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert blocks and all(name.startswith(("pad", "conv2d")) for name in blocks), blocks

    data = np.random.default_rng(1).standard_normal((1, 8, 24, 24), dtype=np.float32)
    executable, (ours,), (reference,) = run(path, data)
    assert relative_error(ours, reference) <= BOUND
    asm = llvm_asm(executable)
    assert "expf" not in asm
    if act == "silu":  # the exp's floor and the sigmoid's division, on whole vectors
        assert re.search(r"vrndscaleps\s+\$\d+, %[yz]mm", asm) and re.search(r"vdivps\s+%[yz]mm", asm)


@pytest.mark.slow
def test_silu_yolo_matches_onnxruntime_in_boxes_and_scores(tiny_onnx, tmp_path):
    """yolov3-tiny at 96 px with SiLU convs: boxes (columns 0:4) and scores (4:) each within 1e-5."""
    path = leaky_to_silu(tiny_onnx, tmp_path / "tiny_silu.onnx")
    data = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    executable, ours, reference = run(path, data)
    for columns in (slice(0, 4), slice(4, None)):
        assert relative_error(ours[0][..., columns], reference[0][..., columns]) <= BOUND
    convs = conv_functions_asm(executable)
    assert any("silu" in name for name in convs) and not [name for name, body in convs.items() if "expf" in body]


def test_fast_exp_error_over_the_clamped_range():
    """Compiled fast_exp against float64 exp on a dense grid: within 1.5e-7 relative (about 1 ulp)."""
    n = 1 << 22
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n,), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            exp, sigmoid = (bb.emit_te(lambda t, f=f: te.compute(t.shape, lambda i: f(t[i])), x) for f in (fast_exp, fast_sigmoid))
            out = bb.emit_output(relax.Tuple([exp, sigmoid]))
        bb.emit_func_output(out)
    far = np.array([-1e4, -100, 100, 1e4], np.float32)  # beyond the range the input saturates
    grid = np.concatenate([np.linspace(EXP_MIN, EXP_MAX, n - len(far), dtype=np.float32), far])
    vm = relax.VirtualMachine(build(bb.get(), TARGET), tvm.cpu())
    exp, sigmoid = (o.numpy() for o in vm["main"](tvm.runtime.tensor(grid)))
    exact = np.exp(grid[: -len(far)].astype(np.float64))
    assert np.max(np.abs(exp[: -len(far)] - exact) / exact) < 1.5e-7
    assert np.max(np.abs(sigmoid[: -len(far)] - 1 / (1 + 1 / exact))) < 1.5e-7
    # ... to e^-87 below (expf: a denormal or 0) and to expf's overflow above
    np.testing.assert_array_equal(exp[-len(far) :], [exp[0], exp[0], np.inf, np.inf])
    assert 1.5e-38 < exp[0] < 1.7e-38
    np.testing.assert_array_equal(sigmoid[-len(far) :], [0, 0, 1, 1])


def test_meta_schedule_can_estimate_the_flops_of_a_fast_exp():
    """Tuning estimates each task's flops first; a ``Let`` in fast_exp made that fail for every model with an exp."""
    x = te.placeholder((64,), "float32", name="x")
    y = te.compute(x.shape, lambda i: fast_sigmoid(x[i]) + fast_exp(x[i]), name="y")
    assert s_tir.analysis.estimate_tir_flops(tvm.IRModule({"main": te.create_prim_func([x, y])})) > 64


def test_decode_sigmoid_and_exp_use_fast_exp_within_ulps_of_float64():
    """A sigmoid and an exp outside any gate (the YOLO decode's, after its transpose) compile without expf, within ulps of float64."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 85, 13, 13), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            cells = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            out = bb.emit_output(relax.Tuple([bb.emit(relax.op.sigmoid(cells)), bb.emit(relax.op.exp(cells))]))
        bb.emit_func_output(out)
    text = FastActivations()(bb.get()).script()
    assert "R.sigmoid" not in text and "R.exp" not in text
    executable = build(bb.get(), TARGET)
    assert "expf" not in llvm_asm(executable)
    data = (np.random.default_rng(2).standard_normal((1, 85, 13, 13)) * 10).astype(np.float32)
    sigmoid, exp = (o.numpy() for o in relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(data)))
    exact = np.exp(data.transpose(0, 2, 3, 1).astype(np.float64))
    assert np.max(np.abs(exp - exact) / exact) < 1.5e-7
    exact_sigmoid = 1 / (1 + 1 / exact)
    assert np.max(np.abs(sigmoid - exact_sigmoid) / exact_sigmoid) < 3e-7


def test_only_gates_of_their_own_input_and_shape_are_merged():
    """x * sigmoid(x) becomes one op; x * sigmoid(y), and x * (x + c) where c broadcasts x, stay multiplies (sigmoid(y) a sigmoid)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 16), "float32"))
    y = relax.Var("y", relax.TensorType((4, 16), "float32"))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            own = bb.emit(relax.op.multiply(x, bb.emit(relax.op.sigmoid(x))))
            other = bb.emit(relax.op.multiply(bb.emit(relax.op.sigmoid(y)), x))
            wider = bb.emit(relax.op.multiply(x, bb.emit(relax.op.add(x, relax.const(np.ones((1, 1, 1), np.float32))))))
            out = bb.emit_output(relax.Tuple([own, other, wider]))
        bb.emit_func_output(out)
    text = FastActivations()(bb.get()).script()
    assert text.count("R.multiply") == 2 and "R.sigmoid" not in text  # sigmoid(y) alone goes through fast_exp
    assert "def silu" in text and "def sigmoid" in text and "def gated" not in text
