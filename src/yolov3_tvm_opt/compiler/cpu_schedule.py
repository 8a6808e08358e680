"""Default llvm schedules for the functions TVM 0.27 leaves as naive loop nests on CPU, as dlight rules.

Why: on GPUs dlight gives every fused function a schedule; its CPU rules cover only GEMV and
reductions, so on llvm an untuned conv2d is seven nested serial loops (yolov3-tiny 416: ~2.8 s
against ONNX Runtime's ~30 ms). Two ``ScheduleRule`` classes play dlight's role for the hot ops,
applied with dlight's own ``ApplyDefaultSchedule`` in the order of ``CPU_RULES`` (the first rule
that returns a schedule wins; tuning seeds its database from the same rules):

* ``PackedConv2D``: a function holding one conv2d block of ours (``conv_packing``, ``bf16_conv``;
  found by its ``BLOCK_KIND`` annotation) and its fused bias/activation epilogue. A register
  tile of one vector of output channels x up to 16 columns, each input pixel broadcast into a
  vector FMA, the epilogue applied while the tile is written back, and the outer (channel
  block, row) loops in parallel, in the order that streams fewer bytes. Where ``CONV_TILES``
  says so for the target's ``mcpu``, convs with a very short reduction (the first conv) get
  a tile of one vector of columns instead.
* ``Elementwise``: any other function (pooling, resize, concat, the YOLO decode, convs packing
  does not fit): padding copies and pure data movement (reshape, transpose, slice, concat)
  inlined into their consumer, each block's outer spatial loops in parallel and its innermost
  spatial loop vectorised, inside the window loops for pooling.

dlight's own CPU rules sit between the two: ``GEMV`` and ``Reduction`` (softmax, norms, and
any conv with an epilogue: a reduction block, then injective ones). They come after
``PackedConv2D``, which must see our convs first, and before ``Elementwise``, which fits
everything. In YOLO they match no function our conv rule leaves (checked on yolov3-tiny and
yolov3, fp32 and bf16), so they change none of its kernels; a grouped conv goes to ``Reduction``.

Blocks are found by what they are, never by their names: our own blocks carry a ``BLOCK_KIND``
annotation, TOPI's padding copies (pooling's ``pad_temp``) are recognised by their body (a
guarded load of one buffer, a constant outside). Functions that already have a schedule (a
tuning record, ``tirx.is_scheduled``) are left alone, and a rule that cannot apply (an
unexpected block structure, a ``ScheduleError``) returns None, so the function falls to the
next rule or keeps TVM's default: the result is never a different computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.tvm_loader import load_tvm
from .bf16_conv import BF16_CONV, DOT_INTRIN, HELPER_IR
from .bf16_conv import LANES as BF16_LANES
from .conv_packing import BLOCK_KIND, CONV_INPUT, PACKED_CONV
from .int8_conv import Int8Conv2D

tvm = load_tvm()

from tvm import s_tir, tirx  # noqa: E402
from tvm.s_tir.dlight import ApplyDefaultSchedule  # noqa: E402
from tvm.s_tir.dlight.cpu import GEMV, Reduction  # noqa: E402
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule  # noqa: E402

SCHEDULED = "tirx.is_scheduled"
_IF_THEN_ELSE = tvm.ir.Op.get("prim.if_then_else")


def _divisor_at_most(extent: int, limit: int) -> int:
    """The largest divisor of ``extent`` that is <= ``limit``."""
    return max(d for d in range(1, min(extent, limit) + 1) if extent % d == 0)


def _extent(sch: Any, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _kind(sch: Any, block: Any) -> str | None:
    """The ``BLOCK_KIND`` annotation our legalizations put on the blocks they create, if any."""
    kind = sch.get(block).annotations.get(BLOCK_KIND)
    return None if kind is None else str(kind)


def _conv_block(sch: Any, kind: str) -> Any | None:
    """The fused function's conv2d block of ``kind`` (``conv_packing``, ``bf16_conv``), if there is exactly one."""
    blocks = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if _kind(sch, b) == kind]
    return blocks[0] if len(blocks) == 1 else None


def _is_padding(sch: Any, block: Any) -> bool:
    """Whether a block is a padding copy: TOPI's ``pad`` (pooling's ``pad_temp``) or our conv input.

    Recognised by structure: spatial loops only, one buffer read and one written, and a body
    ``out[...] = if_then_else(inside, in[...], constant)``. Our conv input copies (the fp32
    padding, the bf16 pair conversion) say so in their ``BLOCK_KIND`` annotation.
    """
    if _kind(sch, block) == CONV_INPUT:
        return True
    stmt = sch.get(block)
    if any(var.iter_type != tirx.IterVar.DataPar for var in stmt.iter_vars):
        return False
    if len(stmt.reads) != 1 or len(stmt.writes) != 1 or not isinstance(stmt.body, tirx.BufferStore):
        return False
    value = stmt.body.value
    if not (isinstance(value, tvm.ir.expr.Call) and value.op.same_as(_IF_THEN_ELSE) and len(value.args) == 3):
        return False
    _, inside, outside = value.args
    return (
        isinstance(inside, tvm.ir.expr.TensorLoad)
        and inside.source.same_as(stmt.reads[0].source)
        and isinstance(outside, (tirx.FloatImm, tirx.IntImm))
    )


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


@dataclass(frozen=True)
class ConvTiles:
    """Register-tile choices of ``PackedConv2D`` for one microarchitecture (see ``CONV_TILES``).

    ``row_vector_reduction``: convs whose reduction (input channels x ky x kx) is at most this
    long, and whose rows divide into whole vectors, get a tile of one vector of columns x
    ``vector_lanes`` output channels, each weight broadcast into an FMA over contiguous input
    columns (``_schedule_row_vector_conv2d``). With so few FMAs per output (the first conv:
    3 x 3 x 3 = 27), the channel-vector tile's transposed write-back (column-major accumulators
    into NCHW rows) costs about as much as the sum; this tile writes whole rows. 0: never.
    """

    row_vector_reduction: int = 0


# Keyed on the llvm target's -mcpu; a CPU not listed keeps the tiles tuned on AMD Zen 4/5.
# Measured on an Emerald Rapids (docs/performance.md, "CPU fp32 on Intel"); Sapphire Rapids
# has the same core.
CONV_TILES: dict[str, ConvTiles] = {
    "sapphirerapids": ConvTiles(row_vector_reduction=27),
    "emeraldrapids": ConvTiles(row_vector_reduction=27),
}


def conv_tiles(target: Any) -> ConvTiles:
    """The conv tile choices for the target's CPU (``CONV_TILES``, else the Zen tiles)."""
    return CONV_TILES.get(str(target.attrs.get("mcpu", "generic")), ConvTiles())


def _schedule_row_vector_conv2d(sch: Any, conv: Any, vector_lanes: int) -> s_tir.Schedule:
    """A tile of one vector of columns x ``vector_lanes`` output channels (``row_vector_reduction``).

    Each weight is broadcast into an FMA over a vector of input columns, loaded contiguously from
    the NCHW input; the accumulators are rows of the NCHW output, written back as they are.
    """
    n, co, oh, ow, rc, ry, rx = sch.get_loops(conv)
    co_outer, co_inner = sch.split(co, [None, vector_lanes])
    ow_outer, ow_inner = sch.split(ow, [None, vector_lanes])
    sch.reorder(n, oh, co_outer, ow_outer, rc, ry, rx, co_inner, ow_inner)
    local = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(local, ow_outer)
    for consumer in _elementwise_chain(sch, local):
        sch.reverse_compute_inline(consumer)
    sch.unroll(co_inner)
    sch.vectorize(ow_inner)
    _finish_tile(sch, conv, local, sch.fuse(n, oh, co_outer), rc, vector_lanes)
    return sch


def _finish_tile(sch: Any, conv: Any, local: Any, tasks: Any, rc: Any, vector_lanes: int) -> None:
    """Tasks in parallel, the tile's zeroing and write-back vectorised, the padding copy parallel.

    The padding copy: computed where a row of output tiles needs it would repeat work across
    channel blocks, so it stays a separate, parallel pass over the (small) input.
    """
    sch.parallel(tasks)
    init = sch.decompose_reduction(conv, rc)
    for producer in sch.get_producers(conv):
        if _is_padding(sch, producer):
            _parallel_spatial(sch, producer, vector_lanes)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(local)[-1])


def _schedule_conv2d(func: tirx.PrimFunc, vector_lanes: int, tiles: ConvTiles = ConvTiles()) -> s_tir.Schedule | None:
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
    conv = _conv_block(sch, PACKED_CONV)
    bf16 = conv is None
    if bf16:
        conv = _conv_block(sch, BF16_CONV)
        vector_lanes = BF16_LANES
    if conv is None:
        return None
    loops = sch.get_loops(conv)
    if len(loops) != (8 if bf16 else 7):
        return None
    n, co, oh, ow, rc, ry, rx, *pair = loops
    reduction = _extent(sch, rc) * _extent(sch, ry) * _extent(sch, rx)
    if not bf16 and reduction <= tiles.row_vector_reduction and _extent(sch, ow) % vector_lanes == 0:
        return _schedule_row_vector_conv2d(sch, conv, vector_lanes)
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
    # a padding copy after the epilogue (torch's ZeroPad2d before a pool) cannot be inlined
    # into the tile: a parallel pass of its own, like the input's
    for consumer in sch.get_consumers(local):
        if _is_padding(sch, consumer):
            _parallel_spatial(sch, consumer, vector_lanes)
    # annotate before decompose_reduction: afterwards the update alone is no reduction block
    sch.unroll(ow_inner)
    if not bf16:
        sch.vectorize(co_inner)
    tasks = sch.fuse(n, *outer)
    _finish_tile(sch, conv, local, tasks, rc, vector_lanes)
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
        if any(var.iter_type != tirx.IterVar.DataPar for var in stmt.iter_vars) or _is_padding(sch, consumer):
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


def _moves_data(value: Any) -> bool:
    """Whether a block's value only reads elements: a load (reshape, transpose, slice) or concat's choice of loads."""
    if isinstance(value, tvm.ir.expr.TensorLoad):
        return True
    if isinstance(value, tvm.ir.expr.Call) and value.op.same_as(_IF_THEN_ELSE) and len(value.args) == 3:
        return _moves_data(value.args[1]) and _moves_data(value.args[2])
    return False


def _inline_copies(sch: Any) -> None:
    """Inline every block that only moves data into the blocks that read it, until none is left."""
    inlined = True
    while inlined:
        inlined = False
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            stmt = sch.get(block)
            if not sch.get_consumers(block) or not isinstance(stmt.body, tirx.BufferStore) or not _moves_data(stmt.body.value):
                continue
            try:
                sch.compute_inline(block)
                inlined = True
            except (s_tir.ScheduleError, RuntimeError, ValueError):  # keep it a pass of its own
                pass


def _schedule_elementwise(func: tirx.PrimFunc, vector_lanes: int) -> s_tir.Schedule | None:
    """Parallelise every top-level block of a function (pooling, resize, concat, decode).

    Padding copies are inlined into their consumers first: a pool reads each padded element
    once, so a separate padded buffer is only extra memory traffic. So are reshapes, transposes,
    slices and concats: the YOLO decode is ~30 of them around its sigmoid, exp and grid
    arithmetic, each a parallel loop of its own over a buffer of its own, and with them inlined
    yolov3-tiny 416's decode took half the time (values unchanged: they only move data).
    """
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not blocks:
        return None
    for block in blocks:
        if _is_padding(sch, block) and sch.get_consumers(block):
            try:
                sch.compute_inline(block)
            except (s_tir.ScheduleError, RuntimeError, ValueError):  # keep it a pass of its own
                pass
    _inline_copies(sch)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        _parallel_spatial(sch, block, vector_lanes)
    return sch


def vector_lanes(target: Any) -> int:
    """float32 lanes of the target's widest vector unit (16 with AVX-512, 8 with AVX2)."""
    bits = int(tvm.target.codegen.llvm_get_vector_width(target))
    return max(4, bits // 32)


class _CPURule(CPUScheduleRule):
    """A rule whose schedule raising (a block structure it did not expect) means "not mine".

    dlight's ``ApplyDefaultSchedule`` lets a ``ScheduleError`` through and would stop the build.
    """

    def schedule(self, func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
        raise NotImplementedError

    def apply(self, func: tirx.PrimFunc, target: Any, tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        try:
            return self.schedule(func, target)
        except (s_tir.ScheduleError, RuntimeError, ValueError):
            return None


class PackedConv2D(_CPURule):
    """A fused function around one conv2d block of ours (``conv_packing``, ``bf16_conv``)."""

    def schedule(self, func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
        return _schedule_conv2d(func, vector_lanes(target), conv_tiles(target))


class Elementwise(_CPURule):
    """Any other function: every top-level block parallel and vectorised, padding copies inlined."""

    def schedule(self, func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
        return _schedule_elementwise(func, vector_lanes(target))


class DlightRule(_CPURule):
    """One of dlight's CPU rules, with its errors caught like ours."""

    def __init__(self, rule: CPUScheduleRule) -> None:
        self.rule = rule

    def schedule(self, func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
        return self.rule.apply(func, target, False)


# in the order they are tried, by the name meta.json counts them under (``<name>_default_schedules``)
CPU_RULES: dict[str, CPUScheduleRule] = {
    "conv2d": PackedConv2D(),
    "conv2d_int8": Int8Conv2D(),  # int8_conv: vpdpbusd tiles
    "gemv": DlightRule(GEMV()),
    "reduction": DlightRule(Reduction()),
    "generic": Elementwise(),
}


def default_schedule(func: tirx.PrimFunc, target: Any) -> s_tir.Schedule | None:
    """The schedule the first of ``CPU_RULES`` that fits gives ``func`` (what tuning seeds with).

    The schedule carries its trace, which is how tuning records it as a seed (``tune``).
    """
    for rule in CPU_RULES.values():
        sch = rule.apply(func, target, False)
        if sch is not None:
            return sch
    return None


def apply_cpu_schedules(mod: Any) -> tuple[Any, dict[str, int]]:
    """``CPU_RULES`` applied with dlight's ``ApplyDefaultSchedule`` (inside ``with target``); returns (module, counts).

    One pass per rule, in order: each pass sees only the functions the rules before it left
    unscheduled, so this is ``ApplyDefaultSchedule(*CPU_RULES.values())`` with the number of functions
    each rule scheduled counted (``<rule>_default_schedules``; ``left_default_default_schedules``
    is the functions no rule fit, which keep TVM's default).
    """
    counts = {}
    for name, rule in CPU_RULES.items():
        before = scheduled_functions(mod)
        mod = ApplyDefaultSchedule(rule)(mod)
        counts[f"{name}_default_schedules"] = scheduled_functions(mod) - before
    counts["left_default_default_schedules"] = sum(1 for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)) - scheduled_functions(mod)
    return mod, counts


def scheduled_functions(mod: Any) -> int:
    """How many of the module's TIR functions carry ``tirx.is_scheduled``."""
    return sum(
        1
        for func in mod.functions.values()
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None and bool(func.attrs.get(SCHEDULED, False))
    )
