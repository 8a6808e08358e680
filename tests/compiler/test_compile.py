"""compile_onnx writes a complete artifact or nothing; llvm and cuda targets build here."""

from __future__ import annotations

import json

import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.compiler.kernels import cuda_kernels
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.files import sha256_file
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions

SEED_FIELDS = {"onnx_path", "input_name", "input_shape", "input_dtype", "target", "exec_mode", "tuned"}
OUR_FIELDS = {"onnx_sha256", "tvm_version", "variant", "model_so_sha256", "scatter_nd", "target_kind"}


def test_artifact_has_model_and_meta(tiny_artifacts, tiny_onnx):
    baseline = tiny_artifacts["baseline"]
    meta = json.loads((baseline / "meta.json").read_text())
    assert SEED_FIELDS | OUR_FIELDS <= set(meta)
    assert meta["input_name"] == "images" and meta["input_shape"] == [1, 3, 96, 96]
    assert meta["model_so_sha256"] == sha256_file(baseline / "model.so")
    assert meta["onnx_sha256"] == sha256_file(tiny_onnx)
    assert meta["variant"] == "baseline" and meta["tuned"] is False
    assert json.loads(meta["target"])["kind"] == "llvm"
    fast = json.loads((tiny_artifacts["fastscatter"] / "meta.json").read_text())
    assert fast["variant"] == "fastscatter"
    assert fast["scatter_nd"] == {"dense_box_rewritten": 4, "parallel_kernel": 0}


def test_llvm_target_uses_host_cpu_and_threads():
    target = json.loads(str(make_target(TargetOptions(kind="llvm", cpu_threads=3))))
    assert target["num-cores"] == 3
    assert target.get("mcpu")  # the build host's CPU, so AVX-512/AVX2 code is generated


def test_bad_target_and_arch_are_user_errors():
    with pytest.raises(UserError, match="unknown target"):
        make_target(TargetOptions(kind="metal"))
    with pytest.raises(UserError, match="sm_XY"):
        make_target(TargetOptions(kind="cuda", cuda_arch="hopper"))


def test_corrupt_onnx_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "out"
    with pytest.raises(UserError):
        compile_onnx(bad, out, CompileOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


@pytest.mark.slow
@pytest.mark.needs_nvcc
def test_cuda_builds_and_fastscatter_has_no_scatter_loop(tiny_cuda_artifacts):
    baseline = cuda_kernels((tiny_cuda_artifacts["baseline"] / "kernels.cu").read_text())
    fast = cuda_kernels((tiny_cuda_artifacts["fastscatter"] / "kernels.cu").read_text())
    scatter = {name: body for name, body in baseline.items() if "scatter_nd" in name}
    assert scatter, "the baseline cuda build should contain TOPI's scatter_nd kernels"
    assert any("for (" in body for body in scatter.values()), "TOPI's kernel walks the updates in a loop"
    assert not [name for name in fast if "scatter" in name]
    meta = json.loads((tiny_cuda_artifacts["fastscatter"] / "meta.json").read_text())
    assert json.loads(meta["target"])["arch"] == "sm_90" and meta["target_kind"] == "cuda"


def test_ctrl_c_is_deferred_to_the_next_checkpoint():
    import signal
    import threading

    from yolov3_tvm_opt.compiler.compile import interrupt_between_steps

    reached = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs as a background job
    with pytest.raises(KeyboardInterrupt):
        with interrupt_between_steps() as checkpoint:
            # to this thread: a signal sent to the process may be taken by one of TVM's pool threads
            # (alive after an earlier test's build), and the handler must run before the checkpoint
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            reached.append("after the signal")  # TVM work in progress is not cut short
            checkpoint()
            reached.append("after the checkpoint")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_yolov3_fastscatter_rewrites_all_six_scatters(yolov3_artifacts):
    meta = json.loads((yolov3_artifacts["fastscatter"] / "meta.json").read_text())
    assert meta["scatter_nd"] == {"dense_box_rewritten": 6, "parallel_kernel": 0}
    schedules = meta["schedules"]
    assert schedules["conv2d_default_schedules"] > 0 and schedules["left_default_default_schedules"] == 0


@pytest.mark.slow
def test_meta_records_the_seed_of_synthetic_weights_only(yolov3_artifacts, tiny_artifacts):
    """A bundle ships the seed instead of synthetic YOLOv3's weights; trained weights have none."""
    assert json.loads((yolov3_artifacts["baseline"] / "meta.json").read_text())["synthetic_weights_seed"] == 0
    assert json.loads((tiny_artifacts["baseline"] / "meta.json").read_text())["synthetic_weights_seed"] is None


def test_separate_weights_are_shared_and_change_no_bit(tiny_separate_artifacts, tiny_artifacts, tmp_path):
    import shutil

    import numpy as np

    from yolov3_tvm_opt.runtime import create_vm, load_artifact

    metas = {v: json.loads((d / "meta.json").read_text()) for v, d in tiny_separate_artifacts.items()}
    assert metas["baseline"]["weights"]["sha256"] == metas["fastscatter"]["weights"]["sha256"]
    assert metas["baseline"]["weights"]["sha256"] == sha256_file(tiny_separate_artifacts["baseline"] / "weights.bin")
    for variant, directory in tiny_separate_artifacts.items():
        embedded = tiny_artifacts[variant] / "model.so"
        assert (directory / "model.so").stat().st_size * 10 < embedded.stat().st_size
        data = np.random.default_rng(1).random((1, 3, 96, 96), dtype=np.float32)
        separate_out = create_vm(load_artifact(directory)).run(data)[0]
        embedded_out = create_vm(load_artifact(tiny_artifacts[variant])).run(data)[0]
        assert np.array_equal(separate_out, embedded_out)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_separate_artifacts["baseline"], broken)
    with open(broken / "weights.bin", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(UserError, match="weights.bin does not match"):
        load_artifact(broken)
    (broken / "weights.bin").unlink()
    with pytest.raises(UserError, match="weights.bin is missing"):
        load_artifact(broken)
