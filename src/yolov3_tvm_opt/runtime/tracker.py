"""TVM's RPC tracker, checked before anything is sent to it.

Tuning and remote benchmarks hand work to devices registered with ``python -m
tvm.exec.rpc_tracker``; a typo in the host or key would otherwise surface as a timeout many
minutes later, so both are checked up front and reported in one line. Apart from ``rpc`` (the
remote runs and their timer), so that the tune stage, which needs only this check, does not
rerun when the way remote benchmarks time changes.
"""

from __future__ import annotations

import socket

from ..core.errors import UserError
from ..core.tvm_loader import load_tvm

tvm = load_tvm()


def check_tracker(host: str, port: int, key: str) -> int:
    """How many servers the tracker has under ``key``; a clear error when none or unreachable.

    A plain TCP connect comes first because TVM's tracker client retries a refused connection
    for a minute before giving up; nobody should wait a minute to learn of a typo in the port.
    """
    try:
        socket.create_connection((host, port), timeout=5).close()
        summary = tvm.rpc.connect_tracker(host, port).summary()
    except Exception as exc:  # connection refused, timeout, protocol error
        raise UserError(
            f"cannot reach the RPC tracker at {host}:{port} ({str(exc).splitlines()[0]}); start it with "
            f"`python -m tvm.exec.rpc_tracker --host {host} --port {port}` or fix tune.tracker_host/port"
        ) from exc
    servers = sum(1 for item in summary.get("server_info", []) if item.get("key") == f"server:{key}")
    if servers == 0:
        known = sorted({item["key"].split(":", 1)[-1] for item in summary.get("server_info", [])})
        raise UserError(
            f"the RPC tracker at {host}:{port} has no server with key {key!r} (registered: {', '.join(known) or 'none'}); "
            f"start one with `python -m tvm.exec.rpc_server --tracker {host}:{port} --key {key}`"
        )
    return servers
