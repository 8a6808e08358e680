"""DVC stage `tune`: MetaSchedule over models/model.onnx for the target -> tuning/ (empty when disabled)."""

import sys
from dataclasses import replace
from pathlib import Path

from yolov3_tvm_opt.errors import exit_code_of
from yolov3_tvm_opt.params import load_section
from yolov3_tvm_opt.tune import tune_model


def main() -> None:
    tune, target, model = load_section("tune"), load_section("target"), load_section("model")
    options = tune if tune.enabled else replace(tune, trials=0)
    summary = tune_model(
        Path("models/model.onnx"), Path("tuning"), target.compile_options(fast_scatter_nd=True, size=model.size), options
    )
    if summary["trials"]:
        print(f"tune: {summary['records']} records from {summary['measured_trials']} trials in {summary['tune_seconds']} s")
    else:
        print("tune: disabled (tune.enabled: false or trials: 0); compiles stay untuned")


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
