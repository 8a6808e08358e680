"""`yolov3-tvm curve` end to end: the session's real (short) tuning run of a one-conv model, cut at each budget.

The curve's logic does not depend on the model; tiny at 96 px has 20 tasks, and tuning it plus a
compile per point took six minutes on a busy 2-core machine, against seconds for one conv.
"""

from __future__ import annotations

import json

import pytest

from yolov3_tvm_opt.cli import main
from yolov3_tvm_opt.compiler.tune import tune_model
from yolov3_tvm_opt.compiler.tuning_db import RECORDS_FILE, load_summary
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions, TuneOptions


@pytest.mark.slow
def test_curve_compiles_and_benches_each_budget_of_one_tuning_run(conv_onnx, tuned_dir, tmp_path, capsys):
    searched = len((tuned_dir / RECORDS_FILE).read_text().splitlines()) - load_summary(tuned_dir)["seed_records"]
    assert searched >= 1
    out, png = tmp_path / "curve.json", tmp_path / "curve.png"
    code = main(["curve", "--onnx", str(conv_onnx), "--tuning_dir", str(tuned_dir), "--points", f"0,1,{searched + 100}",
                 "--iters", "2", "--warmup", "0", "--out", str(out), "--png", str(png)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())
    # a budget past the run's end is the whole run, and says how many trials that was
    assert [row["trials"] for row in rows] == [0, 1, searched]
    assert rows[0]["tuned_functions"] == 0  # no records: our default schedules everywhere
    for row in rows:
        assert row["iters"] == 2 and row["tvm_ms"] > 0 and row["onnxruntime_ms"] > 0
        assert row["tvm_vs_onnxruntime"] == pytest.approx(row["tvm_ms"] / row["onnxruntime_ms"], rel=0.05)  # orientation; ms are rounded
        assert row["max_abs_diff_vs_onnxruntime"] < 1e-2  # a tuned schedule still computes the model
    assert png.read_bytes().startswith(b"\x89PNG")
    assert f"wrote {out} and {png}" in capsys.readouterr().out


@pytest.mark.parametrize("trials", [None, 0], ids=["not_a_database", "untuned"])
def test_curve_without_a_tuning_run_is_one_line(trials, conv_onnx, tmp_path, capsys):
    tuning = tmp_path / "tuning"
    if trials is not None:  # what the tune stage writes with tune.enabled: false
        tune_model(conv_onnx, tuning, CompileOptions(target=TargetOptions(cpu_threads=2)), TuneOptions(trials=trials))
    code = main(["curve", "--onnx", str(conv_onnx), "--tuning_dir", str(tuning), "--out", str(tmp_path / "c.json"),
                 "--png", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert ("not a tuning directory" if trials is None else "holds no tuning run") in err
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "c.png").exists()
