"""Our target options -> a TVM target (0.27 takes JSON-style dicts, not strings).

``mcpu: native`` is resolved here to this machine's CPU name, so the target recorded in meta.json
and in a tuning database says what the code was really built for.
"""

from __future__ import annotations

from typing import Any

from ..core.host import resolve_threads
from ..core.options import TargetOptions
from ..core.tvm_loader import load_tvm

tvm = load_tvm()


def make_target(options: TargetOptions) -> Any:
    """Build the TVM target from our options (0.27 accepts only JSON-style dicts, not strings).

    ``TargetOptions`` refused a kind, precision or CUDA arch it cannot build when it was made.
    """
    if options.kind == "llvm":
        spec: dict[str, Any] = {"kind": "llvm", "num-cores": resolve_threads(options.cpu_threads)}
        mcpu = tvm.target.codegen.llvm_get_system_cpu() if options.mcpu == "native" else options.mcpu
        if mcpu and mcpu != "generic":
            spec["mcpu"] = mcpu
        return tvm.target.Target(spec)
    return tvm.target.Target({"kind": "cuda", "arch": options.cuda_arch}, host={"kind": "llvm"})


def kind_of(target: Any) -> str:
    """The kind name (llvm, cuda) of a TVM target."""
    return str(target.kind.name)
