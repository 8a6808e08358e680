"""The console script end to end: real weights, a real photo, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolov3_tvm_opt.cli import build_parser, main


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("yolov3-tvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=os.environ.copy())


def test_tiny_finds_the_motorbike(tiny416_artifact, photos, tmp_path):
    dets, vis, raw = tmp_path / "d.json", tmp_path / "v.jpg", tmp_path / "o.npz"
    proc = cli(
        "bench", "--artifact_dir", str(tiny416_artifact), "--device", "cpu",
        "--image", str(photos["motorcycle_left"]), "--input_scale", "0.0039215686",
        "--iters", "1", "--warmup", "0", "--letterbox", "--nms", "--nms_iou", "0.45", "--score_thresh", "0.25",
        "--save_dets", str(dets), "--save_vis", str(vis), "--save_outputs", str(raw),
    )
    assert proc.returncode == 0, proc.stderr
    assert "avg latency (ms):" in proc.stdout
    with np.load(raw) as saved:
        assert list(saved) == ["output0"] and saved["output0"].shape[-1] == 85
    found = json.loads(dets.read_text())
    assert found and set(found[0]) == {"class_id", "class_name", "score", "box_xyxy"}
    assert "motorbike" in {d["class_name"] for d in found}
    assert vis.stat().st_size > 0


def test_aa_check_times_an_artifact_against_its_copy(tiny_artifacts, tmp_path):
    result = tmp_path / "aa.json"
    proc = cli("bench", "--aa", "--artifact_dir", str(tiny_artifacts["baseline"]), "--iters", "4", "--warmup", "1",
               "--threads", "2", "--json", str(result))
    assert proc.returncode == 0, proc.stderr
    assert "A/A check: speedup is baseline / its copy; its interval" in proc.stdout
    assert any(line.startswith("speedup ") and "x [" in line for line in proc.stdout.splitlines())
    saved = json.loads(result.read_text())
    assert set(saved["stats"]) == {"baseline", "baseline_copy", "onnxruntime"} and saved["stats"]["baseline"]["iters"] == 4


def test_several_artifacts_are_timed_in_the_same_rounds(tiny_artifacts, tmp_path):
    result = tmp_path / "both.json"
    proc = cli("bench", "--artifact_dir", str(tiny_artifacts["baseline"]), "--artifact_dir", str(tiny_artifacts["fastscatter"]),
               "--iters", "3", "--warmup", "1", "--threads", "2", "--json", str(result))
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("speedup baseline / fastscatter ") and "x [" in line for line in proc.stdout.splitlines())
    stats = json.loads(result.read_text())["stats"]
    assert set(stats) == {"baseline", "fastscatter", "onnxruntime"} and {s["iters"] for s in stats.values()} == {3}
    diffs = [line for line in proc.stdout.splitlines() if line.startswith("max |")]
    assert [line.split(" - ")[0] for line in diffs] == ["max |baseline", "max |fastscatter"], proc.stdout
    assert all(line.endswith(" of max |ORT|)") for line in diffs), diffs
    proc = cli("bench", "--aa", "--artifact_dir", str(tiny_artifacts["baseline"]), "--artifact_dir", str(tiny_artifacts["fastscatter"]))
    _one_line_error(proc, "--aa")
    _one_line_error(cli("bench", "--artifact_dir", str(tiny_artifacts["baseline"]), "--peers", "tensorrt"), "unknown peer(s) tensorrt")


def test_quantize_peers_then_bench_times_the_peers_int8_in_the_same_rounds(tiny_artifacts, photos, tmp_path):
    """The hand-run path: what the quantize_peers stage writes, from the command line, then bench beside it."""
    meta = json.loads((tiny_artifacts["fastscatter"] / "meta.json").read_text())
    images, out = next(iter(photos.values())).parent, tmp_path / "peers_int8"
    proc = cli("quantize-peers", "--onnx", meta["onnx_path"], "--images", str(images), "--out", str(out))
    assert proc.returncode == 0 and "--peers onnxruntime_int8,openvino_int8 --peers_int8" in proc.stdout, proc.stderr
    result = tmp_path / "int8.json"
    proc = cli("bench", "--artifact_dir", str(tiny_artifacts["fastscatter"]), "--peers", "onnxruntime_int8,openvino_int8",
               "--peers_int8", str(out), "--iters", "2", "--warmup", "0", "--threads", "2", "--json", str(result))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(result.read_text())
    assert set(saved["stats"]) == {"fastscatter", "onnxruntime", "onnxruntime_int8", "openvino_int8"}
    assert {s["iters"] for s in saved["stats"].values()} == {2}
    diffs = [line.split(" - ")[0] for line in proc.stdout.splitlines() if line.startswith("max |")]
    assert diffs == ["max |fastscatter", "max |onnxruntime_int8", "max |openvino_int8"], proc.stdout
    assert "fastscatter_vs_onnxruntime_int8" in proc.stdout and "fastscatter_vs_openvino_int8" in proc.stdout


def _one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_artifacts):
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"garbage")
    _one_line_error(cli("compile", "--onnx", str(bad_onnx), "--out_dir", str(tmp_path / "a")), "bad.onnx")
    _one_line_error(cli("compile", "--onnx", str(tmp_path / "missing.onnx"), "--out_dir", str(tmp_path / "a")), "missing.onnx")
    _one_line_error(
        cli("compile", "--onnx", str(bad_onnx), "--out_dir", str(tmp_path / "a"), "--target", "cuda", "--precision", "bf16"),
        "valid pairs are llvm: fp32 | bf16 | int8; cuda: fp32 | fp16",
    )
    assert not (tmp_path / "a").exists()
    _one_line_error(cli("bench", "--artifact_dir", str(tmp_path)), "meta.json")
    not_image = tmp_path / "x.jpg"
    not_image.write_text("hello")
    _one_line_error(cli("bench", "--artifact_dir", str(tiny_artifacts["baseline"]), "--image", str(not_image)), "cannot read image")
    _one_line_error(cli("bench", "--artifact_dir", str(tiny_artifacts["baseline"]), "--device", "cuda"), "--device")
    _one_line_error(cli("model", "--source", "yolov3", "--size", "100", "--out", str(tmp_path / "m.onnx")), "32")
    assert not (tmp_path / "m.onnx").exists()


def test_compare_dets_reports_the_contract(tiny_artifacts, photos, tmp_path):
    photo_dir = next(iter(photos.values())).parent
    proc = cli(
        "compare-dets", "--reference", str(tiny_artifacts["baseline"]), "--candidate", str(tiny_artifacts["fastscatter"]),
        "--images", str(photo_dir), "--json", str(tmp_path / "acc.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"accuracy contract holds on {len(photos)} photos" in proc.stdout
    assert json.loads((tmp_path / "acc.json").read_text())["passed"] is True
    proc = cli(
        "compare-dets", "--reference", str(tiny_artifacts["baseline"]), "--candidate", str(tiny_artifacts["fastscatter"]),
        "--images", str(photo_dir), "--match_score", "1",  # no box scores above 1: any reported box breaks it
        "--report_score", "0.0",
    )
    _one_line_error(proc, "does not detect what")


def test_tune_with_unreachable_tracker_is_one_line(tiny_onnx, tmp_path, capsys):
    args = ["compile", "--onnx", str(tiny_onnx), "--out_dir", str(tmp_path / "t"), "--tune", "--runner", "rpc",
            "--tracker", "127.0.0.1:1", "--key", "x"]
    assert main(args) == 2
    assert "cannot reach the RPC tracker" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() and not (tmp_path / "t_tuning").exists()


def test_smoke_prints_version_and_cuda(capsys):
    assert main(["smoke"]) == 0
    out = capsys.readouterr().out
    assert "tvm version: 0.27" in out and "cuda enabled:" in out and "smoke: ok" in out


@pytest.mark.needs_nvcc
def test_smoke_cuda_builds_without_gpu(capsys):
    assert main(["smoke", "--target", "cuda"]) == 0
    assert "smoke: ok" in capsys.readouterr().out


def test_export_onnx_rewrites_copies_or_refuses_in_one_line(tiny_onnx, tmp_path):
    out = tmp_path / "noscatter.onnx"
    proc = cli("export-onnx", "--onnx", str(tiny_onnx), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "4 of 4 ScatterND rewritten to Slice + Concat, 0 left" in proc.stdout and out.is_file()
    again = cli("export-onnx", "--onnx", str(out), "--out", str(tmp_path / "again.onnx"))
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.strip().splitlines() == [
        f"no ScatterND in {out}: nothing to rewrite, copied it unchanged to {tmp_path / 'again.onnx'}"
    ]
    assert (tmp_path / "again.onnx").read_bytes() == out.read_bytes()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    _one_line_error(cli("export-onnx", "--onnx", str(garbage), "--out", str(tmp_path / "x.onnx")), "garbage.onnx")
    assert not (tmp_path / "x.onnx").exists()


# Each bad number, and each flag pair no build can honour, is refused before anything is announced
# or written: one `error:` line, exit 2, empty stdout, nothing in the output directory. The
# artifact and ONNX paths do not exist, so an error about them would mean validation came late.
BAD_INPUTS = [
    (["bench", "--artifact_dir", "{missing}", "--score_thresh", "7", "--save_dets", "{out}/d.json"], "--score_thresh 7.0 is out of range: it must be in [0, 1]"),
    (["bench", "--artifact_dir", "{missing}", "--nms_iou", "1.5"], "--nms_iou 1.5 is out of range"),
    (["bench", "--artifact_dir", "{missing}", "--nms_iou", "nan"], "--nms_iou nan is out of range"),
    (["bench", "--artifact_dir", "{missing}", "--iters", "0", "--json", "{out}/r.json"], "--iters 0 is out of range: it must be at least 1"),
    (["bench", "--artifact_dir", "{missing}", "--warmup", "-1"], "--warmup -1"),
    (["bench", "--artifact_dir", "{missing}", "--max_seconds", "-5"], "--max_seconds -5.0"),
    (["bench", "--artifact_dir", "{missing}", "--threads", "-1"], "--threads -1"),
    (["bench", "--artifact_dir", "{missing}", "--profile", "--profile_topk", "-1"], "--profile_topk -1"),
    (["bench", "--artifact_dir", "{missing}", "--input_scale", "0"], "--input_scale 0.0 is out of range: it must be more than 0"),
    (["bench", "--artifact_dir", "{missing}", "--seed", "-1", "--save_outputs", "{out}/o.npz"], "--seed -1"),
    (["bench", "--artifact_dir", "{missing}", "--runner", "rpc", "--key", "k", "--tracker", "host:0"], "--tracker 0 is out of range"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--precision", "fp16"], "precision 'fp16' is not available for target 'llvm'"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--target", "cuda", "--cuda_arch", "hopper"], "sm_XY"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--precision", "bf16", "--weights", "separate"], "bf16 builds keep"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--size", "0"], "--size 0"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--threads", "-2"], "--threads -2"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--tune", "--trials", "-1"], "--trials -1"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--tune", "--trials_per_iter", "0"], "--trials_per_iter 0"),
    (["compile", "--onnx", "{missing}", "--out_dir", "{out}/a", "--tune", "--tracker", "h:70000"], "--tracker 70000 is out of range: it must be in [1, 65535]"),
    (["model", "--source", "yolov3", "--size", "100", "--out", "{out}/m.onnx"], "--size 100 is out of range: it must be a multiple of 32"),
    (["model", "--source", "yolov3", "--seed", "-1", "--out", "{out}/m.onnx"], "--seed -1"),
    (["compare-dets", "--reference", "{missing}", "--candidate", "{missing}", "--match_iou", "1.01", "--json", "{out}/a.json"], "--match_iou 1.01"),
    (["compare-dets", "--reference", "{missing}", "--candidate", "{missing}", "--report_score", "-0.1"], "--report_score -0.1"),
    (["compare-dets", "--reference", "{missing}", "--candidate", "{missing}", "--input_scale", "-1"], "--input_scale -1.0"),
    (["bundle", "--artifact_dir", "{missing}", "--out", "{out}/b", "--input_scale", "-1"], "--input_scale -1.0"),
    (["curve", "--onnx", "{missing}", "--tuning_dir", "{missing}", "--points", "0,-4", "--out", "{out}/c.json"], "--points -4"),
    (["curve", "--onnx", "{missing}", "--tuning_dir", "{missing}", "--points", "0,many"], "--points '0,many' is not a comma-separated list"),
    (["curve", "--onnx", "{missing}", "--tuning_dir", "{missing}", "--iters", "0", "--png", "{out}/c.png"], "--iters 0"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_INPUTS])
def test_a_bad_input_is_refused_before_anything_is_announced_or_written(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = [arg.format(missing=tmp_path / "missing", out=out) for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_letterbox_has_one_spelling_on_every_command_that_takes_an_input():
    parser = build_parser()
    for argv in (["bench", "--artifact_dir", "a"], ["bundle", "--artifact_dir", "a", "--out", "b"],
                 ["compare-dets", "--reference", "a", "--candidate", "b"], ["curve", "--onnx", "m", "--tuning_dir", "t"]):
        default = parser.parse_args(argv).letterbox
        assert parser.parse_args(argv + ["--letterbox"]).letterbox is True, argv
        assert parser.parse_args(argv + ["--no_letterbox"]).letterbox is False, argv
        assert default == (argv[0] in ("bundle", "compare-dets")), argv  # the pipeline's input; bench and curve keep the seed's


@pytest.mark.slow
def test_calibrate_then_an_int8_compile_that_records_its_fp32_convs(tiny_onnx, yolov3_onnx, photos, tmp_path):
    images = next(iter(photos.values())).parent
    proc = cli("calibrate", "--onnx", str(tiny_onnx), "--images", str(images), "--out", str(tmp_path / "tiny.json"))
    assert proc.returncode == 0 and f"over {len(photos)} photos" in proc.stdout and "latency only" not in proc.stdout, proc.stderr
    proc = cli("calibrate", "--onnx", str(yolov3_onnx), "--images", str(images), "--out", str(tmp_path / "yolov3.json"))
    assert proc.returncode == 0 and "synthetic weights, so its int8 build is for latency only" in proc.stdout, proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(cli("calibrate", "--onnx", str(tiny_onnx), "--images", str(empty), "--out", str(tmp_path / "e.json")), "no JPEG or PNG")
    assert not (tmp_path / "e.json").exists()

    build = ("compile", "--onnx", str(tiny_onnx), "--precision", "int8", "--calibration", str(tmp_path / "tiny.json"), "--threads", "2")
    _one_line_error(cli(*build, "--out_dir", str(tmp_path / "no"), "--mcpu", "skylake-avx512"), "int8 kernels need AVX512-VNNI")
    assert not (tmp_path / "no").exists()
    proc = cli(*build, "--out_dir", str(tmp_path / "int8"), "--mcpu", "icelake-server")  # a cross-compile: builds anywhere
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "int8" / "meta.json").read_text())
    # yolov3-tiny: 13 convs, all in int8 (the first, 3 input channels, in the row tile; the heads too)
    assert meta["precision"] == "int8" and meta["int8"]["kernel"] == "vpdpbusd"
    assert meta["int8"]["int8_convs"] == 13
    assert meta["int8"]["fp32_convs"] == {}
