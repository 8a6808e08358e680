"""Constant folding keeps every output bit-identical: integer chains fold, float arithmetic stays a node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.models.fold import fold_constants


def const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)), name=name)


def model_with_both_chains() -> onnx.ModelProto:
    """x * exp(0.3) reshaped to a shape computed from Shape(x): one float chain, one integer chain."""
    n = helper.make_node
    nodes = [
        const("k", np.float32(0.3)), n("Exp", ["k"], ["e"], name="exp"), n("Mul", ["x", "e"], ["scaled"], name="scale"),
        n("Shape", ["x"], ["shape"], name="shape"), const("minus_one", np.array([-1], np.int64)),
        const("s0", np.array([0], np.int64)), const("s1", np.array([1], np.int64)),
        n("Slice", ["shape", "s0", "s1"], ["batch"], name="batch"),
        n("Concat", ["batch", "minus_one"], ["flat"], axis=0, name="flat_shape"),
        n("Reshape", ["scaled", "flat"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_integer_chains_fold_and_float_arithmetic_stays():
    model = model_with_both_chains()
    folded, report = fold_constants(model)
    ops = [node.op_type for node in folded.graph.node]
    assert ops == ["Constant", "Exp", "Mul", "Reshape"]  # the shape chain is one initializer now
    assert report.folded == 6 and not report.dynamic_shapes
    assert numpy_helper.to_array(next(i for i in folded.graph.initializer if i.name == "flat")).tolist() == [2, -1]
    onnx.checker.check_model(folded, full_check=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    before, after = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
                     for m in (model, folded))
    assert np.array_equal(before[0], after[0])
    assert [node.op_type for node in model.graph.node].count("Shape") == 1  # the input model is not changed


def test_a_dynamic_shape_is_reported_not_folded():
    model = model_with_both_chains()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    folded, report = fold_constants(model)
    assert report.dynamic_shapes == {"shape": "x"} and "Shape" in [node.op_type for node in folded.graph.node]


def test_a_node_the_evaluator_cannot_run_stays_and_the_rest_folds():
    """A Reshape of 6 values to 4 fails in the reference evaluator: it stays for the runtime to report."""
    n = helper.make_node
    model = model_with_both_chains()
    model.graph.node.extend([const("six", np.arange(6, dtype=np.int64)), const("four", np.array([4], np.int64)),
                             n("Reshape", ["six", "four"], ["bad"], name="bad_reshape"),
                             n("Cast", ["bad"], ["bad_f"], to=TensorProto.FLOAT, name="to_float"),
                             n("Add", ["x", "bad_f"], ["z"], name="use")])
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    folded, _ = fold_constants(model)
    ops = [node.op_type for node in folded.graph.node]
    assert "bad_reshape" in {node.name for node in folded.graph.node} and "Shape" not in ops
