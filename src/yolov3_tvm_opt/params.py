"""params.yaml as typed sections, checked once, so every stage fails the same clear way.

DVC passes no arguments to our stage scripts: each reads params.yaml, takes its section from here
and hands the values to the same library functions the CLI calls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .compile import CompileOptions
from .errors import UserError
from .tune import TuneOptions

PARAMS_FILE = Path("params.yaml")


@dataclass(frozen=True)
class ModelParams:
    source: str = "yolov3-tiny"
    size: int = 416
    seed: int = 0


@dataclass(frozen=True)
class TargetParams:
    kind: str = "llvm"
    cuda_arch: str = "sm_90"
    cpu_threads: int = 0
    mcpu: str = "native"

    @property
    def device(self) -> str:
        return "cuda" if self.kind == "cuda" else "cpu"

    def compile_options(
        self, fast_scatter_nd: bool, size: int | None = None, tuning_dir: str | None = None
    ) -> CompileOptions:
        return CompileOptions(
            target=self.kind,
            cuda_arch=self.cuda_arch,
            cpu_threads=self.cpu_threads,
            mcpu=self.mcpu,
            fast_scatter_nd=fast_scatter_nd,
            size=size,
            tuning_dir=tuning_dir,
        )


@dataclass(frozen=True)
class TuneParams(TuneOptions):
    """TuneOptions plus the switch: when off, the tune stage writes an empty database."""

    enabled: bool = False


@dataclass(frozen=True)
class BenchParams:
    iters: int = 50
    warmup: int = 3
    max_seconds: float = 40.0
    input_scale: float = 1.0
    image: str = ""
    letterbox: bool = True
    profile_topk: int = 20


@dataclass(frozen=True)
class VisualizeParams:
    images: str = "pictures/photos"
    score_thresh: float = 0.25
    nms_iou: float = 0.45


SECTIONS = {
    "model": ModelParams,
    "target": TargetParams,
    "tune": TuneParams,
    "bench": BenchParams,
    "visualize": VisualizeParams,
}


def load_section(name: str, path: Path = PARAMS_FILE) -> Any:
    """One section of params.yaml as its dataclass; unknown or mistyped keys are user errors."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}; restore it from git (`git checkout {path}`)") from exc
    cls = SECTIONS[name]
    section = data.get(name) or {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)} in section {name}; known: {', '.join(known)}")
    values = {}
    for key, value in section.items():
        wanted = type(getattr(cls(), key))
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is None and wanted is str:
            value = ""
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise UserError(f"{path}: {name}.{key} = {value!r} should be a {wanted.__name__}")
        values[key] = value
    return cls(**values)
