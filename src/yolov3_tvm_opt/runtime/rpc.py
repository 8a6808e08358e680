"""Artifacts run on the devices behind TVM's RPC tracker (``bench --runner rpc``).

A session is asked for only after ``tracker.check_tracker`` found a server under the key.
``bench --runner rpc`` uploads an artifact to a server the tracker hands out and times it there;
the server runs whatever native code it is sent, without authentication, so trackers and servers
belong on 127.0.0.1 or a private network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.tvm_loader import load_tvm
from .artifact import Artifact
from .tracker import check_tracker
from .vm import LoadedModel

tvm = load_tvm()

from tvm.runtime.vm import VirtualMachine  # noqa: E402


def request_session(host: str, port: int, key: str, timeout_s: int) -> Any:
    """A session with one server under ``key``, handed out by the tracker (after ``check_tracker``)."""
    check_tracker(host, port, key)
    try:
        return tvm.rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=timeout_s)
    except Exception as exc:
        raise UserError(
            f"the RPC tracker at {host}:{port} gave no session for key {key!r} ({str(exc).splitlines()[0]}); "
            "check that the server is idle and reachable from here"
        ) from exc


def load_remote(session: Any, artifact: Artifact) -> LoadedModel:
    """Upload ``artifact`` to the session's server and create its VM there, on the device it was built for.

    ``model.so`` is uploaded under its sha256 so two artifacts never overwrite each other on the
    server. Only artifacts with embedded weights: ``main_transform_params`` takes the weights as
    one tuple, and TVM's RPC cannot pass a tuple argument.
    """
    if artifact.weights_path is not None:
        raise UserError(
            f"{artifact.directory} keeps its weights in weights.bin, and TVM's RPC cannot pass them as the tuple "
            "main_transform_params takes; recompile without --weights separate to bench it over RPC"
        )
    name = f"{artifact.meta['model_so_sha256'][:16]}.so"
    session.upload(str(artifact.model_path), name)
    dev = session.cuda(0) if artifact.device == "cuda" else session.cpu(0)
    try:
        vm = VirtualMachine(session.load_module(name), dev)
    except Exception as exc:
        raise UserError(
            f"the RPC server could not load {artifact.model_path} on {artifact.device} ({str(exc).splitlines()[0]}); "
            "check that the server's device and TVM match what the artifact was built for"
        ) from exc
    return LoadedModel(artifact, vm, dev)


def remote_timer(model: LoadedModel, data: np.ndarray) -> Callable[[], float]:
    """A call that runs one inference on the server and returns its milliseconds on the server's clock.

    TVM's time_evaluator measures there, so no network time is counted. The input is bound to a
    saved closure first (``save_function``) so each timed call is the inference alone, with the
    device synchronised after it as the local runner does.
    """
    on_device = tvm.runtime.tensor(data, model.device)
    model.vm.save_function("main", "main_bound", on_device)
    timer = model.vm.time_evaluator("main_bound", model.device, number=1, repeat=1)
    return lambda: 1000.0 * float(timer().results[0])
