"""The torch-style model source writes what torch's exporter writes, and our readers handle it exactly.

No torch here: ``tests/test_torch_export.py`` holds a real torch export to the same checks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.models import sources
from yolov3_tvm_opt.models.fold import fold_constants
from yolov3_tvm_opt.models.onnx_export import export_noscatter, rewrite_dense_scatternd
from yolov3_tvm_opt.models.torch_yolo import torch_yolo_to_onnx


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})


@pytest.mark.parametrize("tiny, size, rows, heads", [(True, 64, 3 * (4 * 4 + 2 * 2), 2), (False, 64, 3 * (8 * 8 + 4 * 4 + 2 * 2), 3)])
def test_torch_style_model_has_what_torch_writes(tiny, size, rows, heads):
    model = torch_yolo_to_onnx(size, tiny=tiny)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["ScatterND"] == 2 * heads and ops["ConstantOfShape"] >= 10 * heads and ops["Shape"] > 0
    assert ops["Sigmoid"] == ops["Conv"] and ops["Pad"] == (1 if tiny else 0)  # SiLU after every conv but the heads'
    assert [o.name for o in model.graph.output][0] == "output" and len(model.graph.output) == 1 + heads
    outputs = run(model, np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32))
    assert outputs[0].shape == (1, rows, 85) and all(np.isfinite(o).all() for o in outputs)
    assert outputs[1].shape == (1, 3, size // (16 if tiny else 8), size // (16 if tiny else 8), 85)


def test_folding_leaves_no_chain_and_the_export_rewrites_every_scatter_bit_exactly():
    model = torch_yolo_to_onnx(64, tiny=True)
    folded, report = fold_constants(model)
    left = Counter(n.op_type for n in folded.graph.node)
    assert report.folded > 200 and not report.dynamic_shapes
    assert left["ConstantOfShape"] == left["Shape"] == left["Where"] == 0
    pad = next(n for n in folded.graph.node if n.op_type == "Pad")
    assert pad.input[1] in {init.name for init in folded.graph.initializer}  # torch's computed pads: now a constant
    rewritten, export = rewrite_dense_scatternd(model)
    assert len(export.rewritten) == 4 and not export.kept
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    for a, b, c in zip(run(model, x), run(folded, x), run(rewritten, x), strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_sources_build_it_at_the_users_shape_and_refuse_bad_sizes(tmp_path):
    info = sources.build_model("yolov3-torch", 640, tmp_path / "m.onnx")
    assert info.scatternd_nodes == 6 and info.synthetic and len(info.names) == 80
    assert [d.dim_value for d in sources.load_onnx(info.path).graph.output[0].type.tensor_type.shape.dim] == [1, 25200, 85]
    with pytest.raises(UserError, match="multiple of the network stride 32"):
        torch_yolo_to_onnx(100, tiny=True)


def test_the_model_stage_puts_the_detections_first_and_says_so_once(tmp_path):
    """An export listing its raw heads before ``output``: bench, detect and the bundle read the first output."""
    model = torch_yolo_to_onnx(64, tiny=True)
    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(outputs[1:] + outputs[:1])
    onnx.save(model, tmp_path / "heads_first.onnx")
    info = sources.build_model(str(tmp_path / "heads_first.onnx"), 64, tmp_path / "m.onnx")
    assert info.outputs[0] == "output" and len(info.outputs) == 3
    assert [o.name for o in onnx.load(str(info.path)).graph.output] == info.outputs
    assert info.outputs_note == ("; detections are read from 'output', the other 2 outputs are compared with "
                                 "ONNX Runtime but not decoded")
    assert info.names == [f"class_{i}" for i in range(80)]


def test_export_onnx_fixes_a_dynamic_input_when_given_a_size(tmp_path):
    """Dynamic batch/height/width: the scatters' data shapes are unknown until the input is fixed."""
    model = torch_yolo_to_onnx(64, tiny=True)
    for vi in (*model.graph.input, *model.graph.output):
        for dim, name in zip(vi.type.tensor_type.shape.dim, ("batch", "c", "height", "width")):
            if name != "c":
                dim.dim_param = name
    onnx.save(model, tmp_path / "dynamic.onnx")
    left = export_noscatter(tmp_path / "dynamic.onnx", tmp_path / "kept.onnx")
    assert not left.rewritten and "not static" in next(iter(left.kept.values()))
    fixed = export_noscatter(tmp_path / "dynamic.onnx", tmp_path / "fixed.onnx", size=64)
    assert len(fixed.rewritten) == 4 and not fixed.kept
    shape = onnx.load(str(tmp_path / "fixed.onnx")).graph.input[0].type.tensor_type.shape
    assert [d.dim_value for d in shape.dim] == [1, 3, 64, 64]
