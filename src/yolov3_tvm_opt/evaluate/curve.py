"""Latency against tuning budget: how many MetaSchedule trials a model needs to be worth it.

One long tuning run is cut at each budget (``tune.truncated_database``), compiled with that
prefix of the database and benchmarked against ONNX Runtime in the same process, so every point
of the curve is a same-run ratio.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.compile import compile_onnx
from ..compiler.tuning_db import load_summary, truncated_database
from ..core.files import atomic_file, write_json
from ..core.options import CompileOptions
from .bench import run_bench


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
    summary = load_summary(tuning_dir)
    rows = []
    for trials in points:
        with tempfile.TemporaryDirectory(prefix="yolov3-tvm-curve-") as tmp:
            database = truncated_database(tuning_dir, trials, Path(tmp) / "db") if trials else None
            meta = compile_onnx(
                Path(onnx_path), Path(tmp) / "artifact", replace(options, tuning_dir=str(database) if database else None)
            )
            result = run_bench(Path(tmp) / "artifact", data, iters=iters, warmup=warmup, max_seconds=max_seconds)
        assert result.onnxruntime is not None
        rows.append(
            {
                "trials": trials,
                "tuned_functions": meta["tuned_functions"],
                "tvm_ms": round(result.tvm.mean_ms, 4),
                "onnxruntime_ms": round(result.onnxruntime.mean_ms, 4),
                "tvm_vs_onnxruntime": round(result.tvm.mean_ms / result.onnxruntime.mean_ms, 3),
                "max_abs_diff_vs_onnxruntime": result.max_abs_diff_vs_onnxruntime,
                "iters": result.tvm.iters,
            }
        )
        print(f"[curve] {trials} trials: TVM {rows[-1]['tvm_ms']:.2f} ms, ORT {rows[-1]['onnxruntime_ms']:.2f} ms, "
              f"ratio {rows[-1]['tvm_vs_onnxruntime']:.2f}x", flush=True)
    for row in rows:
        row["tune_seconds_full_run"] = summary.get("tune_seconds")
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
