"""One default per option: params.yaml, the dataclasses and the CLI agree, except where SEED_BENCH says why."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

from yolov3_tvm_opt.cli import build_parser
from yolov3_tvm_opt.core.errors import UserError, exit_code_of
from yolov3_tvm_opt.core.options import (
    CURVE_BENCH,
    SEED_BENCH,
    AccuracyOptions,
    BenchOptions,
    CompileOptions,
    CurveOptions,
    OptionError,
    TargetOptions,
    TuneOptions,
    VisualizeOptions,
    device_of,
)
from yolov3_tvm_opt.core.params import SECTIONS, load_section

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_holds_the_defaults():
    """params.yaml is the defaults written out: a user reading it sees what the code does."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, cls in SECTIONS.items():
        assert set(params[name]) == {f.name for f in fields(cls)}, name
        assert load_section(name, REPO / "params.yaml") == cls(), name


def test_the_cli_takes_its_defaults_from_the_options():
    parser = build_parser()
    bench = parser.parse_args(["bench", "--artifact_dir", "a"])
    for key in ("iters", "warmup", "max_seconds", "input_scale", "letterbox", "profile_topk"):
        assert getattr(bench, key) == getattr(SEED_BENCH, key), key
    compile_ = parser.parse_args(["compile", "--onnx", "m", "--out_dir", "a"])
    tune, target = TuneOptions(), TargetOptions()
    assert (compile_.trials, compile_.trials_per_iter, compile_.trials_per_task) == (tune.trials, tune.trials_per_iter, tune.trials_per_task)
    flags = (compile_.target, compile_.cuda_arch, compile_.threads, compile_.mcpu, compile_.precision, not compile_.no_cuda_graph)
    assert flags == tuple(asdict(target).values())
    build = CompileOptions()
    assert (compile_.exec_mode, compile_.size, compile_.weights) == (build.exec_mode, build.size, build.weights)
    curve = parser.parse_args(["curve", "--onnx", "m", "--tuning_dir", "t"])
    for key in ("iters", "warmup", "max_seconds", "input_scale", "letterbox", "image"):
        assert getattr(curve, key) == getattr(CURVE_BENCH, key), key
    assert (curve.points, curve.out, curve.png) == ("0,64,256,1024", CurveOptions().out, CurveOptions().png)
    compare = parser.parse_args(["compare-dets", "--reference", "a", "--candidate", "b"])
    acc, pipeline = AccuracyOptions(), BenchOptions()
    assert (compare.report_score, compare.match_score, compare.match_iou) == (acc.report_score, acc.match_score, acc.match_iou)
    assert (compare.input_scale, compare.letterbox) == (pipeline.input_scale, pipeline.letterbox)
    bundle = parser.parse_args(["bundle", "--artifact_dir", "a", "--out", "b"])
    assert (bundle.image, bundle.input_scale, bundle.letterbox) == (pipeline.image, pipeline.input_scale, pipeline.letterbox)


def test_seed_bench_differs_from_the_pipeline_only_where_it_says():
    differ = {k for k, v in asdict(SEED_BENCH).items() if asdict(BenchOptions())[k] != v}
    assert differ == {"input_scale", "letterbox", "max_seconds", "image"}


def test_mistyped_and_unknown_keys_are_one_clear_error(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("bench: {iters: many}\n")
    with pytest.raises(UserError, match=r"bench.iters = 'many' should be a int"):
        load_section("bench", bad)
    bad.write_text("target: {kind: llvm, arch: sm_90}\n")
    with pytest.raises(UserError, match="unknown key.*arch"):
        load_section("target", bad)


def test_unknown_target_kind_is_a_user_error():
    assert device_of("cuda") == "cuda" and device_of("llvm") == "cpu"
    with pytest.raises(UserError, match="unknown target 'metal'"):
        device_of("metal")


def test_ctrl_c_and_user_errors_end_in_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt

    def wrong():
        raise UserError("the thing is wrong; do this")

    assert exit_code_of(interrupted) == 130
    assert exit_code_of(wrong) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err and "error: the thing is wrong; do this" in err


def test_every_number_a_user_can_set_has_a_range():
    """A new numeric option without a range would pass any value silently: refuse to add one."""
    for cls in (*SECTIONS.values(), CompileOptions, AccuracyOptions):
        for item in fields(cls):
            if item.type in ("int", "float", "int | None"):
                assert "range" in item.metadata, f"{cls.__name__}.{item.name}"


@pytest.mark.parametrize("section, key, value, allowed", [
    ("visualize", "score_thresh", 7, "in [0, 1]"),
    ("visualize", "nms_iou", -0.5, "in [0, 1]"),
    ("bench", "iters", 0, "at least 1"),
    ("bench", "warmup", -1, "at least 0"),
    ("bench", "max_seconds", -1.0, "at least 0"),
    ("bench", "input_scale", 0, "more than 0"),
    ("bench", "profile_topk", -3, "at least 0"),
    ("model", "size", 100, "a multiple of 32, at least 32"),
    ("model", "size", 0, "a multiple of 32, at least 32"),
    ("target", "cpu_threads", -1, "at least 0"),
    ("tune", "trials", -1, "at least 0"),
    ("tune", "trials_per_iter", 0, "at least 1"),
    ("tune", "tracker_port", 70000, "in [1, 65535]"),
    ("tune", "rpc_timeout_s", 0, "at least 1"),
])
def test_params_yaml_refuses_a_number_out_of_range_as_the_cli_does(section, key, value, allowed, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({section: {key: value}}))
    shown = float(value) if isinstance(getattr(SECTIONS[section](), key), float) else value  # YAML's 7 is a float here
    with pytest.raises(UserError) as refused:
        load_section(section, bad)
    assert str(refused.value) == f"{bad}: {section}.{key} = {shown!r} is out of range: it must be {allowed}; fix it there"
    with pytest.raises(OptionError, match=re.escape(allowed)):
        SECTIONS[section](**{key: value})


def test_params_yaml_refuses_a_target_it_cannot_build(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("target: {kind: llvm, precision: fp16}\n")
    with pytest.raises(UserError, match=r"params.yaml: precision 'fp16' is not available for target 'llvm'"):
        load_section("target", bad)
    with pytest.raises(UserError, match="bf16 builds keep their weights in model.so"):
        CompileOptions(target=TargetOptions(precision="bf16"), weights="separate")
    with pytest.raises(UserError, match="exec_mode 'jit' is unknown"):
        CompileOptions(exec_mode="jit")
    assert VisualizeOptions(score_thresh=0.0, nms_iou=1.0).nms_iou == 1.0  # the bounds themselves are allowed


def test_a_stage_stops_on_a_bad_param_before_it_announces_or_writes(tmp_path):
    """The compile stage used to print `compile_baseline: ... for llvm` before refusing fp16 on llvm."""
    (tmp_path / "params.yaml").write_text("target: {kind: llvm, precision: fp16}\nmodel: {size: 416}\ntune: {enabled: false}\n")
    args = ["--variant", "baseline", "--onnx", "m.onnx", "--tuning", "t", "--calibration", "c.json", "--out", "a", "--report", "r.json"]
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "compile.py"), *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: params.yaml: precision 'fp16' is not available for target 'llvm'; valid pairs are llvm: fp32 | bf16 | int8; "
        "cuda: fp32 | fp16 (set target.precision in params.yaml or pass --precision)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
