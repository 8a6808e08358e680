"""Reduced precision: the graph rewrite a ``target.precision`` asks for, before any schedule is chosen.

One entry point, ``apply_precision(mod, target, precision)``, runs between the ONNX import (and
the fast scatter rewrite) and ``pipeline.optimize``, so compile and tune see the same graph and a
tuning record matches what is built. The model's input and output stay float32 whatever the
precision: casts happen inside, so the runtime, the benchmark and the detectors are unchanged.

- cuda fp16: TVM's ``ToMixedPrecision`` with fp32 accumulation. Convolutions read fp16 data and
  fp16 weights (the weights are cast once, at compile time, by constant folding) and write
  fp32; their epilogues run in fp16. dlight's Matmul rule then gives each conv whose implicit
  GEMM has M, N and K all above 64 WMMA tensor-core code (``kernel_classes`` reads which).
- llvm bf16: the CPU must have avx512_bf16, and bf16 must pay on it (``bf16_kernel``); otherwise
  the build stops with one line (we do not fall back to fp32 silently: a user who asked for bf16
  would benchmark the wrong thing). The graph itself is unchanged: bf16 on llvm is a choice of
  conv kernels (``bf16_conv``, picked by ``pipeline.optimize``'s legalization), which round each
  conv's data and weights to bf16, multiply with ``vdpbf16ps`` and accumulate and run the
  epilogue in fp32.
- llvm int8: the CPU must have AVX512-VNNI (``int8_kernel``), otherwise one line, as for bf16.
  Again a choice of conv kernels (``int8_conv``): u8 activations times s8 weights with
  ``vpdpbusd``, int32 sums, requantized to fp32 in the epilogue; ``int8_graph`` then lets a conv's
  epilogue quantize its output to u8 for the int8 conv that reads it.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import UserError
from ..core.options import check_precision
from ..core.tvm_loader import load_tvm
from .int8_conv import VNNI_FEATURE
from .target import kind_of

tvm = load_tvm()

from tvm import relax  # noqa: E402
from tvm.target import codegen  # noqa: E402

BF16_FEATURE = "avx512bf16"  # LLVM's name for the CPU feature behind vdpbf16ps
VDPBF16PS = "vdpbf16ps"  # the bf16 kernel kind meta.json records (``bf16_conv``)
VPDPBUSD = "vpdpbusd"  # the int8 kernel kind meta.json records (``int8_conv``)

# The CPUs (-mcpu) where our vdpbf16ps convs beat our fp32 ones: a table, because a cross-compile
# cannot measure. On AMD Zen 4 / 5 yolov3-tiny 416 took 9.0 ms in bf16 against 14.2 in fp32. On
# Intel (Emerald Rapids measured) vdpbf16ps brings no throughput over fp32 FMA and the conversion
# pass costs extra: 56.3 against 40.4 ms; Intel's bf16 throughput is in AMX tiles, which we have no
# kernel for yet. A CPU not listed (Sapphire, Emerald, Granite Rapids, ...) is refused.
VDPBF16PS_PAYS = frozenset({"znver4", "znver5"})


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
    if precision == "int8":
        int8_kernel(target)
    else:
        bf16_kernel(target)
    return mod


def mixed_precision_fp16(mod: Any) -> Any:
    """fp16 storage and math with fp32 accumulation in convs and matmuls (TVM's ``ToMixedPrecision``).

    Target-independent, so the same graph also builds for llvm: that is how the fp16 numerics
    are checked on a machine without a GPU.
    """
    return relax.transform.ToMixedPrecision(out_dtype="float32")(mod)


def has_bf16_dot_product(target: Any) -> bool:
    """Whether the llvm target's CPU has ``vdpbf16ps`` (avx512_bf16), from its -mcpu and -mattr."""
    return bool(codegen.target_has_features(BF16_FEATURE, target))


def bf16_kernel(target: Any) -> str:
    """The conv kernel kind a bf16 build for this llvm target uses; a UserError where none pays.

    Where bf16 would be slower than fp32, building it would only mislead whoever benchmarks it,
    so the build stops with one line saying why.
    """
    mcpu = str(target.attrs.get("mcpu", "generic"))
    if not has_bf16_dot_product(target):
        raise UserError(
            f"bf16 kernels need avx512_bf16 (vdpbf16ps), which CPU {mcpu} lacks; "
            f"build with target.precision: fp32, or set target.mcpu to a CPU where bf16 pays ({', '.join(sorted(VDPBF16PS_PAYS))})"
        )
    if mcpu not in VDPBF16PS_PAYS:
        raise UserError(
            f"bf16 would not be faster than fp32 on CPU {mcpu}: vdpbf16ps pays only on AMD "
            f"({', '.join(sorted(VDPBF16PS_PAYS))}) and there is no AMX kernel yet; build with target.precision: fp32"
        )
    return VDPBF16PS


def int8_kernel(target: Any) -> str:
    """The conv kernel kind an int8 build for this llvm target uses; a UserError where the CPU lacks VNNI.

    Without ``vpdpbusd`` an int8 dot product takes three instructions and saturates in 16 bits,
    so there is no int8 kernel worth building; the user is told to build fp32 or name a VNNI CPU.
    """
    if not codegen.target_has_features(VNNI_FEATURE, target):
        mcpu = str(target.attrs.get("mcpu", "generic"))
        raise UserError(
            f"int8 kernels need AVX512-VNNI (vpdpbusd), which CPU {mcpu} lacks; build with target.precision: fp32, "
            "or set target.mcpu to a CPU with it (e.g. icelake-server, sapphirerapids, znver4)"
        )
    return VPDPBUSD
