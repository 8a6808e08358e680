"""DVC stage `bench`: both variants and their peers in interleaved rounds -> metrics (latency, ratios, profile, charts)."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.evaluate.bench import bench_artifacts
from yolov3_tvm_opt.evaluate.images import model_input
from yolov3_tvm_opt.evaluate.peers import INT8_PEERS, PEERS, int8_peers
from yolov3_tvm_opt.evaluate.report import plot_pngs, summary_table, write_bench_report
from yolov3_tvm_opt.runtime import load_artifact


def main(args: argparse.Namespace) -> None:
    bench = load_section("bench")
    artifacts = {"baseline": Path(args.baseline), "fastscatter": Path(args.fastscatter)}
    meta = load_artifact(artifacts["baseline"]).meta
    image = Path(bench.image) if bench.image else None
    data, _ = model_input(meta["input_shape"], meta["input_dtype"], image, bench.input_scale, bench.seed, letterbox=bench.letterbox)
    result = bench_artifacts(
        artifacts,
        data,
        onnx_path=Path(args.onnx),
        peers=[p for p in PEERS if p not in INT8_PEERS] + int8_peers(Path(args.peers_int8)),
        onnx_noscatter=Path(args.onnx_noscatter) if args.onnx_noscatter else None,
        peers_int8=Path(args.peers_int8),
        iters=bench.iters,
        warmup=bench.warmup,
        max_seconds=bench.max_seconds,
        seed=bench.seed,
        profile_topk=bench.profile_topk,
    )
    for peer, reason in result.skipped.items():
        print(f"bench: skipped {peer}: {reason}")
    for note in result.profile_notes.values():
        print(f"bench: {note}")
    metrics = write_bench_report(result, Path(args.metrics))
    plot_pngs(Path(args.metrics), Path(args.metrics) / "plots")
    print(summary_table(metrics))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--fastscatter", required=True)
    parser.add_argument("--onnx", required=True, help="the ONNX both were built from (the peers' input)")
    parser.add_argument("--onnx_noscatter", default=None, help="the same model without ScatterND (peer onnxruntime_noscatter)")
    parser.add_argument("--peers_int8", required=True, help="quantize_peers' directory (their int8 at an int8 build, else none)")
    parser.add_argument("--metrics", required=True, help="the metrics directory")
    run(main, parser)
