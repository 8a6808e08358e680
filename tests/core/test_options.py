"""One default per option: params.yaml, the dataclasses and the CLI agree, except where SEED_BENCH says why."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

from yolov3_tvm_opt.cli import build_parser
from yolov3_tvm_opt.core.errors import UserError, exit_code_of
from yolov3_tvm_opt.core.options import (
    SEED_BENCH,
    BenchOptions,
    TargetOptions,
    TuneOptions,
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
