"""What reaches TVM's importer: the input fixed, constants folded; and one line when it cannot import."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import CompileOptions
from yolov3_tvm_opt.models.torch_yolo import torch_yolo_to_onnx
from yolov3_tvm_opt.runtime import create_vm, load_artifact


def conv_model(tail: list[onnx.NodeProto], dims: list, inits: list[onnx.TensorProto] = ()) -> onnx.ModelProto:
    """images -> Conv (3 -> 4 channels) -> c, then ``tail`` writing ``y``."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), *tail]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, *inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)


def const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)))


def grid_from_shape() -> list[onnx.NodeProto]:
    """y = c + column index, the column range computed from c's runtime shape, as dynamic-axes exports do."""
    n = helper.make_node
    return [n("Shape", ["c"], ["shape"]), const("three", np.int64(3)), n("Gather", ["shape", "three"], ["w_dim"], axis=0),
            const("zero", np.int64(0)), const("one", np.int64(1)), n("Range", ["zero", "w_dim", "one"], ["cols"]),
            n("Cast", ["cols"], ["colsf"], to=TensorProto.FLOAT), n("Add", ["c", "colsf"], ["y"], name="add")]


def test_a_dynamic_axes_model_is_fixed_folded_and_compiles(tmp_path):
    """batch/height/width: the Shape-computed grid would reach the build as a symbolic loop extent."""
    path = tmp_path / "dynamic.onnx"
    onnx.save(conv_model(grid_from_shape(), ["batch", 3, "height", "width"]), path)
    _, spec, model = import_onnx(path, size=32)
    assert spec.shape == (1, 3, 32, 32) and not {"Shape", "Range"} & {n.op_type for n in model.graph.node}
    compile_onnx(path, tmp_path / "a", CompileOptions(size=32))
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    got = create_vm(load_artifact(tmp_path / "a")).run(x)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pads_computed_from_the_image_name_the_node_and_say_why(tmp_path):
    """After folding, what still depends on the image really does; the error says so, once."""
    n = helper.make_node
    tail = [n("ReduceMax", ["images"], ["peak"], keepdims=0), const("zero", np.float32(0)),
            n("Mul", ["peak", "zero"], ["nothing"]), n("Cast", ["nothing"], ["k"], to=TensorProto.INT64),
            const("ones", np.ones(8, np.int64)), n("Mul", ["ones", "k"], ["pads"]),
            n("Pad", ["c", "pads"], ["y"], name="the_pad", mode="constant")]
    path = tmp_path / "pad.onnx"
    onnx.save(conv_model(tail, [1, 3, 32, 32]), path)
    with pytest.raises(UserError) as err:
        import_onnx(path)
    message = str(err.value)
    assert "'the_pad'" in message and "'pads' is computed from the image at run time" in message
    assert "\n" not in message and "static shapes" not in message


def test_a_shape_only_known_at_run_time_is_one_line(tmp_path):
    """NonZero's output length depends on the data: no input size can pin it."""
    n = helper.make_node
    tail = [n("NonZero", ["c"], ["nz"]), n("Shape", ["nz"], ["nz_shape"], name="nz_shape"),
            n("Cast", ["nz_shape"], ["y"], to=TensorProto.FLOAT)]
    path = tmp_path / "nonzero.onnx"
    onnx.save(conv_model(tail, [1, 3, 32, 32]), path)
    with pytest.raises(UserError, match=r"Shape node 'nz_shape' .* reads 'nz', whose shape stays unknown"):
        import_onnx(path)


def test_a_symbolic_extent_left_after_folding_is_one_line(tmp_path):
    """No Shape node, but NonZero's output length is symbolic in Relax: refused before the build, in one line."""
    n = helper.make_node
    tail = [n("NonZero", ["c"], ["nz"]), n("Cast", ["nz"], ["y"], to=TensorProto.FLOAT)]
    path = tmp_path / "nonzero.onnx"
    onnx.save(conv_model(tail, [1, 3, 32, 32]), path)
    with pytest.raises(UserError, match=r"imports with symbolic extents \(.+\) even with the input fixed at \[1, 3, 32, 32\]"):
        import_onnx(path)


@pytest.mark.slow  # two builds of the full-width tiny network
def test_the_torch_style_tiny_compiles_in_both_variants_and_matches_onnx_runtime(tmp_path):
    """Before folding, TVM refused its computed Pad ("Dynamic pads are not supported yet")."""
    path = tmp_path / "tiny_torch.onnx"
    onnx.save(torch_yolo_to_onnx(64, tiny=True), path)
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for fast in (False, True):
        meta = compile_onnx(path, tmp_path / str(fast), CompileOptions(fast_scatter_nd=fast)).meta
        assert meta["scatter_nd"] == ({"dense_box_rewritten": 4, "parallel_kernel": 0} if fast else {})
        for got, expected in zip(create_vm(load_artifact(tmp_path / str(fast))).run(x), reference, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_an_op_tvm_lacks_is_named_in_one_line(tmp_path):
    path = tmp_path / "det.onnx"
    onnx.save(conv_model([helper.make_node("Det", ["c"], ["y"], name="det")], [1, 3, 32, 32]), path)
    with pytest.raises(UserError, match=r"not supported for frontend ONNX: Det\); TVM .* lacks what it names") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)
