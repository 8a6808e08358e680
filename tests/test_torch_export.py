"""A real torch export end to end: export-onnx, both compiled variants, ONNX Runtime equality.

The module is ours, written like ultralytics' YOLO (SiLU convs, ZeroPad2d before a stride-1 pool,
an in-place Detect decode whose raw heads are extra outputs), small enough to build in seconds.
torch stays optional (``pip install torch==2.13.0``, the CPU wheel): without it these tests skip.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.core.options import CompileOptions
from yolov3_tvm_opt.models.fold import fold_constants
from yolov3_tvm_opt.models.onnx_export import export_noscatter
from yolov3_tvm_opt.models.onnx_info import pin_input
from yolov3_tvm_opt.runtime import create_vm, load_artifact

torch = pytest.importorskip("torch", reason="torch is not installed (optional: pip install torch==2.13.0)")
nn = torch.nn

SIZE = 64


class SiLU(nn.Module):
    """ultralytics' export swaps nn.SiLU for this, so the ONNX holds Sigmoid and Mul."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(c1, c2, k, 1, k // 2), SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Detect(nn.Module):
    """ultralytics' Detect (v9 era) with ``inplace=True``: the decode writes back into the sigmoid tensor."""

    def __init__(self, classes: int, anchors: list[list[int]], channels: tuple[int, ...], strides: list[int]) -> None:
        super().__init__()
        self.no, self.nl, self.na = classes + 5, len(anchors), len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        self.register_buffer("anchor_grid", torch.tensor(anchors).float().view(self.nl, 1, -1, 1, 1, 2))
        self.stride = strides
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if self.grid[i].shape[2:4] != x[i].shape[2:4]:
                yv, xv = torch.meshgrid([torch.arange(ny), torch.arange(nx)], indexing="ij")
                self.grid[i] = torch.stack((xv, yv), 2).view((1, 1, ny, nx, 2)).float()
            y = x[i].sigmoid()
            y[..., 0:2] = (y[..., 0:2] * 2.0 - 0.5 + self.grid[i]) * self.stride[i]
            y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
            z.append(y.view(bs, -1, self.no))
        return torch.cat(z, 1), x


class TinyYolo(nn.Module):
    """yolov3-tiny's shape in miniature: pools, ZeroPad2d + stride-1 pool, upsample, two heads."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = Conv(3, 8, 3), Conv(8, 16, 3), Conv(16, 32, 3)
        self.pool, self.pad, self.pool1 = nn.MaxPool2d(2, 2), nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1)
        self.c4, self.up, self.c5 = Conv(32, 16, 1), nn.Upsample(scale_factor=2, mode="nearest"), Conv(32, 16, 3)
        self.detect = Detect(classes, [[10, 14, 23, 27, 37, 58], [81, 82, 135, 169, 344, 319]], (16, 32), [4, 8])

    def forward(self, x):
        p4 = self.c2(self.pool(self.c1(x)))
        p5 = self.pool1(self.pad(self.c3(self.pool(p4))))
        return self.detect([self.c5(torch.cat([self.up(self.c4(p5)), p4], 1)), p5])


def export(path, opset: int, dynamic: bool = False):
    torch.manual_seed(0)
    model = TinyYolo().eval()
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 1: "rows"}} if dynamic else None
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(path), opset_version=opset, dynamo=False,
                          input_names=["images"], output_names=["output"], dynamic_axes=axes)
    return path


def ort_outputs(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})


def tvm_outputs(artifact_dir, x):
    return create_vm(load_artifact(artifact_dir)).run(x)


@pytest.mark.slow
@pytest.mark.parametrize("opset", [11, 12, 17])
def test_torch_export_end_to_end(opset, tmp_path):
    path = export(tmp_path / f"tiny{opset}.onnx", opset)
    before = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert before["ScatterND"] == 4 and before["ConstantOfShape"] > 0 and before["Pad"] == 1  # what users bring

    report = export_noscatter(path, tmp_path / "noscatter.onnx")
    assert len(report.rewritten) == 4 and not report.kept and report.folded > 100
    x = np.random.default_rng(opset).random((1, 3, SIZE, SIZE), dtype=np.float32)
    reference = ort_outputs(path, x)
    assert len(reference) == 3  # `output` and the two raw heads
    for a, b in zip(reference, ort_outputs(tmp_path / "noscatter.onnx", x), strict=True):
        assert np.array_equal(a, b)

    for fast in (False, True):
        out_dir = tmp_path / ("fastscatter" if fast else "baseline")
        meta = compile_onnx(path, out_dir, CompileOptions(fast_scatter_nd=fast)).meta
        if fast:
            assert meta["scatter_nd"] == {"dense_box_rewritten": 4, "parallel_kernel": 0}
        for a, b in zip(reference, tvm_outputs(out_dir, x), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_dynamic_axes_export_compiles_at_a_fixed_size(tmp_path):
    """batch/height/width axes: the input is fixed to the size, constants fold, no Shape node is left."""
    path = export(tmp_path / "dynamic.onnx", 12, dynamic=True)
    folded, report = fold_constants(pin_input(onnx.load(str(path)), SIZE, path))
    assert not report.dynamic_shapes and "Shape" not in {n.op_type for n in folded.graph.node}
    meta = compile_onnx(path, tmp_path / "fast", CompileOptions(fast_scatter_nd=True, size=SIZE)).meta
    assert meta["input_shape"] == [1, 3, SIZE, SIZE] and meta["scatter_nd"]["dense_box_rewritten"] == 4
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    for a, b in zip(ort_outputs(path, x), tvm_outputs(tmp_path / "fast", x), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
