"""Session-wide models and artifacts: built once, small sizes, real TVM / ONNX Runtime.

Compiling is the slow part of this suite, so every test that needs an artifact shares these.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions
from yolov3_tvm_opt.evaluate.photos import install_sample_photos
from yolov3_tvm_opt.models.sources import build_model

TINY_SIZE = 96


def pytest_collection_modifyitems(config, items):
    """Tests that build CUDA artifacts need nvcc (not a GPU); without it they skip and say why."""
    if shutil.which("nvcc") is None:
        skip = pytest.mark.skip(reason="nvcc is not on PATH, so CUDA artifacts cannot be built here")
        for item in items:
            if "needs_nvcc" in item.keywords:
                item.add_marker(skip)
YOLOV3_SIZE = 64


def _compile_both(onnx_path: Path, root: Path, weights: str = "embedded", **options) -> dict[str, Path]:
    out = {}
    for variant in ("baseline", "fastscatter"):
        out[variant] = root / variant
        compile_onnx(onnx_path, out[variant], CompileOptions(
            TargetOptions(**options), fast_scatter_nd=variant == "fastscatter", weights=weights))
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
def tiny_separate_artifacts(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    """The tiny pair built with --weights separate (the form a deploy bundle ships)."""
    return _compile_both(tiny_onnx, tmp_path_factory.mktemp("tiny_llvm_separate"), weights="separate", kind="llvm", cpu_threads=2)


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on."""
    return _free_port


@dataclass
class Tracker:
    """TVM's own RPC tracker on 127.0.0.1, started for one test."""

    port: int

    def wait_for_key(self, key: str, seconds: float = 60) -> None:
        """Until one server has registered under ``key``."""
        from yolov3_tvm_opt.core.errors import UserError
        from yolov3_tvm_opt.runtime.tracker import check_tracker

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if check_tracker("127.0.0.1", self.port, key) == 1:
                    return
            except UserError:  # not registered yet
                pass
            time.sleep(0.5)
        raise AssertionError(f"no RPC server registered under {key!r} within {seconds} s")


@pytest.fixture
def rpc_tracker():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("TVM's RPC tracker did not start listening within 30 s") from None
                time.sleep(0.5)
        yield Tracker(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # with any worker it started
        proc.wait(timeout=30)
