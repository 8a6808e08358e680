"""TVM's default Relax pipeline for a target, with our passes placed where they must run.

The baseline and the fastscatter variant, the tuner's task extraction and the tests all build
through ``optimize`` + ``lower_pipeline``, so a record tuned here matches what compile builds and
any latency difference between variants is the optimisation's alone.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from ..core.calibration import Calibration
from ..core.tvm_loader import load_tvm
from .bf16_conv import bf16_conv2d_legalization
from .conv_packing import packed_conv2d_legalization
from .int8_conv import Int8Report, int8_conv2d_legalization
from .int8_graph import chain_u8, fuse_as_elementwise
from .cpu_schedule import apply_cpu_schedules, scheduled_functions, vector_lanes
from .fast_activations import FastActivations
from .precision import apply_precision
from .target import kind_of
from .tuning_db import improving_records

tvm = load_tvm()

from tvm import relax  # noqa: E402


def _backend(target: Any) -> Any:
    backend = "cuda" if kind_of(target) == "cuda" else "cpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{backend}.pipeline")


def optimize(
    mod: Any,
    target: Any,
    legalize_overrides: dict[str, Any] | None = None,
    tuning_dir: Path | None = None,
    default_schedules: bool = True,
    precision: str = "fp32",
    calibration: Calibration | None = None,
    u8_chain: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """The schedule-deciding half of TVM's default pipeline for ``target``; returns (module, counts).

    It is TVM's own pass list (library dispatch, legalize, fuse, and dlight's GPU schedules)
    with five additions: our scatter_nd legalization may replace TOPI's; on llvm conv2d
    weights are packed for output-channel vectors (``conv_packing``, in tuning too) and
    SiLU and HardSwish become single vectorisable ops (``fast_activations``); a MetaSchedule
    database, when given, is applied right after fusion, for the tasks where the search beat our
    default schedule (``tuning_db.improving_records``); and on llvm our ``cpu_schedule`` rules give the
    remaining functions the schedules dlight gives them on GPUs. Tuning extracts its tasks from this function with
    ``default_schedules=False`` (scheduled functions are not tuned), so records always match
    what is built. ``counts`` says how many functions took each kind of schedule.
    ``precision`` (``core.options.PRECISIONS``) rewrites the graph first (``precision.apply_precision``),
    so tuning and compiling see the same reduced-precision functions; on llvm, bf16 is a choice of
    conv kernels instead (``bf16_conv``: bf16 inputs, fp32 sums), made here in the legalization.
    int8 on llvm is a choice of conv kernels too (``int8_conv``), quantized with ``calibration``'s
    ranges; ``counts["int8"]`` then says which convs ran in int8 and which stayed fp32, and which
    convs write u8 for the next one (``int8_graph``; ``u8_chain=False`` leaves every int8 conv
    quantizing its own fp32 input, the reference the chain is held bit-identical to in the tests).
    When ``main`` takes the weights as parameters, ``LiftTransformParams`` adds
    ``main_transform_params``, which the runtime calls once on the loaded weights.
    """
    mod = apply_precision(mod, target, precision)
    overrides = dict(legalize_overrides or {})
    if kind_of(target) == "llvm":
        if precision == "int8":
            report = Int8Report()
            if u8_chain:
                mod = chain_u8(mod, calibration, report)
            packed = int8_conv2d_legalization(calibration, report)
        elif precision == "bf16":
            packed = bf16_conv2d_legalization()
        else:
            packed = packed_conv2d_legalization(vector_lanes(target))
        overrides["relax.nn.conv2d"] = packed
    stages = _backend(target)
    legalize = stages.legalize_passes(target)
    legalize[0] = relax.transform.LegalizeOps(customize_legalize_map=overrides or None)
    if _takes_weights(mod):
        # Whatever depends on the weights alone (llvm's packing, a bias reshape) moves into
        # main_transform_params before fusion could merge it into the kernels that read it.
        legalize.insert(1, relax.transform.LiftTransformParams())
    if kind_of(target) == "llvm":
        # SiLU / HardSwish as one vectorisable op, any sigmoid / exp via fast_exp, before legalization
        legalize.insert(0, FastActivations())
    if precision == "int8" and kind_of(target) == "llvm":
        legalize.insert([p.info.name for p in legalize].index("AnnotateTIROpPattern") + 1, fuse_as_elementwise)
    fused = [p.info.name for p in legalize].index("FuseTIR") + 1
    counts: dict[str, Any] = {"tuned_functions": 0}
    with target:
        mod = tvm.transform.Sequential(stages.library_dispatch_passes(target) + legalize[:fused])(mod)
        if tuning_dir is not None:
            before = scheduled_functions(mod)
            with tempfile.TemporaryDirectory() as records:
                improving_records(tuning_dir, Path(records))
                mod = relax.transform.MetaScheduleApplyDatabase(records)(mod)
            counts["tuned_functions"] = scheduled_functions(mod) - before
        if default_schedules and kind_of(target) == "llvm":
            mod, applied = apply_cpu_schedules(mod)
            counts.update(applied)
        mod = tvm.transform.Sequential(legalize[fused:])(mod)
    if precision == "int8" and kind_of(target) == "llvm":
        counts["int8"] = report.as_dict()
    return mod, counts


def _takes_weights(mod: Any) -> bool:
    """Whether ``main`` takes parameters after its inputs (``--weights separate``)."""
    main = mod["main"]
    return main.attrs is not None and "num_input" in main.attrs and int(main.attrs["num_input"]) < len(main.params)


def lower_pipeline(target: Any) -> Any:
    """The rest of TVM's default pipeline: dataflow lowering and VM finalisation, unchanged."""
    stages = _backend(target)

    @tvm.transform.module_pass(opt_level=0, name="yolov3_tvm_opt_lower")
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        with target:
            return tvm.transform.Sequential(stages.dataflow_lower_passes(target) + stages.finalize_passes(target))(mod)

    return _pipeline


# The pass-context switch of TVM's RewriteCUDAGraph (in the cuda backend's finalize passes).
CUDA_GRAPH_CONFIG = "relax.backend.use_cuda_graph"


def build_context(target: Any, cuda_graph: bool) -> Any:
    """The pass context ``relax.build`` runs in: on cuda with ``cuda_graph``, the model's kernels are captured in CUDA graphs.

    TVM's ``RewriteCUDAGraph`` lifts every static region of ``main`` (allocations and kernel
    launches) into functions the VM captures on the first run and replays afterwards, so one
    inference costs a few graph launches instead of one launch per kernel. Inside a replayed
    graph the VM's instrument sees one call, which is why a per-op profile needs a build without it.
    """
    return tvm.transform.PassContext(config={CUDA_GRAPH_CONFIG: bool(cuda_graph and kind_of(target) == "cuda")})


def build(
    mod: Any, target: Any, legalize_overrides: dict[str, Any] | None = None, exec_mode: str = "bytecode", precision: str = "fp32",
    calibration: Calibration | None = None,
) -> Any:
    """optimize + lower + codegen with no tuning database: what the tests compare variants with."""
    optimized, _ = optimize(mod, target, legalize_overrides, precision=precision, calibration=calibration)
    return relax.build(optimized, target=target, relax_pipeline=lower_pipeline(target), exec_mode=exec_mode)
