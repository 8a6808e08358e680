"""Find and verify an artifact directory before anything runs it.

Loading checks everything that would otherwise end in a crash or a silently wrong number: that
``meta.json`` and ``model.so`` exist, that ``model.so`` is the file the compiler wrote (sha256)
that this TVM is the one that built it, and, for ``--weights separate``, that ``weights.bin`` is
the file meta.json lists. A sha256 detects corruption and mix-ups, not tampering: it is no
signature, and ``model.so`` is native code, so load only artifacts you built or trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifact_layout import META_FILE, MODEL_FILE
from ..core.errors import UserError
from ..core.files import sha256_file
from ..core.options import device_of
from ..core.tvm_loader import load_tvm
from ..core.weights_file import check_weights

tvm = load_tvm()


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory: where it is and what its meta.json says."""

    directory: Path
    meta: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def weights_path(self) -> Path | None:
        """``weights.bin`` when built with ``--weights separate``; None when the weights are in model.so."""
        return self.directory / self.meta["weights"]["file"] if "weights" in self.meta else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def device(self) -> str:
        """The device it was built for: cpu for llvm, cuda for cuda."""
        return device_of(self.meta.get("target_kind", "llvm"))

    @property
    def variant(self) -> str:
        return self.meta.get("variant", "baseline")

    @property
    def threads(self) -> int:
        """The CPU thread count it was compiled for (llvm ``num-cores``); 0 when the target has none."""
        return int(json.loads(self.meta["target"]).get("num-cores") or 0)


def load_artifact(directory: Path) -> Artifact:
    """Read and verify an artifact directory written by ``yolov3-tvm compile``."""
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
    if "weights" in meta:
        check_weights(directory / meta["weights"]["file"], meta["weights"])
    return Artifact(directory, meta)
