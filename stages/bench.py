"""DVC stage `bench`: both variants and ONNX Runtime on one input -> metrics/ (latency, profile, plots)."""

import sys
from pathlib import Path

from yolov3_tvm_opt.bench import bench_variants
from yolov3_tvm_opt.detect import model_input
from yolov3_tvm_opt.errors import exit_code_of
from yolov3_tvm_opt.params import load_section
from yolov3_tvm_opt.report import summary_table, write_bench_report
from yolov3_tvm_opt.runtime import load_artifact

ARTIFACTS = {"baseline": Path("artifacts/baseline"), "fastscatter": Path("artifacts/fastscatter")}


def main() -> None:
    bench, target = load_section("bench"), load_section("target")
    meta = load_artifact(ARTIFACTS["baseline"]).meta
    image = Path(bench.image) if bench.image else None
    data, _ = model_input(meta["input_shape"], meta["input_dtype"], image, bench.input_scale, letterbox=bench.letterbox)
    results = bench_variants(
        ARTIFACTS,
        data,
        device=target.device,
        iters=bench.iters,
        warmup=bench.warmup,
        max_seconds=bench.max_seconds,
        threads=target.cpu_threads,
        profile_topk=bench.profile_topk,
    )
    print(summary_table(write_bench_report(results, Path("metrics"))))


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
