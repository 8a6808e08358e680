"""params.yaml as the option dataclasses of ``core.options``, checked once, so every stage fails the same clear way.

A stage script reads its sections from here and hands them to the same library functions the
CLI calls; an unknown key, a value of the wrong type or a number out of its range (the same
check the CLI's flags get, in ``core.options``) is one clear error, not a traceback.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .options import (
    BenchOptions,
    CalibrateOptions,
    ModelOptions,
    OptionError,
    TargetOptions,
    TuneOptions,
    VisualizeOptions,
)

PARAMS_FILE = Path("params.yaml")

SECTIONS = {
    "model": ModelOptions,
    "target": TargetOptions,
    "tune": TuneOptions,
    "bench": BenchOptions,
    "visualize": VisualizeOptions,
    "calibrate": CalibrateOptions,
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
    try:
        return cls(**values)
    except OptionError as exc:
        raise UserError(f"{path}: {name}.{exc.key} = {exc.value!r} is out of range: it must be {exc.allowed}; fix it there") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
