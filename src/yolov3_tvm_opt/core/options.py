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

from dataclasses import dataclass, field, replace

from .errors import UserError

TARGET_KINDS = ("llvm", "cuda")
DEVICES = ("cpu", "cuda")
VARIANTS = ("baseline", "fastscatter")
# The arithmetic each target can build at, its full-precision default first. bf16 on llvm needs
# avx512_bf16 (vdpbf16ps); fp16 on cuda is mixed precision (fp16 storage, fp32 accumulation).
PRECISIONS = {"llvm": ("fp32", "bf16"), "cuda": ("fp32", "fp16")}


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


def device_of(target_kind: str) -> str:
    """The device an artifact built for ``target_kind`` runs on."""
    if target_kind not in TARGET_KINDS:
        raise UserError(f"unknown target {target_kind!r}; choose one of {', '.join(TARGET_KINDS)}")
    return "cuda" if target_kind == "cuda" else "cpu"


@dataclass(frozen=True)
class ModelOptions:
    """Which model the pipeline builds (params.yaml ``model``; ``yolov3-tvm model``)."""

    source: str = "yolov3-tiny"  # yolov3-tiny | yolov3 | yolov3-torch | yolov3-tiny-torch | path to an ONNX file
    size: int = 416  # input height = width, a multiple of 32
    seed: int = 0  # seed of yolov3's synthetic weights


@dataclass(frozen=True)
class TargetOptions:
    """What the artifacts are built for (params.yaml ``target``; ``--target --cuda_arch --threads --mcpu --precision``).

    Precision and graph capture live here, beside the target, because they decide what the
    compiled code is (and so what a tuning record matches) exactly as ``mcpu`` does.
    """

    kind: str = "llvm"
    cuda_arch: str = "sm_90"  # sm_80 A100, sm_89 L4/4090, sm_90 H100
    cpu_threads: int = 0  # llvm num-cores and the benchmark's threads; 0 = every usable core
    mcpu: str = "native"  # llvm -mcpu; native = this machine's CPU
    precision: str = "fp32"  # see PRECISIONS: llvm fp32 | bf16, cuda fp32 | fp16
    cuda_graph: bool = True  # cuda: capture the model's kernels in one CUDA graph (off: per-op profile works)

    @property
    def device(self) -> str:
        return device_of(self.kind)


@dataclass(frozen=True)
class CompileOptions:
    """One build: the target plus what the variant and the user choose about it."""

    target: TargetOptions = field(default_factory=TargetOptions)
    fast_scatter_nd: bool = False  # the fastscatter variant
    exec_mode: str = "bytecode"  # Relax VM mode: bytecode | compiled
    size: int | None = None  # fixes a dynamic image input to size x size
    tuning_dir: str | None = None  # a tuning database to apply
    default_schedules: bool = True  # llvm: our schedules for functions without a tuning record
    weights: str = WEIGHTS_MODES[0]  # embedded | separate (see WEIGHTS_MODES)

    @property
    def variant(self) -> str:
        return VARIANTS[1] if self.fast_scatter_nd else VARIANTS[0]


@dataclass(frozen=True)
class TuneOptions:
    """The MetaSchedule budget and where candidates are measured (params.yaml ``tune``; ``compile --tune``)."""

    enabled: bool = False  # off: the tune stage writes an empty database and builds stay untuned
    trials: int = 1024  # total trials over all tasks
    trials_per_task: int = 0  # cap per task; 0 = none
    trials_per_iter: int = 32  # candidates per task per round; 20 tasks x 32 fits 1024 trials
    runner: str = "local"  # local | rpc
    tracker_host: str = "127.0.0.1"
    tracker_port: int = 9190
    key: str = ""  # the --key the rpc_servers registered with
    rpc_timeout_s: int = 60
    seed: int = 0


@dataclass(frozen=True)
class BenchOptions:
    """How latency is measured and on what input (params.yaml ``bench``; ``yolov3-tvm bench``)."""

    iters: int = 50  # rounds: each times every system (TVM variants and peers) once, in a shuffled order...
    warmup: int = 5  # untimed rounds first
    max_seconds: float = 40.0  # ...but stop the whole bench after the round in progress at this point; 0 = no bound
    input_scale: float = 0.0039215686  # 1/255: the pretrained Darknet weights expect pixels in [0, 1]
    image: str = "pictures/photos/motorcycle_left.png"  # "" = seeded random input
    letterbox: bool = True  # keep the aspect ratio and pad grey, as Darknet trains
    profile_topk: int = 20  # per-op Top-K; 0 = no profile
    seed: int = 0  # the round order, the bootstrap's resampling, and the random input when image is ""


# The CLI's `bench` keeps the seed tool's behaviour, which users' scripts rely on: pixels in
# [0, 255] (`--input_scale 1.0`), a plain resize, exactly `--iters` iterations, no profile unless
# `--profile`. The pipeline measures the pretrained model the way it was trained (1/255,
# letterbox) and bounds a variant's time so that a slow untuned build cannot hold it for hours.
SEED_BENCH = replace(BenchOptions(), input_scale=1.0, letterbox=False, max_seconds=0.0, image="", profile_topk=20)


# How far a deployed run may stray from ONNX Runtime's CPU output on the bundle's input, by the
# precision it was built in: (box coordinates in input pixels, objectness/class scores). A GPU
# sums in another order than the CPU, so fp32 differs in the last bits, and those grow through
# exp() in the box decode; fp16 keeps about three decimal digits, bf16 about two (yolov3-tiny 416
# in bf16 differed from fp32 by up to 2.8 px and 0.035 over every anchor of the sample photos).
BUNDLE_TOLERANCE = {"fp32": (0.1, 1e-3), "fp16": (2.0, 2e-2), "bf16": (6.0, 6e-2)}


@dataclass(frozen=True)
class VisualizeOptions:
    """Detections drawn on photos (params.yaml ``visualize``; ``bench --save_vis``)."""

    images: str = "pictures/photos"  # every .jpg/.jpeg/.png here gets boxes drawn
    score_thresh: float = 0.25
    nms_iou: float = 0.45


@dataclass(frozen=True)
class AccuracyOptions:
    """The contract a reduced-precision build holds against fp32 (``yolov3-tvm compare-dets``).

    Every box scoring ``report_score`` or more in one build must be matched in the other by a box
    of the same class with IoU >= ``match_iou`` scoring ``match_score`` or more; the lower bar on
    the matching side keeps a 0.36-vs-0.34 box from flapping.
    """

    report_score: float = 0.35
    match_score: float = 0.25
    match_iou: float = 0.9
    nms_iou: float = 0.45  # the NMS that picks the reported boxes

