"""int8 builds: activations travel in u8 from the conv that produces them to the int8 conv that reads them.

Why: an int8 conv (``int8_conv``) multiplies u8 activations. Left alone, every int8 conv reads
fp32 NCHW, quantizes it in its input copy, and its producer wrote that fp32 tensor (4 bytes an
element) only to have it read back and rounded. This graph step (Relax, before legalization, int8
builds on llvm only) makes each int8 conv's input quantization an explicit op,
``q(x) = u8(clamp(nearbyint(x / s + zp), 0, 255))`` with the conv's calibrated (s, zp), and moves
it to where the activation is produced:

* through the ops between two convs that commute with a monotonic per-tensor map, so the op
  runs on u8 instead: ``max_pool2d`` (its padding becomes 0 = q(-inf): TOPI pads a max pool with
  its dtype's smallest value, 0 for u8), nearest-neighbour ``resize2d`` (a pure gather) and
  ``concat`` (the same (s, zp) pushed into every input: concat's input ranges are within its
  output's, which is what was calibrated);
* then right after the producer's last op (bias and activation included), where the fusion pass
  puts it into the producing conv's epilogue: that conv writes u8, and the int8 conv's input copy
  only packs bytes into 32-bit words and pads them (``int8_conv.int8_conv2d``).

"Where the next op allows it": a tensor with a consumer that needs fp32 (an fp32 conv, the decode, the
model's output) or two int8 readers with different (s, zp) keeps its fp32 write. An int8 conv
reading such a tensor keeps quantizing in its own input copy, as before (a separate quantize pass
could not fuse anywhere and would only add a pass); a concat or resize reading it quantizes
while it copies (the quantize fuses into it). A max pool moves its quantize upstream only when
its input has no other reader, otherwise the pool quantizes what it writes. Max pools whose
padding no window reads (Darknet's 2x2 / 2 on even sizes) become our own loop nest, four times
faster than TOPI's pool on u8 (``_pool_nest``).

Shortcut adds (Darknet-53's residual blocks): the block's input x feeds the block's first conv
and the add at its end, ``x + conv(conv(x))``, and the add's output does the same for the next
block. Read in fp32 by the add, x would have to be written in fp32 too, and the whole residual
stream would travel at 4 bytes an element. Instead, where every other reader of an add's operand
takes the same u8 image, the add reads that image and dequantizes it, ``(q(x) - zp) * s``, as it
adds (``_add_nest``, fused into the producing conv's epilogue like the add was): the stream
travels in u8, as ONNX Runtime's QDQ models (QLinearAdd) and OpenVINO's NNCF int8 carry it. This
is the one step that changes values: the add sees x rounded to its conv's int8 grid (at most s / 2
off inside the calibrated range). On yolov3 640 it took 49 -> 72 of 75 convs to reading u8 and made
the model 1.05x faster (docs/precision.md).

Layout: a u8 tensor that an int8 conv's channel tile writes, in whole blocks of 16 channels, is
channel-blocked, ``[N, C / 16, H, W, 16]`` (``int8_conv.U8_LAYOUT``). The tile holds each column's
16 channels in one register; writing them into NCHW scattered them 16 planes apart, and that
write-back took about as long as the sums in the early, few-channel layers. Blocked, a column
is 16 neighbouring bytes, one store, and the next conv's input copy moves 16 bytes at a time.
Pools, resizes and concats run on the blocked tensor as it is, shortcut adds read it at the NCHW
index of their other operand, and a concat of NCHW and blocked inputs reads them in one layout.
The quantize (and a shortcut add reading a blocked operand) is one element in, one out, at a
bijective index, but not at the same index, so TVM's pattern analysis calls it injective, which
``FuseOps`` would not fuse into a conv: ``fuse_as_elementwise`` marks it elementwise. The first
conv's row tile writes rows of one channel and keeps NCHW. On yolov3 640 the model took 0.89x
[0.85, 0.91] of its time, on yolov3-tiny 416 0.90x [0.88, 0.91], bit-identical (docs/precision.md).

Exactness: q is monotonic (so it commutes with max, and with gathers and concatenation trivially)
and the quantize computes the same float expression on the same fp32 value as the input copy did
(``int8_conv.quantize_u8``), so apart from the shortcut adds the outputs are bit-identical to
quantizing in each conv's input copy (``tests/compiler/test_int8_graph.py`` holds them to it, and
the shortcut adds to s / 2).
"""

from __future__ import annotations

import functools
from typing import Any

from ..core.calibration import Calibration
from ..core.tvm_loader import load_tvm
from .cpu_schedule import SCHEDULED
from .int8_conv import U8_BLOCK, U8_LAYOUT, Int8Report, conv_name, fp32_reason, input_qparams, quantize_u8, row_tile_fits

tvm = load_tvm()

import tvm_ffi  # noqa: E402  (where structural equality lives)
from tvm import relax, s_tir, te, tirx  # noqa: E402

QUANTIZE_FUNC = "int8_quantize_output"  # the PrimFunc name hint of a moved quantize
POOL_FUNC = "max_pool_u8"  # and of a max pool writing u8 (``_pool_nest``)
_REBUILT = "main_u8"  # the rewritten main while it is built beside the old one
RESIDUAL_FUNC = "int8_residual_add"  # and of a shortcut add reading an operand in u8 (``_add_nest``)
FP32 = "fp32"  # a consumer's demand for the fp32 tensor
RESIDUAL = "residual"  # a shortcut add's: u8 if every other reader takes one u8 image, else fp32
_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_POOL = tvm.ir.Op.get("relax.nn.max_pool2d")
_RESIZE = tvm.ir.Op.get("relax.image.resize2d")
_CONCAT = tvm.ir.Op.get("relax.concat")
_ADD = tvm.ir.Op.get("relax.add")


# Marks our functions that write or read a blocked tensor at the NCHW index of their other
# operands: one output element per input element, so elementwise for fusion (``fuse_as_elementwise``).
ELEMENTWISE = "yolov3_tvm_opt.elementwise"
K_ELEMWISE = 0  # TVM's OpPatternKind kElemWise


@tvm.transform.module_pass(opt_level=0, name="FuseAsElementwise")
def fuse_as_elementwise(mod: Any, _ctx: Any) -> Any:
    """Our blocked quantizes and shortcut adds as elementwise ops for ``FuseOps`` (run after ``AnnotateTIROpPattern``).

    TVM's analysis calls them injective (the blocked index is not the NCHW one), and ``FuseOps``
    fuses only elementwise and broadcast ops into a conv's epilogue: as injective the quantize
    would be a pass of its own over the conv's fp32 output. One element in, one out, at a
    bijective index: the fused function computes the same, and our schedule inlines them.
    """
    updates = {
        gv: func.with_attr("op_pattern", K_ELEMWISE)
        for gv, func in mod.functions.items()
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None and ELEMENTWISE in func.attrs
    }
    for gv, func in updates.items():
        mod[gv] = func
    return mod


def _mark_elementwise(bb: Any, var: Any) -> Any:
    """Tag the function behind the call_tir bound to ``var`` for ``fuse_as_elementwise``; returns ``var``."""
    gv = bb.lookup_binding(var).args[0]
    bb.update_func(gv, bb.get()[gv].with_attr(ELEMENTWISE, True))
    return var


def _in_layout(shape: list[Any], value: Any, blocked: bool, name: str) -> te.Tensor:
    """``value(n, c, y, x)`` over the NCHW ``shape``, written NCHW or blocked."""
    if not blocked:
        return te.compute(shape, value, name=name)
    n, c, h, w = shape
    return te.compute((n, c // U8_BLOCK, h, w, U8_BLOCK), lambda i, b, y, x, j: value(i, b * U8_BLOCK + j, y, x), name=name)


def _quantize_te(data: te.Tensor, x_scale: float, zero_point: int, blocked: bool = False) -> te.Tensor:
    """fp32 NCHW -> u8 with (``x_scale``, ``zero_point``), element by element (``int8_conv.quantize_u8``), blocked if asked."""
    return _in_layout(list(data.shape), lambda *index: quantize_u8(data[index], x_scale, zero_point), blocked, "quantize")


def _nchw(data: te.Tensor) -> Any:
    """A reader of ``data`` (NCHW, or blocked 5-D) by NCHW index."""
    if len(data.shape) == 5:
        return lambda n, c, y, x: data[n, c // U8_BLOCK, y, x, c % U8_BLOCK]
    return lambda n, c, y, x: data[n, c, y, x]


def _is_blocked(expr: Any) -> bool:
    return len(expr.ty.shape.values) == 5


def _relayout_te(data: te.Tensor, blocked: bool) -> te.Tensor:
    """u8 NCHW <-> blocked: what a concat of mixed inputs reads (it fuses into the concat's copy)."""
    n, c, h, w, *block = data.shape
    shape = [n, c * block[0], h, w] if block else [n, c, h, w]
    return _in_layout(shape, _nchw(data), blocked, "relayout")


def _op(value: Any) -> Any:
    return value.op if isinstance(value, relax.Call) else None


def _tensor_args(value: Any) -> list[Any]:
    """The tensors a sinkable op reads: concat's tuple fields, the others' first argument."""
    if _op(value).same_as(_CONCAT):
        return list(value.args[0].fields)
    return [value.args[0]]


def _sinkable(value: Any) -> bool:
    """Whether ``op(q(x)) == q(op(x))`` for this call (module docstring) and it can run on u8."""
    op = _op(value)
    if op is None:
        return False
    if op.same_as(_POOL):
        return True
    if op.same_as(_RESIZE):
        return str(value.attrs.method) == "nearest_neighbor" and value.attrs.out_dtype is None
    return op.same_as(_CONCAT) and isinstance(value.args[0], relax.Tuple)


def _shortcut_operands(value: Any) -> list[Any]:
    """The operands of an fp32 add of two tensors of its own shape (a residual shortcut); else none."""
    if _op(value) is None or not _op(value).same_as(_ADD):
        return []
    operands = list(value.args)
    if not all(isinstance(a, relax.Var) for a in operands) or operands[0].same_as(operands[1]):
        return []
    types = [value.ty, *(a.ty for a in operands)]
    if any(str(getattr(t, "dtype", "")) != "float32" or getattr(t, "shape", None) is None for t in types):
        return []
    return operands if all(tvm_ffi.structural_equal(types[0].shape, t.shape) for t in types[1:]) else []


def _free_vars(value: Any) -> list[Any]:
    """The variables a binding's value reads, each once."""
    seen: dict[Any, None] = {}
    for var in relax.analysis.free_vars(value):
        seen[var] = None
    return list(seen)


def _producing_conv(var: Any, bindings: dict[Any, Any], order: dict[Any, int]) -> Any | None:
    """The conv2d call whose epilogue ends at ``var`` (through elementwise ops), if any.

    Of an elementwise op's operands of its own shape the one bound last is followed (a bias is
    broadcast, and a shortcut add's other operand was produced earlier, by another conv).
    """
    value = bindings.get(var)
    while value is not None and isinstance(value, relax.Call):
        if _op(value).same_as(_CONV):
            return value
        shape = getattr(value.ty, "shape", None)
        operands = [
            a for a in value.args
            if isinstance(a, relax.Var) and shape is not None and getattr(a.ty, "shape", None) is not None
            and tvm_ffi.structural_equal(shape, a.ty.shape)
        ]
        if _sinkable(value) or not operands:
            return None  # a reshape, a transpose, a pool: no epilogue of the conv
        value = bindings.get(max(operands, key=lambda a: order.get(a, -1)))
    return None


def chain_u8(mod: Any, calibration: Calibration, report: Int8Report) -> Any:
    """``mod`` with its int8 convs reading u8 where their producers can write it (module docstring).

    ``report`` gets which convs now write u8 (``u8_outputs``, by ONNX node name where the
    calibration knows it), how many int8 convs read u8 and how many shortcut adds do. A ``main``
    that is not one dataflow block comes back unchanged (every int8 conv then quantizes its own input).
    """
    func = mod["main"]
    body = func.body
    if len(body.blocks) != 1 or not isinstance(body.blocks[0], relax.DataflowBlock) or not isinstance(body.body, relax.Var):
        return mod
    bindings = list(body.blocks[0].bindings)
    values = {b.var: b.value for b in bindings}
    order = {b.var: i for i, b in enumerate(bindings)}
    uses: dict[Any, int] = {}
    for binding in bindings:
        for var in _free_vars(binding.value):
            uses[var] = uses.get(var, 0) + 1
    uses[body.body] = uses.get(body.body, 0) + 1

    # Backwards: what each tensor's readers want (FP32, or its u8 image under some (s, zp)).
    wants: dict[Any, set[Any]] = {body.body: {FP32}}
    int8_input: dict[Any, tuple[float, int]] = {}  # int8 conv var -> the qparams of its input
    sunk: dict[Any, tuple[float, int]] = {}  # a pool / resize / concat that runs on u8 -> its qparams
    dequantized: dict[Any, tuple[float, int]] = {}  # a tensor its shortcut adds read in u8 -> its qparams

    def settle(var: Any) -> set[Any]:
        """``var``'s demand once all its readers are seen: a shortcut add takes the one u8 image the others take, or fp32."""
        demand = wants.get(var, set())
        if RESIDUAL in demand:
            rest = demand - {RESIDUAL}
            if len(rest) == 1 and FP32 not in rest and var in values:
                dequantized[var] = next(iter(rest))
                demand = rest
            else:
                demand = rest | {FP32}
            wants[var] = demand
        return demand

    for binding in reversed(bindings):
        var, value = binding.var, binding.value
        demand = settle(var)
        pure = demand if len(demand) == 1 and FP32 not in demand else None
        if _op(value) is not None and _op(value).same_as(_CONV) and fp32_reason(value, calibration) is None:
            qparams = input_qparams(value, calibration)
            int8_input[var] = qparams
            data = value.args[0]
            if isinstance(data, relax.Var):
                wants.setdefault(data, set()).add(qparams)
            continue
        args = _tensor_args(value) if _sinkable(value) else []
        movable = pure is not None and args and all(isinstance(a, relax.Var) for a in args)
        if movable and _op(value).same_as(_POOL):
            # else the quantize stays in the pool's epilogue: before it, it could fuse nowhere
            movable = uses.get(args[0], 0) == 1 and args[0] in values
        if movable:
            (qparams,) = pure
            sunk[var] = qparams
            for arg in args:
                wants.setdefault(arg, set()).add(qparams)
            continue
        shortcut = _shortcut_operands(value)
        for arg in _free_vars(value):
            wants.setdefault(arg, set()).add(RESIDUAL if arg in shortcut else FP32)
    for param in func.params:
        settle(param)

    def is_pure(var: Any) -> bool:
        demand = wants.get(var, set())
        return len(demand) == 1 and FP32 not in demand

    def reads_u8(conv: Any) -> bool:
        """Whether an int8 conv's input is quantized where it is produced: it has a producer (the
        image has none) and no reader wanting it otherwise; else the conv quantizes in its own input copy."""
        data = values[conv].args[0]
        return data in values and is_pure(data)

    # Which (tensor, qparams) get a quantize: every request of a sunk op, and the u8-reading convs'.
    requested: dict[Any, set[Any]] = {}
    for var, qparams in sunk.items():
        for arg in _tensor_args(values[var]):
            requested.setdefault(arg, set()).add(qparams)
    for conv, qparams in int8_input.items():
        if reads_u8(conv):
            requested.setdefault(values[conv].args[0], set()).add(qparams)
    for var, qparams in dequantized.items():
        requested.setdefault(var, set()).add(qparams)

    bb = relax.BlockBuilder(mod)
    quantized: dict[tuple[Any, Any], Any] = {}

    def blockable(var: Any) -> bool:
        """Whether ``var``'s u8 image is written blocked: an int8 conv's channel tile writes it, in whole blocks.

        (The row tile writes rows of one channel, NCHW; anything else writes it as it always did.)
        """
        conv = _producing_conv(var, values, order)
        shape = var.ty.shape.values
        return (
            conv is not None and len(shape) == 4 and int(shape[1]) % U8_BLOCK == 0
            and fp32_reason(conv, calibration) is None and not row_tile_fits(conv)
        )

    def quantize(var: Any) -> None:
        for qparams in sorted(requested.get(var, ())):
            blocked = blockable(var)
            image = bb.emit_te(_quantize_te, var, *qparams, blocked, primfunc_name_hint=QUANTIZE_FUNC)
            quantized[(var, qparams)] = _mark_elementwise(bb, image) if blocked else image
            conv = _producing_conv(var, values, order)
            if is_pure(var) and conv is not None:
                report.u8_outputs.append(conv_name(conv, calibration, str(var.name)))

    attrs = {key: value for key, value in func.attrs.items()} if func.attrs is not None else {}
    with bb.function(_REBUILT, list(func.params), attrs, private=False):
        with bb.dataflow():
            for param in func.params:  # quantized where a concat or resize that fuses it reads it
                quantize(param)
            for binding in bindings:
                var, value = binding.var, binding.value
                if var in sunk:
                    qparams = sunk[var]
                    args = [quantized[(a, qparams)] for a in _tensor_args(value)]
                    quantized[(var, qparams)] = bb.emit(_on_u8(bb, value, args))
                    continue
                if _op(value) is not None and _op(value).same_as(_POOL) and is_pure(var) and var in requested:
                    # a pool whose input others read in fp32: it quantizes what it writes
                    (qparams,) = requested[var]
                    pooled = _pool_nest(bb, value, value.args[0], qparams)
                    if pooled is not None:
                        quantized[(var, qparams)] = bb.emit(pooled)
                        continue
                if any(a in dequantized for a in _shortcut_operands(value)):
                    report.u8_shortcuts += 1
                    operands = [(quantized[(a, dequantized[a])], dequantized[a]) if a in dequantized else (a, None) for a in value.args]
                    binding = relax.VarBinding(var, bb.normalize(_add_nest(bb, value, operands)))
                if var in int8_input and reads_u8(var):
                    report.u8_inputs += 1
                    data = quantized[(value.args[0], int8_input[var])]
                    binding = relax.VarBinding(var, bb.normalize(_conv_on(value, data)))
                bb.emit_normalized(binding)
                quantize(var)
            output = bb.emit_output(body.body) if isinstance(body.body, relax.DataflowVar) else body.body
        bb.emit_func_output(output)
    rebuilt = bb.get()
    main = rebuilt.get_global_var("main")
    functions = {gv: f for gv, f in rebuilt.functions.items() if gv.name_hint != _REBUILT}
    functions[main] = rebuilt[_REBUILT].with_attr("global_symbol", "main")
    return tvm.IRModule(functions, attrs=rebuilt.attrs)


def _on_u8(bb: Any, call: Any, args: list[Any]) -> Any:
    """A sunk max pool, resize or concat ``call`` on the u8 images ``args``, in their layout.

    A concat of NCHW and blocked images reads them all blocked where every one has whole
    blocks, else all NCHW (the relayout fuses into the concat's copy).
    """
    op = _op(call)
    if op.same_as(_CONCAT):
        blocked = all(_channels(a) % U8_BLOCK == 0 for a in args)
        args = [a if _is_blocked(a) == blocked else bb.emit_te(_relayout_te, a, blocked) for a in args]
        return relax.Call(call.op, [relax.Tuple(args)], call.attrs, call.ty_args)
    (data,) = args
    a = call.attrs
    if op.same_as(_POOL):
        pooled = _pool_nest(bb, call, data)
        if pooled is not None:
            return pooled
        if not _is_blocked(data):
            return relax.Call(call.op, [data], call.attrs, call.ty_args)
        return relax.op.nn.max_pool2d(
            data, a.pool_size, a.strides, a.padding, a.dilation, a.ceil_mode, a.count_include_pad, U8_LAYOUT, U8_LAYOUT
        )
    if not _is_blocked(data):
        return relax.Call(call.op, [data, *call.args[1:]], call.attrs, call.ty_args)
    return relax.op.image.resize2d(
        data, call.args[1], tuple(a.roi), U8_LAYOUT, a.method, a.coordinate_transformation_mode, a.rounding_method,
        a.cubic_alpha, a.cubic_exclude, a.extrapolation_value,
    )


def _channels(expr: Any) -> int:
    shape = expr.ty.shape.values
    return int(shape[1]) * (int(shape[4]) if len(shape) == 5 else 1)


def _pool_nest(bb: Any, call: Any, data: Any, qparams: tuple[float, int] | None = None) -> Any | None:
    """The max pool ``call`` on ``data`` as our own loop nest, quantized with ``qparams`` if given; None where its padding is read.

    Darknet's 2x2 / 2 pools pad one row and column (``[0, 0, 1, 1]``) that an even input never
    reads. Without it the pool is a max of ``KH x KW`` loads per output, written as one expression
    and scheduled here, (n, channel, row) tasks in parallel and the row loop left to LLVM, which
    vectorises the strided loads as wide loads and shuffles: at 416 the first pool (on u8) took
    0.54 ms as TOPI's pool (a vector of single-byte loads per window step, the maximum kept in
    memory) and 0.12 ms so. Pools whose padding is read keep Relax's ``max_pool2d`` (on u8 it pads
    with 0 = q(-inf)). On blocked u8 (``int8_conv.U8_LAYOUT``) a pixel's 16 channels are one vector.
    """
    a = call.attrs
    shape = [int(d) for d in data.ty.shape.values]
    out_shape = [int(d) for d in call.ty.shape.values]
    (kh, kw), (sh, sw), (dh, dw) = ([int(v) for v in pair] for pair in (a.pool_size, a.strides, a.dilation))
    reach_h, reach_w = (out_shape[2] - 1) * sh + (kh - 1) * dh, (out_shape[3] - 1) * sw + (kw - 1) * dw
    if a.layout != "NCHW" or a.ceil_mode or [int(p) for p in a.padding][:2] != [0, 0] or reach_h >= shape[2] or reach_w >= shape[3]:
        return None
    source = te.placeholder(shape, str(data.ty.dtype), name="data")
    blocked = len(shape) == 5

    def window(n: Any, c: Any, y: Any, x: Any, *lane: Any) -> Any:
        loads = [source[(n, c, y * sh + i * dh, x * sw + j * dw, *lane)] for i in range(kh) for j in range(kw)]
        value = functools.reduce(tirx.max, loads)
        return value if qparams is None else quantize_u8(value, *qparams)

    if blocked:
        out_shape = [out_shape[0], shape[1], out_shape[2], out_shape[3], shape[4]]
    pooled = te.compute(out_shape, window, name=POOL_FUNC)
    sch = s_tir.Schedule(te.create_prim_func([source, pooled]))
    n, c, y, *inner = sch.get_loops(sch.get_sblock(POOL_FUNC))
    sch.parallel(sch.fuse(n, c, y))
    if blocked:
        sch.vectorize(inner[-1])
    func = sch.mod["main"].with_attr(SCHEDULED, True).without_attr("global_symbol")  # private, as emit_te makes them
    return relax.call_tir(bb.add_func(func, POOL_FUNC), [data], relax.TensorType(out_shape, "uint8"))


def _dequantize(value: Any, x_scale: float, zero_point: int) -> Any:
    """u8 -> fp32: ``(value - zero_point) * x_scale``, the float a quantized activation stands for."""
    return (value.astype("int32") - tirx.const(zero_point, "int32")).astype("float32") * tirx.const(x_scale, "float32")


def _add_nest(bb: Any, call: Any, operands: list[tuple[Any, tuple[float, int] | None]]) -> Any:
    """The shortcut add ``call`` with the operands given as (tensor, qparams): u8 ones dequantized as they are read.

    One elementwise function of both tensors, so fusion puts it into the producing conv's
    epilogue as it did the add: the shortcut is read in u8 (1 byte an element) instead of fp32.
    """
    shape = list(call.ty.shape.values)  # int64, as the shapes of the functions fusion merges it with
    sources = [te.placeholder(list(t.ty.shape.values), str(t.ty.dtype), name=f"operand{i}") for i, (t, _) in enumerate(operands)]

    def element(*index: Any) -> Any:
        reads = [_nchw(s)(*index) for s in sources]
        reads = [r if q is None else _dequantize(r, *q) for r, (_, q) in zip(reads, operands)]
        return reads[0] + reads[1]

    total = te.compute(shape, element, name="residual_add")
    func = te.create_prim_func([*sources, total]).without_attr("global_symbol")
    if any(len(s.shape) == 5 for s in sources):
        func = func.with_attr(ELEMENTWISE, True)
    return relax.call_tir(bb.add_func(func, RESIDUAL_FUNC), [t for t, _ in operands], relax.TensorType(call.ty.shape, "float32"))


def _conv_on(call: Any, data: Any) -> Any:
    """The conv2d ``call`` reading ``data`` (u8) instead, still writing fp32."""
    a = call.attrs
    layout = U8_LAYOUT if _is_blocked(data) else a.data_layout
    return relax.op.nn.conv2d(
        data, call.args[1], a.strides, a.padding, a.dilation, a.groups, layout, a.kernel_layout, a.out_layout or "NCHW", "float32"
    )
