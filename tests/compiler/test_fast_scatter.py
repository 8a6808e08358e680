"""The fast scatter_nd variant is exact: bit-equal to TOPI's scatter_nd on every case we can draw.

Values are small integers stored as float32, so sums and products are exact whatever order the
parallel kernel applies them in; a mismatch here is a wrong index, not rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolov3_tvm_opt.compiler.fast_scatter import apply_fast_scatter
from yolov3_tvm_opt.compiler.pipeline import build
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.options import TargetOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm
from yolov3_tvm_opt.models.dense_box import dense_box

tvm = load_tvm()

from tvm import relax  # noqa: E402

LLVM = make_target(TargetOptions(kind="llvm", cpu_threads=2))
REDUCTIONS = ["update", "add", "mul", "min", "max"]


def box_indices(box: list[tuple[int, int]]) -> np.ndarray:
    axes = [np.arange(a, b) for a, b in box]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.int64)


def reference(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, reduction: str) -> np.ndarray:
    """ONNX ScatterND's definition, applied in index order (what TOPI does)."""
    out = data.copy()
    m = indices.shape[-1]
    flat_idx = indices.reshape(-1, m)
    flat_upd = updates.reshape(flat_idx.shape[0], *data.shape[m:])
    combine = {
        "update": lambda old, new: new,
        "add": np.add,
        "mul": np.multiply,
        "min": np.minimum,
        "max": np.maximum,
    }[reduction]
    for tup, upd in zip(flat_idx, flat_upd):
        out[tuple(tup)] = combine(out[tuple(tup)], upd)
    return out


def scatter_module(data_shape, indices, updates_shape, reduction, const_indices=True):
    bb = relax.BlockBuilder()
    data = relax.Var("data", relax.TensorType(data_shape, "float32"))
    updates = relax.Var("updates", relax.TensorType(updates_shape, "float32"))
    params = [data, updates]
    if const_indices:
        idx = relax.const(indices)
    else:
        idx = relax.Var("indices", relax.TensorType(indices.shape, "int64"))
        params.append(idx)
    with bb.function("main", params):
        with bb.dataflow():
            # an element-wise op around the scatter, like YOLO's decode
            out = bb.emit(relax.op.scatter_nd(data, idx, updates, reduction))
            out = bb.emit_output(relax.op.add(out, relax.const(np.float32(0))))
        bb.emit_func_output(out)
    return bb.get()


def run(mod, overrides, args):
    ex = build(mod, LLVM, overrides)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def check_exact(data, indices, updates, reduction, const_indices=True):
    mod = scatter_module(data.shape, indices, updates.shape, reduction, const_indices)
    args = [data, updates] if const_indices else [data, updates, indices]
    baseline = run(mod, None, args)
    fast_mod, overrides, counts = apply_fast_scatter(mod)
    fast = run(fast_mod, overrides, args)
    expected = reference(data, indices, updates, reduction)
    np.testing.assert_array_equal(baseline, expected)
    np.testing.assert_array_equal(fast, expected)
    return fast_mod, counts


def test_dense_box_proves_yolo_indices():
    idx = box_indices([(0, 1), (0, 3), (0, 4), (0, 4), (2, 4)])
    assert dense_box(idx, (1, 3, 4, 4, 85)) == [(0, 1), (0, 3), (0, 4), (0, 4), (2, 4)]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda idx: idx[..., ::-1, :],  # same set, another order: updates would land elsewhere
        lambda idx: idx.reshape(-1, idx.shape[-1])[:-1],  # one tuple missing
        lambda idx: np.concatenate([idx.reshape(-1, 5), idx.reshape(-1, 5)[:1]]),  # a duplicate
        lambda idx: idx + np.array([0, 0, 0, 0, 84]),  # past the end of the last axis
    ],
)
def test_dense_box_refuses_what_it_cannot_prove(mutate):
    idx = box_indices([(0, 1), (0, 3), (0, 4), (0, 4), (0, 2)])
    assert dense_box(np.ascontiguousarray(mutate(idx)), (1, 3, 4, 4, 85)) is None


def test_yolo_head_rewrite_removes_scatter_and_is_exact():
    rng = np.random.default_rng(0)
    data = rng.integers(-8, 8, (1, 3, 4, 4, 85)).astype(np.float32)
    for box in ([(0, 1), (0, 3), (0, 4), (0, 4), (0, 2)], [(0, 1), (0, 3), (0, 4), (0, 4), (2, 4)]):
        idx = box_indices(box)
        updates = rng.integers(-8, 8, idx.shape[:-1]).astype(np.float32)
        fast_mod, counts = check_exact(data, idx, updates, "update")
        assert counts == {"dense_box_rewritten": 1, "parallel_kernel": 0}
        assert "scatter_nd" not in fast_mod.script()


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4)


@st.composite
def scatter_cases(draw):
    shape = tuple(draw(shapes))
    m = draw(st.integers(1, len(shape)))
    kind = draw(st.sampled_from(["box", "scattered", "duplicates"]))
    reduction = draw(st.sampled_from(REDUCTIONS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "box":
        box = []
        for dim in shape[:m]:
            a = draw(st.integers(0, dim - 1))
            box.append((a, draw(st.integers(a + 1, dim))))
        indices = box_indices(box)
    else:
        total = int(np.prod(shape[:m]))
        count = draw(st.integers(1, total if kind == "scattered" else 2 * total))
        flat = (
            rng.permutation(total)[:count] if kind == "scattered" else rng.integers(0, total, count)
        )
        indices = np.stack(np.unravel_index(flat, shape[:m]), axis=-1).astype(np.int64)
        if kind == "duplicates" and count > 1:
            indices[-1] = indices[0]
    updates_shape = indices.shape[:-1] + shape[m:]
    data = rng.integers(-4, 5, shape).astype(np.float32)
    updates = rng.integers(-4, 5, updates_shape).astype(np.float32)
    return data, indices, updates, reduction, kind


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scatter_cases())
def test_fastscatter_is_bit_exact_on_random_graphs(case):
    data, indices, updates, reduction, kind = case
    _, counts = check_exact(data, indices, updates, reduction)
    if kind == "box":
        assert counts["dense_box_rewritten"] == 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_parallel_kernel_with_runtime_indices(reduction):
    rng = np.random.default_rng(1)
    data = rng.integers(-4, 5, (6, 5, 3)).astype(np.float32)
    flat = rng.permutation(30)[:12]
    indices = np.stack(np.unravel_index(flat, (6, 5)), axis=-1).astype(np.int64)
    if reduction != "update":  # duplicates are defined for reductions, undefined for update
        indices[5] = indices[2]
    updates = rng.integers(-4, 5, (12, 3)).astype(np.float32)
    _, counts = check_exact(data, indices, updates, reduction, const_indices=False)
    assert counts == {"dense_box_rewritten": 0, "parallel_kernel": 1}
