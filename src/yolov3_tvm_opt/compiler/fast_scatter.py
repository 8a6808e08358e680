"""The fast scatter_nd variant: an exact rewrite of YOLO's in-place decode, and a parallel kernel.

Why: YOLO exports write ``y[..., 0:2] = xy`` as ONNX ScatterND whose constant index tensor
enumerates *every* element of the box (index tuples reach the last axis, so each update is one
scalar). TVM's TOPI kernels parallelise only over that trailing slice, which is 1 wide: on CUDA a
single thread walks all 3*80*80*2 = 38 400 updates after a full copy of the data, and on CPU the
copy and the loop are serial. The user's 640px YOLOv3 spent ~35 of 45.5 ms there.

Two parts, both exact:

1. ``RewriteDenseScatterND`` (a Relax function pass). Before, for one 13x13 tiny-YOLO head::

       y:   [1, 3, 13, 13, 85]
       idx: const int64 [1, 3, 13, 13, 2, 5]  = every (b, a, j, i, c) with c in {0, 1}
       out = scatter_nd(y, idx, xy)             xy: [1, 3, 13, 13, 2]

   The pass reads the index values and proves they enumerate, in row-major order, the dense box
   ``[0:1, 0:3, 0:13, 0:13, 0:2]`` of ``y``. Then the call is exactly::

       out = concat([xy, y[..., 2:85]], axis=-1)

   (for ``c in {2, 3}``: ``concat([y[..., 0:2], wh, y[..., 4:85]])``). Slices and concat are
   injective, so FuseOps folds them into the element-wise decode around them and no scatter
   kernel remains. Any scatter_nd it cannot prove this way is left untouched and counted.

2. ``parallel_scatter_nd`` (a legalization used instead of TOPI's for what remains): parallel
   over *all* updates (index tuple x slice element), a parallel loop on llvm and thread-bound on
   CUDA. When two updates may hit the same element and the reduction combines them (add, mul,
   min, max), it keeps TOPI's order instead: parallel over the slice, index tuples in order, so
   the result is TOPI's bit for bit. For ``reduction="update"`` with duplicate *runtime*
   indices ONNX leaves the result undefined and the winner here is whichever thread writes last
   (TOPI: the last index tuple); constant indices with duplicates keep TOPI's order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.tvm_loader import load_tvm
from ..models.dense_box import dense_box, replace_box

tvm = load_tvm()

from tvm import relax, te, tirx  # noqa: E402
from tvm.ir import IRModule  # noqa: E402
from tvm.ir.expr import GenericConst  # noqa: E402
from tvm.relax.dpl import is_op, rewrite_call, wildcard  # noqa: E402
from tvm.script.ir_builder import IRBuilder  # noqa: E402
from tvm.script.ir_builder import tirx as T  # noqa: E402


def _combine(reduction: str, old: relax.Expr, new: relax.Expr) -> relax.Expr:
    ops = {
        "update": lambda: new,
        "add": lambda: relax.op.add(old, new),
        "mul": lambda: relax.op.multiply(old, new),
        "min": lambda: relax.op.minimum(old, new),
        "max": lambda: relax.op.maximum(old, new),
    }
    return ops[reduction]()


def _static_shape(expr: relax.Expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    dims = [getattr(v, "value", None) for v in shape.values]
    return None if any(d is None for d in dims) else [int(d) for d in dims]


@relax.transform.function_pass(opt_level=0, name="RewriteDenseScatterND")
class RewriteDenseScatterND:
    """Replace scatter_nd calls whose constant indices address a dense box by slices + concat.

    Indices computed at run time cannot be proven anything about, so those calls stay too.

    After it runs, ``rewritten`` says how many calls became slices + concat; ``count_scatter_nd``
    on the result says how many stayed.
    """

    def __init__(self) -> None:
        self.data, self.indices, self.updates = wildcard(), wildcard(), wildcard()
        self.pattern = is_op("relax.scatter_nd")(self.data, self.indices, self.updates)
        self.rewritten = 0

    def transform_function(self, func: relax.Function, mod: IRModule, ctx: Any) -> relax.Function:
        if "Primitive" in func.attrs.keys() and func.attrs["Primitive"] != 0:
            return func

        def rewriter(expr: relax.Call, matches: dict) -> relax.Expr:
            data, updates = matches[self.data], matches[self.updates]
            data_shape, updates_shape = _static_shape(data), _static_shape(updates)
            indices, box = matches[self.indices], None
            if isinstance(indices, GenericConst) and data_shape is not None and updates_shape is not None:
                box = dense_box(indices.value.numpy(), tuple(data_shape))
            if box is None:
                return expr
            m = len(box)
            box_shape = [b - a for a, b in box] + data_shape[m:]
            content = updates if updates_shape == box_shape else relax.op.reshape(updates, box_shape)
            reduction = str(expr.attrs.reduction)
            if reduction != "update":
                old = data
                for axis, (start, stop) in enumerate(box):
                    old = relax.op.strided_slice(old, [axis], [start], [stop])
                content = _combine(reduction, old, content)
            self.rewritten += 1
            return replace_box(
                data, data_shape, box, content,
                take=lambda x, axis, start, stop: relax.op.strided_slice(x, [axis], [start], [stop]),
                join=lambda pieces, axis: relax.op.concat(pieces, axis=axis),
            )

        return rewrite_call(self.pattern, rewriter, func)


def _fused_size(dims: Any) -> Any:
    size = 1
    for dim in dims:
        size = size * dim
    return size


def _scatter_ir(data_buf: Any, indices_buf: Any, updates_buf: Any, out_buf: Any, mode: str, all_parallel: bool, gpu: bool) -> Any:
    """TIR for scatter_nd with ONNX's index layout ``[Y..., M]``; see the module docstring."""
    m = int(indices_buf.shape[-1])
    n_tuples = _fused_size(indices_buf.shape[:-1])
    slice_size = _fused_size(data_buf.shape[m:])
    n_elems = _fused_size(data_buf.shape)
    data, indices, updates, out = (T.buffer_proxy(b) for b in (data_buf, indices_buf, updates_buf, out_buf))
    max_threads = int(tvm.target.Target.current(allow_none=False).attrs["max_num_threads"]) if gpu else 0

    def apply(i: Any, j: Any) -> None:
        position = tirx.Cast("int64", j)
        stride = slice_size
        for axis in reversed(range(m)):
            position = position + stride * tirx.Cast("int64", indices[i * m + axis])
            stride = stride * data_buf.shape[axis]
        value = updates[i * slice_size + j]
        combined = {
            "update": lambda: value,
            "add": lambda: out[position] + value,
            "mul": lambda: out[position] * value,
            "min": lambda: tirx.min(out[position], value),
            "max": lambda: tirx.max(out[position], value),
        }[mode]()
        out[position] = combined

    def parallel(extent: Any, body: Any) -> None:
        if gpu:
            bx, tx = te.thread_axis("blockIdx.x"), te.thread_axis("threadIdx.x")
            blocks = tirx.Cast("int32", (extent + max_threads - 1) // max_threads)
            with T.frame_scope([T.attr(bx, "thread_extent", blocks), T.attr(tx, "thread_extent", max_threads)]):
                tid = bx * max_threads + tx
                with T.If(tid < extent):
                    with T.Then():
                        body(tid)
        else:
            with T.parallel(0, extent) as tid:
                body(tid)

    def copy(e: Any) -> None:
        out[e] = data[e]

    def scatter_all(t: Any) -> None:
        apply(t // slice_size, t % slice_size)

    def scatter_in_order(j: Any) -> None:
        with T.serial(0, n_tuples) as i:
            apply(i, j)

    with IRBuilder() as ib:
        with T.seq_scope():
            parallel(n_elems, copy)
            if all_parallel:
                parallel(n_tuples * slice_size, scatter_all)
            else:
                parallel(slice_size, scatter_in_order)
    return ib.get()


def parallel_scatter_nd(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """Legalize ``relax.scatter_nd`` to our parallel kernel (used by the fastscatter build)."""
    mode = str(call.attrs.reduction)
    indices = call.args[1]
    all_parallel = mode == "update"
    if isinstance(indices, GenericConst):
        values = indices.value.numpy()
        tuples = values.reshape(-1, values.shape[-1])
        unique = len(np.unique(tuples, axis=0)) == len(tuples)
        all_parallel = unique
    target = tvm.target.Target.current(allow_none=False)
    gpu = "gpu" in target.keys

    def scatter(data: Any, idx: Any, updates: Any) -> Any:
        return te.extern(
            [data.shape],
            [data, idx, updates],
            lambda ins, outs: _scatter_ir(ins[0], ins[1], ins[2], outs[0], mode, all_parallel, gpu),
            out_buffers=[tirx.decl_buffer(data.shape, data.dtype, "out_buf")],
            name="fast_scatter_nd",
            tag="fast_scatter_nd",
        )

    return bb.call_te(scatter, call.args[0], indices, call.args[2], primfunc_name_hint="fast_scatter_nd")


def apply_fast_scatter(mod: IRModule) -> tuple[IRModule, dict[str, Any], dict[str, int]]:
    """Run the rewrite on an imported module; return it, the legalization overrides and counts.

    Constants are folded first because the ONNX frontend wraps every index tensor in a
    negative-index normalisation (``where(idx < 0, idx + dim, idx)``) that is only constant
    once folded; the rewrite needs the literal index values to prove a box.
    """
    mod = relax.transform.FoldConstant()(mod)
    rewrite = RewriteDenseScatterND()
    mod = rewrite(mod)
    counts = {"dense_box_rewritten": rewrite.rewritten, "parallel_kernel": count_scatter_nd(mod)}
    return mod, {"relax.scatter_nd": parallel_scatter_nd}, counts


def count_scatter_nd(mod: IRModule) -> int:
    """How many relax.scatter_nd calls a module's Relax functions still hold."""
    op = tvm.ir.Op.get("relax.scatter_nd")
    found = []
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(
                func, lambda e: found.append(e) if isinstance(e, relax.Call) and e.op.same_as(op) else None
            )
    return len(found)
