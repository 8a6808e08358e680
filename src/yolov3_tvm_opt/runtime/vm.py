"""Run a verified artifact: ``create_vm`` as the seed named it, on TVM's runtime-only VM.

``tvm.runtime.vm.VirtualMachine`` rather than ``tvm.relax.VirtualMachine``: the latter imports
the compiler, and an artifact must run where only ``libtvm_runtime`` is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.options import DEVICES
from ..core.tvm_loader import load_tvm
from ..core.weights_file import read_weights
from .artifact import Artifact
from .device import tvm_device

tvm = load_tvm()

from tvm.runtime.vm import VirtualMachine  # noqa: E402


@dataclass
class LoadedModel:
    """A VM ready to run one artifact on one device."""

    artifact: Artifact
    vm: Any
    device: Any
    params: list[Any] = field(default_factory=list)  # the weights main takes after the image, on the device

    def run(self, data: np.ndarray) -> list[np.ndarray]:
        """Run one inference and return every output as numpy (this copies back to the host)."""
        result = self.vm["main"](tvm.runtime.tensor(data, self.device), *self.params)
        return [np.asarray(t.numpy()) for t in _flatten(result)]

    def runner(self, data: np.ndarray) -> Any:
        """A zero-argument callable running the model on a device-resident input, for timing loops."""
        on_device = tvm.runtime.tensor(data, self.device)
        main = self.vm["main"]
        device = self.device
        params = self.params

        def run_once() -> None:
            main(on_device, *params)
            device.sync()

        return run_once


def _flatten(result: Any) -> list[Any]:
    if hasattr(result, "numpy"):
        return [result]
    return [leaf for item in result for leaf in _flatten(item)]


def create_vm(artifact: Artifact, device: str | None = None) -> LoadedModel:
    """A VirtualMachine for ``artifact`` on ``device`` ("cpu" or "cuda"; default: the one it was built for)."""
    wanted = artifact.device
    device = device or wanted
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; use {' or '.join(DEVICES)}")
    if device != wanted:
        raise UserError(
            f"{artifact.directory} was compiled for {artifact.meta.get('target_kind')} and runs on --device {wanted}, "
            f"not {device}; pass --device {wanted} or recompile with --target {'cuda' if device == 'cuda' else 'llvm'}"
        )
    dev = tvm_device(device)
    try:
        vm = VirtualMachine(tvm.runtime.load_module(str(artifact.model_path)), dev)
    except Exception as exc:
        raise UserError(f"cannot load {artifact.model_path}: {str(exc).splitlines()[0]}; recompile the artifact") from exc
    params = load_params(vm, artifact, dev) if artifact.weights_path else []
    return LoadedModel(artifact, vm, dev, params)


def load_params(vm: Any, artifact: Artifact, dev: Any) -> list[Any]:
    """The weights ``main`` takes after the image: weights.bin copied to ``dev``, transformed once.

    ``main_transform_params`` is what the compiler lifted out of ``main`` (llvm's weight packing,
    bias reshapes); running it here, once, leaves every inference exactly what the embedded
    build runs.
    """
    raw = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in read_weights(artifact.weights_path, artifact.meta["weights"])]
    return list(vm["main_transform_params"](raw))
