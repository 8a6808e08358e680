"""Our target options -> a TVM target (0.27 takes JSON-style dicts, not strings).

``mcpu: native`` is resolved here to this machine's CPU name, so the target recorded in meta.json
and in a tuning database says what the code was really built for.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import UserError
from ..core.host import resolve_threads
from ..core.options import TARGET_KINDS, TargetOptions, check_precision
from ..core.tvm_loader import load_tvm

tvm = load_tvm()


def make_target(options: TargetOptions) -> Any:
    """Build the TVM target from our options (0.27 accepts only JSON-style dicts, not strings).

    A precision the target kind cannot build at is refused here, before any slow work.
    """
    if options.kind in TARGET_KINDS:
        check_precision(options.kind, options.precision)
    if options.kind == "llvm":
        spec: dict[str, Any] = {"kind": "llvm", "num-cores": resolve_threads(options.cpu_threads)}
        mcpu = tvm.target.codegen.llvm_get_system_cpu() if options.mcpu == "native" else options.mcpu
        if mcpu and mcpu != "generic":
            spec["mcpu"] = mcpu
        return tvm.target.Target(spec)
    if options.kind == "cuda":
        if not options.cuda_arch.startswith("sm_"):
            raise UserError(f"cuda arch {options.cuda_arch!r} is not of the form sm_XY; pass e.g. sm_90 for H100")
        return tvm.target.Target({"kind": "cuda", "arch": options.cuda_arch}, host={"kind": "llvm"})
    raise UserError(f"unknown target {options.kind!r}; choose one of {', '.join(TARGET_KINDS)}")


def kind_of(target: Any) -> str:
    """The kind name (llvm, cuda) of a TVM target."""
    return str(target.kind.name)
