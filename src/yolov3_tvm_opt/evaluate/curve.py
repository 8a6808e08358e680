"""Latency against tuning budget: how many MetaSchedule trials a model needs to be worth it.

One long tuning run is cut at each budget (``tuning_db.truncated_database``), compiled with that
prefix of the database and benchmarked against ONNX Runtime in interleaved rounds, so every point
of the curve is a same-run ratio. How long the full tuning run took is in ``metrics/tune.json``
(the tune stage's report, kept out of the tuning directory that the compiles depend on), not here.

No DVC stage runs this: each point is a full compile, and the input is a long MetaSchedule run
that the pipeline does not make by default (``tune.enabled: false``). Run it by hand on a tuning
directory (``yolov3-tvm curve``); its outputs are not committed.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.compile import compile_onnx
from ..compiler.tuning_db import load_summary, truncated_database
from ..core.errors import UserError
from ..core.files import atomic_file, write_json
from ..core.options import CompileOptions
from .bench import bench_artifacts
from .peers import REFERENCE


def tuning_curve(
    onnx_path: Path,
    tuning_dir: Path,
    options: CompileOptions,
    points: list[int],
    data: np.ndarray,
    iters: int = 10,
    warmup: int = 2,
    max_seconds: float = 30.0,
) -> list[dict[str, Any]]:
    """Compile and bench at each trial budget in ``points``; one row per budget."""
    if not load_summary(tuning_dir).get("trials"):  # checked before the first compile
        raise UserError(
            f"{tuning_dir} holds no tuning run (tuning was disabled or had 0 trials), so there is no curve to cut; "
            "tune first: tune.enabled: true and dvc repro tune, or yolov3-tvm compile --tune"
        )
    rows = []
    for budget in points:
        with tempfile.TemporaryDirectory(prefix="yolov3-tvm-curve-") as tmp:
            database = truncated_database(tuning_dir, budget, Path(tmp) / "db") if budget else None
            trials = load_summary(database)["trials"] if database else 0  # a budget past the run's end: all of it
            built = compile_onnx(
                Path(onnx_path), Path(tmp) / "artifact", replace(options, tuning_dir=str(database) if database else None)
            )
            run = bench_artifacts({"tvm": Path(tmp) / "artifact"}, data, iters=iters, warmup=warmup, max_seconds=max_seconds)
        tvm, ort = run.stats["tvm"], run.stats[REFERENCE]
        ratio = run.ratio("tvm", REFERENCE)
        rows.append(
            {
                "trials": trials,
                "tuned_functions": built.meta["tuned_functions"],
                "tvm_ms": round(tvm.mean_ms, 4),
                "onnxruntime_ms": round(ort.mean_ms, 4),
                "tvm_vs_onnxruntime": round(ratio.of_means, 3),
                "tvm_vs_onnxruntime_median": round(ratio.median, 3),
                "max_abs_diff_vs_onnxruntime": run.max_abs_diff["tvm"],
                "iters": tvm.iters,
            }
        )
        print(f"[curve] {rows[-1]['trials']} trials: TVM {rows[-1]['tvm_ms']:.2f} ms, ORT {rows[-1]['onnxruntime_ms']:.2f} ms, "
              f"ratio {rows[-1]['tvm_vs_onnxruntime_median']:.2f}x", flush=True)
    return rows


def write_curve(rows: list[dict[str, Any]], json_path: Path, png_path: Path) -> None:
    """The curve as JSON (dvc plots reads it) and as a PNG (log-scale latency vs trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(json_path, rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    trials = [row["trials"] for row in rows]
    ax.plot(trials, [row["tvm_ms"] for row in rows], marker="o", label="TVM (fastscatter)")
    ax.plot(trials, [row["onnxruntime_ms"] for row in rows], marker="s", label="ONNX Runtime")
    ax.set_xscale("symlog", linthresh=64)
    ax.set_yscale("log")
    ax.set_xlabel("MetaSchedule trials")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency vs tuning budget (same run)")
    ax.legend()
    with atomic_file(png_path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
