"""``yolov3-tvm bundle``: built artifacts plus a runtime-only TVM, runnable with ``bash run.sh`` where only Python and numpy are.

A GPU host in a data centre or an edge box often has a driver, Python and numpy and nothing else:
no TVM, no compiler, no network. The bundle carries what running needs and no more:

- the artifacts (``model.so`` + ``meta.json``; ``weights.bin`` once, shared by every artifact of
  the model, or for synthetic YOLOv3 the seed and calibration numbers to regenerate it);
- the installed ``tvm`` package without ``libtvm_compiler.so`` (and without the C++ headers and
  sources), with its LICENSE/NOTICE, run with ``TVM_USE_RUNTIME_LIB=1``;
- apache-tvm-ffi wheels for CPython 3.10, 3.11 and 3.12 (the one matching the host's Python is
  unpacked at run time), ``typing_extensions``, ``cloudpickle`` (for ``run.sh rpc_server``), and
  ``libcudart.so.13`` when an artifact is CUDA;
- the input as uint8 pixels plus the scale (no Pillow there), and a reference computed here with
  ONNX Runtime on that very input: a fixed sample of output rows and the decoded detections;
- the deploy host of this package: exactly the files ``python -m yolov3_tvm_opt.deploy`` can
  import (``imports.reached``: core, runtime, deploy and the numpy-only ``models.darknet_cfg``),
  none of which imports onnx, onnxruntime, PIL or yaml.

Both ``DIR`` and ``DIR.tar.gz`` are written atomically. Nothing here signs anything: the
sha256 checks on the target detect corruption, not tampering.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifact_layout import META_FILE, MODEL_FILE, WEIGHTS_FILE
from ..core.errors import UserError
from ..core.files import atomic_dir, atomic_file, write_json
from ..core.options import BenchOptions, VisualizeOptions
from ..deploy.check import BUNDLE_FILE, REFERENCE_DETECTIONS, reference_sample_rows
from ..deploy.detect import detections_for, save_detections, scale_pixels
from ..models import darknet_cfg
from ..models.sources import default_cache_dir
from ..runtime import Artifact, load_artifact
from .images import load_image, pixels_nchw
from .imports import PACKAGE, reached
from .peers import REFERENCE, PeerInput, onnxruntime_system

FFI_PACKAGE = "apache-tvm-ffi"
PYTHON_VERSIONS = ("3.10", "3.11", "3.12")
# Kept out of the runtime copy of the tvm package: the compiler (259 MB) and what only building
# TVM code needs (C++ headers and sources, the web runtime, CMake files).
_TVM_DROPPED = {"libtvm_compiler.so", "3rdparty", "include", "src", "web", "cmake", "__pycache__"}
PURE_PYTHON_DEPENDENCIES = ("typing_extensions", "cloudpickle")
ENTRY_POINT = PACKAGE / "deploy" / "__main__.py"  # what run.sh runs: python -m yolov3_tvm_opt.deploy

RUN_SH = """#!/usr/bin/env bash
# Run the bundled artifacts with the bundled runtime-only TVM: `bash run.sh` checks outputs against
# the ONNX Runtime reference and prints the latency comparison; `bash run.sh rpc_server --tracker
# HOST:PORT --key KEY` serves this device to a TVM RPC tracker. Needs Python 3.10-3.12 and numpy.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
PYTHONPATH="$HERE/python" exec "$PY" -m yolov3_tvm_opt.deploy "$HERE" "$@"
"""

README = """yolov3-tvm deploy bundle
  bash run.sh                 check every artifact against the reference and time it (JSON: result.json)
  bash run.sh rpc_server --tracker HOST:PORT --key KEY [--host 127.0.0.1]
                              register this device with a TVM RPC tracker for `yolov3-tvm bench --runner rpc`
  PYTHON=/path/to/python bash run.sh   use another interpreter (3.10-3.12, with numpy)

Security: model.so is native code and TVM's RPC server runs whatever it is sent, without
authentication. Bind trackers and servers to 127.0.0.1 or a private network, and load only
artifacts you built or trust. The sha256 checks against meta.json detect corruption; they are
not a signature.
"""


@dataclass(frozen=True)
class BundleInput:
    """What the bundle feeds the model: uint8 NCHW pixels, the scale, and the original image size."""

    pixels: np.ndarray
    scale: float
    image_hw: tuple[int, int]
    letterbox: bool
    source: str


def bundle_input(shape: list[int], image: Path | None, scale: float, letterbox: bool, seed: int = 0) -> BundleInput:
    """The photo preprocessed to uint8 pixels, or seeded random pixels when no photo is given."""
    if image is None:
        pixels = np.random.default_rng(seed).integers(0, 256, size=tuple(shape), dtype=np.uint8)
        return BundleInput(pixels, scale, (shape[2], shape[3]), False, f"random pixels (seed {seed})")
    photo = load_image(image)
    return BundleInput(pixels_nchw(photo, shape, letterbox), scale, (photo.height, photo.width), letterbox, image.name)


def _one_model(artifacts: list[Artifact]) -> None:
    shas = {a.meta["onnx_sha256"] for a in artifacts}
    if len(shas) != 1:
        raise UserError(
            "a bundle holds the builds of one model (one reference output), but these artifacts come from "
            f"{len(shas)} different ONNX files; bundle each model separately"
        )


def _synthetic_recipe(artifact: Artifact) -> dict[str, Any] | None:
    """How to regenerate the weights from the seed on the target, when they are synthetic YOLOv3's and that works.

    meta.json records the seed of synthetic weights (``synthetic_weights_seed``). The weights are
    regenerated here once and must hash to the sha256 meta.json recorded; if they do not (a model
    that is not YOLOv3, another numpy), the bundle ships the file instead.
    """
    seed = artifact.meta.get("synthetic_weights_seed")
    if seed is None:
        return None
    classes = len(artifact.meta["class_names"])
    calibration = darknet_cfg.synthetic_calibration(darknet_cfg.yolov3_cfg(classes=classes), seed)
    manifest = artifact.meta["weights"]
    try:
        _, regenerated = darknet_cfg.synthetic_weights_file(manifest, classes, seed, calibration)
    except KeyError:
        return None
    if regenerated["sha256"] != manifest["sha256"]:
        return None
    return {"generator": "yolov3", "classes": classes, "seed": seed, "calibration": calibration}


def _copy_weights(artifact: Artifact, root: Path, seen: dict[str, str]) -> str:
    """Ship (or describe how to regenerate) the artifact's weights once per sha256; return the shared path."""
    manifest = artifact.meta["weights"]
    sha = manifest["sha256"]
    if sha in seen:
        return seen[sha]
    recipe = _synthetic_recipe(artifact)
    if recipe is None:
        shutil.copyfile(artifact.weights_path, root / "weights" / f"{sha}.bin")
        seen[sha] = f"weights/{sha}.bin"
    else:
        np.save(root / "weights" / f"{sha}.calibration.npy", recipe.pop("calibration"))
        write_json(root / "weights" / f"{sha}.regenerate.json", {**recipe, "manifest": manifest})
        seen[sha] = f"weights/{sha}.bin"  # written by run.sh before the first load
    return seen[sha]


def _copy_artifacts(artifacts: list[Artifact], root: Path) -> list[dict[str, Any]]:
    (root / "weights").mkdir()
    entries, seen, names = [], {}, set()
    for artifact in artifacts:
        name = artifact.directory.name if artifact.directory.name not in names else f"{artifact.directory.name}_{len(names)}"
        names.add(name)
        dest = root / "artifacts" / name
        dest.mkdir(parents=True)
        for file in (MODEL_FILE, META_FILE):
            shutil.copyfile(artifact.directory / file, dest / file)
        if artifact.weights_path is not None:
            shared = _copy_weights(artifact, root, seen)
            os.symlink(os.path.relpath(root / shared, dest), dest / WEIGHTS_FILE)
        entries.append({"dir": f"artifacts/{name}", "variant": artifact.variant, "device": artifact.device})
    return entries


def _copy_tvm_runtime(root: Path) -> None:
    """The installed tvm package without the compiler; its LICENSE and NOTICE go to licenses/ too."""
    import tvm

    source = Path(tvm.__file__).parent
    shutil.copytree(source, root / "python" / "tvm", ignore=lambda _d, names: [n for n in names if n in _TVM_DROPPED])
    for dist in ("apache-tvm", FFI_PACKAGE):
        for file in importlib.metadata.distribution(dist).files or []:
            if file.name in ("LICENSE", "NOTICE") or "licenses" in file.parts:
                target = root / "licenses" / dist / file.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file.locate(), target)


def ffi_wheels(cache_dir: Path) -> list[Path]:
    """apache-tvm-ffi wheels (the installed version) for every supported CPython, downloaded once into the cache."""
    version = importlib.metadata.version(FFI_PACKAGE)
    wheels = []
    for python in PYTHON_VERSIONS:
        tag = "cp" + python.replace(".", "")
        found = sorted(cache_dir.glob(f"apache_tvm_ffi-{version}-{tag}-{tag}-*.whl"))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", f"{FFI_PACKAGE}=={version}", "--no-deps", "--only-binary=:all:",
                   "--python-version", python, "--platform", "manylinux_2_28_x86_64", "-d", str(cache_dir), "--quiet"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(cache_dir.glob(f"apache_tvm_ffi-{version}-{tag}-{tag}-*.whl"))
            if done.returncode != 0 or not found:
                lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
                raise UserError(
                    f"could not download the {FFI_PACKAGE}=={version} wheel for Python {python} "
                    f"({lines[-1] if lines else 'no wheel'}); check access to the package index or put it in {cache_dir}"
                )
        wheels.append(found[-1])
    return wheels


def find_cudart() -> Path:
    """libcudart.so.13: from an nvidia-cuda-runtime wheel in this environment, else a system CUDA 13."""
    candidates = [Path(p) / "nvidia" / "cu13" / "lib" / "libcudart.so.13" for p in sys.path]
    candidates += [Path(p) / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.13" for p in sys.path]
    candidates += sorted(Path("/usr/local").glob("cuda*/lib*/libcudart.so.13"))
    candidates += sorted(Path("/usr/local").glob("cuda*/targets/x86_64-linux/lib/libcudart.so.13"))
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise UserError("the artifacts are CUDA builds but no libcudart.so.13 was found here; install CUDA 13 or "
                    "the nvidia-cuda-runtime wheel so the bundle can carry it")


def _copy_pure_python(dest: Path) -> None:
    """typing_extensions (apache-tvm-ffi imports it) and cloudpickle (TVM's RPC server sends its loop with it)."""
    for name in PURE_PYTHON_DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise UserError(f"{name} is not installed here, and the bundle must carry it; run `make setup`")
        source = Path(spec.origin)
        if source.name == "__init__.py":
            shutil.copytree(source.parent, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, dest / source.name)


def shipped_modules() -> list[Path]:
    """Our files the bundle carries, relative to the package: what the entry point's imports reach."""
    return sorted(path.relative_to(PACKAGE) for path in reached([ENTRY_POINT]))


def _copy_our_package(root: Path) -> None:
    dest = root / "python" / PACKAGE.name
    for relative in shipped_modules():
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE / relative, dest / relative)


def _reference(artifact: Artifact, data: np.ndarray, given: BundleInput, root: Path, vis: VisualizeOptions) -> dict[str, Any]:
    """ONNX Runtime's output on the bundle's input: a fixed sample of rows, and the decoded detections."""
    onnx = Path(artifact.meta["onnx_path"])
    spec = PeerInput(onnx, artifact.meta["input_name"], data, os.cpu_count() or 1, None)
    output = onnxruntime_system(REFERENCE, onnx, spec).outputs[0]
    rows = reference_sample_rows(output)
    np.save(root / "reference_rows.npy", rows)
    np.save(root / "reference_output_sample.npy", output[0, rows])
    dets = detections_for(output, artifact.meta, given.image_hw, vis.score_thresh, vis.nms_iou, given.letterbox)
    save_detections(dets, root / REFERENCE_DETECTIONS)
    return {"output_rows": int(output.shape[1]), "sampled_rows": int(rows.size), "detections": len(dets)}


def build_bundle(
    artifact_dirs: list[Path],
    out: Path,
    image: Path | None = None,
    input_scale: float = BenchOptions.input_scale,
    letterbox: bool = BenchOptions.letterbox,
    bench: BenchOptions = BenchOptions(),
    cache_dir: Path | None = None,
) -> Path:
    """Write the bundle directory ``out`` and ``out.tar.gz``; return the tarball's path."""
    if not artifact_dirs:
        raise UserError("give at least one --artifact_dir to bundle")
    artifacts = [load_artifact(Path(d)) for d in artifact_dirs]
    _one_model(artifacts)
    wheels = ffi_wheels((cache_dir or default_cache_dir()) / "wheels")
    cuda = any(a.device == "cuda" for a in artifacts)
    first = artifacts[0]
    given = bundle_input(first.meta["input_shape"], image, input_scale, letterbox)
    out = Path(out)
    with atomic_dir(out) as root:
        entries = _copy_artifacts(artifacts, root)
        _copy_tvm_runtime(root)
        _copy_our_package(root)
        (root / "wheels").mkdir()
        for wheel in wheels:
            shutil.copyfile(wheel, root / "wheels" / wheel.name)
        _copy_pure_python(root / "python")
        if cuda:
            (root / "lib").mkdir()
            shutil.copyfile(find_cudart(), root / "lib" / "libcudart.so.13")
        np.save(root / "input_pixels.npy", given.pixels)
        reference = _reference(first, scale_pixels(given.pixels, given.scale, first.meta["input_dtype"]), given, root, VisualizeOptions())
        write_json(root / BUNDLE_FILE, {
            "artifacts": entries,
            "input": {"pixels": "input_pixels.npy", "scale": given.scale, "image": given.source,
                      "image_hw": list(given.image_hw), "letterbox": given.letterbox},
            "reference": {"by": "onnxruntime (cpu)", "onnx_sha256": first.meta["onnx_sha256"], **reference},
            "bench": {"iters": bench.iters, "warmup": bench.warmup, "max_seconds": bench.max_seconds,
                      "profile_topk": bench.profile_topk},
            "python": list(PYTHON_VERSIONS),
        })
        (root / "run.sh").write_text(RUN_SH)
        (root / "run.sh").chmod(0o755)
        (root / "README.txt").write_text(README)
    tarball = out.with_name(out.name + ".tar.gz")
    with atomic_file(tarball, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        tar.add(out, arcname=out.name)
    return tarball
