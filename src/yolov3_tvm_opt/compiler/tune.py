"""MetaSchedule tuning of a model's kernels, locally or on devices behind TVM's RPC tracker.

Users tune once and reuse the result many times, so tuning writes a directory (MetaSchedule's
JSON database plus ``summary.json``) that the pipeline caches and both compile variants apply.
The tasks are extracted from ``pipeline.optimize`` — the very functions the compile step builds —
so every record matches a function there. Measuring can leave this machine: with the RPC runner,
builds stay here and each candidate runs on a device registered with ``python -m
tvm.exec.rpc_tracker`` under a key, as many devices in parallel as the tracker has.

The directory is written under a temporary name and renamed when tuning ends, so a run killed
half way leaves the previous database (or none), never a truncated one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.calibration import load_calibration
from ..core.errors import UserError
from ..core.files import atomic_dir, write_json
from ..core.host import host_cores
from ..core.options import CompileOptions, TuneOptions
from ..core.tvm_loader import load_tvm
from ..runtime.tracker import check_tracker
from .cpu_schedule import default_schedule
from .fast_scatter import apply_fast_scatter
from .frontend import import_onnx
from .pipeline import optimize
from .target import kind_of, make_target
from .tune_builder import candidate_builder
from .tuning_db import SUMMARY_FILE

tvm = load_tvm()

from tvm.ir.utils import derived_object  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402


# The tasks MetaSchedule searches (a substring of the task name); every other task keeps the
# default schedule it is seeded with. The convs are where the time is and where search has found
# better tiles; the fused YOLO decode (one function of ~30 inlined blocks and polynomial exps)
# took 4 minutes to sample its first candidates and 2 more per evolution round on yolov3-tiny 96,
# for 2 trials that were both slower than our schedule (0.060 against 0.042 ms).
SEARCHED_OPS = ("conv2d",)


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


def seed_default_schedules(tasks: list[Any], target: Any, database: Any, builder: Any, runner: Any) -> dict[str, float]:
    """Measure our default schedule of every task and commit it to ``database`` as a record.

    Why: MetaSchedule starts from random schedules, and on 2 cores an hour of search does not
    reach what ``cpu_schedule`` gives for free (yolov3-tiny's convs stayed 1.2-2x slower after
    1024 trials), so an unseeded database made tuned builds slower than untuned ones. With our
    schedule in the database as a measured record, a task's best record is never worse than our
    default, and the search keeps only what beats it. (The evolutionary search also draws part
    of its first population from the best records, but our trace has no sampled decisions to
    mutate: the seed is a floor, not a starting point.) Returns the measured milliseconds per
    task; a task no rule fits, or whose seed fails to build or run, gets no seed.
    """
    device = "cpu" if kind_of(target) == "llvm" else kind_of(target)
    seeds: dict[str, Any] = {}
    for task in tasks:
        workload_mod = task.dispatched[0]
        sch = default_schedule(workload_mod["main"], target)
        if sch is not None:
            args_info = ms.arg_info.ArgInfo.from_prim_func(workload_mod["main"])
            seeds[task.task_name] = (workload_mod, sch, args_info)
    if not seeds:
        return {}
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, sch, _ in seeds.values()])
    runs: dict[str, Any] = {}
    for (name, (_, _, args_info)), build in zip(seeds.items(), built):
        if build.error_msg is None:
            runs[name] = runner.run([ms.runner.RunnerInput(build.artifact_path, device, args_info)])[0]
    measured: dict[str, float] = {}
    for name, future in runs.items():
        result = future.result()
        if result.error_msg is not None or not result.run_secs:
            continue
        workload_mod, sch, args_info = seeds[name]
        run_secs = [float(t) for t in result.run_secs]
        database.commit_tuning_record(
            ms.database.TuningRecord(
                sch.trace, database.commit_workload(workload_mod), run_secs=run_secs, target=target, args_info=args_info
            )
        )
        measured[name] = 1e3 * sum(run_secs) / len(run_secs)
    return measured


@dataclass(frozen=True)
class TuneResult:
    """The summary written into the tuning directory, and the time tuning took (kept out of it)."""

    summary: dict[str, Any]
    seconds: float


def tune_model(onnx_path: Path, out_dir: Path, compile_options: CompileOptions, options: TuneOptions) -> TuneResult:
    """Tune the fastscatter module of ``onnx_path`` for the compile target; write ``out_dir``.

    The baseline differs only in its scatter_nd kernels (TOPI externs, which MetaSchedule cannot
    schedule), so its convolutions find the same records. With tuning disabled (or 0 trials) the
    directory holds an empty database that applies nothing, so the pipeline's compiles always
    have one to depend on.
    """
    target = make_target(compile_options.target)
    started = time.perf_counter()
    trials = options.trials if options.enabled else 0
    summary: dict[str, Any] = {"target": str(target), "trials": trials}
    if trials == 0:
        with atomic_dir(Path(out_dir)) as tmp:
            write_json(tmp / SUMMARY_FILE, summary)
        return TuneResult(summary, 0.0)
    summary.update(trials_per_task=options.trials_per_task, runner=options.runner)
    runner = _runner(options)
    mod, _, _ = import_onnx(Path(onnx_path), compile_options.size)
    mod, overrides, _ = apply_fast_scatter(mod)
    precision = compile_options.target.precision
    calibration = load_calibration(Path(compile_options.calibration)) if precision == "int8" else None
    mod, _ = optimize(mod, target, overrides, default_schedules=False, precision=precision, calibration=calibration)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    summary["tasks"] = len(tasks)
    searched_names = [task.task_name for task in tasks if any(op in task.task_name for op in SEARCHED_OPS)]
    summary["searched_tasks"] = len(searched_names)
    progress = _Progress(options.trials, len(searched_names), searched_names)  # its task ids index the searched tasks
    print(
        f"[tune] {len(tasks)} tasks ({len(searched_names)} searched, the others keep our default schedules), "
        f"{options.trials} trials, measured by the {options.runner} runner",
        flush=True,
    )
    _reset_meta_schedule_logging()
    with atomic_dir(Path(out_dir)) as tmp:
        database = ms.database.JSONDatabase(work_dir=str(tmp))
        # builds can queue behind each other on 2 cores: the default 30 s timeout turned every
        # candidate into a "build error" on a busy machine
        builder = candidate_builder(max_workers=host_cores(), timeout_sec=300)
        try:
            defaults = seed_default_schedules(tasks, target, database, builder, runner) if kind_of(target) == "llvm" else {}
            print(f"[tune] seeded {len(defaults)} tasks with our default schedules", flush=True)
            ms.relax_integration.tune_relax(
                mod,
                params={},
                target=target,
                work_dir=str(tmp),
                max_trials_global=options.trials,
                max_trials_per_task=options.trials_per_task or None,
                op_names=list(SEARCHED_OPS),
                num_trials_per_iter=options.trials_per_iter,
                builder=builder,
                runner=runner,
                database=database,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress],
                seed=options.seed,
            )
        finally:
            _shutdown_workers(runner)
        searched = {progress.names[i]: 1e3 * t for i, t in progress.best.items()}
        summary["seed_records"] = len(defaults)
        summary["records"] = len(database.get_all_tuning_records())
        summary["measured_trials"] = progress.done
        summary["default_ms_per_task"] = {name: round(t, 4) for name, t in sorted(defaults.items())}
        summary["best_ms_per_task"] = {name: round(t, 4) for name, t in sorted(searched.items())}
        summary["tasks_beating_default"] = sorted(n for n, t in searched.items() if n not in defaults or t < defaults[n])
        write_json(tmp / SUMMARY_FILE, summary)
    return TuneResult(summary, round(time.perf_counter() - started, 1))


