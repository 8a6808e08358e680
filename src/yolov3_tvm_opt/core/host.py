"""Facts about the machine we run on that several layers need, without importing TVM."""

from __future__ import annotations

import os


def host_cores() -> int:
    """Cores this process may use (a container's CPU set, not the host's core count)."""
    return len(os.sched_getaffinity(0))


def resolve_threads(threads: int) -> int:
    """``threads``, or every usable core when it is 0 (the meaning of 0 everywhere we take a count)."""
    return threads if threads > 0 else host_cores()
