"""What ``bash run.sh`` does on the target: check each bundled artifact against the reference, then time it.

This runs where only Python, numpy and the bundle are, so it reads only numpy files and JSON
and reaches TVM through ``runtime`` (runtime-only VM). Each artifact is checked on the bundle's
input against ONNX Runtime's output computed on the build machine, box coordinates and scores
separately with the tolerance of its precision (``core.options.BUNDLE_TOLERANCE``); then it is
timed with the same ``measure`` as ``yolov3-tvm bench`` and profiled per op, and the seed's
comparison is printed and written as JSON.
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
from .bench import measure, profile_ops
from .detect import decode, scale_pixels

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
    box_tol, score_tol = BUNDLE_TOLERANCE.get(precision, BUNDLE_TOLERANCE["float16"])
    box = float(np.max(np.abs(got[:, :4] - reference[:, :4])))
    score = float(np.max(np.abs(got[:, 4:] - reference[:, 4:])))
    return {"max_abs_diff_boxes_px": box, "max_abs_diff_scores": score, "tolerance_boxes_px": box_tol,
            "tolerance_scores": score_tol, "ok": bool(box <= box_tol and score <= score_tol)}


def _profile_table(profile: list[Any]) -> list[str]:
    lines = [f"=== Per-op Profile (Top {len(profile)} ) ===", f"{'Rank':>4}  {'Op':<44}{'Time(us)':>12}{'Calls':>7}{'Share':>8}"]
    for rank, row in enumerate(profile, 1):
        lines.append(f"{rank:>4}  {row.name[:43]:<44}{row.time_us:>12.2f}{row.calls:>7.0f}{100 * row.share:>7.1f}%")
    return lines + ["=== End Profile ==="]


def check_artifact(root: Path, entry: dict[str, Any], data: np.ndarray, bundle: dict[str, Any]) -> dict[str, Any]:
    """Load, check and time one bundled artifact; print its part of the comparison."""
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
    precision = artifact.meta.get("precision", "float32")
    check = compare(output, rows, np.load(root / "reference_output_sample.npy").astype(np.float64), precision)
    given = bundle["input"]
    dets = decode(output, artifact.meta["class_names"], tuple(artifact.input_shape[2:]), tuple(given["image_hw"]),
                  letterbox=given["letterbox"])
    options = bundle["bench"]
    stats = measure(loaded.runner(data), options["iters"], options["warmup"], options["max_seconds"])
    profile = profile_ops(create_vm(artifact, profile=True), data, topk=options["profile_topk"]) if options["profile_topk"] else []
    print(f"\n## {name}: {artifact.variant}, {precision}, on {artifact.device} ({artifact.meta['target_kind']})")
    if profile:
        print("\n".join(_profile_table(profile)))
    verdict = "ok" if check["ok"] else "FAILED"
    print(f"outputs vs ONNX Runtime ({rows.size} sampled rows): max |diff| boxes {check['max_abs_diff_boxes_px']:.3g} px "
          f"(tolerance {check['tolerance_boxes_px']}), scores {check['max_abs_diff_scores']:.3g} "
          f"(tolerance {check['tolerance_scores']}): {verdict}")
    print(f"detections: {len(dets)}: " + ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:8]))
    print(f"latency over {stats.iters} iters: mean {stats.mean_ms:.4f} ms, p50 {stats.p50_ms:.4f}, p90 {stats.p90_ms:.4f}")
    print(f"avg latency (ms): {stats.mean_ms:.4f}", flush=True)
    return {"artifact": entry["dir"], "variant": artifact.variant, "precision": precision, "device": artifact.device,
            "check": check, "detections": len(dets), "latency": dataclasses.asdict(stats),
            "profile": [dataclasses.asdict(row) for row in profile]}


def run_check(root: Path, json_path: Path | None = None) -> bool:
    """Check and time every artifact of the bundle at ``root``; print the comparison; True when all pass."""
    bundle = json.loads((root / BUNDLE_FILE).read_text())
    pixels = np.load(root / bundle["input"]["pixels"])
    data = scale_pixels(pixels, bundle["input"]["scale"])
    results = [check_artifact(root, entry, data, bundle) for entry in bundle["artifacts"]]
    means = {r["artifact"].split("/")[-1]: r["latency"]["mean_ms"] for r in results}
    print("\n## summary")
    baseline = next((r for r in results if r["variant"] == VARIANTS[0]), None)
    for r in results:
        name = r["artifact"].split("/")[-1]
        line = f"{name:<24} {r['variant']:<12} mean {means[name]:9.4f} ms"
        if baseline is not None and r is not baseline:
            line += f"   speedup over {baseline['artifact'].split('/')[-1]}: {baseline['latency']['mean_ms'] / means[name]:.2f}x"
        print(line)
    ok = all(r["check"]["ok"] for r in results)
    summary = {"ok": ok, "input": bundle["input"], "results": results}
    if baseline is not None:
        summary["speedup_over_baseline"] = {
            r["artifact"].split("/")[-1]: baseline["latency"]["mean_ms"] / r["latency"]["mean_ms"] for r in results
        }
    write_json(json_path or root / "result.json", summary)
    print(f"wrote {json_path or root / 'result.json'}; outputs {'all within tolerance' if ok else 'OUT OF TOLERANCE'}")
    return ok
