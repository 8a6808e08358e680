"""Turn benchmark results into the files DVC reads: flat metrics, plot data, PNG charts, a table.

Metrics stay flat and numeric with stable keys, so ``dvc metrics diff`` between two commits shows
``speedup`` and friends with no glue. Charts are also drawn to PNG with matplotlib because
``dvc plots show`` writes HTML that loads its charting script from the web.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import atomic_file, write_json
from .bench import BenchResult

LATENCY_FILE = "latency.json"
PROFILE_FILE = "profile.json"
LATENCY_PLOT_FILE = "plots/latency_per_iteration.json"
PROFILE_PLOT_FILE = "plots/profile_top_ops.json"


def latency_metrics(results: dict[str, BenchResult]) -> dict[str, float]:
    """The flat metrics: per-variant mean/p90, ONNX Runtime, and the ratios users compare."""
    metrics: dict[str, float] = {}
    for variant, result in results.items():
        metrics[f"{variant}_ms"] = round(result.tvm.mean_ms, 4)
        metrics[f"{variant}_p50_ms"] = round(result.tvm.p50_ms, 4)
        metrics[f"{variant}_p90_ms"] = round(result.tvm.p90_ms, 4)
        metrics[f"{variant}_iters"] = result.tvm.iters
        if result.onnxruntime is not None:
            metrics["onnxruntime_ms"] = round(result.onnxruntime.mean_ms, 4)
            metrics["onnxruntime_p90_ms"] = round(result.onnxruntime.p90_ms, 4)
            metrics["onnxruntime_iters"] = result.onnxruntime.iters
    if "baseline_ms" in metrics and "fastscatter_ms" in metrics:
        metrics["speedup"] = round(metrics["baseline_ms"] / metrics["fastscatter_ms"], 4)
    if "onnxruntime_ms" in metrics:
        for variant in results:
            metrics[f"{variant}_vs_onnxruntime"] = round(metrics[f"{variant}_ms"] / metrics["onnxruntime_ms"], 4)
    metrics["max_abs_diff_vs_onnxruntime"] = max(r.max_abs_diff_vs_onnxruntime for r in results.values())
    metrics["threads"] = next(iter(results.values())).threads
    return metrics


def profile_tables(results: dict[str, BenchResult]) -> dict[str, list[dict[str, Any]]]:
    """Per-op Top-K for every variant, rank first."""
    return {
        variant: [
            {"rank": rank, "op": row.name, "time_us": round(row.time_us, 2), "calls": row.calls, "share": round(row.share, 4)}
            for rank, row in enumerate(result.profile, 1)
        ]
        for variant, result in results.items()
    }


def write_bench_report(results: dict[str, BenchResult], metrics_dir: Path) -> dict[str, float]:
    """Write latency.json, profile.json and the two plot data files under ``metrics_dir``."""
    metrics_dir = Path(metrics_dir)
    metrics = latency_metrics(results)
    write_json(metrics_dir / LATENCY_FILE, metrics)
    write_json(metrics_dir / PROFILE_FILE, profile_tables(results))
    samples = {variant: r.tvm.samples_ms for variant, r in results.items()}
    longest = max(len(s) for s in samples.values())
    rows = [
        {"iteration": i, **{f"{v}_ms": s[i] for v, s in samples.items() if i < len(s)}} for i in range(longest)
    ]
    write_json(metrics_dir / LATENCY_PLOT_FILE, rows)
    ops = [
        {"variant": variant, "op": f"{variant}: {row['op']}", "time_us": row["time_us"]}
        for variant, table in profile_tables(results).items()
        for row in table
    ]
    write_json(metrics_dir / PROFILE_PLOT_FILE, ops)
    return metrics


def plot_pngs(metrics_dir: Path, out_dir: Path, topk: int = 12) -> list[Path]:
    """Draw latency-per-iteration and the per-op breakdown as PNG files; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_dir, out_dir = Path(metrics_dir), Path(out_dir)
    rows = json.loads((metrics_dir / LATENCY_PLOT_FILE).read_text())
    metrics = json.loads((metrics_dir / LATENCY_FILE).read_text())
    fig, ax = plt.subplots(figsize=(8, 4))
    for key in sorted({k for row in rows for k in row if k.endswith("_ms")}):
        points = [(row["iteration"], row[key]) for row in rows if key in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=key.removesuffix("_ms"))
    if "onnxruntime_ms" in metrics:
        ax.axhline(metrics["onnxruntime_ms"], color="grey", linestyle="--", label="onnxruntime (mean)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"latency per iteration (speedup {metrics.get('speedup', float('nan')):.2f}x)")
    ax.legend()
    latency_png = _save(fig, out_dir / "latency.png")

    tables = json.loads((metrics_dir / PROFILE_FILE).read_text())
    fig, axes = plt.subplots(1, len(tables), figsize=(7 * len(tables), 5), squeeze=False)
    for ax, (variant, table) in zip(axes[0], tables.items()):
        top = table[:topk][::-1]
        ax.barh([row["op"][:40] for row in top], [row["time_us"] for row in top])
        ax.set_title(f"{variant}: top {len(top)} ops")
        ax.set_xlabel("time per inference (us)")
    fig.tight_layout()
    profile_png = _save(fig, out_dir / "profile.png")
    return [latency_png, profile_png]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def summary_table(metrics: dict[str, float]) -> str:
    """The short table ``make bench`` ends with: variant, mean, p90, iterations, vs ORT, speedup."""
    lines = [f"{'variant':<13}{'mean ms':>11}{'p90 ms':>11}{'iters':>7}{'vs ORT':>9}"]
    for variant in ("baseline", "fastscatter", "onnxruntime"):
        if f"{variant}_ms" not in metrics:
            continue
        ratio = metrics.get(f"{variant}_vs_onnxruntime", 1.0 if variant == "onnxruntime" else float("nan"))
        lines.append(
            f"{variant:<13}{metrics[f'{variant}_ms']:>11.3f}{metrics[f'{variant}_p90_ms']:>11.3f}"
            f"{int(metrics[f'{variant}_iters']):>7}{ratio:>8.2f}x"
        )
    if "speedup" in metrics:
        lines.append(f"speedup (baseline / fastscatter): {metrics['speedup']:.2f}x")
    lines.append(f"max |TVM - ORT|: {metrics['max_abs_diff_vs_onnxruntime']:.3g}")
    return "\n".join(lines)
