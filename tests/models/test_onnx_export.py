"""The ScatterND-free export is exact: ONNX Runtime gives the same bits before and after.

Small hand-built graphs cover each reduction, boxes anywhere in the tensor, negative indices and
the index chains exporters wrap them in; the real yolov3-tiny and the synthetic yolov3 cover the
YOLO decode end to end, on a photo and on random input.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.evaluate.images import model_input
from yolov3_tvm_opt.models.onnx_export import export_noscatter, rewrite_dense_scatternd
from yolov3_tvm_opt.models.onnx_info import read_input_spec

OPSET = 18  # ScatterND's min/max reductions need 18
REDUCTIONS = ["none", "add", "mul", "min", "max"]


def box_indices(box: list[tuple[int, int]]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(a, b) for a, b in box], indexing="ij"), axis=-1).astype(np.int64)


def scatter_model(data_shape, indices, reduction="none", index_nodes=(), index_name="idx", runtime_indices=False):
    """data, updates (and indices when ``runtime_indices``) in; ``Relu(ScatterND(...))`` out."""
    m = indices.shape[-1]
    updates_shape = list(indices.shape[:-1]) + list(data_shape[m:])
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, list(data_shape)),
              helper.make_tensor_value_info("updates", TensorProto.FLOAT, updates_shape)]
    inits = []
    if runtime_indices:
        inputs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, list(indices.shape)))
    elif not index_nodes:
        inits.append(numpy_helper.from_array(indices, "idx"))
    attrs = {} if reduction == "none" else {"reduction": reduction}
    nodes = [*index_nodes, helper.make_node("ScatterND", ["data", index_name, "updates"], ["s"], name="scatter", **attrs),
             helper.make_node("Relu", ["s"], ["out"], name="relu")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(data_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_same_bits(before: onnx.ModelProto, after: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    for a, b in zip(run_ort(before, feeds), run_ort(after, feeds), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def output_types(model: onnx.ModelProto) -> list[onnx.TypeProto]:
    return [o.type for o in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output]


@st.composite
def box_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    m = draw(st.integers(1, len(shape)))
    box = []
    for dim in shape[:m]:
        a = draw(st.integers(0, dim - 1))
        box.append((a, draw(st.integers(a + 1, dim))))
    indices = box_indices(box)
    if draw(st.booleans()):  # the same box spelled with negative indices where possible
        indices = np.where(draw(st.booleans()), indices - np.asarray(shape[:m]), indices)
    if draw(st.booleans()):  # a flat list of index tuples: the updates need reshaping to the box
        indices = indices.reshape(-1, m)
    return shape, indices, draw(st.sampled_from(REDUCTIONS)), draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box_cases())
def test_every_dense_box_becomes_slices_and_is_bit_exact(case):
    shape, indices, reduction, seed = case
    model = scatter_model(shape, indices, reduction)
    rewritten, report = rewrite_dense_scatternd(model)
    assert report.rewritten == ["scatter"] and report.kept == {}
    assert "ScatterND" not in op_types(rewritten)
    assert "idx" not in {init.name for init in rewritten.graph.initializer}
    onnx.checker.check_model(rewritten, full_check=True)
    assert output_types(rewritten) == output_types(model)
    rng = np.random.default_rng(seed)
    feeds = {"data": rng.standard_normal(shape).astype(np.float32),
             "updates": rng.standard_normal(indices.shape[:-1] + shape[indices.shape[-1]:]).astype(np.float32)}
    assert_same_bits(model, rewritten, feeds)


def test_scatters_that_overwrite_everything_in_a_row():
    """Each whole-tensor scatter becomes an Identity of its updates, the second reading the first."""
    shape = (2, 3)
    whole = numpy_helper.from_array(box_indices([(0, 2)]), "whole")
    nodes = [helper.make_node("ScatterND", ["data", "whole", "updates"], ["s1"], name="first"),
             helper.make_node("ScatterND", ["data", "whole", "s1"], ["s2"], name="second")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape))
                                           for n in ("data", "updates")],
                              [helper.make_tensor_value_info("s2", TensorProto.FLOAT, list(shape))], [whole])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    rewritten, report = rewrite_dense_scatternd(model)
    assert report.rewritten == ["first", "second"] and op_types(rewritten) == ["Identity", "Identity"]
    onnx.checker.check_model(rewritten, full_check=True)
    feeds = {"data": np.zeros(shape, np.float32), "updates": np.arange(6, dtype=np.float32).reshape(shape)}
    assert_same_bits(model, rewritten, feeds)


def wrapped_indices(indices: np.ndarray) -> list[onnx.NodeProto]:
    """``idx`` from a Constant through a TVM-style normalisation and value-preserving detours.

    Constant folding (``models.fold``) must see through all of it; each step leaves the values as they were.
    """
    m = indices.shape[-1]
    n = helper.make_node
    const = helper.make_tensor("neg", TensorProto.INT64, indices.shape, indices.flatten().tolist())
    return [
        n("Constant", [], ["raw"], value=const),
        n("Identity", ["raw"], ["raw_id"]),
        n("Cast", ["raw_id"], ["raw32"], to=TensorProto.INT32),
        n("Cast", ["raw32"], ["c"], to=TensorProto.INT64),
        n("Shape", ["data"], ["dshape"]),
        n("Constant", [], ["first_m"], value=helper.make_tensor("fm", TensorProto.INT64, [m], list(range(m)))),
        n("Gather", ["dshape", "first_m"], ["dims"], axis=0),
        n("Constant", [], ["zero"], value_int=0),
        n("Less", ["c", "zero"], ["is_neg"]),
        n("Add", ["c", "dims"], ["wrapped"]),
        n("Where", ["is_neg", "wrapped", "c"], ["w"]),
        # detours that change nothing: -(0 - w) * 1, flattened and reshaped back, unsqueezed and squeezed
        n("Sub", ["zero", "w"], ["minus"]),
        n("Neg", ["minus"], ["plus"]),
        n("Constant", [], ["one"], value_ints=[1]),
        n("Mul", ["plus", "one"], ["times"]),
        n("Shape", ["times"], ["tshape"]),
        n("Constant", [], ["flat"], value=helper.make_tensor("fl", TensorProto.INT64, [1], [-1])),
        n("Reshape", ["times", "flat"], ["flattened"]),
        n("Reshape", ["flattened", "tshape"], ["back"]),
        n("Unsqueeze", ["back", "zero_axis"], ["u"]),
        n("Constant", [], ["zero_axis"], value=helper.make_tensor("za", TensorProto.INT64, [1], [0])),
        n("Squeeze", ["u", "zero_axis"], ["sq"]),
        n("Concat", ["first_m"], ["m_again"], axis=0),
        n("Expand", ["sq", "one"], ["ex"]),
        n("Equal", ["ex", "ex"], ["same"]),
        n("Not", ["same"], ["differs"]),
        n("Greater", ["ex", "ex"], ["bigger"]),
        n("Where", ["differs", "zero", "ex"], ["idx_pre"]),
        n("Where", ["bigger", "zero", "idx_pre"], ["idx"]),
    ]


def ordered(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where each comes after what it reads (the list above is written for reading)."""
    done, out, pending = {"data"}, [], list(nodes)
    while pending:
        node = next(x for x in pending if all(i in done for i in x.input))
        pending.remove(node)
        out.append(node)
        done.update(node.output)
    return out


def test_indices_folded_from_a_normalisation_chain():
    shape = (1, 3, 4, 4, 9)
    indices = box_indices([(0, 1), (0, 3), (0, 4), (0, 4), (2, 4)]) - np.array([0, 0, 0, 0, 9])  # c = -7, -6
    chain = ordered(wrapped_indices(indices))
    chain.append(helper.make_node("Relu", ["m_again"], ["unrelated_dead"], name="dead_before"))
    model = scatter_model(shape, indices, index_nodes=chain)
    rewritten, report = rewrite_dense_scatternd(model)
    assert report.rewritten == ["scatter"], report.kept
    # the chain went; dead_before stayed, reading what it read, now a folded initializer
    assert sorted(op_types(rewritten)) == ["Concat", "Relu", "Relu", "Slice", "Slice"]
    assert "dead_before" in {n.name for n in rewritten.graph.node}
    assert report.folded == len(chain) - 1
    onnx.checker.check_model(rewritten, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {"data": rng.standard_normal(shape).astype(np.float32),
             "updates": rng.standard_normal(indices.shape[:-1]).astype(np.float32)}
    assert_same_bits(model, rewritten, feeds)


def test_what_cannot_be_proven_stays_and_says_why():
    shape, indices = (2, 5, 3), box_indices([(0, 2), (1, 4)])
    runtime = scatter_model(shape, indices, runtime_indices=True)
    shuffled = scatter_model(shape, np.ascontiguousarray(indices[:, ::-1]))
    # indices that depend on the data's values: constant folding must leave them, and say so
    computed = scatter_model(shape, indices, index_name="idx_moved", index_nodes=[
        helper.make_node("Constant", [], ["idx"], value=numpy_helper.from_array(indices)),
        helper.make_node("ReduceMin", ["data"], ["lowest"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value_float=0.0),
        helper.make_node("Mul", ["lowest", "zero"], ["nothing"]),
        helper.make_node("Cast", ["nothing"], ["offset"], to=TensorProto.INT64),
        helper.make_node("Add", ["idx", "offset"], ["idx_moved"], name="move"),
    ])
    for model, reason in ((runtime, "graph input 'idx'"), (shuffled, "dense box"), (computed, "from 'data' (by Add 'move')")):
        rewritten, report = rewrite_dense_scatternd(model)
        assert report.rewritten == [] and reason in report.kept["scatter"]
        computing = [op for op in op_types(model) if op != "Constant"]  # an index Constant folds to an initializer
        assert [op for op in op_types(rewritten) if op != "Constant"] == computing
        assert "0 of 1 ScatterND rewritten" in report.summary() and reason in report.summary()
    rng = np.random.default_rng(0)
    feeds = {"data": rng.standard_normal(shape).astype(np.float32),
             "updates": rng.standard_normal((2, 3, 3)).astype(np.float32), "idx": indices}
    assert_same_bits(runtime, rewrite_dense_scatternd(runtime)[0], feeds)


@pytest.mark.parametrize("fixture", ["tiny_onnx", pytest.param("yolov3_onnx", marks=pytest.mark.slow)])
def test_yolo_export_is_bit_exact_on_a_photo_and_random_input(fixture, request, photos, tmp_path):
    source = request.getfixturevalue(fixture)
    out = tmp_path / "noscatter.onnx"
    report = export_noscatter(source, out)
    before, after = onnx.load(source), onnx.load(out)
    scatters = op_types(before).count("ScatterND")
    assert scatters > 0 and len(report.rewritten) == scatters and report.kept == {}
    assert "ScatterND" not in op_types(after)
    assert (report.nodes_before, report.nodes_after) == (len(before.graph.node), len(after.graph.node))
    onnx.checker.check_model(after, full_check=True)
    assert output_types(after) == output_types(before)
    spec = read_input_spec(source)
    photo, _ = model_input(spec.shape, spec.dtype, photos["motorcycle_left"], 1 / 255, letterbox=True)
    for data in (photo, *(model_input(spec.shape, spec.dtype, None, 1 / 255, seed=s)[0] for s in (0, 1))):
        assert_same_bits(before, after, {spec.name: data})


@pytest.mark.parametrize("fixture", ["tiny_onnx", pytest.param("yolov3_onnx", marks=pytest.mark.slow)])
def test_tvm_imports_the_export_with_no_scatter_nd_left(fixture, request, tmp_path):
    """The export hands the fast scatter win to a plain TVM baseline: no scatter_nd kernel remains."""
    from yolov3_tvm_opt.compiler.fast_scatter import count_scatter_nd
    from yolov3_tvm_opt.compiler.frontend import import_onnx

    source = request.getfixturevalue(fixture)
    export_noscatter(source, tmp_path / "noscatter.onnx")
    assert count_scatter_nd(import_onnx(source)[0]) > 0
    assert count_scatter_nd(import_onnx(tmp_path / "noscatter.onnx")[0]) == 0


def test_a_model_without_scatternd_is_copied_unchanged(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    source = tmp_path / "plain.onnx"
    source.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString())
    report = export_noscatter(source, tmp_path / "out.onnx")
    assert report.rewritten == [] and report.kept == {} and "nothing to rewrite" in report.summary()
    assert (tmp_path / "out.onnx").read_bytes() == source.read_bytes()


def test_a_file_that_is_not_onnx_is_a_user_error_and_writes_nothing(tmp_path):
    source = tmp_path / "bad.onnx"
    source.write_bytes(b"not a model")
    with pytest.raises(UserError, match="bad.onnx"):
        export_noscatter(source, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == [source]
