"""ONNX -> Relax -> a built artifact directory (``model.so`` + ``meta.json``).

An artifact is what the benchmark and the runtime load: the VM executable with every weight
embedded as a constant, plus the facts needed to feed it and to refuse it when it cannot run
(TVM version, device kind, the sha256 of ``model.so``). The baseline and the fast scatter_nd
variant go through the same function; only the Relax rewrite and the scatter_nd legalization
differ, so any latency difference between them is the optimisation's alone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from .artifact_io import atomic_dir, sha256_file, write_json
from .errors import UserError
from .models import class_names, read_input_spec
from .tvm_env import tvm

from tvm import relax  # noqa: E402  (after tvm_env so a TVM_HOME build is importable)
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402

TARGET_KINDS = ("llvm", "cuda")
MODEL_FILE = "model.so"
META_FILE = "meta.json"
CUDA_SOURCE_FILE = "kernels.cu"  # the generated kernels, kept for reading (not needed to run)


@dataclass(frozen=True)
class CompileOptions:
    """What a user may choose about one build; every field is a params.yaml key or a CLI flag."""

    target: str = "llvm"
    cuda_arch: str = "sm_90"
    cpu_threads: int = 0  # 0: every core of this machine
    mcpu: str = "native"  # "native": the build host's CPU (its AVX-512/AVX2 width)
    fast_scatter_nd: bool = False
    exec_mode: str = "bytecode"
    size: int | None = None  # fixes a dynamic image input
    tuning_dir: str | None = None  # a `yolov3-tvm tune` output directory to apply
    default_schedules: bool = True  # llvm: our conv2d/spatial schedules for untuned functions


def make_target(options: CompileOptions) -> Any:
    """Build the TVM target from our options (0.27 accepts only JSON-style dicts, not strings)."""
    if options.target == "llvm":
        spec: dict[str, Any] = {"kind": "llvm", "num-cores": options.cpu_threads or host_cores()}
        mcpu = tvm.target.codegen.llvm_get_system_cpu() if options.mcpu == "native" else options.mcpu
        if mcpu and mcpu != "generic":
            spec["mcpu"] = mcpu
        return tvm.target.Target(spec)
    if options.target == "cuda":
        if not options.cuda_arch.startswith("sm_"):
            raise UserError(f"cuda arch {options.cuda_arch!r} is not of the form sm_XY; pass e.g. sm_90 for H100")
        return tvm.target.Target({"kind": "cuda", "arch": options.cuda_arch}, host={"kind": "llvm"})
    raise UserError(f"unknown target {options.target!r}; choose one of {', '.join(TARGET_KINDS)}")


def host_cores() -> int:
    """Cores this process may use (a container's CPU set, not the host's core count)."""
    return len(os.sched_getaffinity(0))


def import_onnx(onnx_path: Path, size: int | None = None) -> tuple[Any, Any, onnx.ModelProto]:
    """Load an ONNX file and translate it to a Relax IRModule with the weights as constants."""
    spec = read_input_spec(onnx_path, size)
    model = onnx.load(str(onnx_path))
    try:
        mod = from_onnx(
            model,
            shape_dict={spec.name: list(spec.shape)},
            dtype_dict={spec.name: spec.dtype},
            keep_params_in_input=False,
        )
    except Exception as exc:  # the frontend raises many types for unsupported graphs
        raise UserError(
            f"TVM's ONNX frontend cannot import {onnx_path}: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
            "re-export the model with opset 11-17 and static shapes"
        ) from exc
    return relax.transform.DecomposeOpsForInference()(mod), spec, model


def _backend(target: Any) -> Any:
    import importlib

    backend = "cuda" if target.kind.name == "cuda" else "cpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{backend}.pipeline")


def optimize(
    mod: Any,
    target: Any,
    legalize_overrides: dict[str, Any] | None = None,
    tuning_dir: Path | None = None,
    default_schedules: bool = True,
) -> tuple[Any, dict[str, int]]:
    """The schedule-deciding half of TVM's default pipeline for ``target``; returns (module, counts).

    It is TVM's own pass list (library dispatch, legalize, fuse, and dlight's GPU schedules)
    with four additions: our scatter_nd legalization may replace TOPI's; on llvm conv2d
    weights are packed for output-channel vectors (``conv_packing``, in tuning too); a MetaSchedule
    database, when given, is applied right after fusion, for the tasks where the search beat our
    default schedule (``tune.improving_records``); and on llvm ``ApplyCPUSchedules`` gives the
    remaining functions the schedules dlight gives them on GPUs. Tuning extracts its tasks from this function with
    ``default_schedules=False`` (scheduled functions are not tuned), so records always match
    what is built. ``counts`` says how many functions took each kind of schedule.
    """
    from .conv_packing import packed_conv2d_legalization
    from .cpu_schedule import ApplyCPUSchedules, vector_lanes

    overrides = dict(legalize_overrides or {})
    if target.kind.name == "llvm":
        overrides["relax.nn.conv2d"] = packed_conv2d_legalization(vector_lanes(target))
    stages = _backend(target)
    legalize = stages.legalize_passes(target)
    legalize[0] = relax.transform.LegalizeOps(customize_legalize_map=overrides or None)
    fused = [p.info.name for p in legalize].index("FuseTIR") + 1
    counts = {"tuned_functions": 0}
    with target:
        mod = tvm.transform.Sequential(stages.library_dispatch_passes(target) + legalize[:fused])(mod)
        if tuning_dir is not None:
            from .tune import improving_records

            before = _scheduled_functions(mod)
            with tempfile.TemporaryDirectory() as records:
                improving_records(tuning_dir, Path(records))
                mod = relax.transform.MetaScheduleApplyDatabase(records)(mod)
            counts["tuned_functions"] = _scheduled_functions(mod) - before
        if default_schedules and target.kind.name == "llvm":
            cpu = ApplyCPUSchedules(target)
            mod = cpu(mod)
            counts.update({f"{kind}_default_schedules": n for kind, n in cpu.applied.items()})
        mod = tvm.transform.Sequential(legalize[fused:])(mod)
    return mod, counts


def _scheduled_functions(mod: Any) -> int:
    return sum(
        1
        for func in mod.functions.values()
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and bool(func.attrs.get("tirx.is_scheduled", False))
    )


def lower_pipeline(target: Any) -> Any:
    """The rest of TVM's default pipeline: dataflow lowering and VM finalisation, unchanged."""
    stages = _backend(target)

    @tvm.transform.module_pass(opt_level=0, name="yolov3_tvm_opt_lower")
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        with target:
            return tvm.transform.Sequential(stages.dataflow_lower_passes(target) + stages.finalize_passes(target))(mod)

    return _pipeline


def build(mod: Any, target: Any, legalize_overrides: dict[str, Any] | None = None, exec_mode: str = "bytecode") -> Any:
    """optimize + lower + codegen with no tuning database: what the tests compare variants with."""
    optimized, _ = optimize(mod, target, legalize_overrides)
    return relax.build(optimized, target=target, relax_pipeline=lower_pipeline(target), exec_mode=exec_mode)


@contextmanager
def interrupt_between_steps() -> Iterator[Callable[[], None]]:
    """Defer Ctrl-C during TVM work to the next checkpoint the caller places between steps.

    A KeyboardInterrupt raised inside a Python callback that TVM's C++ calls (a pattern
    rewriter, a legalization) can be swallowed there, leaving a build that silently skipped part
    of a pass. Deferring it makes an interrupted compile end at a checkpoint instead: no artifact,
    never a half-optimised one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pending: list[int] = []

    def defer(signum: int, _frame: Any) -> None:
        pending.append(signum)
        print("interrupted: stopping after the current TVM step", file=sys.stderr, flush=True)

    def checkpoint() -> None:
        if pending:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, defer)
    try:
        yield checkpoint
    finally:
        signal.signal(signal.SIGINT, previous)
    checkpoint()


def cuda_source(executable: Any) -> str:
    """The CUDA C source TVM generated for every kernel of a built executable."""
    pending, sources = [executable.mod], []
    while pending:
        module = pending.pop()
        if module.kind == "cuda":
            sources.append(module.inspect_source("cuda"))
        pending.extend(module.imports)
    return "\n".join(sources)


def tuning_database(tuning_dir: str | None, target: Any) -> Path | None:
    """The database directory to apply, after checking it was tuned for this very target.

    Records tuned for another CPU or GPU would apply silently and run badly (or not at all), so
    a target mismatch is a user error. A directory from a disabled or zero-trial tune stage holds
    no records and applies nothing.
    """
    if not tuning_dir:
        return None
    from .tune import load_summary

    summary = load_summary(Path(tuning_dir))
    if summary.get("trials", 0) == 0:
        return None
    if json.loads(summary["target"]) != json.loads(str(target)):
        raise UserError(
            f"{tuning_dir} was tuned for {summary['target']}, not {target}; tune again for this target"
        )
    return Path(tuning_dir)


def compile_onnx(onnx_path: Path, out_dir: Path, options: CompileOptions) -> dict[str, Any]:
    """Compile ``onnx_path`` into the artifact directory ``out_dir``; return its meta.json content."""
    onnx_path = Path(onnx_path)
    target = make_target(options)
    if options.exec_mode not in ("bytecode", "compiled"):
        raise UserError(f"exec_mode {options.exec_mode!r} is unknown; use bytecode or compiled")
    started = time.perf_counter()
    with interrupt_between_steps() as checkpoint:
        mod, spec, model = import_onnx(onnx_path, options.size)
        checkpoint()
        scatter_report: dict[str, int] = {}
        overrides = None
        if options.fast_scatter_nd:
            from .fast_scatter import apply_fast_scatter

            mod, overrides, scatter_report = apply_fast_scatter(mod)
            checkpoint()
        tuning_dir = tuning_database(options.tuning_dir, target)
        mod, schedules = optimize(mod, target, overrides, tuning_dir, options.default_schedules)
        checkpoint()
        executable = relax.build(mod, target=target, relax_pipeline=lower_pipeline(target), exec_mode=options.exec_mode)
        checkpoint()
        with atomic_dir(Path(out_dir)) as tmp:
            executable.export_library(str(tmp / MODEL_FILE))
            if options.target == "cuda":
                (tmp / CUDA_SOURCE_FILE).write_text(cuda_source(executable))
            meta = {
                "onnx_path": str(onnx_path.resolve()),
                "onnx_sha256": sha256_file(onnx_path),
                "input_name": spec.name,
                "input_shape": list(spec.shape),
                "input_dtype": spec.dtype,
                "class_names": class_names(model),
                "target": str(target),
                "target_kind": options.target,
                "exec_mode": options.exec_mode,
                "tuned": schedules["tuned_functions"] > 0,
                "tuned_functions": schedules["tuned_functions"],
                "schedules": schedules,
                "variant": "fastscatter" if options.fast_scatter_nd else "baseline",
                "scatter_nd": scatter_report,
                "tvm_version": tvm.__version__,
                "compile_seconds": round(time.perf_counter() - started, 3),
                "model_so_sha256": sha256_file(tmp / MODEL_FILE),
            }
            write_json(tmp / META_FILE, meta)
            checkpoint()
    return meta
