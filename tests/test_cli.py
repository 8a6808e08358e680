"""The console script end to end: real weights, a real photo, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from yolov3_tvm_opt.cli import main


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("yolov3-tvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=os.environ.copy())


def test_tiny_finds_the_motorbike(tiny416_artifact, photos, tmp_path):
    dets, vis = tmp_path / "d.json", tmp_path / "v.jpg"
    proc = cli(
        "bench", "--artifact_dir", str(tiny416_artifact), "--device", "cpu",
        "--image", str(photos["motorcycle_left"]), "--input_scale", "0.0039215686",
        "--iters", "1", "--warmup", "0", "--letterbox", "--nms", "--nms_iou", "0.45", "--score_thresh", "0.25",
        "--save_dets", str(dets), "--save_vis", str(vis),
    )
    assert proc.returncode == 0, proc.stderr
    assert "avg latency (ms):" in proc.stdout
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
    proc = cli("bench", "--aa", "--artifact_dir", str(tiny_artifacts["baseline"]), "--artifact_dir", str(tiny_artifacts["fastscatter"]))
    _one_line_error(proc, "--aa")
    _one_line_error(cli("bench", "--artifact_dir", str(tiny_artifacts["baseline"]), "--peers", "tensorrt"), "unknown peer(s) tensorrt")


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
        "valid pairs are llvm: fp32 | bf16; cuda: fp32 | fp16",
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
        "--images", str(photo_dir), "--match_iou", "1.01",  # no box can pass: any reported box breaks it
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
