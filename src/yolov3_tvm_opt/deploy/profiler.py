"""Per-op timing for the Relax VM through ``VirtualMachine.set_instrument``, and its Top-K table.

TVM 0.27 removed ``profile=True`` / ``vm.profile``; what remains is an instrument callback that the
VM calls before and after every packed call. Synchronising the device on both sides makes each
interval the kernel's own time (GPU launches are asynchronous), at the price of serialising the
run, so profiled iterations are never the ones whose latency we report: ``profile_ops`` loads its
own VM with the profiler attached.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime import Artifact, create_vm

# VMInstrumentReturnKind.NO_OP: let the VM go on as usual.
_CONTINUE = 0


@dataclass(frozen=True)
class OpTime:
    """One row of the per-op table: time and calls per inference, share of the profiled total."""

    name: str
    time_us: float
    calls: float
    share: float


class OpProfiler:
    """Accumulates wall time per called function symbol across the runs it observes."""

    def __init__(self, device: Any) -> None:
        self._device = device
        self._totals: dict[str, float] = defaultdict(float)
        self._calls: dict[str, int] = defaultdict(int)
        self._started: list[float] = []
        self.runs = 0

    def __call__(self, func: Any, symbol: str, before_run: bool, ret_value: Any, *args: Any) -> int:
        self._device.sync()
        now = time.perf_counter()
        if before_run:
            self._started.append(now)
        else:
            self._totals[symbol] += now - self._started.pop()
            self._calls[symbol] += 1
        return _CONTINUE

    def reset(self) -> None:
        """Forget everything seen so far (e.g. the first, cold run)."""
        self._totals.clear()
        self._calls.clear()
        self.runs = 0

    def table(self, topk: int | None = None) -> list[OpTime]:
        """Ops sorted by time, per inference; ``runs`` must count the inferences observed."""
        runs = max(self.runs, 1)
        total = sum(self._totals.values()) or 1.0
        rows = [
            OpTime(name, 1e6 * seconds / runs, self._calls[name] / runs, seconds / total)
            for name, seconds in self._totals.items()
        ]
        rows.sort(key=lambda row: row.time_us, reverse=True)
        return rows[:topk] if topk else rows


def profile_ops(artifact: Artifact, data: np.ndarray, device: str | None = None, runs: int = 3,
                topk: int | None = 20) -> list[OpTime]:
    """Per-op Top-K over ``runs`` instrumented inferences of ``artifact``, after one cold run that is discarded."""
    loaded = create_vm(artifact, device)
    profiler = OpProfiler(loaded.device)
    loaded.vm.set_instrument(profiler)
    run_once = loaded.runner(data)
    run_once()
    profiler.reset()
    for _ in range(runs):
        run_once()
    profiler.runs = runs
    return profiler.table(topk)


def format_profile(rows: list[OpTime]) -> str:
    """The per-op Top-K table, in the seed tool's layout."""
    lines = [f"=== Per-op Profile (Top {len(rows)} ) ===", f"{'Rank':>4}  {'Op':<44}{'Time(us)':>12}{'Calls':>7}{'Share':>8}"]
    for rank, row in enumerate(rows, 1):
        lines.append(f"{rank:>4}  {row.name[:43]:<44}{row.time_us:>12.2f}{row.calls:>7.0f}{100 * row.share:>7.1f}%")
    lines.append("=== End Profile ===")
    return "\n".join(lines)
