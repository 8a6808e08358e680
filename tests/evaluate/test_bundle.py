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
import subprocess
import tarfile
import venv
from pathlib import Path

import numpy as np
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import BenchOptions
from yolov3_tvm_opt.evaluate.bench import RemoteDevice, bench_artifacts
from yolov3_tvm_opt.evaluate.bundle import build_bundle
from yolov3_tvm_opt.deploy.detect import scale_pixels
from yolov3_tvm_opt.runtime import create_vm, load_artifact
from yolov3_tvm_opt.runtime.device import cuda_available

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
    # every op in the profile: at 96 px the scatter kernel is small and may fall out of a Top-20
    everything = BenchOptions(profile_topk=100)
    tarball = build_bundle([tiny_separate_artifacts["baseline"], tiny_separate_artifacts["fastscatter"]], out, bench=everything)
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
    profiles = {part.split("\n", 1)[0]: part for part in done.stdout.split("\n## ")}  # the later section of each wins
    assert "scatter_nd" in profiles["baseline"] and "scatter_nd" not in profiles["fastscatter"]
    assert "(tolerance 0.1)" in done.stdout  # fp32 builds are held to fp32's tolerance
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


def test_bench_over_rpc_on_the_bundles_runtime_only_server(
    llvm_bundle, numpy_only_python, tiny_artifacts, tiny_separate_artifacts, rpc_tracker, free_port
):
    port, server_port = rpc_tracker.port, free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(numpy_only_python)}
    server = subprocess.Popen(
        ["bash", str(llvm_bundle / "run.sh"), "rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "bundle-cpu",
         "--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 10)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        rpc_tracker.wait_for_key("bundle-cpu", 60)
        data = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
        remote = RemoteDevice("127.0.0.1", port, "bundle-cpu")
        artifact = tiny_artifacts["fastscatter"]
        far = bench_artifacts({"tvm": artifact}, data, iters=3, warmup=1, rpc=remote)
        near = bench_artifacts({"tvm": artifact}, data, iters=3, warmup=1)
        assert far.device == "rpc:bundle-cpu/cpu" and far.stats["tvm"].iters == 3 and far.stats["tvm"].mean_ms > 0
        assert all(np.array_equal(a, b) for a, b in zip(far.outputs["tvm"], near.outputs["tvm"]))
        assert far.max_abs_diff == near.max_abs_diff
        with pytest.raises(UserError, match="per-op profile cannot run inside an RPC server"):
            bench_artifacts({"tvm": artifact}, data, iters=1, profile_topk=5, rpc=remote)
        with pytest.raises(UserError, match="recompile without --weights separate"):
            bench_artifacts({"tvm": tiny_separate_artifacts["fastscatter"]}, data, iters=1, rpc=remote)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # with the worker processes it started
        server.wait(timeout=30)
