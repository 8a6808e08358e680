"""The DVC pipeline end to end on a small configuration, in a throwaway copy of this repository.

Real DVC, real TVM: `dvc repro` from nothing, the metrics it writes, what goes stale when a
param changes, `dvc metrics diff` across commits, and an interrupted stage.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolov3_tvm_opt.deploy.stats import bootstrap_median_ci, per_round_ratios
from yolov3_tvm_opt.evaluate import imports
from yolov3_tvm_opt.evaluate.imports import direct_imports, reached

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "model": {"size": 96},
    "target": {"cpu_threads": 2},
    # a cap far above what 3 rounds take, so a busy machine cannot cut the count the test checks
    "bench": {"iters": 3, "warmup": 1, "max_seconds": 120, "profile_topk": 10},
}
LATENCY_KEYS = {
    "baseline_ms", "fastscatter_ms", "speedup", "baseline_p90_ms", "fastscatter_p90_ms",
    "onnxruntime_ms", "fastscatter_vs_onnxruntime", "max_abs_diff_vs_onnxruntime", "threads",
    "baseline_p50_ms", "onnxruntime_p90_ms", "baseline_iters", "onnxruntime_iters",
    "speedup_median", "speedup_ci_low", "speedup_ci_high",
    "baseline_vs_onnxruntime_median", "fastscatter_vs_onnxruntime_ci_low", "fastscatter_vs_onnxruntime_ci_high",
}
OPENVINO_KEYS = {"openvino_ms", "openvino_f32_ms", "fastscatter_vs_openvino_median", "max_abs_diff_openvino_f32_vs_onnxruntime"}


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def set_params(repo: Path, changes: dict) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stale_stages(repo: Path) -> set[str]:
    """The stages `dvc repro --dry` lists: those whose own deps or params changed.

    A stage after them is not listed: it runs only if their outputs change, which only a real run shows.
    """
    out = run(["dvc", "repro", "--dry"], repo).stdout
    return set(re.findall(r"Running stage '([^']+)'", out))


PACKAGE = REPO / "src" / "yolov3_tvm_opt"


def stage_code(script: Path) -> set[str]:
    """What a stage's code deps must be: every package file its imports reach, as ``${pkg}/...``.

    A directory stands for its files when the stage reaches all of them, and only then: listing a
    whole directory would rerun the stage for a file it never imports.
    """
    files = {f for f in reached([script]) if f.is_relative_to(PACKAGE)}
    code = set()
    for file in files:
        relative = file.relative_to(PACKAGE)
        whole = len(relative.parts) > 1 and set((PACKAGE / relative.parts[0]).glob("*.py")) <= files
        code.add("${pkg}/" + (relative.parts[0] if whole else str(relative)))
    return code


def test_every_stage_depends_on_exactly_the_package_files_it_runs():
    """An edit to any module a stage reaches must make it stale, and nothing else should.

    A compile stage that missed cpu_schedule.py kept serving artifacts built by the old
    schedules; a model stage that listed the compiler rebuilt the ONNX for every schedule edit;
    a tune stage that listed all of runtime/ re-ran MetaSchedule for a comment in the profiler.
    The import closure is the only list that cannot drift from the code.
    """
    assert imports.PACKAGE == PACKAGE, "the package imported is not this checkout's"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert REPO / stages["vars"][0]["pkg"] == PACKAGE
    for name, stage in stages["stages"].items():
        script = REPO / stage["cmd"].split()[1]
        code = {d for d in stage["deps"] if d.startswith("${pkg}")}
        assert code == stage_code(script), f"stage {name}: missing {sorted(stage_code(script) - code)}, extra {sorted(code - stage_code(script))}"
        assert "stages/_stage.py" in stage["deps"] and str(script.relative_to(REPO)) in stage["deps"]


def test_the_model_stage_and_the_cli_load_no_tvm():
    probe = ("import sys, yolov3_tvm_opt.cli, yolov3_tvm_opt.models.sources, yolov3_tvm_opt.models.onnx_export; "
             "print('tvm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_runtime_runs_without_the_compiler():
    probe = "import sys, yolov3_tvm_opt.runtime; print(sorted(m for m in sys.modules if m.startswith(('tvm.relax', 'yolov3_tvm_opt.compiler'))))"
    env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1"}
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout.strip() == "[]"


def test_a_stage_run_by_the_wrong_interpreter_says_what_to_do(tmp_path):
    """`dvc repro` from outside the venv runs stages with a python that lacks our package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-S", "stages/model.py", "--out", str(tmp_path / "m.onnx")],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot import yolov3_tvm_opt" in proc.stderr and "make bench" in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_no_layer_imports_a_layer_above_it():
    """core < models, runtime < deploy, compiler < evaluate < cli; nothing imports cli.

    runtime never reaches the compiler; deploy (what a bundle ships, and the code that measures)
    stands on core and runtime, plus the numpy-only ``models/darknet_cfg.py`` that regenerates
    synthetic weights, and the compiler never reaches deploy, so no building stage reruns when a
    measurement changes.
    """
    allowed = {
        "__init__.py": set(),
        "core": {"core"},
        "models": {"core", "models"},
        "runtime": {"core", "runtime"},
        "deploy": {"core", "runtime", "deploy", "models/__init__.py", "models/darknet_cfg.py"},
        "compiler": {"core", "models", "runtime", "compiler"},
        "evaluate": {"core", "models", "runtime", "deploy", "compiler", "evaluate"},
        "cli.py": {"core", "models", "runtime", "deploy", "compiler", "evaluate"},
    }
    assert set(allowed) == {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    for layer, may_use in allowed.items():
        for path in [PACKAGE / layer] if layer.endswith(".py") else sorted((PACKAGE / layer).glob("*.py")):
            used = set()
            for file in direct_imports(path):
                relative = file.relative_to(PACKAGE)
                used.add(str(relative) if relative.parts[0] not in may_use else relative.parts[0])
            used -= {"__init__.py"}  # every import of ours runs the package's own __init__
            assert used <= may_use, f"{path.relative_to(REPO)} imports {sorted(used - may_use)}"


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> Path:
    """A copy of the repository's files as git has them (no photos, models or artifacts): `dvc repro` makes the rest."""
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith("tests/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    assert not (repo / "pictures/photos").exists()
    set_params(repo, SMALL)
    run(["git", "init", "-q"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "init", "--allow-empty"], repo, check=False)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "small config"], repo)
    run(["dvc", "repro"], repo)
    return repo


@pytest.mark.slow
def test_repro_writes_metrics_and_leaves_nothing_stale(pipeline_repo):
    metrics = json.loads((pipeline_repo / "metrics/latency.json").read_text())
    assert LATENCY_KEYS <= set(metrics)
    assert metrics["speedup"] == pytest.approx(metrics["baseline_ms"] / metrics["fastscatter_ms"], rel=1e-3)
    rounds = json.loads((pipeline_repo / "metrics/plots/latency_per_iteration.json").read_text())
    ratios = per_round_ratios([r["baseline_ms"] for r in rounds], [r["fastscatter_ms"] for r in rounds])
    seed = yaml.safe_load((pipeline_repo / "params.yaml").read_text())["bench"]["seed"]
    assert metrics["speedup_median"] == pytest.approx(float(np.median(ratios)), abs=1e-4)  # of the plotted rounds
    assert (metrics["speedup_ci_low"], metrics["speedup_ci_high"]) == pytest.approx(bootstrap_median_ci(ratios, seed), abs=1e-4)
    assert metrics["baseline_iters"] == metrics["fastscatter_iters"] == metrics["onnxruntime_iters"] == SMALL["bench"]["iters"]
    assert metrics["onnxruntime_noscatter_iters"] == SMALL["bench"]["iters"]  # the export stage's ONNX, timed in the same rounds
    assert metrics["max_abs_diff_onnxruntime_noscatter_vs_onnxruntime"] == 0.0  # the rewrite is exact
    if importlib.util.find_spec("openvino"):
        assert OPENVINO_KEYS <= set(metrics) and metrics["max_abs_diff_openvino_f32_vs_onnxruntime"] < 1e-2
    assert metrics["max_abs_diff_vs_onnxruntime"] < 1e-2
    assert not any("int8" in key for key in metrics)  # the peers' int8 are quantized and timed at int8 builds only
    profile = json.loads((pipeline_repo / "metrics/profile.json").read_text())
    assert set(profile) == {"baseline", "fastscatter"} and profile["baseline"][0]["rank"] == 1
    assert (pipeline_repo / "metrics/plots/latency.png").stat().st_size > 0
    assert (pipeline_repo / "pictures/vis/motorcycle_left_vis.jpg").is_file()
    import onnx

    noscatter = onnx.load(pipeline_repo / "models/model.noscatter.onnx")
    assert noscatter.graph.node and "ScatterND" not in {n.op_type for n in noscatter.graph.node}
    dets = json.loads((pipeline_repo / "pictures/vis/detections.json").read_text())
    assert set(dets) >= {"motorcycle_left.png", "grace_hopper.jpg"}
    assert stale_stages(pipeline_repo) == set()
    again = run(["dvc", "repro"], pipeline_repo).stdout
    assert "didn't change, skipping" in again and "Running stage" not in again


@pytest.mark.slow
def test_input_scale_makes_only_bench_visualize_and_the_calibrations_stale(pipeline_repo):
    """calibrate and quantize_peers preprocess as bench does; at fp32 they rewrite the same files, so no compile follows."""
    original = (pipeline_repo / "params.yaml").read_text()
    try:
        set_params(pipeline_repo, {"bench": {"input_scale": 0.5}})
        assert stale_stages(pipeline_repo) == {"calibrate", "quantize_peers", "bench", "visualize"}
    finally:
        (pipeline_repo / "params.yaml").write_text(original)
    assert stale_stages(pipeline_repo) == set()


@pytest.mark.slow
def test_target_change_recompiles_but_keeps_the_model(pipeline_repo):
    """What a target edit makes stale, never the model; the artifacts it rebuilds then rerun bench and
    visualize, as the int8 test's real rerun (a target.precision edit) shows."""
    original = (pipeline_repo / "params.yaml").read_text()
    try:
        set_params(pipeline_repo, {"target": {"mcpu": "x86-64-v3"}})
        assert stale_stages(pipeline_repo) == {"smoke", "tune", "compile_baseline", "compile_fastscatter"}
    finally:
        (pipeline_repo / "params.yaml").write_text(original)
    assert stale_stages(pipeline_repo) == set()


def _native_has_vnni() -> bool:
    from yolov3_tvm_opt.compiler.target import make_target
    from yolov3_tvm_opt.core.options import TargetOptions
    from yolov3_tvm_opt.core.tvm_loader import load_tvm

    return bool(load_tvm().target.codegen.target_has_features("avx512vnni", make_target(TargetOptions())))


@pytest.mark.slow
@pytest.mark.skipif(not _native_has_vnni(), reason="the pipeline builds for this CPU (mcpu native), which lacks AVX512-VNNI")
def test_int8_reruns_on_a_new_calibration_photo_and_nothing_on_the_same_set(pipeline_repo):
    original = (pipeline_repo / "params.yaml").read_text()
    calib = pipeline_repo / "calib_photos"
    calib.mkdir()
    for name in ("motorcycle_left.png", "chelsea.png"):
        shutil.copy(pipeline_repo / "pictures/photos" / name, calib / name)
    try:
        set_params(pipeline_repo, {"target": {"precision": "int8"}, "calibrate": {"images": "calib_photos"}})
        ran = set(re.findall(r"Running stage '([^']+)'", run(["dvc", "repro"], pipeline_repo).stdout))
        assert {"calibrate", "quantize_peers", "tune", "compile_baseline", "compile_fastscatter", "bench", "visualize"} <= ran and "model" not in ran
        meta = json.loads((pipeline_repo / "artifacts/fastscatter/meta.json").read_text())
        assert meta["precision"] == "int8" and meta["int8"]["int8_convs"] > 0
        metrics = json.loads((pipeline_repo / "metrics/latency.json").read_text())  # the peers' int8 in the same rounds
        assert metrics["onnxruntime_int8_iters"] == SMALL["bench"]["iters"] and "fastscatter_vs_onnxruntime_int8_median" in metrics
        if importlib.util.find_spec("nncf"):
            assert metrics["openvino_int8_iters"] == SMALL["bench"]["iters"]
        assert stale_stages(pipeline_repo) == set()
        shutil.copy(pipeline_repo / "pictures/photos/grace_hopper.jpg", calib / "grace_hopper.jpg")
        before = (pipeline_repo / "models/calibration.json").read_bytes()
        run(["dvc", "repro", "-s", "calibrate"], pipeline_repo)
        assert (pipeline_repo / "models/calibration.json").read_bytes() != before  # the new photo moved a range
        # so everything that reads the ranges or the photos is stale (tune too: its tasks are the int8 graph's);
        # new int8 artifacts rerun bench and visualize, as the first repro above did for real
        assert stale_stages(pipeline_repo) == {"quantize_peers", "tune", "compile_baseline", "compile_fastscatter"}
    finally:
        (pipeline_repo / "params.yaml").write_text(original)
        shutil.rmtree(calib)
    run(["dvc", "repro"], pipeline_repo)  # back to fp32: calibrate rewrites its no-ranges file, the rest hits the run-cache
    assert stale_stages(pipeline_repo) == set()


@pytest.mark.slow
def test_metrics_diff_between_commits_shows_speedup(pipeline_repo):
    run(["git", "add", "-A"], pipeline_repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], pipeline_repo)
    diff = run(["dvc", "metrics", "diff", "HEAD~1", "--all"], pipeline_repo).stdout
    assert "speedup" in diff and "metrics/latency.json" in diff


@pytest.mark.slow
def test_interrupted_stage_reruns_cleanly(pipeline_repo):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", "compile_fastscatter"], cwd=pipeline_repo, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    seen = []
    for line in proc.stdout:  # compile_onnx says so inside its Ctrl-C guard, before the build's seconds
        seen.append(line.decode())
        if line.startswith(b"[compile] building fastscatter"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest = "".join(seen) + proc.stdout.read().decode()
    assert proc.wait(timeout=120) != 0, f"the interrupted repro should fail:\n{rest}"
    assert "Traceback" not in rest and "interrupted: stopping after the current TVM step" in rest, rest
    leftovers = [p.name for p in (pipeline_repo / "artifacts").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "an interrupted compile must not leave temporary directories"
    run(["dvc", "repro"], pipeline_repo)
    assert stale_stages(pipeline_repo) == set()
    meta = json.loads((pipeline_repo / "artifacts/fastscatter/meta.json").read_text())
    assert meta["variant"] == "fastscatter"
    assert meta["scatter_nd"] == {"dense_box_rewritten": 4, "parallel_kernel": 0}
    assert "is not" not in run(["dvc", "status", "--json"], pipeline_repo).stdout


@pytest.mark.slow
def test_model_size_change_builds_that_size_not_a_cached_model(pipeline_repo):
    """DVC's run-cache ignores section-valued params; ours are listed key by key so this holds."""
    from yolov3_tvm_opt.models.onnx_info import read_input_spec

    original = (pipeline_repo / "params.yaml").read_text()
    try:
        set_params(pipeline_repo, {"model": {"size": 64}})
        out = run(["dvc", "repro", "-s", "model"], pipeline_repo).stdout
        assert "Running stage 'model'" in out
        assert read_input_spec(pipeline_repo / "models/model.onnx").shape == (1, 3, 64, 64)
    finally:
        (pipeline_repo / "params.yaml").write_text(original)
    run(["dvc", "repro", "-s", "model"], pipeline_repo)  # back to the committed size: a correct cache hit
    assert read_input_spec(pipeline_repo / "models/model.onnx").shape == (1, 3, 96, 96)
    assert stale_stages(pipeline_repo) == set()


def _ran_after_editing(repo: Path, relative: str) -> set[str]:
    """Append a comment to one file, `dvc repro`, and restore it; the stages that actually ran."""
    path = repo / relative
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit that changes no behaviour\n")
        ran = set(re.findall(r"Running stage '([^']+)'", run(["dvc", "repro"], repo).stdout))
    finally:
        path.write_text(original)
    run(["dvc", "repro"], repo)  # back to the committed code: run-cache hits
    return ran


def _stale_after_editing(repo: Path, relative: str) -> set[str]:
    """Append a comment to one file and ask `dvc repro --dry` what would run (downstream included); restore it."""
    path = repo / relative
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit that changes no behaviour\n")
        return stale_stages(repo)
    finally:
        path.write_text(original)


@pytest.mark.slow
def test_an_edit_reruns_only_what_it_can_affect(pipeline_repo):
    """The rerun matrix: which stages run after an edit to one file.

    Code that measures (the profiler, the rounds, remote timing) sits where no building stage's
    deps reach, so editing it reruns bench alone, never model, tune or a compile; a schedule edit
    recompiles but never rebuilds the model; the export stage does not import darknet.py.
    """
    assert stale_stages(pipeline_repo) == set()
    # real reruns where the answer depends on what a stage writes: a comment in the schedules
    # rebuilds bit-identical artifacts, so bench stays cached; darknet.py writes the same ONNX
    matrix = {
        relative: _ran_after_editing(pipeline_repo, relative)
        for relative in ("src/yolov3_tvm_opt/compiler/cpu_schedule.py", "src/yolov3_tvm_opt/models/darknet.py")
    }
    # stages nothing runs after: what DVC would run is what runs, and costs no bench run
    matrix.update({
        relative: _stale_after_editing(pipeline_repo, relative)
        for relative in ("src/yolov3_tvm_opt/evaluate/report.py", "src/yolov3_tvm_opt/deploy/profiler.py",
                         "src/yolov3_tvm_opt/deploy/rounds.py", "src/yolov3_tvm_opt/deploy/stats.py",
                         "src/yolov3_tvm_opt/runtime/rpc.py", "stages/visualize.py")
    })
    print("\n".join(f"{edit}: {', '.join(sorted(ran)) or 'nothing'}" for edit, ran in matrix.items()))
    for measuring in ("evaluate/report.py", "deploy/profiler.py", "deploy/rounds.py", "deploy/stats.py", "runtime/rpc.py"):
        assert matrix[f"src/yolov3_tvm_opt/{measuring}"] == {"bench"}, measuring
    schedule = matrix["src/yolov3_tvm_opt/compiler/cpu_schedule.py"]
    assert {"smoke", "tune", "compile_baseline", "compile_fastscatter"} <= schedule and "model" not in schedule
    assert matrix["src/yolov3_tvm_opt/models/darknet.py"] == {"model"}  # same ONNX bytes: nothing after it
    assert matrix["stages/visualize.py"] == {"visualize"}
    assert stale_stages(pipeline_repo) == set()
