"""DVC stage `quantize_peers`: ONNX Runtime's QDQ and OpenVINO's NNCF int8 of the model, on calibrate.images -> one directory.

Bench always depends on its output; for any precision but int8 it writes a manifest with no
models, so the fp32 bench times what it always did and a new photo requantizes only at int8.
"""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.evaluate.peer_int8 import not_quantized, quantize_peers


def main(args: argparse.Namespace) -> None:
    target, model, bench, images = load_section("target"), load_section("model"), load_section("bench"), load_section("calibrate").images
    if target.precision != "int8":
        not_quantized(Path(args.out), target.precision)
        print(f"quantize_peers: {args.out} (precision {target.precision}: no int8 peers)")
        return
    result = quantize_peers(Path(args.onnx), Path(images), Path(args.out), model.size, bench.input_scale, bench.letterbox)
    print(f"quantize_peers: {', '.join(result['systems'])} in {args.out}, calibrated on {len(result['photos'])} photos in {images}")
    for peer, reason in result["skipped"].items():
        print(f"quantize_peers: skipped {peer}: {reason}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--out", required=True)
    run(main, parser)
