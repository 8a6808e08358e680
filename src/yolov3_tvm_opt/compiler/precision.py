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
  The graph itself is unchanged: bf16 on llvm is a choice of conv kernels (``bf16_conv``, picked
  by ``pipeline.optimize``'s legalization), which round each conv's data and weights to bf16,
  multiply with ``vdpbf16ps`` and accumulate and run the epilogue in fp32.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import UserError
from ..core.options import check_precision
from ..core.tvm_loader import load_tvm
from .target import kind_of

tvm = load_tvm()

from tvm import relax  # noqa: E402
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
    return mod
