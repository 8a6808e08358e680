"""The calibration file: each conv input's activation range, which an int8 build quantizes with.

``evaluate.calibrate`` writes it (from the fp32 model run over photos), ``compiler.int8_conv``
reads it; the format lives here, below both. Convs are keyed by ``weight_key``, the sha256 of their
fp32 weights: the Relax importer keeps neither ONNX node names nor a guaranteed order, but it
keeps the weight tensors byte for byte, so content is what both sides can see.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

CALIBRATION_FORMAT = 1


def weight_key(weight: np.ndarray) -> str:
    """A conv's identity in a calibration file: the sha256 of its fp32 weights (module docstring)."""
    return hashlib.sha256(np.ascontiguousarray(weight, dtype=np.float32).tobytes()).hexdigest()[:24]


@dataclass(frozen=True)
class Calibration:
    """What quantizing needs beyond the weights: each conv input's calibrated range.

    Both keyed by ``weight_key``. ``names`` are the ONNX node names, for meta.json to say which
    convs stayed fp32.
    """

    ranges: dict[str, tuple[float, float]]
    names: dict[str, str] = field(default_factory=dict)


def load_calibration(path: Path) -> Calibration:
    """A calibration file (``evaluate.calibrate``'s output) as the compiler takes it; one error line if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
        convs = data["convs"] if data.get("format") == CALIBRATION_FORMAT else None
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise UserError(
            f"cannot read calibration file {path}: {exc}; run `yolov3-tvm calibrate` (or `dvc repro calibrate`) to write it"
        ) from exc
    if convs is None:
        raise UserError(f"{path} is not a calibration file of format {CALIBRATION_FORMAT}; run `yolov3-tvm calibrate` again to rewrite it")
    if not convs:
        raise UserError(f"{path} holds no activation ranges (written for precision {data.get('precision')}); "
                        "calibrate with target.precision: int8 (`dvc repro calibrate`)")
    return Calibration(
        ranges={key: (float(c["low"]), float(c["high"])) for key, c in convs.items()},
        names={key: str(c["node"]) for key, c in convs.items()},
    )
