"""The devices an artifact can run on here, and how many CPU threads TVM's pool gets."""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import UserError
from ..core.options import DEVICES
from ..core.tvm_loader import load_tvm

tvm = load_tvm()


def cuda_available() -> bool:
    """Whether a CUDA GPU can run artifacts here (the runtime has CUDA and a device answers)."""
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # a runtime built without CUDA raises instead of answering False
        return False


def tvm_device(device: str) -> Any:
    """The TVM device for ``device`` ("cpu" or "cuda"), or one clear error when it is not here."""
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; use {' or '.join(DEVICES)}")
    if device == "cuda" and not cuda_available():
        raise UserError(
            "--device cuda was requested but no CUDA GPU is visible to TVM here; "
            "run on a GPU machine or use --device cpu with an llvm artifact"
        )
    return tvm.cuda(0) if device == "cuda" else tvm.cpu(0)


# Yields a TVM worker spins after its task before it sleeps. TVM's default, 300000, keeps a
# worker (pinned to its core) busy for tens of milliseconds after an inference ends, and a peer
# timed next whose thread shares that core ran 2x slower (ONNX Runtime: 27 ms against 14 ms,
# same run). 1000 still spans the gaps between the kernels of one inference: TVM alone measured
# within 1 % of the default, where 0 (sleep at once) cost it 9 %.
QUIET_SPIN_COUNT = "1000"


def set_cpu_threads(threads: int) -> None:
    """Give TVM's CPU thread pool ``threads`` threads, the count ONNX Runtime gets too, and quiet it between runs.

    Through TVM_NUM_THREADS, read when the pool starts (the first parallel run of the process):
    without it TVM counts physical cores and used one thread on this 2-vCPU machine, and
    ``runtime.config_threadpool`` pins the calling thread to core 0, which every thread and
    process started afterwards inherits (ONNX Runtime then ran on one core, 3x slower). The spin
    count (``QUIET_SPIN_COUNT``) is left alone when the user has set one.
    """
    os.environ["TVM_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", QUIET_SPIN_COUNT)
