"""ONNX -> a built artifact directory (``model.so`` + ``meta.json``): what ``yolov3-tvm compile`` and the compile stages run.

An artifact is what the benchmark and the runtime load: the VM executable with every weight
embedded as a constant (or, with ``--weights separate``, the conv weights in ``weights.bin``
beside it: the same bytes for both variants, since each variant's own weight transforms are
compiled into its ``main_transform_params``), plus the facts needed to feed it and to refuse it when it cannot run
(TVM version, device kind, the sha256 of ``model.so``). The baseline and the fast scatter_nd
variant go through the same function; only the Relax rewrite and the scatter_nd legalization
differ, so any latency difference between them is the optimisation's alone.

meta.json holds only what depends on the inputs of the build, so rebuilding the same thing
writes the same meta.json and nothing downstream of an artifact reruns for nothing; how long the
build took is returned beside it (``CompileResult``) for the caller to report.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.artifact_layout import CUDA_SOURCE_FILE, META_FILE, MODEL_FILE, WEIGHTS_FILE
from ..core.calibration import load_calibration
from ..core.errors import UserError
from ..core.files import atomic_dir, sha256_file, write_json
from ..core.options import CompileOptions
from ..core.tvm_loader import load_tvm
from ..core.weights_file import write_weights
from ..models.onnx_info import class_names, synthetic_seed
from .fast_scatter import apply_fast_scatter
from .frontend import import_onnx, import_onnx_separate
from .kernels import conv_gemm_extents, kernel_classes
from .pipeline import build_context, lower_pipeline, optimize
from .precision import bf16_kernel, int8_kernel
from .target import make_target
from .tuning_db import load_summary

tvm = load_tvm()

from tvm import relax  # noqa: E402


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
    summary = load_summary(Path(tuning_dir))
    if summary.get("trials", 0) == 0:
        return None
    if json.loads(summary["target"]) != json.loads(str(target)):
        raise UserError(
            f"{tuning_dir} was tuned for {summary['target']}, not {target}; tune again for this target"
        )
    return Path(tuning_dir)


def conv_kernel_report(source: str, gemms: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """Per conv kernel of a CUDA build: tensor_core or plain (read from its source) and its GEMM M, N, K."""
    return {
        name: {"cores": cores, "gemm_mnk": gemms.get(name.removesuffix("_kernel"))}
        for name, cores in sorted(kernel_classes(source).items())
        if "conv2d" in name
    }


@dataclass(frozen=True)
class CompileResult:
    """What a build wrote (meta.json's content) and how long it took (kept out of meta.json)."""

    meta: dict[str, Any]
    seconds: float


def compile_onnx(onnx_path: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
    """Compile ``onnx_path`` into the artifact directory ``out_dir``.

    ``onnx_path`` is recorded as given: the pipeline passes a path relative to the repository,
    so the same build from another checkout writes the same meta.json.
    """
    onnx_path = Path(onnx_path)
    target = make_target(options.target)
    started = time.perf_counter()
    with interrupt_between_steps() as checkpoint:
        weights = []
        if options.weights == "separate":
            mod, spec, model, weights = import_onnx_separate(onnx_path, options.size)
        else:
            mod, spec, model = import_onnx(onnx_path, options.size)
        checkpoint()
        scatter_report: dict[str, int] = {}
        overrides = None
        if options.fast_scatter_nd:
            mod, overrides, scatter_report = apply_fast_scatter(mod)
            checkpoint()
        tuning_dir = tuning_database(options.tuning_dir, target)
        precision = options.target.precision
        calibration = load_calibration(Path(options.calibration)) if precision == "int8" else None
        mod, schedules = optimize(mod, target, overrides, tuning_dir, options.default_schedules, precision, calibration)
        int8_report = schedules.pop("int8", None)
        checkpoint()
        # the longest step follows; Ctrl-C from here on ends at the next checkpoint, with no artifact
        print(f"[compile] building {options.variant} for {options.target.kind}", flush=True)
        cuda = options.target.kind == "cuda"
        gemms = conv_gemm_extents(mod) if cuda else {}
        with build_context(target, options.target.cuda_graph):
            executable = relax.build(mod, target=target, relax_pipeline=lower_pipeline(target), exec_mode=options.exec_mode)
        checkpoint()
        with atomic_dir(Path(out_dir)) as tmp:
            executable.export_library(str(tmp / MODEL_FILE))
            extra: dict[str, Any] = {}
            if cuda:
                source = cuda_source(executable)
                (tmp / CUDA_SOURCE_FILE).write_text(source)
                extra = {"cuda_graph": options.target.cuda_graph, "conv_kernels": conv_kernel_report(source, gemms)}
            if options.target.kind == "llvm" and precision == "bf16":
                extra["bf16_kernel"] = bf16_kernel(target)
            if int8_report is not None:
                # which convs ran in int8 and which stayed fp32 (and why), and the ranges they used
                extra["int8"] = {"kernel": int8_kernel(target), **int8_report, "calibration_sha256": sha256_file(Path(options.calibration))}
            if weights:
                extra["weights"] = write_weights(tmp / WEIGHTS_FILE, [(w.name, w.array) for w in weights])
            meta = {
                "onnx_path": str(onnx_path),
                "onnx_sha256": sha256_file(onnx_path),
                "input_name": spec.name,
                "input_shape": list(spec.shape),
                "input_dtype": spec.dtype,
                "class_names": class_names(model),
                "synthetic_weights_seed": synthetic_seed(model),  # None: trained weights
                "target": str(target),
                "target_kind": options.target.kind,
                "precision": precision,
                "exec_mode": options.exec_mode,
                "tuned": schedules["tuned_functions"] > 0,
                "tuned_functions": schedules["tuned_functions"],
                "schedules": schedules,
                "variant": options.variant,
                "scatter_nd": scatter_report,
                "tvm_version": tvm.__version__,
                "model_so_sha256": sha256_file(tmp / MODEL_FILE),
                **extra,
            }
            write_json(tmp / META_FILE, meta)
            checkpoint()
    return CompileResult(meta, round(time.perf_counter() - started, 3))
