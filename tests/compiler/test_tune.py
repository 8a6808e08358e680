"""MetaSchedule tuning: records are applied, the target is checked, RPC measurement works.

A one-conv model (conftest's ``conv_onnx``, tuned once per session as ``tuned_dir``) keeps
tuning to seconds; the RPC test starts TVM's own tracker and server on
127.0.0.1 and tunes through them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.compiler.tune import tune_model
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions, TuneOptions
from yolov3_tvm_opt.core.tvm_loader import load_tvm
from yolov3_tvm_opt.runtime import create_vm, load_artifact
from yolov3_tvm_opt.runtime.tracker import check_tracker

tvm = load_tvm()


@pytest.mark.slow
def test_seed_record_is_our_default_schedule(conv_onnx, tuned_dir, tmp_path):
    """The database's first record, applied, gives exactly the function cpu_schedule builds."""
    from tvm import relax

    from yolov3_tvm_opt.compiler.frontend import import_onnx
    from yolov3_tvm_opt.compiler.pipeline import optimize
    from yolov3_tvm_opt.compiler.target import make_target
    from yolov3_tvm_opt.compiler.tuning_db import RECORDS_FILE, WORKLOADS_FILE

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / WORKLOADS_FILE).write_text((tuned_dir / WORKLOADS_FILE).read_text())
    (seeds / RECORDS_FILE).write_text((tuned_dir / RECORDS_FILE).read_text().splitlines(keepends=True)[0])
    target = make_target(TargetOptions(cpu_threads=2))
    mod, _, _ = import_onnx(conv_onnx)
    default, counts = optimize(mod, target)
    assert counts["conv2d_default_schedules"] == 1
    with target:
        from_seed = relax.transform.MetaScheduleApplyDatabase(str(seeds))(optimize(mod, target, default_schedules=False)[0])
    conv = [gv for gv in default.functions if "conv2d" in gv.name_hint]
    assert len(conv) == 1
    tvm.ir.assert_structural_equal(from_seed[conv[0].name_hint].body, default[conv[0].name_hint].body)


def with_seed_seconds(tuned_dir: Path, out: Path, seconds: float) -> Path:
    """A copy of the database whose seed record claims ``seconds`` (the searched ones unchanged)."""
    from yolov3_tvm_opt.compiler.tuning_db import RECORDS_FILE

    shutil.copytree(tuned_dir, out)
    lines = (out / RECORDS_FILE).read_text().splitlines(keepends=True)
    workload, record = json.loads(lines[0])
    record[1] = [seconds]
    (out / RECORDS_FILE).write_text(json.dumps([workload, record]) + "\n" + "".join(lines[1:]))
    return out


@pytest.mark.slow
def test_records_that_beat_our_schedule_are_applied_and_correct(conv_onnx, tuned_dir, tmp_path):
    db = with_seed_seconds(tuned_dir, tmp_path / "db", 1.0)  # every searched record beats a 1 s seed
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(target=TargetOptions(cpu_threads=2), tuning_dir=str(db))).meta
    assert meta["tuned"] is True and meta["tuned_functions"] == 1
    untuned = compile_onnx(conv_onnx, tmp_path / "b", CompileOptions(target=TargetOptions(cpu_threads=2))).meta
    assert untuned["tuned"] is False and untuned["tuned_functions"] == 0
    data = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    (a,) = create_vm(load_artifact(tmp_path / "a"), "cpu").run(data)
    (b,) = create_vm(load_artifact(tmp_path / "b"), "cpu").run(data)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_where_our_schedule_is_faster_the_build_keeps_it(conv_onnx, tuned_dir, tmp_path):
    db = with_seed_seconds(tuned_dir, tmp_path / "db", 1e-12)
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(target=TargetOptions(cpu_threads=2), tuning_dir=str(db))).meta
    assert meta["tuned"] is False and meta["schedules"]["conv2d_default_schedules"] == 1


@pytest.mark.slow
def test_database_for_another_target_is_refused(conv_onnx, tuned_dir, tmp_path):
    with pytest.raises(UserError, match="tuned for"):
        compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(target=TargetOptions(cpu_threads=1), tuning_dir=str(tuned_dir)))
    assert not (tmp_path / "a").exists()


def test_zero_trials_writes_an_empty_database(conv_onnx, tmp_path):
    summary = tune_model(conv_onnx, tmp_path / "db", CompileOptions(target=TargetOptions(cpu_threads=2)), TuneOptions(trials=0)).summary
    assert summary["trials"] == 0
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(target=TargetOptions(cpu_threads=2), tuning_dir=str(tmp_path / "db"))).meta
    assert meta["tuned"] is False


# Run in a fresh interpreter, as LocalBuilder's workers are: what importing the build function and
# building (and running) a candidate with it bring in besides TVM.
_FRESH_BUILD = """
import json, sys
import numpy as np
import tvm
from tvm import te
from yolov3_tvm_opt.compiler.tune_builder import build_candidate

a = te.placeholder((16,), name="a")
b = te.compute((16,), lambda i: a[i] * 2.0, name="b")
built = build_candidate(tvm.IRModule({"main": te.create_prim_func([a, b])}), tvm.target.Target({"kind": "llvm"}), None)
x = tvm.runtime.tensor(np.arange(16, dtype="float32"))
y = tvm.runtime.tensor(np.zeros(16, dtype="float32"))
built["main"](x, y)
assert (y.numpy() == 2 * x.numpy()).all()
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("tvm.s_tir.tensor_intrin", "yolov3_tvm_opt.compiler.")))))
"""


def test_candidate_build_skips_tensor_intrinsics():
    """Building a candidate imports neither ``tvm.s_tir.tensor_intrin`` (17 s in every builder
    worker) nor our heavier compiler modules."""
    done = subprocess.run([sys.executable, "-c", _FRESH_BUILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["yolov3_tvm_opt.compiler.tune_builder"]


def test_unreachable_tracker_is_a_user_error(free_port):
    with pytest.raises(UserError, match="cannot reach the RPC tracker"):
        check_tracker("127.0.0.1", free_port(), "cpu")


@pytest.mark.slow
def test_tuning_through_rpc_tracker_and_server(conv_onnx, tmp_path, rpc_tracker, free_port):
    port = rpc_tracker.port
    with pytest.raises(UserError, match="no server with key 'test-cpu'"):
        check_tracker("127.0.0.1", port, "test-cpu")
    server_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "test-cpu",
         "--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 10), "--no-fork"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        rpc_tracker.wait_for_key("test-cpu", 30)
        options = TuneOptions(enabled=True, trials=1, trials_per_iter=1, runner="rpc", tracker_port=port, key="test-cpu")
        summary = tune_model(conv_onnx, tmp_path / "db", CompileOptions(target=TargetOptions(cpu_threads=2)), options).summary
        assert summary["runner"] == "rpc" and summary["records"] > 0
        assert json.loads((tmp_path / "db" / "summary.json").read_text())["measured_trials"] >= 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server runs in a popen worker of its own: stop both
        server.wait(timeout=30)


@pytest.mark.slow
def test_truncated_database_is_the_database_after_n_trials(tuned_dir, conv_onnx, tmp_path):
    from yolov3_tvm_opt.compiler.tuning_db import RECORDS_FILE, truncated_database

    full = (tuned_dir / RECORDS_FILE).read_text().splitlines()
    cut = truncated_database(with_seed_seconds(tuned_dir, tmp_path / "db", 1.0), 1, tmp_path / "cut")
    assert (cut / RECORDS_FILE).read_text().splitlines()[1:] == full[1:2]  # the seed, then trial 1
    assert json.loads((cut / "summary.json").read_text())["trials"] == 1
    meta = compile_onnx(conv_onnx, tmp_path / "a", CompileOptions(target=TargetOptions(cpu_threads=2), tuning_dir=str(cut))).meta
    assert meta["tuned_functions"] == 1
