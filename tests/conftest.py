"""Session-wide models and artifacts: built once, small sizes, real TVM / ONNX Runtime.

Compiling is the slow part of this suite, so every test that needs an artifact shares these.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions
from yolov3_tvm_opt.models.sources import build_model
from yolov3_tvm_opt.evaluate.photos import install_sample_photos

TINY_SIZE = 96


def pytest_collection_modifyitems(config, items):
    """Tests that build CUDA artifacts need nvcc (not a GPU); without it they skip and say why."""
    if shutil.which("nvcc") is None:
        skip = pytest.mark.skip(reason="nvcc is not on PATH, so CUDA artifacts cannot be built here")
        for item in items:
            if "needs_nvcc" in item.keywords:
                item.add_marker(skip)
YOLOV3_SIZE = 64


def _compile_both(onnx_path: Path, root: Path, **options) -> dict[str, Path]:
    out = {}
    for variant in ("baseline", "fastscatter"):
        out[variant] = root / variant
        compile_onnx(onnx_path, out[variant], CompileOptions(TargetOptions(**options), fast_scatter_nd=variant == "fastscatter"))
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny96.onnx"
    build_model("yolov3-tiny", TINY_SIZE, path)
    return path


@pytest.fixture(scope="session")
def yolov3_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "yolov3_64.onnx"
    build_model("yolov3", YOLOV3_SIZE, path)
    return path


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    return _compile_both(tiny_onnx, tmp_path_factory.mktemp("tiny_llvm"), kind="llvm", cpu_threads=2)


@pytest.fixture(scope="session")
def yolov3_artifacts(yolov3_onnx, tmp_path_factory) -> dict[str, Path]:
    return _compile_both(yolov3_onnx, tmp_path_factory.mktemp("yolov3_llvm"), kind="llvm", cpu_threads=2)


@pytest.fixture(scope="session")
def tiny_cuda_artifacts(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    return _compile_both(tiny_onnx, tmp_path_factory.mktemp("tiny_cuda"), kind="cuda", cuda_arch="sm_90")


@pytest.fixture(scope="session")
def tiny416_artifact(tmp_path_factory) -> Path:
    """The real detector at the size its weights were trained for (for the motorbike test)."""
    root = tmp_path_factory.mktemp("tiny416")
    build_model("yolov3-tiny", 416, root / "tiny416.onnx")
    compile_onnx(root / "tiny416.onnx", root / "artifact", CompileOptions(target=TargetOptions(cpu_threads=2), fast_scatter_nd=True))
    return root / "artifact"


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    paths = install_sample_photos(tmp_path_factory.mktemp("photos"))
    return {p.stem: p for p in paths}


@pytest.fixture(scope="session")
def tiny_files():
    """The pretrained yolov3-tiny cfg/weights/names, downloaded once into the user cache."""
    from yolov3_tvm_opt.models.sources import fetch_tiny

    return fetch_tiny()
