"""SiLU and HardSwish as single vectorisable elementwise ops on llvm, and a polynomial exp everywhere.

Why: torch exports SiLU as ``Mul(x, Sigmoid(x))`` and HardSwish as ``x * clip(x + 3, 0, 6) / 6``
(or ``Mul(x, HardSigmoid(x))``). In Relax that is a graph in which ``x`` (the conv's output plus
bias) has two consumers, so our conv schedule (``cpu_schedule``), which writes its register tile
back through a *chain* of elementwise ops, stops at the bias add: the activation stays behind as
separate, serial, unvectorised loop nests over the whole tensor. And the sigmoid itself lowers to
a call of libm's scalar ``expf`` per element, which LLVM cannot vectorise.

``FastActivations`` rewrites, on float32 tensors, before legalization:

* ``multiply(x, g(x))``, where ``g`` is a chain of sigmoid, clip, and add / subtract / multiply /
  divide by a scalar constant that starts at ``x``, into one elementwise op computing
  ``x * g(x)``. yolov3 at 640, one SiLU conv::

      lv2 = R.add(conv, bias)                   lv2 = R.add(conv, bias)
      lv3 = R.sigmoid(lv2)              ->      gv = R.call_tir(silu, (lv2,))
      gv = R.multiply(lv2, lv3)

  The conv's epilogue is then a chain again (bias add, ``silu``) and is applied, vectorised,
  while the tile is written back, as leaky ReLU's is. Clip and arithmetic are the ops TVM's
  legalization emits (``max(min(v, hi), lo)``, the same constants): opset-14 HardSwish is
  bit-identical to the unrewritten build; ``x * HardSigmoid(x)`` may differ by an ulp, as
  LLVM now fuses its alpha * x + beta into one FMA.
* a gate's sigmoid into ``1 / (1 + fast_exp(-v))``: ``fast_exp`` is Cephes' single-precision
  exp in plain arithmetic, which LLVM vectorises. x is clamped to [EXP_MIN, EXP_MAX] = [-87, 87] (no denormals), reduced to
  x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two, Cody-Waite, so n ln2 is exact),
  e^r = 1 + r + r^2 P(r) with Cephes' degree-5 P, and 2^n built in the exponent bits.
  Worst case against float64 exp over the clamped range: 8.5e-8 relative, 0.7 ulp
  (docs/precision.md; ``tests/compiler/test_fast_activations.py`` measures the compiled code).
  Above the range it returns inf (expf overflows at 88.7), below it e^-87 = 1.6e-38 (expf is
  denormal below -87.3), so sigmoid and SiLU are exactly 0 below -87, sigmoid is exactly 1
  above 87 (off by at most 1.6e-38), and no denormal ever comes out.
* SiLU's sigmoid and multiply into x / (1 + fast_exp(-x)): one rounding and one op fewer.

* any other float32 sigmoid or exp (the YOLO decode's: every one of the heads' 85 x 3 values per
  cell, 215k in yolov3-tiny at 416) into ``fast_sigmoid`` / ``fast_exp`` too. With libm's scalar
  ``expf`` the decode took 1.18 ms there, 0.74 ms with ``fast_exp`` (Emerald Rapids, 2 threads).
  Outputs move by ulps (at most 2.6e-7 relative on the recorded builds, 1.1e-7 of the largest
  value; docs/precision.md); until 2026-11-30 these kept ``expf`` so that leaky models stayed
  bit-identical to their first record.

HardSigmoid alone is a chain already (multiply, add, clip) and needs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..core.tvm_loader import load_tvm

tvm = load_tvm()

import tvm_ffi  # noqa: E402  (TVM's FFI package, where structural equality lives)
from tvm import relax, te, tirx  # noqa: E402

DTYPE = "float32"

LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # 9 significant bits: n * LN2_HI is exact for |n| <= 2^15
LN2_LO = -2.12194440e-4  # ln 2 - LN2_HI
# Inside, e^x and 1 / (1 + e^x) are normal floats (> 2^-126 = 1.2e-38); above, e^x is inf, so
# sigmoid(-x) and SiLU are 0. A denormal costs a microcode assist per vector: with sigmoid at
# 4.2e-39 below -87.3, yolov3-tiny's first SiLU conv took 10x its time, and SiLU outputs of
# x * 1.6e-38 made the next convs' sums denormal.
EXP_MIN = -87.0
EXP_MAX = 87.0
# Cephes expf: e^r = 1 + r + r^2 (P0 r^5 + ... + P5) for |r| <= ln2 / 2
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)

MAX_GATE_DEPTH = 8  # ops between x and the multiply: HardSwish has 3


def _f32(value: float) -> Any:
    return tirx.const(value, DTYPE)


def fast_exp(x: Any) -> Any:
    """e^x for a float32 expression, in arithmetic LLVM vectorises (the module docstring says how).

    Shared subexpressions (x, n, r) are the same TIR objects used several times, not ``Let``
    bindings: MetaSchedule's flop estimate rejects ``Let`` ("no default for prim.Let"), which
    made every tune of a model with a sigmoid or exp fail, and LLVM computes each once anyway.
    """
    clamped = tirx.max(tirx.min(x, _f32(EXP_MAX)), _f32(EXP_MIN))
    return tirx.Select(x > _f32(EXP_MAX), _f32(math.inf), _reduced(clamped))


def _reduced(x: Any) -> Any:
    """e^x = 2^n e^r for x in [EXP_MIN, EXP_MAX]."""
    n = tirx.floor(x * _f32(LOG2E) + _f32(0.5))
    return _scaled(n, x - n * _f32(LN2_HI) - n * _f32(LN2_LO))


def _scaled(n: Any, r: Any) -> Any:
    poly = _f32(EXP_POLY[0])
    for coefficient in EXP_POLY[1:]:
        poly = poly * r + _f32(coefficient)
    two_n = tirx.reinterpret(DTYPE, tirx.shift_left(tirx.Cast("int32", n) + 127, 23))
    return (poly * r * r + r + _f32(1.0)) * two_n


def fast_sigmoid(x: Any) -> Any:
    return _f32(1.0) / (_f32(1.0) + fast_exp(-x))


def fast_silu(x: Any) -> Any:
    """x * sigmoid(x), computed as x / (1 + e^-x)."""
    return x / (_f32(1.0) + fast_exp(-x))


# relax op -> how one step of a gate computes on a TIR value; binary ops take one scalar constant
_UNARY = {"relax.sigmoid": fast_sigmoid}
_BINARY = {
    "relax.add": lambda a, b: a + b,
    "relax.subtract": lambda a, b: a - b,
    "relax.multiply": lambda a, b: a * b,
    "relax.divide": lambda a, b: a / b,
}
Step = Callable[[Any], Any]
# sigmoid and exp anywhere else (the YOLO decode's): vectorisable instead of a scalar expf call each
_ALONE: dict[str, Step] = {"relax.sigmoid": fast_sigmoid, "relax.exp": fast_exp}


def _is_float32(expr: Any) -> bool:
    info = expr.ty
    return isinstance(info, relax.TensorType) and info.dtype == DTYPE


def _same_shape(a: Any, b: Any) -> bool:
    shapes = [getattr(e.ty, "shape", None) for e in (a, b)]
    return None not in shapes and tvm_ffi.structural_equal(*shapes)


def _scalar(expr: Any) -> Any | None:
    """A size-1 float32 constant as a TIR literal, or None."""
    if isinstance(expr, tvm.ir.expr.Constant) and str(expr.value.dtype) == DTYPE and expr.value.numpy().size == 1:
        return _f32(float(expr.value.numpy().reshape(())))
    return None


def _step(call: Any) -> tuple[Any, Step] | None:
    """(the tensor operand, the TIR it applies) for a call a gate may contain, or None."""
    name = call.op.name
    if name in _UNARY:
        return call.args[0], _UNARY[name]
    if name == "relax.clip":
        low, high = (tirx.Cast(DTYPE, value.value) for value in call.args[1:])
        return call.args[0], lambda v: tirx.max(tirx.min(v, high), low)
    if name in _BINARY:
        a, b = call.args
        const_b, const_a = _scalar(b), _scalar(a)
        if const_b is not None and const_a is None:
            return a, lambda v: _BINARY[name](v, const_b)
        if const_a is not None and const_b is None:
            return b, lambda v: _BINARY[name](const_a, v)
    return None


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: Any) -> None:
        super().__init__(mod)
        self.bindings: dict[Any, Any] = {}  # var -> value in the function being visited

    def visit_call_(self, call: Any) -> Any:
        if not isinstance(call.op, tvm.ir.Op) or not _is_float32(call):
            return super().visit_call_(call)
        if call.op.name == "relax.multiply":
            for x, gate in (call.args, reversed(call.args)):
                steps = self._gate(x, gate)
                if steps and _same_shape(x, call):  # a size-1 constant of higher rank broadcasts x
                    if [s.op.name for s in steps] == ["relax.sigmoid"]:
                        return self._elementwise(x, fast_silu, "silu")
                    return self._elementwise(x, lambda v, s=steps: v * _apply(s, v), "gated")
        if call.op.name in _ALONE:  # a gate's own sigmoid, rewritten here too, is left unused
            return self._elementwise(call.args[0], _ALONE[call.op.name], call.op.name.removeprefix("relax."))
        return super().visit_call_(call)

    def _gate(self, x: Any, gate: Any) -> list[Any]:
        """The calls from ``x`` to ``gate`` (first applied first) if ``gate`` is g(x), else []."""
        calls: list[Any] = []
        current = gate
        while len(calls) < MAX_GATE_DEPTH:
            if current.same_as(x):
                return calls[::-1]
            current = self.bindings.get(current, current)
            if not isinstance(current, relax.Call) or not isinstance(current.op, tvm.ir.Op):
                return []
            step = _step(current)
            if step is None:
                return []
            calls.append(current)
            current = step[0]
        return []

    def _elementwise(self, x: Any, body: Step, name: str) -> Any:
        def compute(tensor: Any) -> Any:
            return te.compute(tensor.shape, lambda *i: body(tensor(*i)), name=name)

        return self.builder_.call_te(compute, self.visit_expr(x), primfunc_name_hint=name)


def _apply(calls: list[Any], value: Any) -> Any:
    for call in calls:
        value = _step(call)[1](value)
    return value


@tvm.transform.module_pass(opt_level=0, name="FastActivations")
class FastActivations:
    """Gated activations x * g(x) as one op, every sigmoid and exp through ``fast_exp`` (module docstring)."""

    def transform_module(self, mod: Any, _ctx: Any) -> Any:
        rewriter = _Rewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.bindings = relax.analysis.get_var2val(func)
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        # the sigmoid and clip bindings a gate absorbed are left unused
        return relax.transform.DeadCodeElimination()(rewriter.builder_.get())
