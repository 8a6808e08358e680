"""What ``bash run.sh`` does on the target: check each bundled artifact against the reference, then time it.

This runs where only Python, numpy and the bundle are, so it reads only numpy files and JSON
and reaches TVM through ``runtime`` (runtime-only VM). Each artifact is checked on the bundle's
input against ONNX Runtime's output computed on the build machine, box coordinates and scores
separately with the tolerance of its precision (``core.options.BUNDLE_TOLERANCE``); then all
artifacts are timed together in interleaved rounds, as ``yolov3-tvm bench`` times them (so drift
on the host hits every variant alike), profiled per op, and the seed's comparison is printed and
written as JSON, each speedup with its 95 % interval.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import write_json
from ..core.host import host_cores
from ..core.options import BUNDLE_TOLERANCE, VARIANTS
from ..runtime import create_vm, load_artifact
from ..runtime.device import set_cpu_threads
from .detect import decode, scale_pixels
from .profiler import format_profile, profile_ops
from .rounds import time_rounds
from .stats import compare as compare_rounds

BUNDLE_FILE = "bundle.json"
REFERENCE_DETECTIONS = "reference_detections.json"
SAMPLE_ROWS = 2048  # evenly spaced output rows kept as the reference, plus the most confident ones
TOP_ROWS = 64


def reference_sample_rows(output: np.ndarray) -> np.ndarray:
    """The output rows a bundle keeps as its reference: evenly spaced ones and the most confident ones.

    All of YOLOv3 640's output is 8.6 MB, too much for the bundle's size budget; this sample
    covers every head and grid position range, and the rows detections come from.
    """
    count = output.shape[1]
    spaced = np.linspace(0, count - 1, min(SAMPLE_ROWS, count)).astype(np.int64)
    confident = np.argsort(output[0, :, 4], kind="stable")[-TOP_ROWS:]
    return np.unique(np.concatenate([spaced, confident]))


def compare(output: np.ndarray, rows: np.ndarray, reference: np.ndarray, precision: str) -> dict[str, Any]:
    """max |diff| on the sampled rows, boxes (cx, cy, w, h) and scores apart, and whether both are in tolerance."""
    got = output[0, rows].astype(np.float64)
    box_tol, score_tol = BUNDLE_TOLERANCE[precision]
    box = float(np.max(np.abs(got[:, :4] - reference[:, :4])))
    score = float(np.max(np.abs(got[:, 4:] - reference[:, 4:])))
    return {"max_abs_diff_boxes_px": box, "max_abs_diff_scores": score, "tolerance_boxes_px": box_tol,
            "tolerance_scores": score_tol, "ok": bool(box <= box_tol and score <= score_tol)}


def check_artifact(root: Path, entry: dict[str, Any], data: np.ndarray, bundle: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Load and check one bundled artifact against the reference; print the check. Returns (result, its runner)."""
    artifact = load_artifact(root / entry["dir"])
    if artifact.device == "cpu":
        set_cpu_threads(artifact.threads or host_cores())
    loaded = create_vm(artifact)
    data = data.astype(artifact.meta["input_dtype"], copy=False)  # an fp16 build takes fp16
    output = loaded.run(data)[0]
    name = entry["dir"].split("/")[-1]
    (root / "outputs").mkdir(exist_ok=True)
    np.save(root / "outputs" / f"{name}.npy", output)  # the whole output, to compare with any other run
    rows = np.load(root / "reference_rows.npy")
    precision = artifact.meta.get("precision", "fp32")
    check = compare(output, rows, np.load(root / "reference_output_sample.npy").astype(np.float64), precision)
    given = bundle["input"]
    dets = decode(output, artifact.meta["class_names"], tuple(artifact.input_shape[2:]), tuple(given["image_hw"]),
                  letterbox=given["letterbox"])
    print(f"\n## {name}: {artifact.variant}, {precision}, on {artifact.device} ({artifact.meta['target_kind']})")
    verdict = "ok" if check["ok"] else "FAILED"
    print(f"outputs vs ONNX Runtime ({rows.size} sampled rows): max |diff| boxes {check['max_abs_diff_boxes_px']:.3g} px "
          f"(tolerance {check['tolerance_boxes_px']}), scores {check['max_abs_diff_scores']:.3g} "
          f"(tolerance {check['tolerance_scores']}): {verdict}")
    print(f"detections: {len(dets)}: " + ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:8]), flush=True)
    result = {"artifact": entry["dir"], "variant": artifact.variant, "precision": precision, "device": artifact.device,
              "check": check, "detections": len(dets)}
    return result, (artifact, loaded.runner(data), data)


def _profile(artifact: Any, data: np.ndarray, topk: int) -> tuple[list[Any], str]:
    """The per-op Top-K, or why there is none (a CUDA-graph build shows the VM one call)."""
    if not topk:
        return [], ""
    if artifact.meta.get("cuda_graph"):
        return [], "no per-op profile: this build replays CUDA graphs; bundle a --no_cuda_graph build to profile it"
    return profile_ops(artifact, data, topk=topk), ""


def run_check(root: Path, json_path: Path | None = None) -> bool:
    """Check, time and profile every artifact of the bundle at ``root``; print the comparison; True when all pass."""
    bundle = json.loads((root / BUNDLE_FILE).read_text())
    pixels = np.load(root / bundle["input"]["pixels"])
    data = scale_pixels(pixels, bundle["input"]["scale"])
    checked = {entry["dir"].split("/")[-1]: check_artifact(root, entry, data, bundle) for entry in bundle["artifacts"]}
    options = bundle["bench"]
    stats = time_rounds({name: run for name, (_, (_, run, _)) in checked.items()},
                        options["iters"], options["warmup"], options["max_seconds"])
    results = []
    for name, (result, (artifact, _, data_in)) in checked.items():
        profile, note = _profile(artifact, data_in, options["profile_topk"])
        s = stats[name]
        print(f"\n## {name}")
        if note or profile:
            print(note or format_profile(profile))
        print(f"latency over {s.iters} rounds: mean {s.mean_ms:.4f} ms, p50 {s.p50_ms:.4f}, p90 {s.p90_ms:.4f}")
        print(f"avg latency (ms): {s.mean_ms:.4f}", flush=True)
        results.append({**result, "latency": dataclasses.asdict(s), "profile": [dataclasses.asdict(r) for r in profile],
                        "profile_note": note})
    print(f"\n## summary ({next(iter(stats.values())).iters} interleaved rounds)")
    baseline = next((name for name, (r, _) in checked.items() if r["variant"] == VARIANTS[0]), None)
    speedups = {}
    for name in checked:
        line = f"{name:<24} {checked[name][0]['variant']:<12} mean {stats[name].mean_ms:9.4f} ms"
        if baseline is not None and name != baseline:
            ratio = compare_rounds(stats[baseline].samples_ms, stats[name].samples_ms, seed=0)
            speedups[name] = dataclasses.asdict(ratio)
            line += f"   speedup over {baseline}: {ratio.median:.2f}x [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}] (means {ratio.of_means:.2f}x)"
        print(line)
    ok = all(r["check"]["ok"] for r in results)
    summary = {"ok": ok, "input": bundle["input"], "results": results, "speedup_over_baseline": speedups}
    write_json(json_path or root / "result.json", summary)
    print(f"wrote {json_path or root / 'result.json'}; outputs {'all within tolerance' if ok else 'OUT OF TOLERANCE'}")
    return ok
