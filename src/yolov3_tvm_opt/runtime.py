"""Load an artifact directory and run it: ``load_artifact`` / ``create_vm`` as the seed named them.

Loading checks everything that would otherwise end in a crash or a silently wrong number: that
``meta.json`` and ``model.so`` exist, that ``model.so`` is the file the compiler wrote (sha256),
that this TVM is the one that built it, and that the requested device matches its target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact_io import sha256_file
from .compile import META_FILE, MODEL_FILE
from .errors import UserError
from .profiler import OpProfiler
from .tvm_env import cuda_available, tvm

from tvm import relax  # noqa: E402

DEVICE_FOR_TARGET = {"llvm": "cpu", "cuda": "cuda"}


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory: where it is and what its meta.json says."""

    directory: Path
    meta: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])


def load_artifact(directory: Path) -> Artifact:
    """Read and verify an artifact directory written by ``compile_onnx``."""
    directory = Path(directory)
    meta_path, model_path = directory / META_FILE, directory / MODEL_FILE
    if not directory.is_dir():
        raise UserError(f"artifact directory {directory} does not exist; run `yolov3-tvm compile --out_dir {directory}` first")
    for path in (meta_path, model_path):
        if not path.is_file():
            raise UserError(f"{path} is missing, so {directory} is not a complete artifact; recompile it with `yolov3-tvm compile`")
    try:
        meta = json.loads(meta_path.read_text())
        expected_sha = meta["model_so_sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{meta_path} is not a meta.json written by yolov3-tvm ({exc}); recompile the artifact") from exc
    if sha256_file(model_path) != expected_sha:
        raise UserError(
            f"{model_path} does not match the sha256 in meta.json (truncated or replaced); recompile the artifact"
        )
    if meta.get("tvm_version") != tvm.__version__:
        raise UserError(
            f"{directory} was built by TVM {meta.get('tvm_version')} but this is TVM {tvm.__version__}; "
            "recompile it with this TVM"
        )
    return Artifact(directory, meta)


@dataclass
class LoadedModel:
    """A VM ready to run one artifact on one device, with an optional per-op profiler attached."""

    artifact: Artifact
    vm: Any
    device: Any
    profiler: OpProfiler | None = None

    def run(self, data: np.ndarray) -> list[np.ndarray]:
        """Run one inference and return every output as numpy (this copies back to the host)."""
        result = self.vm["main"](tvm.runtime.tensor(data, self.device))
        return [np.asarray(t.numpy()) for t in _flatten(result)]

    def runner(self, data: np.ndarray) -> Any:
        """A zero-argument callable running the model on a device-resident input, for timing loops."""
        on_device = tvm.runtime.tensor(data, self.device)
        main = self.vm["main"]
        device = self.device

        def run_once() -> None:
            main(on_device)
            device.sync()

        return run_once


def _flatten(result: Any) -> list[Any]:
    if hasattr(result, "numpy"):
        return [result]
    return [leaf for item in result for leaf in _flatten(item)]


def create_vm(artifact: Artifact, device: str = "cpu", profile: bool = False) -> LoadedModel:
    """Create a Relax VirtualMachine for ``artifact`` on ``device`` ("cpu" or "cuda")."""
    kind = artifact.meta.get("target_kind", "llvm")
    wanted = DEVICE_FOR_TARGET.get(kind)
    if device not in DEVICE_FOR_TARGET.values():
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if device != wanted:
        raise UserError(
            f"{artifact.directory} was compiled for {kind} and runs on --device {wanted}, not {device}; "
            f"pass --device {wanted} or recompile with --target {'cuda' if device == 'cuda' else 'llvm'}"
        )
    if device == "cuda" and not cuda_available():
        raise UserError("--device cuda was requested but no CUDA GPU is visible to TVM here; run on a GPU machine or use --device cpu with an llvm artifact")
    dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
    try:
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(artifact.model_path)), dev)
    except Exception as exc:
        raise UserError(f"cannot load {artifact.model_path}: {str(exc).splitlines()[0]}; recompile the artifact") from exc
    profiler = None
    if profile:
        profiler = OpProfiler(dev)
        vm.set_instrument(profiler)
    return LoadedModel(artifact, vm, dev, profiler)
