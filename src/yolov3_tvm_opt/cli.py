"""``yolov3-tvm``: one console script whose subcommands keep the seed project's flag names.

The DVC stages call the same library functions as these subcommands, and both take their
defaults from ``core.options``, so a result from ``make bench`` can be reproduced by hand flag
for flag. User mistakes end in one ``error:`` line and exit code 2; anything else is a bug and
keeps its traceback. Each subcommand imports only the layers it uses, so ``model`` and
``report`` never load TVM.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .core.errors import UserError, exit_code_of
from .core.options import (
    PRECISIONS,
    SEED_BENCH,
    TARGET_KINDS,
    WEIGHTS_MODES,
    AccuracyOptions,
    BenchOptions,
    CompileOptions,
    ModelOptions,
    TargetOptions,
    TuneOptions,
    VisualizeOptions,
)


def _target(args: argparse.Namespace) -> TargetOptions:
    return TargetOptions(
        kind=args.target,
        cuda_arch=args.cuda_arch,
        cpu_threads=getattr(args, "threads", TargetOptions.cpu_threads),
        mcpu=getattr(args, "mcpu", TargetOptions.mcpu),
        precision=getattr(args, "precision", TargetOptions.precision),
        cuda_graph=not getattr(args, "no_cuda_graph", not TargetOptions.cuda_graph),
    )


def _cmd_smoke(args: argparse.Namespace) -> None:
    from .evaluate.smoke import run_smoke

    report = run_smoke(_target(args))
    print(f"tvm version: {report['tvm_version']}")
    print(f"cuda enabled: {report['cuda_enabled']}")
    print(f"target: {report['target']}")
    print("smoke: ok (ran identity model)" if report["ran"] else f"smoke: ok ({report['note']})")


def _cmd_model(args: argparse.Namespace) -> None:
    from .models.sources import build_model

    info = build_model(args.source, args.size, Path(args.out), seed=args.seed)
    kind = "synthetic weights, for latency only" if info.synthetic else "real weights"
    print(f"wrote {args.out}: {info.source} at {args.size}px ({kind}), input {info.input.name} "
          f"{list(info.input.shape)}, {info.scatternd_nodes} ScatterND nodes")


def _cmd_export_onnx(args: argparse.Namespace) -> None:
    from .models.onnx_export import export_noscatter

    report = export_noscatter(Path(args.onnx), Path(args.out))
    if not report.rewritten and not report.kept:
        print(f"no ScatterND in {args.onnx}: nothing to rewrite, copied it unchanged to {args.out}")
    else:
        print(f"wrote {args.out}: {report.summary()}")


def _tracker(args: argparse.Namespace) -> tuple[str, int]:
    host, _, port = args.tracker.partition(":")
    if not host or not port.isdigit():
        raise UserError(f"--tracker {args.tracker!r} is not HOST:PORT; pass e.g. 127.0.0.1:9190")
    return host, int(port)


def _tune_options(args: argparse.Namespace) -> TuneOptions:
    host, port = _tracker(args)
    return TuneOptions(
        enabled=True, trials=args.trials, trials_per_task=args.trials_per_task, trials_per_iter=args.trials_per_iter,
        runner=args.runner, tracker_host=host, tracker_port=port, key=args.key,
    )


def _cmd_compile(args: argparse.Namespace) -> None:
    from .compiler.compile import compile_onnx

    tuning_dir = args.tuning_dir or (f"{args.out_dir.rstrip('/')}_tuning" if args.tune else None)
    options = CompileOptions(
        target=_target(args), fast_scatter_nd=args.fast_scatter_nd, exec_mode=args.exec_mode, size=args.size,
        tuning_dir=tuning_dir, weights=args.weights,
    )
    if args.tune:
        from .compiler.tune import tune_model

        tuned = tune_model(Path(args.onnx), Path(tuning_dir), replace(options, fast_scatter_nd=True), _tune_options(args))
        print(f"tuning database in {tuning_dir}: {tuned.summary.get('records', 0)} records, {tuned.seconds} s")
    print(f"compiling {args.onnx} for {args.target} ({options.variant}) ...", flush=True)
    result = compile_onnx(Path(args.onnx), Path(args.out_dir), options)
    meta = result.meta
    written = "model.so, weights.bin and meta.json" if "weights" in meta else "model.so and meta.json"
    print(f"wrote {written} to {args.out_dir} in {result.seconds:.1f} s (target {meta['target']}, {meta['precision']})")
    if meta.get("conv_kernels"):
        cores = [k["cores"] for k in meta["conv_kernels"].values()]
        print(f"conv kernels: {cores.count('tensor_core')} on tensor cores, {cores.count('plain')} on plain cores; "
              f"cuda graph {'on' if meta['cuda_graph'] else 'off'}")
    if tuning_dir:
        print(f"tuned: {meta['tuned']} ({meta['tuned_functions']} functions took records from {tuning_dir})")
    if meta["scatter_nd"]:
        print("scatter_nd: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["scatter_nd"].items())))


def _cmd_bench(args: argparse.Namespace) -> None:
    from contextlib import nullcontext

    from .deploy.detect import detections_for, save_detections, save_outputs
    from .deploy.profiler import format_profile
    from .evaluate.bench import RemoteDevice, artifact_copy, bench_artifacts
    from .evaluate.images import draw_detections, model_input
    from .evaluate.report import latency_metrics, summary_table
    from .runtime import load_artifact

    needs_image = [flag for flag, value in (("--save_vis", args.save_vis), ("--save_dets", args.save_dets)) if value]
    if needs_image and not args.image:
        raise UserError(f"{' and '.join(needs_image)} need --image (detections on random input mean nothing)")
    rpc = None
    if args.runner == "rpc":
        if not args.key:
            raise UserError("--runner rpc needs --key, the key your rpc_servers registered with")
        rpc = RemoteDevice(*_tracker(args), args.key, TuneOptions.rpc_timeout_s)
    if args.aa and len(args.artifact_dir) > 1:
        raise UserError("--aa times one artifact against a copy of itself; pass a single --artifact_dir")
    artifact = load_artifact(Path(args.artifact_dir[0]))
    meta, name = artifact.meta, artifact.variant
    others = _named_dirs(args.artifact_dir[1:], taken={name})
    image_path = Path(args.image) if args.image else None
    data, image = model_input(
        meta["input_shape"], meta["input_dtype"], image_path, args.input_scale, args.seed, letterbox=args.letterbox
    )
    with artifact_copy(Path(args.artifact_dir[0])) if args.aa else nullcontext() as copy:
        dirs = {name: Path(args.artifact_dir[0]), **({f"{name}_copy": copy} if copy else {}), **others}
        run = bench_artifacts(
            dirs, data, onnx_path=Path(args.onnx) if args.onnx else None, device=args.device, iters=args.iters,
            warmup=args.warmup, max_seconds=args.max_seconds, threads=args.threads, seed=args.seed,
            profile_topk=args.profile_topk if args.profile else 0, rpc=rpc, peers=_peer_names(args.peers),
            onnx_noscatter=Path(args.onnx_noscatter) if args.onnx_noscatter else None,
        )
    for peer, reason in run.skipped.items():
        print(f"skipped {peer}: {reason}")
    for note in run.profile_notes.values():
        print(note)
    if run.profile:
        print(format_profile(run.profile[name]))
    print(f"{run.device}, {run.threads} threads, {run.rounds} rounds in a shuffled order (seed {run.seed})")
    print(summary_table(latency_metrics(run, speedup=(name, f"{name}_copy"))))
    if args.aa:
        verdict = "contains" if run.ratio(name, f"{name}_copy").contains(1.0) else "does NOT contain"
        print(f"A/A check: speedup is {name} / its copy; its interval {verdict} 1.00")
    for other in others:
        ratio = run.ratio(name, other)
        print(f"speedup {name} / {other} {ratio.median:.2f}x [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]  (means {ratio.of_means:.2f}x)")
    print(f"avg latency (ms): {run.stats[name].mean_ms:.4f}")
    outputs = run.outputs[name]
    if args.save_outputs:
        save_outputs({f"output{i}": out for i, out in enumerate(outputs)}, Path(args.save_outputs))
        print(f"saved raw outputs to {args.save_outputs}")
    if args.json:
        from .core.files import write_json

        write_json(Path(args.json), run.to_json())
    if image is not None and (args.save_vis or args.save_dets):
        dets = detections_for(
            outputs[0], meta, (image.height, image.width), args.score_thresh, args.nms_iou, args.letterbox,
            nms=args.nms,
        )
        print(f"{len(dets)} detections: " + ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:10]))
        if args.save_dets:
            save_detections(dets, Path(args.save_dets))
            print(f"saved detections to {args.save_dets}")
        if args.save_vis:
            draw_detections(image, dets, Path(args.save_vis))
            print(f"saved visualisation to {args.save_vis}")


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


def _cmd_compare_dets(args: argparse.Namespace) -> None:
    from .evaluate.accuracy import compare_builds

    options = AccuracyOptions(report_score=args.report_score, match_score=args.match_score, match_iou=args.match_iou)
    result = compare_builds(
        Path(args.reference), Path(args.candidate), Path(args.images), args.input_scale, args.letterbox, options
    )
    print(result.summary())
    if args.json:
        from .core.files import write_json

        write_json(Path(args.json), result.to_json())
    if not result.passed:
        raise UserError(f"{args.candidate} does not detect what {args.reference} detects (above); fix the build before using it")


def _cmd_bundle(args: argparse.Namespace) -> None:
    from .evaluate.bundle import build_bundle

    image = Path(args.image) if args.image else None
    tarball = build_bundle([Path(d) for d in args.artifact_dir], Path(args.out), image, args.input_scale, args.letterbox)
    size = tarball.stat().st_size / 1e6
    print(f"wrote {args.out}/ and {tarball} ({size:.1f} MB); on the target: tar xzf {tarball.name} && bash {Path(args.out).name}/run.sh")


def _cmd_curve(args: argparse.Namespace) -> None:
    from .compiler.tuning_db import load_summary
    from .evaluate.curve import tuning_curve, write_curve
    from .evaluate.images import model_input
    from .models.onnx_info import read_input_spec

    points = [int(p) for p in args.points.split(",")]
    target = load_summary(Path(args.tuning_dir))["target"]
    threads = int(json.loads(target).get("num-cores", 0))
    spec = read_input_spec(Path(args.onnx))
    image = Path(args.image) if args.image else None
    data, _ = model_input(spec.shape, spec.dtype, image, args.input_scale, letterbox=args.letterbox)
    options = CompileOptions(target=TargetOptions(kind="llvm", cpu_threads=threads), fast_scatter_nd=True)
    rows = tuning_curve(Path(args.onnx), Path(args.tuning_dir), options, points, data, args.iters, args.warmup, args.max_seconds)
    write_curve(rows, Path(args.out), Path(args.png))
    print(f"wrote {args.out} and {args.png}")


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


def _add_target_flags(parser: argparse.ArgumentParser, threads: bool) -> None:
    target = TargetOptions()
    parser.add_argument("--target", choices=TARGET_KINDS, default=target.kind)
    parser.add_argument("--cuda_arch", default=target.cuda_arch, help="CUDA arch, e.g. sm_80, sm_89, sm_90")
    if threads:
        parser.add_argument("--threads", type=int, default=target.cpu_threads, help="llvm num-cores (0: all cores here)")
        parser.add_argument("--mcpu", default=target.mcpu, help="llvm -mcpu (native: this machine's CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolov3-tvm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    smoke = sub.add_parser("smoke", help="compile, load and run an identity model on the target")
    _add_target_flags(smoke, threads=False)
    smoke.set_defaults(func=_cmd_smoke)

    model_defaults = ModelOptions()
    model = sub.add_parser("model", help="write a YOLOv3 ONNX: real yolov3-tiny, synthetic yolov3, or your ONNX")
    model.add_argument("--source", required=True, help="yolov3-tiny | yolov3 | path to an ONNX file")
    model.add_argument("--size", type=int, default=model_defaults.size, help="input height = width, a multiple of 32")
    model.add_argument("--out", required=True)
    model.add_argument("--seed", type=int, default=model_defaults.seed, help="seed of yolov3's synthetic weights")
    model.set_defaults(func=_cmd_model)

    export = sub.add_parser("export-onnx", help="rewrite provably dense ScatterND to Slice + Concat, for any runtime")
    export.add_argument("--onnx", required=True, help="the model to rewrite")
    export.add_argument("--out", required=True, help="where the ScatterND-free model goes (written atomically)")
    export.set_defaults(func=_cmd_export_onnx)

    tune = TuneOptions()
    comp = sub.add_parser("compile", help="ONNX -> TVM artifact directory (model.so + meta.json)")
    comp.add_argument("--onnx", required=True)
    comp.add_argument("--out_dir", required=True)
    _add_target_flags(comp, threads=True)
    comp.add_argument(
        "--precision", choices=sorted({p for names in PRECISIONS.values() for p in names}), default=TargetOptions.precision,
        help="llvm: fp32 | bf16 (needs avx512_bf16); cuda: fp32 | fp16 (tensor cores, fp32 accumulation)",
    )
    comp.add_argument("--no_cuda_graph", action="store_true", help="cuda: launch kernels one by one (a build whose per-op profile works)")
    comp.add_argument("--fast_scatter_nd", action="store_true", help="rewrite/replace scatter_nd (the fastscatter variant)")
    comp.add_argument("--tune", action="store_true", help="tune with MetaSchedule first, then apply the database")
    comp.add_argument("--trials", type=int, default=tune.trials, help="total MetaSchedule trials (with --tune)")
    comp.add_argument("--trials_per_task", type=int, default=tune.trials_per_task, help="cap per task, 0 = none")
    comp.add_argument("--trials_per_iter", type=int, default=tune.trials_per_iter, help="candidates per task per round")
    comp.add_argument("--tuning_dir", default=None, help="tuning database directory (default with --tune: OUT_DIR_tuning)")
    comp.add_argument("--runner", choices=["local", "rpc"], default=tune.runner, help="where tuning measures candidates")
    comp.add_argument("--tracker", default=f"{tune.tracker_host}:{tune.tracker_port}", help="RPC tracker host:port (--runner rpc)")
    comp.add_argument("--key", default=tune.key, help="RPC device key (--runner rpc)")
    comp.add_argument("--exec_mode", choices=["bytecode", "compiled"], default=CompileOptions.exec_mode)
    comp.add_argument("--size", type=int, default=None, help="fixes a dynamic image input to SIZE x SIZE")
    comp.add_argument("--weights", choices=WEIGHTS_MODES, default=CompileOptions.weights,
                      help="embedded: weights inside model.so; separate: conv weights in weights.bin beside it")
    comp.set_defaults(func=_cmd_compile)

    seed, vis = SEED_BENCH, VisualizeOptions()
    bench = sub.add_parser("bench", help="latency (vs ONNX Runtime), per-op profile, detections")
    bench.add_argument("--artifact_dir", action="append", required=True,
                       help="the artifact to bench; repeat to time others (e.g. another precision) in the same rounds")
    bench.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: the artifact's target")
    bench.add_argument("--onnx", default=None, help="ONNX for the ONNX Runtime reference (default: meta.json's onnx_path)")
    bench.add_argument("--peers", default="", help="systems timed beside TVM in the same rounds, comma separated "
                       "(onnxruntime always; also onnxruntime_noscatter, openvino_f32, openvino)")
    bench.add_argument("--onnx_noscatter", default=None, help="the model from export-onnx (peer onnxruntime_noscatter)")
    bench.add_argument("--aa", action="store_true",
                       help="A/A check: time the artifact against a copy of itself in the same rounds (speedup should be 1.00)")
    bench.add_argument("--iters", type=int, default=seed.iters, help="rounds; each times every system once")
    bench.add_argument("--warmup", type=int, default=seed.warmup)
    bench.add_argument("--max_seconds", type=float, default=seed.max_seconds, help="cap on the whole bench; the round in progress finishes (0: no bound)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads for TVM and ORT (0: the artifact's)")
    bench.add_argument("--image", default=seed.image or None, help="a photo instead of random input")
    bench.add_argument("--input_scale", type=float, default=seed.input_scale, help="pixel multiplier (1/255 = 0.0039215686 for [0,1] models)")
    bench.add_argument("--letterbox", action="store_true", default=seed.letterbox, help="keep the photo's aspect ratio, pad with grey (Darknet's preprocessing)")
    bench.add_argument("--seed", type=int, default=seed.seed, help="seed of the random input, the round order and the bootstrap")
    bench.add_argument("--save_outputs", default=None, help="write raw outputs to this .npz")
    bench.add_argument("--save_vis", default=None, help="draw detections on the image into this file")
    bench.add_argument("--save_dets", default=None, help="write detections JSON to this file")
    bench.add_argument("--score_thresh", type=float, default=vis.score_thresh)
    bench.add_argument("--nms", action="store_true", help="class-wise non-maximum suppression")
    bench.add_argument("--nms_iou", type=float, default=vis.nms_iou)
    bench.add_argument("--profile", action="store_true", help="per-op profile via vm.set_instrument")
    bench.add_argument("--profile_topk", type=int, default=seed.profile_topk)
    bench.add_argument("--runner", choices=["local", "rpc"], default="local", help="rpc: run on a device behind TVM's RPC tracker")
    bench.add_argument("--tracker", default=f"{tune.tracker_host}:{tune.tracker_port}", help="RPC tracker host:port (--runner rpc)")
    bench.add_argument("--key", default="", help="RPC device key (--runner rpc)")
    bench.add_argument("--json", default=None, help="write the full result (stats, samples, profile) as JSON")
    bench.set_defaults(func=_cmd_bench)

    pipeline_bench = BenchOptions()
    bundle = sub.add_parser("bundle", help="artifacts + runtime-only TVM + reference, runnable with `bash run.sh` on a bare host")
    bundle.add_argument("--artifact_dir", action="append", required=True, help="an artifact to ship (repeat for each variant)")
    bundle.add_argument("--out", required=True, help="bundle directory; OUT.tar.gz is written beside it")
    bundle.add_argument("--image", default=pipeline_bench.image or None, help="photo the check runs on (none: seeded random pixels)")
    bundle.add_argument("--input_scale", type=float, default=pipeline_bench.input_scale)
    bundle.add_argument("--no_letterbox", dest="letterbox", action="store_false", default=pipeline_bench.letterbox)
    bundle.set_defaults(func=_cmd_bundle)

    curve = sub.add_parser("curve", help="latency vs tuning trials (llvm), from one tuning database")
    curve.add_argument("--onnx", required=True)
    curve.add_argument("--tuning_dir", required=True, help="a database from `compile --tune` or the tune stage")
    curve.add_argument("--points", default="0,64,256,1024", help="trial budgets, comma separated")
    curve.add_argument("--image", default=None)
    curve.add_argument("--input_scale", type=float, default=1 / 255)
    curve.add_argument("--letterbox", action="store_true")
    curve.add_argument("--iters", type=int, default=10)
    curve.add_argument("--warmup", type=int, default=2)
    curve.add_argument("--max_seconds", type=float, default=30.0)
    curve.add_argument("--out", default="metrics/tuning_curve.json")
    curve.add_argument("--png", default="metrics/plots/tuning_curve.png")
    curve.set_defaults(func=_cmd_curve)

    acc, pipeline_bench = AccuracyOptions(), BenchOptions()
    compare = sub.add_parser("compare-dets", help="hold a reduced-precision build to the detections of a reference build")
    compare.add_argument("--reference", required=True, help="artifact directory of the reference (fp32) build")
    compare.add_argument("--candidate", required=True, help="artifact directory of the build under test (bf16, fp16)")
    compare.add_argument("--images", default=vis.images, help="every .jpg/.jpeg/.png here is compared")
    compare.add_argument("--input_scale", type=float, default=pipeline_bench.input_scale)
    compare.add_argument("--letterbox", action=argparse.BooleanOptionalAction, default=pipeline_bench.letterbox)
    compare.add_argument("--report_score", type=float, default=acc.report_score, help="boxes a build reports")
    compare.add_argument("--match_score", type=float, default=acc.match_score, help="lowest score of a matching box")
    compare.add_argument("--match_iou", type=float, default=acc.match_iou, help="lowest IoU of a matching box")
    compare.add_argument("--json", default=None, help="write the per-photo result here")
    compare.set_defaults(func=_cmd_compare_dets)

    photos = sub.add_parser("photos", help="copy the sample photos out of the installed wheels")
    photos.add_argument("--out", default=vis.images)
    photos.set_defaults(func=_cmd_photos)

    report = sub.add_parser("report", help="print the latency table from metrics/latency.json")
    report.add_argument("--metrics", default="metrics/latency.json")
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
