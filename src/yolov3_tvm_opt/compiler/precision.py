"""Reduced precision: the graph rewrite a ``target.precision`` asks for, before any schedule is chosen.

One entry point, ``apply_precision(mod, target, precision)``, runs between the ONNX import (and
the fast scatter rewrite) and ``pipeline.optimize``, so compile and tune see the same graph and a
tuning record matches what is built. The model's input and output stay float32 whatever the
precision: casts happen inside, so the runtime, the benchmark and the detectors are unchanged.

- cuda fp16: TVM's ``ToMixedPrecision`` with fp32 accumulation. Convolutions read fp16 data and
  fp16 weights (the weights are cast once, at compile time, by constant folding) and write
  fp32; their epilogues run in fp16. dlight's Matmul rule then gives each conv whose implicit
  GEMM has M, N and K all above 64 WMMA tensor-core code (``kernel_classes`` reads which).
- llvm bf16: the CPU must have avx512_bf16; without it the build stops with one line (we do not
  fall back to fp32 silently: a user who asked for bf16 would benchmark the wrong thing).
  TVM has no bf16 CPU kernels of its own: its ``BF16ComputeLegalize`` computes bfloat16 in fp32.
  What it can do is round what a bf16 kernel reads, so this build has bf16's numerics (every
  conv's data and weights rounded to bfloat16, fp32 accumulation and epilogue) at fp32 speed. Our
  ``vdpbf16ps`` conv kernels replace this path in ``_bf16_on_llvm``.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import UserError
from ..core.options import check_precision
from ..core.tvm_loader import load_tvm
from .target import kind_of

tvm = load_tvm()

from tvm import relax  # noqa: E402
from tvm.relax.dpl import is_op, rewrite_call, wildcard  # noqa: E402
from tvm.target import codegen  # noqa: E402

BF16_FEATURE = "avx512bf16"  # LLVM's name for the CPU feature behind vdpbf16ps


def apply_precision(mod: Any, target: Any, precision: str) -> Any:
    """``mod`` rewritten to compute at ``precision`` on ``target`` (fp32: unchanged).

    ``precision`` is one of ``core.options.PRECISIONS[kind]``; any other pair is a user error.
    The returned module keeps the float32 input and output of ``mod``.
    """
    kind = kind_of(target)
    check_precision(kind, precision)
    if precision == "fp32":
        return mod
    if precision == "fp16":
        return mixed_precision_fp16(mod)
    return _bf16_on_llvm(mod, target)


def mixed_precision_fp16(mod: Any) -> Any:
    """fp16 storage and math with fp32 accumulation in convs and matmuls (TVM's ``ToMixedPrecision``).

    Target-independent, so the same graph also builds for llvm: that is how the fp16 numerics
    are checked on a machine without a GPU.
    """
    return relax.transform.ToMixedPrecision(out_dtype="float32")(mod)


def has_bf16_dot_product(target: Any) -> bool:
    """Whether the llvm target's CPU has ``vdpbf16ps`` (avx512_bf16), from its -mcpu and -mattr."""
    return bool(codegen.target_has_features(BF16_FEATURE, target))


def _bf16_on_llvm(mod: Any, target: Any) -> Any:
    if not has_bf16_dot_product(target):
        mcpu = target.attrs.get("mcpu", "generic")
        raise UserError(
            f"bf16 kernels need avx512_bf16 (vdpbf16ps), which CPU {mcpu} lacks; "
            "build with target.precision: fp32, or set target.mcpu to a CPU that has it (e.g. sapphirerapids, znver4)"
        )
    return round_conv_operands_to_bf16(mod)


def round_conv_operands_to_bf16(mod: Any) -> Any:
    """Every conv2d reads its data and weights rounded to bfloat16; everything else stays fp32.

    Before:  y = conv2d(x, w)
    After:   y = conv2d(astype(astype(x, bfloat16), float32), astype(astype(w, bfloat16), float32))

    The weight casts fold into constants at compile time; the data casts fuse into the conv's
    input. The result is exactly what a bf16 dot product with fp32 accumulation computes, up to
    the order of the additions.
    """
    data, weight = wildcard(), wildcard()
    pattern = is_op("relax.nn.conv2d")(data, weight)

    def rounded(expr: Any) -> Any:
        return relax.op.astype(relax.op.astype(expr, "bfloat16"), "float32")

    def is_rounded(expr: Any) -> bool:
        return isinstance(expr, relax.Call) and expr.op.name == "relax.astype" and expr.args[0].ty.dtype == "bfloat16"

    def rewrite(call: Any, matches: dict[Any, Any]) -> Any:
        if is_rounded(matches[data]):  # rewrite_call repeats until nothing changes
            return call
        return relax.Call(call.op, [rounded(matches[data]), rounded(matches[weight])], call.attrs, call.ty_args)

    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gvar] = rewrite_call(pattern, rewrite, func)
    return relax.transform.FoldConstant()(mod)
