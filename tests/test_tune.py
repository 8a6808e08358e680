"""MetaSchedule tuning: records are applied, the target is checked, RPC measurement works.

A one-conv model keeps tuning to seconds; the RPC test starts TVM's own tracker and server on
127.0.0.1 and tunes through them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolov3_tvm_opt.compile import CompileOptions, compile_onnx
from yolov3_tvm_opt.errors import UserError
from yolov3_tvm_opt.runtime import create_vm, load_artifact
from yolov3_tvm_opt.tune import TuneOptions, check_tracker, tune_model

TRIALS = TuneOptions(trials=4, trials_per_iter=4)


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory) -> Path:
    """A 3x3 conv + relu on a 3-channel 16x16 image: one tuning task."""
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


@pytest.fixture(scope="module")
def tuned_dir(conv_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tuning") / "db"
    summary = tune_model(conv_onnx, out, CompileOptions(cpu_threads=2), TRIALS)
    assert summary["records"] > 0 and summary["measured_trials"] >= 1
    return out


def test_tuned_records_are_applied_and_correct(conv_onnx, tuned_dir, tmp_path):
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(cpu_threads=2, tuning_dir=str(tuned_dir)))
    assert meta["tuned"] is True and meta["tuned_functions"] >= 1
    untuned = compile_onnx(conv_onnx, tmp_path / "b", CompileOptions(cpu_threads=2))
    assert untuned["tuned"] is False and untuned["tuned_functions"] == 0
    data = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    (a,) = create_vm(load_artifact(tmp_path / "a"), "cpu").run(data)
    (b,) = create_vm(load_artifact(tmp_path / "b"), "cpu").run(data)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_database_for_another_target_is_refused(conv_onnx, tuned_dir, tmp_path):
    with pytest.raises(UserError, match="tuned for"):
        compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(cpu_threads=1, tuning_dir=str(tuned_dir)))
    assert not (tmp_path / "a").exists()


def test_zero_trials_writes_an_empty_database(conv_onnx, tmp_path):
    summary = tune_model(conv_onnx, tmp_path / "db", CompileOptions(cpu_threads=2), TuneOptions(trials=0))
    assert summary["trials"] == 0
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(cpu_threads=2, tuning_dir=str(tmp_path / "db")))
    assert meta["tuned"] is False


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
        except (UserError, OSError):  # not listening / not registered yet
            pass
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the RPC tracker/server")


def test_unreachable_tracker_is_a_user_error():
    with pytest.raises(UserError, match="cannot reach the RPC tracker"):
        check_tracker("127.0.0.1", _free_port(), "cpu")


def test_tuning_through_rpc_tracker_and_server(conv_onnx, tmp_path):
    port = _free_port()
    tracker = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        _wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, 30)
        with pytest.raises(UserError, match="no server with key 'test-cpu'"):
            check_tracker("127.0.0.1", port, "test-cpu")
        server_port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "test-cpu",
             "--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 10), "--no-fork"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: check_tracker("127.0.0.1", port, "test-cpu") == 1, 30)
        options = TuneOptions(trials=4, trials_per_iter=4, runner="rpc", tracker_port=port, key="test-cpu")
        summary = tune_model(conv_onnx, tmp_path / "db", CompileOptions(cpu_threads=2), options)
        assert summary["runner"] == "rpc" and summary["records"] > 0
        assert json.loads((tmp_path / "db" / "summary.json").read_text())["measured_trials"] >= 1
    finally:
        for proc in (server, tracker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def test_truncated_database_is_the_database_after_n_trials(tuned_dir, conv_onnx, tmp_path):
    from yolov3_tvm_opt.tune import RECORDS_FILE, truncated_database

    full = (tuned_dir / RECORDS_FILE).read_text().splitlines()
    cut = truncated_database(tuned_dir, 1, tmp_path / "cut")
    assert (cut / RECORDS_FILE).read_text().splitlines() == full[:1]
    assert json.loads((cut / "summary.json").read_text())["trials"] == 1
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(cpu_threads=2, tuning_dir=str(cut)))
    assert meta["tuned_functions"] == 1
