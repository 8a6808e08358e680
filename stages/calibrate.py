"""DVC stage `calibrate`: the activation ranges an int8 build quantizes with -> one small JSON.

The compile stages always depend on its output; for any other precision it writes a file that
says so and holds no ranges, so a new photo reruns the int8 build and nothing else.
"""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.evaluate.calibrate import calibrate, not_calibrated


def main(args: argparse.Namespace) -> None:
    target, model, bench, images = load_section("target"), load_section("model"), load_section("bench"), load_section("calibrate").images
    if target.precision != "int8":
        not_calibrated(Path(args.out), target.precision)
        print(f"calibrate: {args.out} (precision {target.precision}: no ranges needed)")
        return
    result = calibrate(Path(args.onnx), Path(images), Path(args.out), model.size, bench.input_scale, bench.letterbox)
    print(f"calibrate: {args.out}, {len(result['convs'])} conv inputs over {len(result['photos'])} photos in {images}")
    if result["synthetic_weights"]:
        print("calibrate: synthetic weights: this int8 build is for latency only, its detections mean nothing")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--out", required=True)
    run(main, parser)
