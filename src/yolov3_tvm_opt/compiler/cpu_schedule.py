"""Default llvm schedules for the functions TVM 0.27 leaves as naive loop nests on CPU.

Why: on GPUs dlight gives every fused function a schedule; its CPU rules cover only GEMV and
reductions, so on llvm an untuned conv2d is seven nested serial loops (yolov3-tiny 416: ~2.8 s
against ONNX Runtime's ~30 ms). ``ApplyCPUSchedules`` plays dlight's role for the hot ops:

* conv2d with weights packed by ``conv_packing`` (and the fused bias/activation epilogue): a
  register tile of one vector of output channels x up to 16 columns, each input pixel
  broadcast into a vector FMA, the epilogue applied while the tile is written back, and the
  outer (channel block, row) loops in parallel, in the order that streams fewer bytes.
* any other fused function (pooling, resize, concat, the YOLO decode, convs packing does not
  fit): pads inlined into their consumer, each block's outer spatial loops in parallel and its
  innermost spatial loop vectorised, inside the window loops for pooling.

Functions that already have a schedule (a tuning record, ``tirx.is_scheduled``) are left alone,
and a rule that cannot apply (an unexpected block structure) leaves the function untouched, so
the result is never worse than the default and always exactly the same computation.
"""

from __future__ import annotations

from typing import Any

from ..core.tvm_loader import load_tvm
from .bf16_conv import BF16_BLOCK, DOT_INTRIN, HELPER_IR
from .bf16_conv import LANES as BF16_LANES
from .conv_packing import PACKED_BLOCK

tvm = load_tvm()

from tvm import s_tir, tirx  # noqa: E402

SCHEDULED = "tirx.is_scheduled"


def _divisor_at_most(extent: int, limit: int) -> int:
    """The largest divisor of ``extent`` that is <= ``limit``."""
    return max(d for d in range(1, min(extent, limit) + 1) if extent % d == 0)


def _extent(sch: Any, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _conv_block(sch: Any, name: str = PACKED_BLOCK) -> Any | None:
    """The fused function's packed conv2d block (``conv_packing``, ``bf16_conv``), if there is exactly one."""
    blocks = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint.startswith(name)]
    return blocks[0] if len(blocks) == 1 else None


def _column_tile(width: int, limit: int, widest: int, guard: bool) -> int:
    """Columns per register tile: a divisor of the row, ideally in (limit / 2, limit].

    YOLO at 608 has rows of 19, 38 and 76, whose divisors <= 16 are 1, 2 and 4. With AVX-512's
    32 registers a divisor up to ``widest`` (19) still fits; otherwise the row is cut into equal
    tiles that do not divide it and TVM guards the last tile's spare columns (correct, but the
    guard costs about half the speed of those convs), unless ``guard`` is False.
    """
    for bound in (limit, widest):
        divisor = _divisor_at_most(width, bound)
        if 2 * divisor > limit or divisor == width:
            return divisor
    if not guard:
        return _divisor_at_most(width, limit)
    tiles = -(-width // limit)
    return -(-width // tiles)


def _rows_outer(sch: Any, conv: Any, channel_blocks: int, rows: int) -> bool:
    """Whether output rows should be the outer parallel loop rather than channel blocks.

    Each parallel task is one (channel block, row). With channel blocks outside, the whole
    input is read once per channel block; with rows outside, the weights are read once per row
    (the input rows a row needs stay in cache across its channel blocks). Early layers have
    megabytes of input and kilobytes of weights (Darknet-53 at 640: 52 MB against 73 KB), late
    layers the opposite (yolov3-tiny's 13 x 13 conv: 0.5 MB against 19 MB), so pick the order
    that streams fewer bytes.
    """

    def elements(buffer: Any) -> int:  # in bytes: bf16 convs read uint32 pairs and uint16 weights
        count = tvm.DataType(buffer.dtype).bits // 8
        for dim in buffer.shape:
            count *= int(dim)
        return count

    block = sch.get(conv)
    written = [region.source for region in block.writes]
    reads = [region.source for region in block.reads if not any(region.source.same_as(w) for w in written)]
    if len(reads) != 2:  # (input, weights) in the order the conv expression reads them
        return False
    data, weights = reads
    return channel_blocks * elements(data) > rows * elements(weights)


def schedule_conv2d(func: tirx.PrimFunc, vector_lanes: int = 16) -> s_tir.Schedule | None:
    """Schedule a fused packed conv2d function; None when its structure is not the expected one.

    The tile is ``vector_lanes`` output channels (one vector) x up to 16 columns (one
    accumulator register each: 32 registers with AVX-512, 13 columns with AVX2's 16), and the
    accumulator is laid out column-major so each column's channels are one
    register. Convs packing does not fit (grouped, non-float32) get the generic schedule.

    A bf16 conv (``bf16_conv``) gets the same tile with one more reduction loop innermost, the
    input-channel pair, which together with the 16 channels is tensorized into one
    ``vdpbf16ps``; the LLVM helper that instruction is called through is imported on the
    outer parallel loop.
    """
    sch = s_tir.Schedule(func)
    conv = _conv_block(sch)
    bf16 = conv is None
    if bf16:
        conv = _conv_block(sch, BF16_BLOCK)
        vector_lanes = BF16_LANES
    if conv is None:
        return None
    loops = sch.get_loops(conv)
    if len(loops) != (8 if bf16 else 7):
        return None
    n, co, oh, ow, rc, ry, rx, *pair = loops
    limit, widest = (16, 24) if vector_lanes >= 16 else (13, 13)
    # a guarded column tile and the crop of padded channels (YOLO heads) miscompiled together
    # (wrong outputs, TVM 0.27), so cropped convs keep tiles that divide the row
    cropped = any(
        [int(d) for d in sch.get(block).writes[0].source.shape] != [int(d) for d in sch.get(conv).writes[0].source.shape]
        for block in _elementwise_chain(sch, conv)
    )
    w_tile = _column_tile(_extent(sch, ow), limit, widest, guard=not cropped)
    rows_outer = _rows_outer(sch, conv, _extent(sch, co) // vector_lanes, _extent(sch, oh))
    co_outer, co_inner = sch.split(co, [None, vector_lanes])
    ow_outer, ow_inner = sch.split(ow, [None, w_tile])
    outer = (oh, co_outer) if rows_outer else (co_outer, oh)
    sch.reorder(n, *outer, ow_outer, rc, ry, rx, ow_inner, co_inner, *pair)

    # accumulate the tile in registers, then write it back through the epilogue
    local = sch.cache_write(conv, 0, "local")
    # each column's channel vector contiguous: one register per column
    sch.transform_layout(conv, ("write", 0), lambda b, c, y, x: (b, y, x, c))
    sch.reverse_compute_at(local, ow_outer)
    for consumer in _elementwise_chain(sch, local):
        sch.reverse_compute_inline(consumer)
    # annotate before decompose_reduction: afterwards the update alone is no reduction block
    sch.unroll(ow_inner)
    if not bf16:
        sch.vectorize(co_inner)
    tasks = sch.fuse(n, *outer)
    sch.parallel(tasks)
    sch.decompose_reduction(conv, rc)

    # the padding copy: computed where a row of output tiles needs it would repeat work across
    # channel blocks, so it stays a separate, parallel pass over the (small) input
    for producer in sch.get_producers(conv):
        if sch.get(producer).name_hint.startswith("pad"):
            _parallel_spatial(sch, producer, vector_lanes)

    init = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint.endswith("_init")]
    for block in init:
        init_loops = sch.get_loops(block)
        sch.vectorize(init_loops[-1])
    write_loops = sch.get_loops(local)
    sch.vectorize(write_loops[-1])
    if bf16:  # last: tensorize replaces the conv block
        sch.tensorize(co_inner, DOT_INTRIN)
        sch.annotate(tasks, "pragma_import_llvm", HELPER_IR)
    return sch


def _elementwise_chain(sch: Any, block: Any) -> list[Any]:
    """The consumers after ``block`` that only map element to element (bias add, activation)."""
    chain = []
    current = block
    while True:
        consumers = sch.get_consumers(current)
        if len(consumers) != 1:
            return chain
        consumer = consumers[0]
        stmt = sch.get(consumer)
        if any(var.iter_type != tirx.IterVar.DataPar for var in stmt.iter_vars):
            return chain
        chain.append(consumer)
        current = consumer


def _parallel_spatial(sch: Any, block: Any, vector_lanes: int) -> None:
    """A block's outer spatial loops in parallel and its innermost spatial loop vectorised.

    In a reduction block (pooling windows, means) the vector of outputs moves inside the
    reduction loops, so each window step is one vector max/add instead of a scalar loop.
    """
    loops = sch.get_loops(block)
    kinds = [var.iter_type for var in sch.get(block).iter_vars]
    if len(loops) != len(kinds) or any(k not in (tirx.IterVar.DataPar, tirx.IterVar.CommReduce) for k in kinds):
        return
    spatial = [loop for loop, kind in zip(loops, kinds) if kind == tirx.IterVar.DataPar]
    reduction = [loop for loop, kind in zip(loops, kinds) if kind == tirx.IterVar.CommReduce]
    if not spatial or loops[: len(spatial)] != spatial:  # spatial loops first, as legalized
        return
    tile = _divisor_at_most(_extent(sch, spatial[-1]), vector_lanes)
    vectorized = None
    outer = spatial[:-1]
    if tile >= 4:
        row, vectorized = sch.split(spatial[-1], [None, tile])
        if reduction:
            sch.reorder(row, *reduction, vectorized)
        outer = outer or [row]
    elif reduction or not outer:
        outer = spatial
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    if vectorized is not None:
        try:
            sch.vectorize(vectorized)
        except (s_tir.ScheduleError, RuntimeError, ValueError):  # not vectorisable: leave it scalar
            return
    if reduction and vectorized is not None:
        init = sch.decompose_reduction(block, reduction[0])
        sch.vectorize(sch.get_loops(init)[-1])


def schedule_generic(func: tirx.PrimFunc, vector_lanes: int = 16) -> s_tir.Schedule | None:
    """Parallelise every top-level block of a function (pooling, resize, concat, decode).

    Padding copies are inlined into their consumers first: a pool reads each padded element
    once, so a separate padded buffer is only extra memory traffic.
    """
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not blocks:
        return None
    for block in blocks:
        if sch.get(block).name_hint.startswith("pad") and sch.get_consumers(block):
            try:
                sch.compute_inline(block)
            except (s_tir.ScheduleError, RuntimeError, ValueError):  # keep it a pass of its own
                pass
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        _parallel_spatial(sch, block, vector_lanes)
    return sch


def default_schedule(func: tirx.PrimFunc, vector_lanes: int = 16) -> tuple[str, s_tir.Schedule] | None:
    """(rule, schedule) for an unscheduled function: the conv2d rule, else the generic one.

    The schedule carries its trace, which is how tuning records it as a seed (``tune``). None
    when no rule fits the function's structure.
    """
    try:
        sch = schedule_conv2d(func, vector_lanes)
        if sch is not None:
            return "conv2d", sch
        sch = schedule_generic(func, vector_lanes)
        return None if sch is None else ("generic", sch)
    except (s_tir.ScheduleError, RuntimeError, ValueError):  # rule does not fit: keep the default
        return None


def vector_lanes(target: Any) -> int:
    """float32 lanes of the target's widest vector unit (16 with AVX-512, 8 with AVX2)."""
    bits = int(tvm.target.codegen.llvm_get_vector_width(target))
    return max(4, bits // 32)


@tvm.transform.module_pass(opt_level=0, name="ApplyCPUSchedules")
class ApplyCPUSchedules:
    """dlight's role on llvm: give every unscheduled fused function a reasonable schedule."""

    def __init__(self, target: Any) -> None:
        self.lanes = vector_lanes(target)
        self.applied = {"conv2d": 0, "generic": 0, "left_default": 0}

    def transform_module(self, mod: Any, _ctx: Any) -> Any:
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tirx.PrimFunc) or (func.attrs is not None and func.attrs.get(SCHEDULED, False)):
                continue
            found = default_schedule(func, self.lanes)
            if found is None:
                self.applied["left_default"] += 1
                continue
            kind, sch = found
            self.applied[kind] += 1
            updates[gvar] = sch.mod["main"].with_attr(SCHEDULED, True)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
