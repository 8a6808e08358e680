"""Turn benchmark results into the files DVC reads: flat metrics, plot data, PNG charts, a table.

Metrics stay flat and numeric with stable keys, so ``dvc metrics diff`` between two commits shows
``speedup`` and friends with no glue. Charts are also drawn to PNG with matplotlib because
``dvc plots show`` writes HTML that loads its charting script from the web.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import atomic_file, write_json
from .bench import BenchRun
from .peers import REFERENCE
from ..deploy.stats import Ratio

LATENCY_FILE = "latency.json"
PROFILE_FILE = "profile.json"
LATENCY_PLOT_FILE = "plots/latency_per_iteration.json"
PROFILE_PLOT_FILE = "plots/profile_top_ops.json"


def latency_metrics(run: BenchRun, speedup: tuple[str, str] = ("baseline", "fastscatter")) -> dict[str, float]:
    """The flat metrics: every system's mean/p50/p90/rounds, and each ratio with its interval.

    ``speedup`` is ``speedup[0]``'s time over ``speedup[1]``'s; ``<tvm>_vs_<peer>`` is TVM's time
    over the peer's. A ratio's plain key keeps its old meaning (ratio of means); ``_median`` is
    the median of per-round ratios and ``_ci_low``/``_ci_high`` its 95 % interval.
    """
    metrics: dict[str, float] = {}
    for name, stats in run.stats.items():
        metrics[f"{name}_ms"] = round(stats.mean_ms, 4)
        metrics[f"{name}_p50_ms"] = round(stats.p50_ms, 4)
        metrics[f"{name}_p90_ms"] = round(stats.p90_ms, 4)
        metrics[f"{name}_iters"] = stats.iters
    if set(speedup) <= set(run.stats):
        metrics.update(_ratio_keys("speedup", run.ratio(*speedup)))
    for variant in run.tvm:
        for peer in run.peers:
            metrics.update(_ratio_keys(f"{variant}_vs_{peer}", run.ratio(variant, peer)))
    metrics.update(diff_metrics(run))
    metrics["threads"] = run.threads
    return metrics


def diff_metrics(run: BenchRun) -> dict[str, float]:
    """Each system's max |output - ONNX Runtime's|, absolute and relative to ONNX Runtime's largest |output|.

    The absolute number alone says little: on random pixels in [0, 255] a YOLO head's raw outputs
    reach about 1e18, where a difference of 1e11 is float32 rounding. ``max_abs_diff_vs_onnxruntime``
    (and its relative twin) is the worst TVM build, the key older metrics files have. Against an
    all-zero reference the relative difference is 0 where a system agrees and 1 where it does not.
    """
    scale = max(float(np.max(np.abs(np.asarray(out, np.float64)))) for out in run.outputs[REFERENCE])
    systems = [name for name in run.stats if name != REFERENCE]
    absolute = {name: run.max_abs_diff[name] for name in systems}
    relative = {name: diff / scale if scale > 0 else float(diff > 0) for name, diff in absolute.items()}
    metrics = {
        "max_abs_diff_vs_onnxruntime": max(absolute[name] for name in run.tvm),
        "max_rel_diff_vs_onnxruntime": max(relative[name] for name in run.tvm),
    }
    for name in systems:
        metrics[f"max_abs_diff_{name}_vs_onnxruntime"] = absolute[name]
        metrics[f"max_rel_diff_{name}_vs_onnxruntime"] = relative[name]
    return metrics


def _ratio_keys(key: str, ratio: Ratio) -> dict[str, float]:
    return {
        key: round(ratio.of_means, 4),
        f"{key}_median": round(ratio.median, 4),
        f"{key}_ci_low": round(ratio.ci_low, 4),
        f"{key}_ci_high": round(ratio.ci_high, 4),
    }


def profile_tables(run: BenchRun) -> dict[str, list[dict[str, Any]]]:
    """Per-op Top-K for every TVM variant, rank first."""
    return {
        variant: [
            {"rank": rank, "op": row.name, "time_us": round(row.time_us, 2), "calls": row.calls, "share": round(row.share, 4)}
            for rank, row in enumerate(rows, 1)
        ]
        for variant, rows in run.profile.items()
    }


def write_bench_report(run: BenchRun, metrics_dir: Path) -> dict[str, float]:
    """Write latency.json, profile.json and the two plot data files under ``metrics_dir``."""
    metrics_dir = Path(metrics_dir)
    metrics = latency_metrics(run)
    write_json(metrics_dir / LATENCY_FILE, metrics)
    write_json(metrics_dir / PROFILE_FILE, profile_tables(run))
    rows = [
        {"iteration": i, **{f"{name}_ms": stats.samples_ms[i] for name, stats in run.stats.items()}}
        for i in range(run.rounds)
    ]
    write_json(metrics_dir / LATENCY_PLOT_FILE, rows)
    ops = [
        {"variant": variant, "op": f"{variant}: {row['op']}", "time_us": row["time_us"]}
        for variant, table in profile_tables(run).items()
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
    ax.set_xlabel("round (every system once, shuffled)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"latency per round (speedup {metrics.get('speedup_median', metrics.get('speedup', float('nan'))):.2f}x)")
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
    """What ``make bench`` ends with: each system's latency, then each ratio with its 95 % interval.

    Reads only the metrics file, so it also prints older files (their ratios lack intervals).
    """
    systems = [key.removesuffix("_iters") for key in metrics if key.endswith("_iters")]
    lines = [f"{'system':<22}{'mean ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'rounds':>8}"]
    for name in systems:
        p50 = metrics.get(f"{name}_p50_ms", float("nan"))
        lines.append(
            f"{name:<22}{metrics[f'{name}_ms']:>10.3f}{p50:>10.3f}{metrics[f'{name}_p90_ms']:>10.3f}"
            f"{int(metrics[f'{name}_iters']):>8}"
        )
    lines.append("ratios (time / time; median of per-round ratios [95% CI]; ratio of means):")
    ratios = ["speedup"] if "speedup" in metrics else []
    ratios += [key for key in metrics if "_vs_" in key and not key.startswith(("max_abs_diff", "max_rel_diff"))
               and not key.endswith(("_median", "_ci_low", "_ci_high"))]
    for key in ratios:
        if f"{key}_median" in metrics:
            lines.append(
                f"{key} {metrics[f'{key}_median']:.2f}x [{metrics[f'{key}_ci_low']:.2f}, {metrics[f'{key}_ci_high']:.2f}]"
                f"  (means {metrics[key]:.2f}x)"
            )
        else:
            lines.append(f"{key} {metrics[key]:.2f}x  (ratio of means)")
    if "max_rel_diff_vs_onnxruntime" not in metrics:  # a file from before the per-system differences
        lines.append(f"max |TVM - ORT|: {metrics['max_abs_diff_vs_onnxruntime']:.3g}")
    for key in metrics:
        if key.startswith("max_abs_diff_") and key != "max_abs_diff_vs_onnxruntime":
            system = key.removeprefix("max_abs_diff_").removesuffix("_vs_onnxruntime")
            relative = metrics.get(f"max_rel_diff_{system}_vs_onnxruntime")
            share = f" ({relative:.2g} of max |ORT|)" if relative is not None else ""
            lines.append(f"max |{system} - ORT|: {metrics[key]:.3g}{share}")
    return "\n".join(lines)
