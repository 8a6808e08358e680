"""Session-wide models and artifacts: built once, small sizes, real TVM / ONNX Runtime.

Compiling is the slow part of this suite, so every test that needs an artifact shares these.
Every test reaps the TVM helper processes it starts (RPC trackers and servers, MetaSchedule's
build and run workers); one still alive after its test fails that test.
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
from yolov3_tvm_opt.core.tvm_loader import load_tvm
from yolov3_tvm_opt.evaluate.photos import install_sample_photos
from yolov3_tvm_opt.models.sources import build_model

TINY_SIZE = 96

# Vector ISA extensions, by LLVM's feature names: what code generation emits on its own. Tuning
# flags and AMD's SSE4A / CLZERO / MWAITX (never emitted unasked) do not decide where code runs.
_VECTOR_ISA = ("avx", "fma", "f16c", "bmi", "gfni", "vaes", "vpclmulqdq")


def runs_here(mcpu: str) -> bool:
    """Whether this machine can run llvm code built for ``mcpu``: it has all of that CPU's vector ISA."""
    tvm = load_tvm()
    codegen = tvm.target.codegen

    def features(cpu: str) -> set[str]:
        return set(codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu})))

    return {f for f in features(mcpu) if f.startswith(_VECTOR_ISA)} <= features(codegen.llvm_get_system_cpu())


# The CPU the suite's llvm artifacts are built for. Fixed, so their outputs can be compared bit
# for bit with the record in tests/compiler/data (cpu_schedule's rules) on any vendor's CPU:
# znver4 has AVX-512 and avx512_bf16, and its code runs on Intel Sapphire / Emerald Rapids too.
# Where it cannot run, the machine's own CPU (and the record's tests skip).
RECORD_MCPU = "znver4"
SUITE_MCPU = RECORD_MCPU if runs_here(RECORD_MCPU) else "native"
# bf16 builds are refused where vdpbf16ps does not pay (Intel), so they are built for znver4 and
# run where this CPU runs its code, e.g. on Intel Sapphire / Emerald Rapids
needs_bf16 = pytest.mark.skipif(
    SUITE_MCPU != RECORD_MCPU, reason=f"this CPU lacks avx512_bf16 or cannot run {RECORD_MCPU} code, which bf16 tests build for"
)

# int8 builds (vpdpbusd) need AVX512-VNNI where they run; built for the suite's CPU, as every llvm test
needs_vnni = pytest.mark.skipif(
    not load_tvm().target.codegen.target_has_features("avx512vnni", load_tvm().target.Target({"kind": "llvm", "mcpu": SUITE_MCPU})),
    reason=f"CPU {SUITE_MCPU} lacks AVX512-VNNI, which int8 runs need",
)


def write_conv_onnx(path, size, cin, cout, kernel, stride=1, weight=None, bias=False, leaky=False):
    """A one-conv ONNX (optional bias and leaky ReLU) with seeded weights; returns the weight and the initializers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(cin * cout + kernel + stride)
    if weight is None:
        weight = (rng.standard_normal((cout, cin, kernel, kernel)) * 0.2).astype(np.float32)
    inputs, inits = ["images", "w"], [numpy_helper.from_array(weight, "w")]
    if bias:
        inputs.append("b")
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"))
    pad = kernel // 2
    nodes = [helper.make_node("Conv", inputs, ["conv" if leaky else "output"], pads=[pad] * 4, strides=[stride] * 2)]
    if leaky:
        nodes.append(helper.make_node("LeakyRelu", ["conv"], ["output"], alpha=0.1))
    out = (size + 2 * pad - kernel) // stride + 1
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, out, out])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weight, inits


def reference_conv(x, weight, stride):
    """float64 conv of the given (already rounded or quantized) values: what the kernels' sums approximate."""
    import numpy as np

    kernel = weight.shape[2]
    pad = kernel // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = (x.shape[2] + 2 * pad - kernel) // stride + 1
    result = np.zeros((1, weight.shape[0], out, out))
    for ky in range(kernel):
        for kx in range(kernel):
            patch = padded[:, :, ky : ky + stride * out : stride, kx : kx + stride * out : stride]
            result += np.einsum("nchw,oc->nohw", patch, weight[:, :, ky, kx].astype(np.float64))
    return result


# Set in this process before any test runs, so every process the suite starts inherits it:
# how a leaked helper is told apart from another checkout's or another user's.
SUITE_MARK = "YOLOV3_TVM_TEST_SUITE"


def pytest_configure(config):
    os.environ[SUITE_MARK] = str(os.getpid())


def _our_tvm_helpers() -> dict[int, str]:
    """The live ``python -m tvm.exec.*`` processes this suite started, pid -> command line."""
    mark = f"{SUITE_MARK}={os.environ[SUITE_MARK]}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"tvm.exec." in cmdline and mark in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.fixture(autouse=True)
def no_tvm_helper_outlives_its_test(request):
    """Fail the test that leaves a TVM tracker, server or pool worker running (and stop it).

    A leaked worker holds the output pipe of whoever ran the suite (CI hung on it) and a core of
    this 2-core machine. Pools shut down asynchronously, so a few seconds of grace come first.
    """
    yield
    deadline = time.monotonic() + 10
    while (left := _our_tvm_helpers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        pytest.fail(f"{request.node.nodeid} left TVM helper processes running: {sorted(left.values())}")


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
    return _compile_both(tiny_onnx, tmp_path_factory.mktemp("tiny_llvm"), kind="llvm", cpu_threads=2, mcpu=SUITE_MCPU)


@pytest.fixture(scope="session")
def yolov3_artifacts(yolov3_onnx, tmp_path_factory) -> dict[str, Path]:
    return _compile_both(yolov3_onnx, tmp_path_factory.mktemp("yolov3_llvm"), kind="llvm", cpu_threads=2, mcpu=SUITE_MCPU)


@pytest.fixture(scope="session")
def tiny_separate_artifacts(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    """The tiny pair built with --weights separate (the form a deploy bundle ships)."""
    return _compile_both(
        tiny_onnx, tmp_path_factory.mktemp("tiny_llvm_separate"), weights="separate", kind="llvm", cpu_threads=2, mcpu=SUITE_MCPU
    )


@pytest.fixture(scope="session")
def tiny_cuda_artifacts(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    return _compile_both(tiny_onnx, tmp_path_factory.mktemp("tiny_cuda"), kind="cuda", cuda_arch="sm_90")


@pytest.fixture(scope="session")
def tiny416_artifact(tmp_path_factory) -> Path:
    """The real detector at the size its weights were trained for (for the motorbike test)."""
    root = tmp_path_factory.mktemp("tiny416")
    build_model("yolov3-tiny", 416, root / "tiny416.onnx")
    compile_onnx(root / "tiny416.onnx", root / "artifact", CompileOptions(TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU), fast_scatter_nd=True))
    return root / "artifact"


@pytest.fixture(scope="session")
def conv_onnx(tmp_path_factory) -> Path:
    """A 3x3 conv + relu on a 3-channel 16x16 image: one tuning task, so tuning takes seconds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["output"])]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 16, 16])],
        [weight],
    )
    path = tmp_path_factory.mktemp("conv") / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="session")
def tuned_dir(conv_onnx, tmp_path_factory) -> Path:
    """A real MetaSchedule run on ``conv_onnx`` (2 trials, seeded with our default schedule), for 2 threads."""
    from yolov3_tvm_opt.compiler.tune import tune_model
    from yolov3_tvm_opt.core.options import TuneOptions

    out = tmp_path_factory.mktemp("tuning") / "db"
    trials = TuneOptions(enabled=True, trials=2, trials_per_iter=2)
    summary = tune_model(conv_onnx, out, CompileOptions(target=TargetOptions(cpu_threads=2)), trials).summary
    assert summary["seed_records"] == 1 and summary["records"] > 1 and summary["measured_trials"] >= 1
    assert set(summary["default_ms_per_task"]) == set(summary["best_ms_per_task"])
    return out


@pytest.fixture(scope="session")
def tiny_bf16_artifact(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny fastscatter build with precision bf16 for Zen 4, where vdpbf16ps pays: a cross-compile
    that builds on any machine (its record test runs it only where this CPU runs znver4 code)."""
    out = tmp_path_factory.mktemp("tiny_bf16") / "artifact"
    compile_onnx(tiny_onnx, out, CompileOptions(TargetOptions(cpu_threads=2, mcpu=RECORD_MCPU, precision="bf16"), fast_scatter_nd=True))
    return out


@pytest.fixture(scope="session")
def tiny416_bf16_artifact(tiny416_artifact, tmp_path_factory) -> Path:
    """``tiny416_artifact`` built with precision bf16 (vdpbf16ps convs); the tests using it skip without avx512_bf16."""
    out = tmp_path_factory.mktemp("tiny416_bf16") / "artifact"
    onnx_path = tiny416_artifact.parent / "tiny416.onnx"
    compile_onnx(onnx_path, out, CompileOptions(TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU, precision="bf16"), fast_scatter_nd=True))
    return out


@pytest.fixture(scope="session")
def tiny416_int8_artifact(tiny416_artifact, photos, tmp_path_factory) -> Path:
    """``tiny416_artifact`` built with precision int8, calibrated on the sample photos; its tests skip without VNNI."""
    from yolov3_tvm_opt.core.options import BenchOptions
    from yolov3_tvm_opt.evaluate.calibrate import calibrate

    root = tmp_path_factory.mktemp("tiny416_int8")
    onnx_path = tiny416_artifact.parent / "tiny416.onnx"
    pipeline = BenchOptions()
    calibrate(onnx_path, next(iter(photos.values())).parent, root / "calibration.json", None, pipeline.input_scale, pipeline.letterbox)
    options = TargetOptions(cpu_threads=2, mcpu=SUITE_MCPU, precision="int8")
    compile_onnx(onnx_path, root / "artifact", CompileOptions(options, fast_scatter_nd=True, calibration=str(root / "calibration.json")))
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
