"""The deploy bundle runs where only Python and numpy are, and its runtime serves `bench --runner rpc`.

The bundle is run in a fresh virtual environment whose site-packages hold numpy alone (linked
from this environment, so no network is needed): TVM, ONNX and ONNX Runtime cannot be imported
there, so whatever runs came from the bundle, without the compiler library.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import venv
from pathlib import Path

import numpy as np
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.evaluate.bench import RemoteDevice, run_bench
from yolov3_tvm_opt.evaluate.bundle import build_bundle
from yolov3_tvm_opt.evaluate.detect import scale_pixels
from yolov3_tvm_opt.runtime import create_vm, load_artifact
from yolov3_tvm_opt.runtime.device import cuda_available
from yolov3_tvm_opt.runtime.rpc import check_tracker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def numpy_only_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(root, with_pip=False, system_site_packages=False)
    site = next(root.glob("lib/python*/site-packages"))
    installed = Path(np.__file__).parent.parent
    for name in ("numpy", "numpy.libs"):
        if (installed / name).exists():
            (site / name).symlink_to(installed / name)
    python = root / "bin" / "python"
    for module in ("tvm", "onnx", "onnxruntime", "PIL", "yaml"):
        assert subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode != 0, module
    return python


@pytest.fixture(scope="module")
def llvm_bundle(tiny_separate_artifacts, tmp_path_factory) -> Path:
    """The tiny llvm pair bundled, then unpacked from its .tar.gz elsewhere (the tarball is what travels)."""
    out = tmp_path_factory.mktemp("bundle") / "tiny_llvm"
    tarball = build_bundle([tiny_separate_artifacts["baseline"], tiny_separate_artifacts["fastscatter"]], out)
    unpacked = tmp_path_factory.mktemp("target")
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked)
    return unpacked / out.name


def _run_sh(bundle: Path, python: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "HOME": str(bundle)}
    return subprocess.run(["bash", str(bundle / "run.sh"), *args], env=env, capture_output=True, text=True, **popen)


def test_bundle_runs_with_numpy_alone_and_matches_full_tvm_bit_for_bit(llvm_bundle, numpy_only_python, tiny_separate_artifacts):
    done = _run_sh(llvm_bundle, numpy_only_python, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"runtime from {llvm_bundle}/python/tvm (compiler library present: False)" in done.stdout
    assert done.stdout.count("avg latency (ms):") == 2 and "speedup over baseline" in done.stdout
    assert "scatter_nd" in done.stdout.split("## fastscatter")[0] and "scatter_nd" not in done.stdout.split("## fastscatter")[1]
    result = json.loads((llvm_bundle / "result.json").read_text())
    assert result["ok"] and [r["check"]["ok"] for r in result["results"]] == [True, True]
    bundle = json.loads((llvm_bundle / "bundle.json").read_text())
    data = scale_pixels(np.load(llvm_bundle / "input_pixels.npy"), bundle["input"]["scale"])
    for variant, directory in tiny_separate_artifacts.items():
        here = create_vm(load_artifact(directory)).run(data)[0]
        assert np.array_equal(np.load(llvm_bundle / "outputs" / f"{variant}.npy"), here)
    weights = list((llvm_bundle / "weights").glob("*.bin"))
    assert len(weights) == 1  # one file, shared by both variants


def test_bundle_fails_clearly_out_of_tolerance(llvm_bundle, numpy_only_python, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(llvm_bundle, broken, symlinks=True)
    sample = np.load(broken / "reference_output_sample.npy")
    np.save(broken / "reference_output_sample.npy", sample + np.float32(1.0))
    done = _run_sh(broken, numpy_only_python, timeout=600)
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "OUT OF TOLERANCE" in done.stdout


@pytest.mark.needs_nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="building CUDA artifacts needs nvcc")
def test_cuda_bundle_without_a_gpu_fails_in_one_line(tiny_cuda_artifacts, numpy_only_python, tmp_path):
    if cuda_available():
        pytest.skip("a GPU is here: the CUDA bundle would run, not fail")
    out = tmp_path / "tiny_cuda"
    build_bundle([tiny_cuda_artifacts["baseline"]], out)
    assert (out / "lib" / "libcudart.so.13").is_file()
    done = _run_sh(out, numpy_only_python, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: these artifacts were built for CUDA") and done.stderr.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (UserError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the RPC tracker/server")


def test_bench_over_rpc_on_the_bundles_runtime_only_server(llvm_bundle, numpy_only_python, tiny_artifacts, tiny_separate_artifacts):
    port, server_port = _free_port(), _free_port()
    tracker = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    server = None
    try:
        _wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, 30)
        env = {"PATH": "/usr/bin:/bin", "PYTHON": str(numpy_only_python)}
        server = subprocess.Popen(
            ["bash", str(llvm_bundle / "run.sh"), "rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "bundle-cpu",
             "--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 10)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_for(lambda: check_tracker("127.0.0.1", port, "bundle-cpu") == 1, 60)
        data = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
        remote = RemoteDevice("127.0.0.1", port, "bundle-cpu")
        artifact = tiny_artifacts["fastscatter"]
        far = run_bench(artifact, data, iters=3, warmup=1, time_onnxruntime=False, rpc=remote)
        near = run_bench(artifact, data, iters=3, warmup=1, time_onnxruntime=False)
        assert far.device == "rpc:bundle-cpu/cpu" and far.tvm.iters == 3 and far.tvm.mean_ms > 0
        assert all(np.array_equal(a, b) for a, b in zip(far.outputs, near.outputs))
        assert far.max_abs_diff_vs_onnxruntime == near.max_abs_diff_vs_onnxruntime
        with pytest.raises(UserError, match="per-op profile cannot run inside an RPC server"):
            run_bench(artifact, data, iters=1, profile_topk=5, rpc=remote)
        with pytest.raises(UserError, match="recompile without --weights separate"):
            run_bench(tiny_separate_artifacts["fastscatter"], data, iters=1, rpc=remote)
    finally:
        for proc in (server, tracker):  # each with the worker processes it started
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
