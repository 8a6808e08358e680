"""What a CUDA build's kernels run on: tensor cores or plain CUDA cores, read from kernels.cu.

dlight's Matmul rule schedules every conv as an implicit GEMM (M = output pixels, N = output
channels, K = input channels x kernel area). For fp16 on sm_70+ it emits WMMA tensor-core code,
but only when M, N and K all exceed 64; the rest get SIMT FMAs. Which conv went which way is a
fact of the generated source, so it is read from there, not predicted.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm import relax  # noqa: E402

TENSOR_CORE = "tensor_core"
PLAIN = "plain"
# wmma::mma_sync (what dlight emits), and the PTX forms other schedules use (mma.sync, Hopper's wgmma)
_TENSOR_CORE_OPS = re.compile(r"wmma::mma_sync|\bmma\.sync\b|\bwgmma\.")
_KERNEL_START = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(')


def cuda_kernels(source: str) -> dict[str, str]:
    """Generated CUDA source split into {kernel name: its text up to the next kernel}."""
    parts = _KERNEL_START.split(source)
    return dict(zip(parts[1::2], parts[2::2]))


def kernel_classes(source: str) -> dict[str, str]:
    """{kernel name: "tensor_core" if it issues tensor-core MMAs, else "plain"} for every kernel of ``source``."""
    return {name: TENSOR_CORE if _TENSOR_CORE_OPS.search(body) else PLAIN for name, body in cuda_kernels(source).items()}


def conv_gemm_extents(mod: Any) -> dict[str, list[int]]:
    """{fused conv function name: [M, N, K] of its implicit GEMM} from the calls in ``mod``'s main.

    Read from the shapes at each call site (data, weight, output), so it holds for the module that
    was built: after fusion, before lowering. The kernel of function ``f`` is ``f_kernel``.
    """
    extents: dict[str, list[int]] = {}
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and len(call.args) > 1 and isinstance(call.args[0], tvm.ir.GlobalVar)):
                continue
            name = call.args[0].name_hint
            if "conv2d" not in name:
                continue
            weight = [int(d) for d in call.args[1].fields[1].ty.shape]
            out = [int(d) for d in binding.var.ty.shape]
            extents[name] = [out[0] * out[2] * out[3], weight[0], weight[1] * weight[2] * weight[3]]
    return extents
