"""DVC stages `compile_baseline` / `compile_fastscatter`: the model's ONNX -> one artifact directory."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.core.files import write_json
from yolov3_tvm_opt.core.options import VARIANTS, CompileOptions
from yolov3_tvm_opt.core.params import load_section


def main(args: argparse.Namespace) -> None:
    target, tune = load_section("target"), load_section("tune")
    options = CompileOptions(
        target=target,
        fast_scatter_nd=args.variant == "fastscatter",
        size=load_section("model").size,
        tuning_dir=args.tuning if tune.enabled else None,
        calibration=args.calibration,
    )
    print(f"compile_{args.variant}: {args.onnx} for {target.kind} ...", flush=True)
    result = compile_onnx(Path(args.onnx), Path(args.out), options)
    write_json(Path(args.report), {"compile_seconds": result.seconds, "tuned_functions": result.meta["tuned_functions"]})
    print(
        f"compile_{args.variant}: {args.out} in {result.seconds:.1f} s, scatter_nd {result.meta['scatter_nd']}, "
        f"tuned functions {result.meta['tuned_functions']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--tuning", required=True, help="the tune stage's database (applied when tune.enabled)")
    parser.add_argument("--calibration", required=True, help="the calibrate stage's ranges (read when target.precision is int8)")
    parser.add_argument("--out", required=True, help="the artifact directory")
    parser.add_argument("--report", required=True, help="how long it took (nothing depends on it)")
    run(main, parser)
