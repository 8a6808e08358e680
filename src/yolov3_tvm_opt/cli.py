"""``yolov3-tvm``: one console script whose subcommands keep the seed project's flag names.

The DVC stages call the same library functions as these subcommands, and both take their
defaults from ``core.options``, so a result from ``make bench`` can be reproduced by hand flag
for flag. Each subcommand builds its options first, and the option dataclasses check every value
as they are built, so a bad flag stops before anything is announced or written. User mistakes end
in one ``error:`` line and exit code 2; anything else is a bug and keeps its traceback. Each
subcommand imports only the layers it uses, so ``model`` and ``report`` never load TVM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .core.errors import UserError, exit_code_of
from .core.options import (
    CURVE_BENCH,
    EXEC_MODES,
    PRECISIONS,
    SEED_BENCH,
    TARGET_KINDS,
    WEIGHTS_MODES,
    AccuracyOptions,
    BenchOptions,
    CompileOptions,
    CurveOptions,
    ModelOptions,
    OptionError,
    TargetOptions,
    TuneOptions,
    VisualizeOptions,
    check_range,
)

if TYPE_CHECKING:
    from .evaluate.bench import BenchRun

# Flags whose option field has another name; every other flag is --<field>.
_FLAG_OF = {"kind": "target", "cpu_threads": "threads", "tracker_port": "tracker"}


# From flags to options: each is built (and so checked) before a subcommand prints or writes.


def _target(args: argparse.Namespace) -> TargetOptions:
    return TargetOptions(
        kind=args.target,
        cuda_arch=args.cuda_arch,
        cpu_threads=getattr(args, "threads", TargetOptions.cpu_threads),
        mcpu=getattr(args, "mcpu", TargetOptions.mcpu),
        precision=getattr(args, "precision", TargetOptions.precision),
        cuda_graph=not getattr(args, "no_cuda_graph", not TargetOptions.cuda_graph),
    )


def _bench(args: argparse.Namespace, defaults: BenchOptions) -> BenchOptions:
    """The bench/input options the subcommand's flags set; those it has no flag for keep ``defaults``."""
    return replace(defaults, **{f.name: getattr(args, f.name) for f in fields(BenchOptions) if hasattr(args, f.name)})


def _rpc(args: argparse.Namespace, **tuning: int) -> TuneOptions:
    """Where candidates (compile --tune) or artifacts (bench) run: the rpc flags, plus the tuning budget when given."""
    host, _, port = args.tracker.partition(":")
    if not host or not port.isdigit():
        raise UserError(f"--tracker {args.tracker!r} is not HOST:PORT; pass e.g. 127.0.0.1:9190")
    return TuneOptions(runner=args.runner, tracker_host=host, tracker_port=int(port), key=args.key, **tuning)


def _tune(args: argparse.Namespace) -> TuneOptions:
    return _rpc(args, enabled=True, trials=args.trials, trials_per_task=args.trials_per_task, trials_per_iter=args.trials_per_iter)


def _compile(args: argparse.Namespace) -> CompileOptions:
    tuning_dir = args.tuning_dir or (f"{args.out_dir.rstrip('/')}_tuning" if args.tune else None)
    return CompileOptions(
        target=_target(args), fast_scatter_nd=args.fast_scatter_nd, exec_mode=args.exec_mode, size=args.size,
        tuning_dir=tuning_dir, weights=args.weights, calibration=args.calibration,
    )


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


# The subcommands.


def _cmd_smoke(args: argparse.Namespace) -> None:
    from .evaluate.smoke import run_smoke

    report = run_smoke(_target(args))
    print(f"tvm version: {report['tvm_version']}")
    print(f"cuda enabled: {report['cuda_enabled']}")
    print(f"target: {report['target']}")
    print("smoke: ok (ran identity model)" if report["ran"] else f"smoke: ok ({report['note']})")


def _cmd_model(args: argparse.Namespace) -> None:
    from .models.sources import build_model

    model = ModelOptions(source=args.source, size=args.size, seed=args.seed)
    info = build_model(model.source, model.size, Path(args.out), seed=model.seed)
    kind = "synthetic weights, for latency only" if info.synthetic else "real weights"
    print(f"wrote {args.out}: {info.source} at {model.size}px ({kind}), input {info.input.name} "
          f"{list(info.input.shape)}, {info.scatternd_nodes} ScatterND nodes{info.outputs_note}")


def _cmd_export_onnx(args: argparse.Namespace) -> None:
    from .models.onnx_export import export_noscatter

    report = export_noscatter(Path(args.onnx), Path(args.out), args.size)
    if not report.rewritten and not report.kept and not report.folded and args.size is None:
        print(f"no ScatterND in {args.onnx}: nothing to rewrite, copied it unchanged to {args.out}")
    else:
        print(f"wrote {args.out}: {report.summary()}")


def _cmd_compile(args: argparse.Namespace) -> None:
    options = _compile(args)
    tune = _tune(args) if args.tune else None
    from .compiler.compile import compile_onnx

    if tune is not None:
        from .compiler.tune import tune_model

        tuned = tune_model(Path(args.onnx), Path(options.tuning_dir), replace(options, fast_scatter_nd=True), tune)
        print(f"tuning database in {options.tuning_dir}: {tuned.summary.get('records', 0)} records, {tuned.seconds} s")
    print(f"compiling {args.onnx} for {args.target} ({options.variant}) ...", flush=True)
    result = compile_onnx(Path(args.onnx), Path(args.out_dir), options)
    meta = result.meta
    written = "model.so, weights.bin and meta.json" if "weights" in meta else "model.so and meta.json"
    print(f"wrote {written} to {args.out_dir} in {result.seconds:.1f} s (target {meta['target']}, {meta['precision']})")
    if meta.get("conv_kernels"):
        cores = [k["cores"] for k in meta["conv_kernels"].values()]
        print(f"conv kernels: {cores.count('tensor_core')} on tensor cores, {cores.count('plain')} on plain cores; "
              f"cuda graph {'on' if meta['cuda_graph'] else 'off'}")
    if options.tuning_dir:
        print(f"tuned: {meta['tuned']} ({meta['tuned_functions']} functions took records from {options.tuning_dir})")
    if meta["scatter_nd"]:
        print("scatter_nd: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["scatter_nd"].items())))


def _check_bench_flags(args: argparse.Namespace) -> None:
    """What no option dataclass holds: the flags' combinations and bench's own --threads."""
    check_range("threads", args.threads, 0)
    needs_image = [flag for flag, value in (("--save_vis", args.save_vis), ("--save_dets", args.save_dets)) if value]
    if needs_image and not args.image:
        raise UserError(f"{' and '.join(needs_image)} need --image (detections on random input mean nothing)")
    if args.runner == "rpc" and not args.key:
        raise UserError("--runner rpc needs --key, the key your rpc_servers registered with")
    if args.aa and len(args.artifact_dir) > 1:
        raise UserError("--aa times one artifact against a copy of itself; pass a single --artifact_dir")


def _cmd_bench(args: argparse.Namespace) -> None:
    bench, vis = _bench(args, SEED_BENCH), VisualizeOptions(score_thresh=args.score_thresh, nms_iou=args.nms_iou)
    _check_bench_flags(args)
    remote = _rpc(args) if args.runner == "rpc" else None
    from contextlib import nullcontext

    from .evaluate.bench import RemoteDevice, artifact_copy, bench_artifacts
    from .evaluate.images import model_input
    from .evaluate.visualize import save_results
    from .runtime import load_artifact

    rpc = RemoteDevice(remote.tracker_host, remote.tracker_port, remote.key, remote.rpc_timeout_s) if remote else None
    artifact = load_artifact(Path(args.artifact_dir[0]))
    name = artifact.variant
    others = _named_dirs(args.artifact_dir[1:], taken={name})
    data, image = model_input(artifact.meta["input_shape"], artifact.meta["input_dtype"], _path(bench.image),
                              bench.input_scale, bench.seed, letterbox=bench.letterbox)
    with artifact_copy(Path(args.artifact_dir[0])) if args.aa else nullcontext() as copy:
        dirs = {name: Path(args.artifact_dir[0]), **({f"{name}_copy": copy} if copy else {}), **others}
        run = bench_artifacts(
            dirs, data, onnx_path=_path(args.onnx), device=args.device, iters=bench.iters, warmup=bench.warmup,
            max_seconds=bench.max_seconds, threads=args.threads, seed=bench.seed, rpc=rpc, peers=_peer_names(args.peers),
            profile_topk=bench.profile_topk if args.profile else 0, onnx_noscatter=_path(args.onnx_noscatter),
            peers_int8=_path(args.peers_int8),
        )
    _print_bench(run, name, list(others), args.aa)
    if args.json:
        from .core.files import write_json

        write_json(Path(args.json), run.to_json())
    dets = save_results(run.outputs[name], artifact.meta, image, vis, bench.letterbox, args.nms, _path(args.save_outputs),
                        _path(args.save_dets), _path(args.save_vis))
    if args.save_vis or args.save_dets:
        print(f"{len(dets)} detections: " + ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:10]))
    for what, path in (("raw outputs", args.save_outputs), ("detections", args.save_dets), ("visualisation", args.save_vis)):
        if path:
            print(f"saved {what} to {path}")


def _print_bench(run: BenchRun, name: str, others: list[str], aa: bool) -> None:
    """The seed's report: skipped peers, the profile, the table with every ratio, the avg latency line last."""
    from .deploy.profiler import format_profile
    from .evaluate.report import latency_metrics, summary_table

    for peer, reason in run.skipped.items():
        print(f"skipped {peer}: {reason}")
    for note in run.profile_notes.values():
        print(note)
    if run.profile:
        print(format_profile(run.profile[name]))
    print(f"{run.device}, {run.threads} threads, {run.rounds} rounds in a shuffled order (seed {run.seed})")
    print(summary_table(latency_metrics(run, speedup=(name, f"{name}_copy"))))
    if aa:
        verdict = "contains" if run.ratio(name, f"{name}_copy").contains(1.0) else "does NOT contain"
        print(f"A/A check: speedup is {name} / its copy; its interval {verdict} 1.00")
    for other in others:
        ratio = run.ratio(name, other)
        print(f"speedup {name} / {other} {ratio.median:.2f}x [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]  (means {ratio.of_means:.2f}x)")
    print(f"avg latency (ms): {run.stats[name].mean_ms:.4f}")


def _peer_names(text: str) -> list[str]:
    """ONNX Runtime (the reference for every diff) and the peers named on the command line."""
    from .evaluate.peers import REFERENCE

    return [REFERENCE] + [name for name in text.split(",") if name and name != REFERENCE]


def _named_dirs(directories: list[str], taken: set[str]) -> dict[str, Path]:
    """Extra artifacts to time in the same rounds, named after their directories (made unique)."""
    named: dict[str, Path] = {}
    for directory in directories:
        base = Path(directory).name or "artifact"
        name, n = base, 2
        while name in taken or name in named:
            name, n = f"{base}_{n}", n + 1
        named[name] = Path(directory)
    return named


def _cmd_calibrate(args: argparse.Namespace) -> None:
    bench = _bench(args, BenchOptions())
    from .evaluate.calibrate import calibrate

    result = calibrate(Path(args.onnx), Path(args.images), Path(args.out), args.size, bench.input_scale, bench.letterbox)
    print(f"wrote {args.out}: ranges of {len(result['convs'])} conv inputs over {len(result['photos'])} photos ({result['method']})")
    if result["synthetic_weights"]:
        print("note: this model has synthetic weights, so its int8 build is for latency only: its detections mean nothing")


def _cmd_quantize_peers(args: argparse.Namespace) -> None:
    bench = _bench(args, BenchOptions())
    from .evaluate.peer_int8 import quantize_peers

    result = quantize_peers(Path(args.onnx), Path(args.images), Path(args.out), args.size, bench.input_scale, bench.letterbox)
    print(f"wrote {args.out}: {', '.join(result['systems'])}, calibrated on {len(result['photos'])} photos "
          f"(bench --peers {','.join(result['systems'])} --peers_int8 {args.out})")
    for peer, reason in result["skipped"].items():
        print(f"skipped {peer}: {reason}")


def _cmd_compare_dets(args: argparse.Namespace) -> None:
    options = AccuracyOptions(report_score=args.report_score, match_score=args.match_score, match_iou=args.match_iou)
    bench = _bench(args, BenchOptions())
    from .evaluate.accuracy import compare_builds

    result = compare_builds(Path(args.reference), Path(args.candidate), Path(args.images), bench.input_scale, bench.letterbox, options)
    print(result.summary())
    if args.json:
        from .core.files import write_json

        write_json(Path(args.json), result.to_json())
    if not result.passed:
        raise UserError(f"{args.candidate} does not detect what {args.reference} detects (above); fix the build before using it")


def _cmd_bundle(args: argparse.Namespace) -> None:
    bench = _bench(args, BenchOptions())
    from .evaluate.bundle import build_bundle

    tarball = build_bundle([Path(d) for d in args.artifact_dir], Path(args.out), _path(bench.image), bench.input_scale, bench.letterbox)
    size = tarball.stat().st_size / 1e6
    print(f"wrote {args.out}/ and {tarball} ({size:.1f} MB); on the target: tar xzf {tarball.name} && bash {Path(args.out).name}/run.sh")


def _cmd_curve(args: argparse.Namespace) -> None:
    try:
        points = tuple(int(p) for p in args.points.split(","))
    except ValueError:
        raise UserError(f"--points {args.points!r} is not a comma-separated list of trial counts; pass e.g. 0,64,256") from None
    curve, bench = CurveOptions(points=points, out=args.out, png=args.png), _bench(args, CURVE_BENCH)
    from .compiler.tuning_db import load_summary
    from .evaluate.curve import tuning_curve, write_curve
    from .evaluate.images import model_input
    from .models.onnx_info import read_input_spec

    target = load_summary(Path(args.tuning_dir))["target"]
    threads = int(json.loads(target).get("num-cores", 0))
    spec = read_input_spec(Path(args.onnx))
    data, _ = model_input(spec.shape, spec.dtype, _path(bench.image), bench.input_scale, letterbox=bench.letterbox)
    options = CompileOptions(target=TargetOptions(kind="llvm", cpu_threads=threads), fast_scatter_nd=True)
    rows = tuning_curve(Path(args.onnx), Path(args.tuning_dir), options, list(curve.points), data, bench.iters,
                        bench.warmup, bench.max_seconds)
    write_curve(rows, Path(curve.out), Path(curve.png))
    print(f"wrote {curve.out} and {curve.png}")


def _cmd_photos(args: argparse.Namespace) -> None:
    from .evaluate.photos import install_sample_photos

    paths = install_sample_photos(Path(args.out))
    print(f"{len(paths)} sample photos (sha256-checked, from the installed wheels) in {args.out}")


def _cmd_report(args: argparse.Namespace) -> None:
    from .evaluate.report import summary_table

    path = Path(args.metrics)
    if not path.is_file():
        raise UserError(f"{path} does not exist yet; run `make bench` (or `dvc repro`) first")
    print(summary_table(json.loads(path.read_text())))


# Flag groups: each adds the flags of one concern, with its defaults from core.options.


def _add_target_flags(parser: argparse.ArgumentParser, threads: bool) -> None:
    target = TargetOptions()
    parser.add_argument("--target", choices=TARGET_KINDS, default=target.kind)
    parser.add_argument("--cuda_arch", default=target.cuda_arch, help="CUDA arch, e.g. sm_80, sm_89, sm_90")
    if threads:
        parser.add_argument("--threads", type=int, default=target.cpu_threads, help="llvm num-cores (0: all cores here)")
        parser.add_argument("--mcpu", default=target.mcpu, help="llvm -mcpu (native: this machine's CPU)")


def _add_build_flags(parser: argparse.ArgumentParser) -> None:
    """What a compile makes: precision, variant, VM mode, input size, where the weights live."""
    build = CompileOptions()
    parser.add_argument(
        "--precision", choices=sorted({p for names in PRECISIONS.values() for p in names}), default=build.target.precision,
        help="llvm: fp32 | bf16 (needs avx512_bf16) | int8 (needs AVX512-VNNI and --calibration); "
        "cuda: fp32 | fp16 (tensor cores, fp32 accumulation)",
    )
    parser.add_argument("--calibration", default=build.calibration, help="int8: the activation ranges `yolov3-tvm calibrate` wrote")
    parser.add_argument("--no_cuda_graph", action="store_true", help="cuda: launch kernels one by one (a build whose per-op profile works)")
    parser.add_argument("--fast_scatter_nd", action="store_true", help="rewrite/replace scatter_nd (the fastscatter variant)")
    parser.add_argument("--exec_mode", choices=EXEC_MODES, default=build.exec_mode)
    parser.add_argument("--size", type=int, default=build.size, help="fixes a dynamic image input to SIZE x SIZE")
    parser.add_argument("--weights", choices=WEIGHTS_MODES, default=build.weights,
                        help="embedded: weights inside model.so; separate: conv weights in weights.bin beside it")


def _add_tune_flags(parser: argparse.ArgumentParser) -> None:
    tune = TuneOptions()
    parser.add_argument("--tune", action="store_true", help="tune with MetaSchedule first, then apply the database")
    parser.add_argument("--trials", type=int, default=tune.trials, help="total MetaSchedule trials (with --tune)")
    parser.add_argument("--trials_per_task", type=int, default=tune.trials_per_task, help="cap per task, 0 = none")
    parser.add_argument("--trials_per_iter", type=int, default=tune.trials_per_iter, help="candidates per task per round")
    parser.add_argument("--tuning_dir", default=None, help="tuning database directory (default with --tune: OUT_DIR_tuning)")


def _add_rpc_flags(parser: argparse.ArgumentParser, runner_help: str) -> None:
    tune = TuneOptions()
    parser.add_argument("--runner", choices=["local", "rpc"], default=tune.runner, help=runner_help)
    parser.add_argument("--tracker", default=f"{tune.tracker_host}:{tune.tracker_port}", help="RPC tracker host:port (--runner rpc)")
    parser.add_argument("--key", default=tune.key, help="RPC device key (--runner rpc)")


def _add_input_flags(parser: argparse.ArgumentParser, defaults: BenchOptions, image: bool = True) -> None:
    """The model's input: a photo (or seeded random pixels), the pixel scale, letterbox or plain resize."""
    if image:
        parser.add_argument("--image", default=defaults.image, help="a photo instead of random input (\"\": random)")
    parser.add_argument("--input_scale", type=float, default=defaults.input_scale,
                        help="pixel multiplier (1/255 = 0.0039215686 for [0,1] models)")
    letterbox = parser.add_mutually_exclusive_group()
    letterbox.add_argument("--letterbox", dest="letterbox", action="store_true",
                           help="keep the photo's aspect ratio, pad with grey (Darknet's preprocessing)")
    letterbox.add_argument("--no_letterbox", dest="letterbox", action="store_false", help="stretch the photo to the input size")
    parser.set_defaults(letterbox=defaults.letterbox)


def _add_timing_flags(parser: argparse.ArgumentParser, defaults: BenchOptions) -> None:
    parser.add_argument("--iters", type=int, default=defaults.iters, help="rounds; each times every system once")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed rounds first")
    parser.add_argument("--max_seconds", type=float, default=defaults.max_seconds,
                        help="cap on the whole bench; the round in progress finishes (0: no bound)")


def _add_systems_flags(parser: argparse.ArgumentParser) -> None:
    """What bench times: the artifacts, where, and the peers beside them."""
    parser.add_argument("--artifact_dir", action="append", required=True,
                        help="the artifact to bench; repeat to time others (e.g. another precision) in the same rounds")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: the artifact's target")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for TVM and ORT (0: the artifact's)")
    parser.add_argument("--onnx", default=None, help="ONNX for the ONNX Runtime reference (default: meta.json's onnx_path)")
    parser.add_argument("--peers", default="", help="systems timed beside TVM in the same rounds, comma separated "
                        "(onnxruntime always; also onnxruntime_noscatter, openvino_f32, openvino, onnxruntime_int8, openvino_int8)")
    parser.add_argument("--onnx_noscatter", default=None, help="the model from export-onnx (peer onnxruntime_noscatter)")
    parser.add_argument("--peers_int8", default=None, help="the directory from quantize-peers (peers onnxruntime_int8, openvino_int8)")
    parser.add_argument("--aa", action="store_true",
                        help="A/A check: time the artifact against a copy of itself in the same rounds (speedup should be 1.00)")


def _add_calibration_flags(parser: argparse.ArgumentParser, defaults: BenchOptions, out_help: str) -> None:
    """What a calibration reads, ours or the peers': the ONNX, the photos, and the preprocessing bench uses."""
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--images", default=VisualizeOptions.images, help="a folder of JPEG/PNG photos (default: the sample photos)")
    parser.add_argument("--size", type=int, default=None, help="fixes a dynamic image input to SIZE x SIZE")
    _add_input_flags(parser, defaults, image=False)


def _add_results_flags(parser: argparse.ArgumentParser, defaults: BenchOptions) -> None:
    """What bench reports beyond latency: profile, detections, saved files."""
    vis = VisualizeOptions()
    parser.add_argument("--profile", action="store_true", help="per-op profile via vm.set_instrument")
    parser.add_argument("--profile_topk", type=int, default=defaults.profile_topk)
    parser.add_argument("--score_thresh", type=float, default=vis.score_thresh)
    parser.add_argument("--nms", action="store_true", help="class-wise non-maximum suppression")
    parser.add_argument("--nms_iou", type=float, default=vis.nms_iou)
    parser.add_argument("--save_outputs", default=None, help="write raw outputs to this .npz")
    parser.add_argument("--save_vis", default=None, help="draw detections on the image into this file")
    parser.add_argument("--save_dets", default=None, help="write detections JSON to this file")
    parser.add_argument("--json", default=None, help="write the full result (stats, samples, profile) as JSON")


def _add_accuracy_flags(parser: argparse.ArgumentParser) -> None:
    acc = AccuracyOptions()
    parser.add_argument("--report_score", type=float, default=acc.report_score, help="boxes a build reports")
    parser.add_argument("--match_score", type=float, default=acc.match_score, help="lowest score of a matching box")
    parser.add_argument("--match_iou", type=float, default=acc.match_iou, help="lowest IoU of a matching box")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolov3-tvm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline = BenchOptions()  # bundle and compare-dets feed the model as the pipeline does

    def command(name: str, func: Callable[[argparse.Namespace], None], summary: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=summary)
        child.set_defaults(func=func)
        return child

    smoke = command("smoke", _cmd_smoke, "compile, load and run an identity model on the target")
    _add_target_flags(smoke, threads=False)

    model_defaults = ModelOptions()
    model = command("model", _cmd_model, "write a YOLOv3 ONNX: real yolov3-tiny, synthetic yolov3, or your ONNX")
    model.add_argument("--source", required=True, help="yolov3-tiny | yolov3 | yolov3-torch | yolov3-tiny-torch | path to an ONNX file")
    model.add_argument("--size", type=int, default=model_defaults.size, help="input height = width, a multiple of 32")
    model.add_argument("--out", required=True)
    model.add_argument("--seed", type=int, default=model_defaults.seed, help="seed of yolov3's synthetic weights")

    export = command("export-onnx", _cmd_export_onnx, "rewrite provably dense ScatterND to Slice + Concat, for any runtime")
    export.add_argument("--onnx", required=True, help="the model to rewrite")
    export.add_argument("--out", required=True, help="where the ScatterND-free model goes (written atomically)")
    export.add_argument("--size", type=int, default=None,
                        help="fix a dynamic image input to size x size first (its Shape-computed grids then fold)")

    comp = command("compile", _cmd_compile, "ONNX -> TVM artifact directory (model.so + meta.json)")
    comp.add_argument("--onnx", required=True)
    comp.add_argument("--out_dir", required=True)
    _add_target_flags(comp, threads=True)
    _add_build_flags(comp)
    _add_tune_flags(comp)
    _add_rpc_flags(comp, "where tuning measures candidates")

    bench = command("bench", _cmd_bench, "latency (vs ONNX Runtime), per-op profile, detections")
    _add_systems_flags(bench)
    _add_timing_flags(bench, SEED_BENCH)
    _add_input_flags(bench, SEED_BENCH)
    bench.add_argument("--seed", type=int, default=SEED_BENCH.seed, help="seed of the random input, the round order and the bootstrap")
    _add_results_flags(bench, SEED_BENCH)
    _add_rpc_flags(bench, "rpc: run on a device behind TVM's RPC tracker")

    bundle = command("bundle", _cmd_bundle, "artifacts + runtime-only TVM + reference, runnable with `bash run.sh` on a bare host")
    bundle.add_argument("--artifact_dir", action="append", required=True, help="an artifact to ship (repeat for each variant)")
    bundle.add_argument("--out", required=True, help="bundle directory; OUT.tar.gz is written beside it")
    _add_input_flags(bundle, pipeline)

    curve_defaults = CurveOptions()
    curve = command("curve", _cmd_curve, "latency vs tuning trials (llvm), from one tuning database")
    curve.add_argument("--onnx", required=True)
    curve.add_argument("--tuning_dir", required=True, help="a database from `compile --tune` or the tune stage")
    curve.add_argument("--points", default=",".join(map(str, curve_defaults.points)), help="trial budgets, comma separated")
    _add_input_flags(curve, CURVE_BENCH)
    _add_timing_flags(curve, CURVE_BENCH)
    curve.add_argument("--out", default=curve_defaults.out)
    curve.add_argument("--png", default=curve_defaults.png)

    calib = command("calibrate", _cmd_calibrate, "activation ranges of the fp32 model over photos, for an int8 compile")
    _add_calibration_flags(calib, pipeline, "the calibration JSON to write")

    quant = command("quantize-peers", _cmd_quantize_peers, "ONNX Runtime's QDQ and OpenVINO's NNCF int8, calibrated as calibrate is")
    _add_calibration_flags(quant, pipeline, "the directory to write (bench --peers_int8 reads it)")

    compare = command("compare-dets", _cmd_compare_dets, "hold a reduced-precision build to the detections of a reference build")
    compare.add_argument("--reference", required=True, help="artifact directory of the reference (fp32) build")
    compare.add_argument("--candidate", required=True, help="artifact directory of the build under test (bf16, fp16)")
    compare.add_argument("--images", default=VisualizeOptions.images, help="every .jpg/.jpeg/.png here is compared")
    _add_input_flags(compare, pipeline, image=False)
    _add_accuracy_flags(compare)
    compare.add_argument("--json", default=None, help="write the per-photo result here")

    command("photos", _cmd_photos, "copy the sample photos out of the installed wheels").add_argument("--out", default=VisualizeOptions.images)
    command("report", _cmd_report, "print the latency table from metrics/latency.json").add_argument("--metrics", default="metrics/latency.json")
    return parser


def _run(args: argparse.Namespace) -> None:
    """Run the subcommand; a value out of its range is reported under the flag that set it."""
    try:
        args.func(args)
    except OptionError as exc:
        flag = _FLAG_OF.get(exc.key, exc.key)
        raise UserError(f"--{flag} {exc.value} is out of range: it must be {exc.allowed}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
