"""The default llvm schedule rules change speed, never results: bit-equal to TVM's unscheduled build."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SUITE_MCPU, needs_bf16, runs_here
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.compiler.fast_scatter import apply_fast_scatter
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.pipeline import lower_pipeline, optimize
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import BenchOptions, CompileOptions, TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm
from yolov3_tvm_opt.evaluate.images import model_input
from yolov3_tvm_opt.runtime import create_vm, load_artifact

tvm = load_tvm()

from tvm import relax, s_tir  # noqa: E402

TARGET = make_target(TargetOptions(cpu_threads=2))
AVX2 = make_target(TargetOptions(cpu_threads=2, mcpu="x86-64-v3"))  # 8 lanes, 16 registers
INTEL = "emeraldrapids"  # CONV_TILES: the first conv gets the row-vector tile
needs_intel = pytest.mark.skipif(not runs_here(INTEL), reason=f"this CPU cannot run code built for {INTEL}")


def conv_block_onnx(path, size, cin, cout, kernel, stride, act, group=1, pool_stride=2, zero_pad=False):
    """Conv(+bias) -> LeakyRelu/none -> MaxPool(2), like a Darknet block.

    MaxPool stride 1 pads one column and row, as yolov3-tiny's 13 x 13 pool does; with
    ``zero_pad`` a Pad node does that instead, as torch's ZeroPad2d exports it.
    """
    rng = np.random.default_rng(cin * cout + kernel)
    inits = [
        numpy_helper.from_array((rng.standard_normal((cout, cin // group, kernel, kernel)) * 0.2).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"),
    ]
    pad = kernel // 2
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2, group=group)]
    last = "c"
    if act:
        nodes.append(helper.make_node("LeakyRelu", ["c"], ["a"], alpha=0.1))
        last = "a"
    pool_pads = [0, 0, 1, 1] if pool_stride == 1 else [0, 0, 0, 0]
    if zero_pad:
        inits.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"))
        nodes.append(helper.make_node("Pad", [last, "pads"], ["padded"]))
        last, pool_pads = "padded", [0, 0, 0, 0]
    nodes.append(helper.make_node("MaxPool", [last], ["output"], kernel_shape=[2, 2], strides=[pool_stride] * 2, pads=pool_pads))
    out_size = (size + 2 * pad - kernel) // stride + 1
    pooled = out_size if pool_stride == 1 else out_size // 2
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, pooled, pooled])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def run(mod, data, target=TARGET):
    ex = relax.build(mod, target=target, relax_pipeline=lower_pipeline(target))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(data)).numpy()


@pytest.mark.parametrize(
    "size,cin,cout,kernel,stride,act,extra",
    [
        (26, 3, 16, 3, 1, True, {}),  # odd tile widths (26 = 2 x 13)
        (32, 8, 255, 1, 1, False, {}),  # YOLO head: 255 channels, 1x1, no activation
        (20, 4, 12, 3, 2, True, {}),  # stride 2 (Darknet-53's downsampling)
        (13, 16, 24, 3, 1, True, {"pool_stride": 1}),  # yolov3-tiny's last grid and its padded pool
        (13, 16, 24, 3, 1, True, {"pool_stride": 1, "zero_pad": True}),  # ... padded by a Pad fused into the conv
        (16, 8, 16, 3, 1, True, {"group": 2, "rule": "reduction"}),  # grouped: not packed, dlight's Reduction rule
        (26, 8, 24, 3, 1, True, {"target": AVX2}),  # AVX2: 8-lane packing, 13-column tiles
        (19, 8, 16, 3, 1, True, {}),  # YOLO at 608: rows of 19 (19-column tiles with AVX-512)
        (19, 8, 255, 1, 1, False, {}),  # ... and its heads, where channels are cropped too
        (19, 8, 16, 3, 1, True, {"target": AVX2}),  # AVX2: two 10-column tiles, one guarded
        (19, 8, 255, 1, 1, False, {"target": AVX2}),  # guarded tiles and a crop: divisor tiles
        # Emerald Rapids: a first conv (3 x 3 x 3 reduction) in row-vector tiles, and a 1x1 head in channel tiles
        pytest.param(32, 3, 16, 3, 1, True, {"target": INTEL}, marks=needs_intel),
        pytest.param(32, 3, 255, 1, 1, False, {"target": INTEL}, marks=needs_intel),
    ],
)
def test_default_schedules_are_bit_exact(tmp_path, size, cin, cout, kernel, stride, act, extra):
    extra = dict(extra)
    target, rule = extra.pop("target", TARGET), extra.pop("rule", "conv2d")
    if isinstance(target, str):  # built here only: where this CPU cannot run it, the case is skipped
        target = make_target(TargetOptions(cpu_threads=2, mcpu=target))
    path = conv_block_onnx(tmp_path / "m.onnx", size, cin, cout, kernel, stride, act, **extra)
    mod, _, _ = import_onnx(path)
    data = np.random.default_rng(0).random((1, cin, size, size), dtype=np.float32)
    plain, plain_counts = optimize(mod, target, default_schedules=False)
    fast, counts = optimize(mod, target)
    assert "conv2d_default_schedules" not in plain_counts
    assert counts[f"{rule}_default_schedules"] == 1 and counts["generic_default_schedules"] >= 1  # the pool
    assert counts["left_default_default_schedules"] == 0
    np.testing.assert_array_equal(run(fast, data, target), run(plain, data, target))


def test_yolo_decode_keeps_no_copy_of_its_own(tiny_onnx):
    """fastscatter's decode is one function; its reshapes, transposes, slices and concats are read where used.

    Only the sigmoid, exp and grid arithmetic stay loops of their own, and the output concat
    (bit-identity with the builds before is the record test's).
    """
    mod, overrides, _ = apply_fast_scatter(import_onnx(tiny_onnx)[0])
    optimized, _ = optimize(mod, TARGET, overrides)
    (decode,) = [f for gv, f in optimized.functions_items() if "sigmoid" in gv.name_hint]
    sch = s_tir.Schedule(decode)
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    copies = ("T_reshape", "T_transpose", "T_strided_slice", "T_concat")
    assert names[-1].startswith("T_concat") and not [n for n in names[:-1] if n.startswith(copies)], names
    assert sorted(n.rstrip("0123456789") for n in names[:-1]) == ["T_add"] * 2 + ["T_multiply"] * 4 + ["exp"] * 2 + ["sigmoid"] * 2


RECORD = json.loads((Path(__file__).parent / "data" / "cpu_schedule_outputs.json").read_text())
INPUTS = ("photo", "seed1", "seed2", "seed3")
# the suite's session fixture that already builds a case; the other cases are built here
SHARED_BUILDS = {
    "yolov3-tiny-96-fp32": "tiny_artifacts",
    "yolov3-tiny-96-bf16": "tiny_bf16_artifact",
    "yolov3-64-fp32": "yolov3_artifacts",
    "yolov3-tiny-416-fp32": "tiny416_artifact",
    "yolov3-tiny-416-bf16": "tiny416_bf16_artifact",
}
ONNX_FIXTURES = {"yolov3-tiny-96": "tiny_onnx", "yolov3-64": "yolov3_onnx"}


def output_digests(artifact_dir: Path, photo: Path) -> dict[str, str]:
    """sha256 of the outputs' bytes for each of ``INPUTS``, as the record was made."""
    artifact = load_artifact(artifact_dir)
    model = create_vm(artifact)
    digests = {}
    for name in INPUTS:
        image, seed = (photo, 0) if name == "photo" else (None, int(name.removeprefix("seed")))
        data, _ = model_input(artifact.input_shape, "float32", image, BenchOptions().input_scale, seed=seed, letterbox=True)
        digests[name] = hashlib.sha256(b"".join(np.ascontiguousarray(out).tobytes() for out in model.run(data))).hexdigest()
    return digests


@pytest.mark.parametrize(
    "case",
    [
        "yolov3-tiny-96-fp32",
        pytest.param("yolov3-64-fp32", marks=pytest.mark.slow),
        "yolov3-tiny-416-fp32",
        pytest.param("yolov3-tiny-96-bf16", marks=needs_bf16),
        pytest.param("yolov3-64-bf16", marks=[needs_bf16, pytest.mark.slow]),  # a build of its own, ~25 s
        pytest.param("yolov3-tiny-416-bf16", marks=[needs_bf16, pytest.mark.slow]),  # shared with the bf16 accuracy test
    ],
)
def test_outputs_are_bit_identical_to_the_record(case, request, photos, tmp_path):
    """Whole models through every rule: fp32 and bf16 outputs equal the bits recorded before the rules."""
    precision = case.rsplit("-", 1)[1]
    if SUITE_MCPU != RECORD["mcpu"]:
        pytest.skip(f"this CPU cannot run code built for {RECORD['mcpu']}, the CPU the record was built for")
    if case in SHARED_BUILDS:
        built = request.getfixturevalue(SHARED_BUILDS[case])
        artifact = built["fastscatter"] if isinstance(built, dict) else built
    else:
        artifact = tmp_path / "artifact"
        options = TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU, precision=precision)
        compile_onnx(request.getfixturevalue(ONNX_FIXTURES[case.rsplit("-", 1)[0]]), artifact, CompileOptions(options, fast_scatter_nd=True))
    assert output_digests(artifact, photos["motorcycle_left"]) == RECORD["outputs"][case]


@needs_intel
def test_intel_tiles_match_onnxruntime(tiny_onnx, tmp_path):
    """yolov3-tiny built with Emerald Rapids' tiles (``CONV_TILES``) agrees with ONNX Runtime."""
    import onnxruntime as ort

    artifact = tmp_path / "intel"
    result = compile_onnx(tiny_onnx, artifact, CompileOptions(TargetOptions(cpu_threads=2, mcpu=INTEL)))
    assert json.loads(result.meta["target"])["mcpu"] == INTEL
    loaded = load_artifact(artifact)
    data, _ = model_input(loaded.input_shape, "float32", None, BenchOptions().input_scale, seed=3, letterbox=True)
    (ours,) = create_vm(loaded).run(data)[:1]
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    (reference,) = session.run(None, {loaded.meta["input_name"]: data})[:1]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)
