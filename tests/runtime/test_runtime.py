"""load_artifact / create_vm refuse what they cannot run, with a message saying what to do."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.runtime import create_vm, load_artifact
from yolov3_tvm_opt.runtime.device import cuda_available


@pytest.fixture
def artifact_copy(tiny_artifacts, tmp_path):
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifacts["baseline"], copy)
    return copy


def test_loads_and_runs(tiny_artifacts):
    artifact = load_artifact(tiny_artifacts["baseline"])
    assert artifact.input_shape == (1, 3, 96, 96)
    model = create_vm(artifact, "cpu")
    (output,) = model.run(np.zeros(artifact.input_shape, np.float32))
    assert output.shape == (1, 3 * (3 * 3 + 6 * 6), 85) and np.isfinite(output).all()


@pytest.mark.parametrize("missing", ["meta.json", "model.so"])
def test_missing_file(artifact_copy, missing):
    (artifact_copy / missing).unlink()
    with pytest.raises(UserError, match=f"{missing} is missing"):
        load_artifact(artifact_copy)


def test_missing_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_artifact(tmp_path / "nowhere")


def test_truncated_model_so(artifact_copy):
    model = artifact_copy / "model.so"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(UserError, match="sha256"):
        load_artifact(artifact_copy)


def test_other_tvm_version(artifact_copy):
    meta_path = artifact_copy / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["tvm_version"] = "0.19.0"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="TVM 0.19.0"):
        load_artifact(artifact_copy)


@pytest.mark.slow
@pytest.mark.needs_nvcc
def test_wrong_device_kind(tiny_artifacts, tiny_cuda_artifacts):
    with pytest.raises(UserError, match="--device cuda"):
        create_vm(load_artifact(tiny_cuda_artifacts["baseline"]), "cpu")
    with pytest.raises(UserError, match="--device cpu"):
        create_vm(load_artifact(tiny_artifacts["baseline"]), "cuda")


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
@pytest.mark.slow
@pytest.mark.needs_nvcc
def test_cuda_without_gpu(tiny_cuda_artifacts):
    with pytest.raises(UserError, match="no CUDA GPU"):
        create_vm(load_artifact(tiny_cuda_artifacts["baseline"]), "cuda")


def test_cpu_threads_and_a_quiet_pool_unless_the_user_chose_a_spin_count(monkeypatch):
    from yolov3_tvm_opt.runtime.device import QUIET_SPIN_COUNT, set_cpu_threads

    monkeypatch.delenv("TVM_THREAD_POOL_SPIN_COUNT", raising=False)
    set_cpu_threads(3)
    assert os.environ["TVM_NUM_THREADS"] == "3" and os.environ["TVM_THREAD_POOL_SPIN_COUNT"] == QUIET_SPIN_COUNT
    monkeypatch.setenv("TVM_THREAD_POOL_SPIN_COUNT", "5")
    set_cpu_threads(2)
    assert os.environ["TVM_THREAD_POOL_SPIN_COUNT"] == "5"
