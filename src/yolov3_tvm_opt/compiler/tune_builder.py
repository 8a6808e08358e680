"""MetaSchedule's builder for tuning candidates, without TVM's 17 s tensor-intrinsic import.

TVM's default build function (``s_tir.meta_schedule.builder.default_build``) starts with
``import tvm.s_tir.tensor_intrin``, which registers every target's intrinsics (x86, ARM, CUDA,
Hexagon, ...) by parsing TVMScript: about 17 s of CPU. LocalBuilder runs it in each of its
worker processes, and starts a fresh pool for every build call (seeding, then every search
iteration), so a short tune spent about half its time there. Building does not need the
registry: a candidate reaches the builder already scheduled, its tensorized blocks already
replaced by the intrinsic's implementation in the tuning process (which registers TVM's
intrinsics in its TuneContext, and ours in int8_conv and bf16_conv). This module imports only
TVM, so the worker that unpickles ``build_candidate`` (by reference, as this module) stays cheap;
keep it free of the compiler's heavier modules.

The pool itself cannot be kept alive: TVM 0.27's LocalBuilder starts one per ``build`` call
(against a memory leak in long-lived workers), and its ``initializer`` runs per pool.
"""

from __future__ import annotations

from typing import Any

from ..core.tvm_loader import load_tvm

tvm = load_tvm()

from tvm.driver import build  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402
from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock  # noqa: E402


def build_candidate(mod: Any, target: Any, _params: Any) -> Any:
    """TVM's ``default_build`` without its tensor-intrinsic import (tuning candidates carry no params).

    Like it, drops the weight layout-rewrite blocks: the candidate is timed on weights already in
    the layout it asks for, as the compiled model gets them.
    """
    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return build(mod, target=target)


def candidate_builder(max_workers: int, timeout_sec: float) -> Any:
    """A LocalBuilder whose workers build with ``build_candidate``."""
    return ms.builder.LocalBuilder(max_workers=max_workers, timeout_sec=timeout_sec, f_build=build_candidate)
