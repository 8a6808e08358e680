"""DVC stage `tune`: MetaSchedule over the model for the target -> a tuning database (empty when disabled)."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.compiler.tune import tune_model
from yolov3_tvm_opt.core.files import write_json
from yolov3_tvm_opt.core.options import CompileOptions
from yolov3_tvm_opt.core.params import load_section


def main(args: argparse.Namespace) -> None:
    tune, target, model = load_section("tune"), load_section("target"), load_section("model")
    options = CompileOptions(target=target, fast_scatter_nd=True, size=model.size, calibration=args.calibration)
    result = tune_model(Path(args.onnx), Path(args.out), options, tune)
    write_json(Path(args.report), {"tune_seconds": result.seconds, "trials": result.summary["trials"]})
    if result.summary["trials"]:
        print(f"tune: {result.summary['records']} records from {result.summary['measured_trials']} trials in {result.seconds} s")
    else:
        print("tune: disabled (tune.enabled: false or trials: 0); compiles stay untuned")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--calibration", required=True, help="the calibrate stage's ranges (read when target.precision is int8)")
    parser.add_argument("--out", required=True, help="the tuning directory")
    parser.add_argument("--report", required=True, help="how long it took (nothing depends on it)")
    run(main, parser)
