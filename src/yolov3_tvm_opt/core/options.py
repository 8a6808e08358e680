"""Every option a user can set, with its one default, and the names the layers share.

params.yaml (through ``core.params``), the CLI's flags and the library's keyword arguments all
take their defaults from the dataclasses here, so a default changes in one place. Where the CLI
keeps the seed tool's behaviour on purpose and the pipeline differs, both live here with the
reason: ``SEED_BENCH`` below.

Names: the target's kind is ``target.kind`` in params.yaml, ``--target`` on the CLI (the seed's
flag), ``TargetOptions.kind`` in code and ``target_kind`` in meta.json; it is always one of
``TARGET_KINDS``, and the device an artifact runs on follows from it (``device_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import UserError

TARGET_KINDS = ("llvm", "cuda")
DEVICES = ("cpu", "cuda")
VARIANTS = ("baseline", "fastscatter")
# The arithmetic each target can build at, its full-precision default first. bf16 on llvm needs
# avx512_bf16 (vdpbf16ps); fp16 on cuda is mixed precision (fp16 storage, fp32 accumulation);
# int8 on llvm needs AVX512-VNNI (vpdpbusd) and a calibration file (``evaluate.calibrate``).
PRECISIONS = {"llvm": ("fp32", "bf16", "int8"), "cuda": ("fp32", "fp16")}


def check_precision(target_kind: str, precision: str) -> None:
    """One clear error for a precision the target cannot build at, naming every valid pair."""
    if precision not in PRECISIONS.get(target_kind, ()):
        pairs = "; ".join(f"{kind}: {' | '.join(names)}" for kind, names in PRECISIONS.items())
        raise UserError(
            f"precision {precision!r} is not available for target {target_kind!r}; valid pairs are {pairs} "
            "(set target.precision in params.yaml or pass --precision)"
        )


# embedded: every weight is a constant inside model.so (one file to copy). separate: the conv
# weights go to weights.bin beside it, as ONNX holds them, so both variants share one file and a
# deploy bundle can ship (or regenerate) them once.
WEIGHTS_MODES = ("embedded", "separate")
EXEC_MODES = ("bytecode", "compiled")  # how the Relax VM runs the model


class OptionError(UserError):
    """A number outside its range, naming the option so each front end can say where it was set.

    The dataclasses below refuse such a value when they are built, so the CLI (which names the
    flag) and params.yaml (which names the key) share one rule and one check, and nothing is
    announced or written before it ran.
    """

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"{key} = {value!r} is out of range: it must be {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


def bounded(default: Any, low: float, high: float | None = None, *, above: bool = False, step: int = 1) -> Any:
    """A dataclass field whose value must lie in [low, high] (``above``: strictly more than low), a multiple of ``step``."""
    return field(default=default, metadata={"range": (low, high, above, step)})


def check_range(key: str, value: Any, low: float, high: float | None = None, above: bool = False, step: int = 1) -> None:
    """Refuse ``value`` outside [low, high] (or not above ``low``, or not a multiple of ``step``) with an ``OptionError``."""
    inside = (value > low if above else value >= low) and (high is None or value <= high) and (step == 1 or value % step == 0)
    if not inside:
        allowed = f"in [{low:g}, {high:g}]" if high is not None else f"more than {low:g}" if above else f"at least {low:g}"
        raise OptionError(key, value, f"a multiple of {step}, {allowed}" if step > 1 else allowed)


def check_fields(options: Any) -> None:
    """Every ``bounded`` field of an options dataclass in its range (``None`` means unset and passes)."""
    for item in fields(options):
        value = getattr(options, item.name)
        if "range" in item.metadata and value is not None:
            check_range(item.name, value, *item.metadata["range"])


def device_of(target_kind: str) -> str:
    """The device an artifact built for ``target_kind`` runs on."""
    if target_kind not in TARGET_KINDS:
        raise UserError(f"unknown target {target_kind!r}; choose one of {', '.join(TARGET_KINDS)}")
    return "cuda" if target_kind == "cuda" else "cpu"


@dataclass(frozen=True)
class ModelOptions:
    """Which model the pipeline builds (params.yaml ``model``; ``yolov3-tvm model``)."""

    source: str = "yolov3-tiny"  # yolov3-tiny | yolov3 | yolov3-torch | yolov3-tiny-torch | path to an ONNX file
    size: int = bounded(416, 32, step=32)  # input height = width: YOLOv3's grids divide it by 32
    seed: int = bounded(0, 0)  # seed of yolov3's synthetic weights

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TargetOptions:
    """What the artifacts are built for (params.yaml ``target``; ``--target --cuda_arch --threads --mcpu --precision``).

    Precision and graph capture live here, beside the target, because they decide what the
    compiled code is (and so what a tuning record matches) exactly as ``mcpu`` does.
    """

    kind: str = "llvm"
    cuda_arch: str = "sm_90"  # sm_80 A100, sm_89 L4/4090, sm_90 H100
    cpu_threads: int = bounded(0, 0)  # llvm num-cores and the benchmark's threads; 0 = every usable core
    mcpu: str = "native"  # llvm -mcpu; native = this machine's CPU
    precision: str = "fp32"  # see PRECISIONS: llvm fp32 | bf16, cuda fp32 | fp16
    cuda_graph: bool = True  # cuda: capture the model's kernels in one CUDA graph (off: per-op profile works)

    def __post_init__(self) -> None:
        check_fields(self)
        device_of(self.kind)
        check_precision(self.kind, self.precision)
        if self.kind == "cuda" and not self.cuda_arch.startswith("sm_"):
            raise UserError(f"cuda arch {self.cuda_arch!r} is not of the form sm_XY; pass e.g. sm_90 for H100")

    @property
    def device(self) -> str:
        return device_of(self.kind)


@dataclass(frozen=True)
class CompileOptions:
    """One build: the target plus what the variant and the user choose about it."""

    target: TargetOptions = field(default_factory=TargetOptions)
    fast_scatter_nd: bool = False  # the fastscatter variant
    exec_mode: str = EXEC_MODES[0]  # Relax VM mode: bytecode | compiled
    size: int | None = bounded(None, 1)  # fixes a dynamic image input to size x size
    tuning_dir: str | None = None  # a tuning database to apply
    default_schedules: bool = True  # llvm: our schedules for functions without a tuning record
    weights: str = WEIGHTS_MODES[0]  # embedded | separate (see WEIGHTS_MODES)
    calibration: str | None = None  # int8: the activation ranges (``yolov3-tvm calibrate``'s JSON)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.exec_mode not in EXEC_MODES:
            raise UserError(f"exec_mode {self.exec_mode!r} is unknown; use {' or '.join(EXEC_MODES)}")
        if self.weights not in WEIGHTS_MODES:
            raise UserError(f"weights {self.weights!r} is unknown; use {' or '.join(WEIGHTS_MODES)}")
        if self.weights == "separate" and self.target.precision == "bf16":
            # bf16 convs pack constant weights at compile time; weights given at run time would get
            # the fp32 kernels, and meta.json would claim bf16
            raise UserError("bf16 builds keep their weights in model.so; drop --weights separate, or build fp32")
        if self.target.precision == "int8":
            if self.weights == "separate":  # as bf16: int8 weights are quantized and packed at compile time
                raise UserError("int8 builds keep their weights in model.so; drop --weights separate, or build fp32")
            if not self.calibration:
                raise UserError("int8 needs activation ranges: run `yolov3-tvm calibrate --onnx MODEL --out FILE` and pass --calibration FILE")

    @property
    def variant(self) -> str:
        return VARIANTS[1] if self.fast_scatter_nd else VARIANTS[0]


@dataclass(frozen=True)
class TuneOptions:
    """The MetaSchedule budget and where candidates are measured (params.yaml ``tune``; ``compile --tune``)."""

    enabled: bool = False  # off: the tune stage writes an empty database and builds stay untuned
    trials: int = bounded(1024, 0)  # total trials over all tasks
    trials_per_task: int = bounded(0, 0)  # cap per task; 0 = none
    trials_per_iter: int = bounded(32, 1)  # candidates per task per round; 20 tasks x 32 fits 1024 trials
    runner: str = "local"  # local | rpc
    tracker_host: str = "127.0.0.1"
    tracker_port: int = bounded(9190, 1, 65535)
    key: str = ""  # the --key the rpc_servers registered with
    rpc_timeout_s: int = bounded(60, 1)
    seed: int = bounded(0, 0)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class BenchOptions:
    """How latency is measured and on what input (params.yaml ``bench``; ``yolov3-tvm bench``)."""

    iters: int = bounded(50, 1)  # rounds: each times every system (TVM variants and peers) once, in a shuffled order...
    warmup: int = bounded(5, 0)  # untimed rounds first
    max_seconds: float = bounded(40.0, 0)  # ...but stop the whole bench after the round in progress at this point; 0 = no bound
    input_scale: float = bounded(0.0039215686, 0, above=True)  # 1/255: the pretrained Darknet weights expect pixels in [0, 1]
    image: str = "pictures/photos/motorcycle_left.png"  # "" = seeded random input
    letterbox: bool = True  # keep the aspect ratio and pad grey, as Darknet trains
    profile_topk: int = bounded(20, 0)  # per-op Top-K; 0 = no profile
    seed: int = bounded(0, 0)  # the round order, the bootstrap's resampling, and the random input when image is ""

    def __post_init__(self) -> None:
        check_fields(self)


# The CLI's `bench` keeps the seed tool's behaviour, which users' scripts rely on: pixels in
# [0, 255] (`--input_scale 1.0`), a plain resize, exactly `--iters` iterations, no profile unless
# `--profile`. The pipeline measures the pretrained model the way it was trained (1/255,
# letterbox) and bounds a variant's time so that a slow untuned build cannot hold it for hours.
SEED_BENCH = replace(BenchOptions(), input_scale=1.0, letterbox=False, max_seconds=0.0, image="", profile_topk=20)

# `yolov3-tvm curve` builds and times the model once per trial budget, so each build gets a short
# bench, on random pixels unless --image is given (the latency does not depend on what they show).
CURVE_BENCH = replace(BenchOptions(), iters=10, warmup=2, max_seconds=30.0, image="", letterbox=False)


@dataclass(frozen=True)
class CurveOptions:
    """Latency against tuning budget from one tuning database (``yolov3-tvm curve``)."""

    points: tuple[int, ...] = (0, 64, 256, 1024)  # trial budgets: each build applies that many of the database's trials
    out: str = "metrics/tuning_curve.json"
    png: str = "metrics/plots/tuning_curve.png"

    def __post_init__(self) -> None:
        for point in self.points:
            check_range("points", point, 0)


# How far a deployed run may stray from ONNX Runtime's CPU output on the bundle's input, by the
# precision it was built in: (box coordinates in input pixels, objectness/class scores). A GPU
# sums in another order than the CPU, so fp32 differs in the last bits, and those grow through
# exp() in the box decode; fp16 keeps about three decimal digits, bf16 about two (yolov3-tiny 416
# in bf16 differed from fp32 by up to 2.8 px and 0.035 over every anchor of the sample photos; in
# int8, calibrated on them, by up to 33.8 px and 0.219, while every reported box kept IoU >= 0.9).
BUNDLE_TOLERANCE = {"fp32": (0.1, 1e-3), "fp16": (2.0, 2e-2), "bf16": (6.0, 6e-2), "int8": (40.0, 0.25)}


@dataclass(frozen=True)
class CalibrateOptions:
    """The photos an int8 build's activation ranges come from (params.yaml ``calibrate``; ``yolov3-tvm calibrate``)."""

    images: str = "pictures/photos"  # a folder of JPEG/PNG photos, nothing else; default: the sample photos


@dataclass(frozen=True)
class VisualizeOptions:
    """Detections drawn on photos (params.yaml ``visualize``; ``bench --save_vis``)."""

    images: str = "pictures/photos"  # every .jpg/.jpeg/.png here gets boxes drawn
    score_thresh: float = bounded(0.25, 0, 1)  # scores are objectness x class probability
    nms_iou: float = bounded(0.45, 0, 1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class AccuracyOptions:
    """The contract a reduced-precision build holds against fp32 (``yolov3-tvm compare-dets``).

    Every box scoring ``report_score`` or more in one build must be matched in the other by a box
    of the same class with IoU >= ``match_iou`` scoring ``match_score`` or more; the lower bar on
    the matching side keeps a 0.36-vs-0.34 box from flapping.
    """

    report_score: float = bounded(0.35, 0, 1)
    match_score: float = bounded(0.25, 0, 1)
    match_iou: float = bounded(0.9, 0, 1)
    nms_iou: float = bounded(0.45, 0, 1)  # the NMS that picks the reported boxes

    def __post_init__(self) -> None:
        check_fields(self)

