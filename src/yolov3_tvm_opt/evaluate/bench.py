"""Latency statistics, the per-op profile, and the ONNX Runtime reference run beside every bench.

A speed number without a correctness number is not a result, so each benchmark also runs ONNX
Runtime on the same ONNX file, with the same input and the same thread count, in the same
process, and reports both latencies and the largest absolute difference of the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.host import host_cores
from ..runtime import LoadedModel, create_vm, load_artifact
from ..runtime.device import set_cpu_threads
from ..runtime.profiler import OpTime


@dataclass(frozen=True)
class LatencyStats:
    """Summary of measured iterations; ``samples_ms`` keeps every one for plots."""

    iters: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_fps: float
    samples_ms: list[float] = field(repr=False)

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        arr = np.asarray(samples_ms, dtype=np.float64)
        mean = float(arr.mean())
        return cls(
            iters=len(samples_ms),
            mean_ms=mean,
            p50_ms=float(np.percentile(arr, 50)),
            p90_ms=float(np.percentile(arr, 90)),
            p99_ms=float(np.percentile(arr, 99)),
            min_ms=float(arr.min()),
            max_ms=float(arr.max()),
            std_ms=float(arr.std()),
            throughput_fps=1000.0 / mean if mean > 0 else float("inf"),
            samples_ms=[round(s, 4) for s in samples_ms],
        )


def measure(run_once: Callable[[], Any], iters: int, warmup: int, max_seconds: float = 0.0) -> LatencyStats:
    """Time ``run_once`` ``iters`` times after ``warmup`` untimed calls.

    ``max_seconds`` (0 = no bound) stops the timed loop early so a slow untuned build cannot hold
    a pipeline for hours; at least one iteration is always measured and ``iters`` says how many.
    """
    if iters < 1 or warmup < 0:
        raise UserError(f"iters must be >= 1 and warmup >= 0 (got iters={iters}, warmup={warmup})")
    for _ in range(warmup):
        run_once()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds if max_seconds > 0 else float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        run_once()
        end = time.perf_counter()
        samples.append((end - start) * 1000.0)
        if end >= deadline:
            break
    return LatencyStats.from_samples(samples)


def onnxruntime_session(onnx_path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and full graph optimisation."""
    import onnxruntime as ort

    if not Path(onnx_path).is_file():
        raise UserError(f"the ONNX file {onnx_path} this artifact was compiled from is missing; the ONNX Runtime reference needs it: restore it or recompile")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def profile_ops(loaded: LoadedModel, data: np.ndarray, runs: int = 3, topk: int | None = 20) -> list[OpTime]:
    """Per-op Top-K over ``runs`` instrumented inferences, after one cold run that is discarded."""
    if loaded.profiler is None:
        raise ValueError("profile_ops needs a model created with create_vm(..., profile=True)")
    run_once = loaded.runner(data)
    run_once()
    loaded.profiler.reset()
    for _ in range(runs):
        run_once()
    loaded.profiler.runs = runs
    return loaded.profiler.table(topk)


@dataclass
class BenchResult:
    """Everything one ``bench`` measured, in the form written to JSON and printed."""

    artifact_dir: str
    variant: str
    device: str
    threads: int
    tvm: LatencyStats
    onnxruntime: LatencyStats | None
    max_abs_diff_vs_onnxruntime: float
    outputs: list[np.ndarray] = field(repr=False)
    profile: list[OpTime] = field(default_factory=list)
    profile_note: str = ""  # why there is no profile although one was asked for

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("outputs")
        return data


def run_bench(
    artifact_dir: Path,
    data: np.ndarray,
    onnx_path: Path | None = None,
    device: str | None = None,
    iters: int = 50,
    warmup: int = 5,
    max_seconds: float = 0.0,
    threads: int = 0,
    profile_topk: int = 0,
    profile_runs: int = 3,
    time_onnxruntime: bool = True,
) -> BenchResult:
    """Benchmark one artifact on ``data`` and, on the same input, ONNX Runtime on its ONNX file.

    ONNX Runtime always runs once for the correctness number; ``time_onnxruntime=False`` skips
    timing it again when the caller already has its latency from the same process. ``onnx_path``
    defaults to the path meta.json recorded at compile time.
    """
    artifact = load_artifact(artifact_dir)
    expected = tuple(artifact.meta["input_shape"])
    if tuple(data.shape) != expected:
        raise UserError(f"input shape {tuple(data.shape)} does not match the artifact's {expected}; recompile with that size")
    threads = threads or artifact.threads or host_cores()
    if (device or artifact.device) == "cpu":
        set_cpu_threads(threads)
    loaded = create_vm(artifact, device)
    outputs = loaded.run(data)
    stats = measure(loaded.runner(data), iters, warmup, max_seconds)
    session = onnxruntime_session(Path(onnx_path or artifact.meta["onnx_path"]), threads)
    feed = {artifact.meta["input_name"]: data}
    reference = session.run(None, feed)
    diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(outputs, reference))
    ort_stats = measure(lambda: session.run(None, feed), iters, warmup, max_seconds) if time_onnxruntime else None
    profile: list[OpTime] = []
    profile_note = ""
    if profile_topk > 0 and artifact.meta.get("cuda_graph"):
        profile_note = (
            "no per-op profile: this artifact replays its kernels as CUDA graphs, where the VM sees one call; "
            "compile with --no_cuda_graph (target.cuda_graph: false) to profile"
        )
    elif profile_topk > 0:
        profile = profile_ops(create_vm(artifact, device, profile=True), data, profile_runs, profile_topk)
    return BenchResult(
        artifact_dir=str(artifact_dir),
        variant=artifact.variant,
        device=loaded.artifact.device,
        threads=threads,
        tvm=stats,
        onnxruntime=ort_stats,
        max_abs_diff_vs_onnxruntime=diff,
        outputs=outputs,
        profile=profile,
        profile_note=profile_note,
    )


def format_report(result: BenchResult) -> str:
    """The human summary, ending with the seed's ``avg latency (ms): X`` line that users grep for."""
    lines = [result.profile_note] if result.profile_note else []
    if result.profile:
        lines.append(f"=== Per-op Profile (Top {len(result.profile)} ) ===")
        lines.append(f"{'Rank':>4}  {'Op':<44}{'Time(us)':>12}{'Calls':>7}{'Share':>8}")
        for rank, row in enumerate(result.profile, 1):
            lines.append(f"{rank:>4}  {row.name[:43]:<44}{row.time_us:>12.2f}{row.calls:>7.0f}{100 * row.share:>7.1f}%")
        lines.append("=== End Profile ===")
        lines.append("")
    s = result.tvm
    lines.append(
        f"TVM {result.variant} on {result.device} ({result.threads} threads), {s.iters} iters: "
        f"mean {s.mean_ms:.4f} ms, p50 {s.p50_ms:.4f}, p90 {s.p90_ms:.4f}, p99 {s.p99_ms:.4f}, "
        f"min {s.min_ms:.4f}, std {s.std_ms:.4f}, {s.throughput_fps:.2f} img/s"
    )
    if result.onnxruntime is not None:
        o = result.onnxruntime
        lines.append(
            f"ONNX Runtime (cpu, {result.threads} threads), {o.iters} iters: mean {o.mean_ms:.4f} ms, "
            f"p90 {o.p90_ms:.4f}; TVM/ORT {s.mean_ms / o.mean_ms:.2f}x"
        )
    lines.append(f"max |TVM - ORT| on this input: {result.max_abs_diff_vs_onnxruntime:.3g}")
    lines.append(f"avg latency (ms): {s.mean_ms:.4f}")
    return "\n".join(lines)


def bench_variants(artifact_dirs: dict[str, Path], data: np.ndarray, **options: Any) -> dict[str, BenchResult]:
    """Benchmark several artifacts of one model on the same input, one after another.

    ONNX Runtime is timed once, with the first variant, so the reference latency costs its time
    once; every variant still gets its own max |TVM - ORT|.
    """
    results = {}
    for position, (variant, directory) in enumerate(artifact_dirs.items()):
        print(f">> bench {variant}: {directory}", flush=True)
        results[variant] = run_bench(Path(directory), data, time_onnxruntime=position == 0, **options)
        print(format_report(results[variant]), flush=True)
    return results
