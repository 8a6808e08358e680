"""MetaSchedule tuning of a model's kernels, locally or on devices behind TVM's RPC tracker.

Users tune once and reuse the result many times, so tuning writes a directory (MetaSchedule's
JSON database plus ``summary.json``) that the pipeline caches and both compile variants apply.
The tasks are extracted from ``compile.optimize`` — the very functions the compile step builds —
so every record matches a function there. Measuring can leave this machine: with the RPC runner,
builds stay here and each candidate runs on a device registered with ``python -m
tvm.exec.rpc_tracker`` under a key, as many devices in parallel as the tracker has.

The directory is written under a temporary name and renamed when tuning ends, so a run killed
half way leaves the previous database (or none), never a truncated one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifact_io import atomic_dir, write_json
from .compile import CompileOptions, host_cores, import_onnx, make_target, optimize
from .errors import UserError
from .tvm_env import tvm

from tvm.ir.utils import derived_object  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class TuneOptions:
    """The tuning budget and where candidates are measured (params.yaml's ``tune`` section)."""

    trials: int = 0
    trials_per_task: int = 0  # 0: no per-task cap
    trials_per_iter: int = 64
    runner: str = "local"  # local | rpc
    tracker_host: str = "127.0.0.1"
    tracker_port: int = 9190
    key: str = ""
    rpc_timeout_s: int = 60
    seed: int = 0


def check_tracker(host: str, port: int, key: str) -> int:
    """How many servers the tracker has under ``key``; a clear error when none or unreachable."""
    try:
        summary = tvm.rpc.connect_tracker(host, port).summary()
    except Exception as exc:  # connection refused, timeout, protocol error
        raise UserError(
            f"cannot reach the RPC tracker at {host}:{port} ({str(exc).splitlines()[0]}); start it with "
            f"`python -m tvm.exec.rpc_tracker --host {host} --port {port}` or fix tune.tracker_host/port"
        ) from exc
    servers = sum(1 for item in summary.get("server_info", []) if item.get("key") == f"server:{key}")
    if servers == 0:
        known = sorted({item["key"].split(":", 1)[-1] for item in summary.get("server_info", [])})
        raise UserError(
            f"the RPC tracker at {host}:{port} has no server with key {key!r} (registered: {', '.join(known) or 'none'}); "
            f"start one with `python -m tvm.exec.rpc_server --tracker {host}:{port} --key {key}`"
        )
    return servers


def _runner(options: TuneOptions) -> Any:
    if options.runner == "local":
        return ms.runner.LocalRunner(timeout_sec=120)
    if options.runner != "rpc":
        raise UserError(f"tune.runner {options.runner!r} is unknown; use local or rpc")
    if not options.key:
        raise UserError("tune.runner is rpc but tune.key is empty; set the key your rpc_servers registered with")
    servers = check_tracker(options.tracker_host, options.tracker_port, options.key)
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=options.tracker_host,
            tracker_port=options.tracker_port,
            tracker_key=options.key,
            session_timeout_sec=options.rpc_timeout_s,
        ),
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False),
        max_workers=servers,
    )


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Prints tasks touched, trials, the best latency per task so far and the time left."""

    def __init__(self, total_trials: int, num_tasks: int, names: list[str]) -> None:
        super().__init__()
        self.total, self.num_tasks, self.names = total_trials, num_tasks, names
        self.done = 0
        self.best: dict[int, float] = {}
        self.started = time.perf_counter()

    def apply(self, task_scheduler: Any, task_id: int, candidates: Any, builds: Any, runs: Any) -> None:
        self.done += len(runs)
        times = [
            sum(float(t) for t in r.run_secs) / len(r.run_secs) for r in runs if r.error_msg is None and r.run_secs
        ]
        if times:
            self.best[task_id] = min(min(times), self.best.get(task_id, float("inf")))
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * max(self.total - self.done, 0) if self.done else 0.0
        best = f"{1e3 * self.best[task_id]:.3f} ms" if task_id in self.best else "no valid run yet"
        print(
            f"[tune] {self.done}/{self.total} trials, {len(self.best)}/{self.num_tasks} tasks measured, "
            f"{self.names[task_id]}: best {best}; {elapsed:.0f} s elapsed, ~{left:.0f} s left",
            flush=True,
        )


def _shutdown_workers(runner: Any) -> None:
    """Stop the local runner's worker processes now rather than at garbage collection.

    Left to the garbage collector they can outlive the process (they did under pytest), holding
    its stdout open.
    """
    pool = getattr(runner, "pool", None)
    if pool is not None:
        pool.shutdown()


def _reset_meta_schedule_logging() -> None:
    """Drop MetaSchedule's handlers from an earlier run in this process.

    MetaSchedule configures logging per work directory and re-lists the handlers it finds by
    name; the ones left by a previous run (pointing at that run's, possibly renamed, directory)
    make the second configuration fail.
    """
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def tune_model(onnx_path: Path, out_dir: Path, compile_options: CompileOptions, options: TuneOptions) -> dict[str, Any]:
    """Tune the fastscatter module of ``onnx_path`` for the compile target; write ``out_dir``.

    The baseline differs only in its scatter_nd kernels (TOPI externs, which MetaSchedule cannot
    schedule), so its convolutions find the same records.
    """
    from .fast_scatter import apply_fast_scatter

    if options.trials < 0 or options.trials_per_task < 0:
        raise UserError("tune.trials and tune.trials_per_task must be >= 0")
    target = make_target(compile_options)
    started = time.perf_counter()
    summary: dict[str, Any] = {"target": str(target), "trials": options.trials}
    if options.trials == 0:  # nothing to tune: an empty database that applies nothing
        with atomic_dir(Path(out_dir)) as tmp:
            write_json(tmp / SUMMARY_FILE, summary)
        return summary
    summary.update(trials_per_task=options.trials_per_task, runner=options.runner, onnx_path=str(Path(onnx_path).resolve()))
    runner = _runner(options)
    mod, _, _ = import_onnx(Path(onnx_path), compile_options.size)
    mod, overrides, _ = apply_fast_scatter(mod)
    mod, _ = optimize(mod, target, overrides, default_schedules=False)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    summary["tasks"] = len(tasks)
    print(f"[tune] {len(tasks)} tasks, {options.trials} trials, measured by the {options.runner} runner", flush=True)
    progress = _Progress(options.trials, len(tasks), [task.task_name for task in tasks])
    _reset_meta_schedule_logging()
    with atomic_dir(Path(out_dir)) as tmp:
        try:
            database = ms.relax_integration.tune_relax(
                mod,
                params={},
                target=target,
                work_dir=str(tmp),
                max_trials_global=options.trials,
                max_trials_per_task=options.trials_per_task or None,
                num_trials_per_iter=options.trials_per_iter,
                # builds can queue behind each other on 2 cores: the default 30 s timeout turned
                # every candidate into a "build error" on a busy machine
                builder=ms.builder.LocalBuilder(max_workers=host_cores(), timeout_sec=300),
                runner=runner,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress],
                seed=options.seed,
            )
        finally:
            _shutdown_workers(runner)
        summary["records"] = len(database.get_all_tuning_records())
        summary["measured_trials"] = progress.done
        summary["best_ms_per_task"] = {progress.names[i]: round(1e3 * t, 4) for i, t in sorted(progress.best.items())}
        summary["tune_seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / SUMMARY_FILE, summary)
    return summary


def load_summary(tuning_dir: Path) -> dict[str, Any]:
    """The summary of a tuning directory (what was tuned, for which target, how long)."""
    path = Path(tuning_dir) / SUMMARY_FILE
    if not path.is_file():
        raise UserError(f"{tuning_dir} is not a tuning directory (no {SUMMARY_FILE}); run `yolov3-tvm tune` first")
    return json.loads(path.read_text())


RECORDS_FILE = "database_tuning_record.json"
WORKLOADS_FILE = "database_workload.json"


def truncated_database(tuning_dir: Path, trials: int, out_dir: Path) -> Path:
    """A copy of ``tuning_dir`` holding only its first ``trials`` measurement records.

    MetaSchedule's JSON database appends one line per measured candidate, in measurement order,
    so the first N lines are exactly the database as it stood after N trials: one long tuning run
    gives the whole latency-vs-trials curve.
    """
    lines = (Path(tuning_dir) / RECORDS_FILE).read_text().splitlines(keepends=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WORKLOADS_FILE).write_text((Path(tuning_dir) / WORKLOADS_FILE).read_text())
    (out_dir / RECORDS_FILE).write_text("".join(lines[:trials]))
    summary = load_summary(tuning_dir)
    write_json(out_dir / SUMMARY_FILE, {**summary, "trials": min(trials, len(lines)), "truncated_from": summary["trials"]})
    return out_dir
