"""DVC stage `visualize`: boxes on every photo -> <out>/*_vis.jpg and <out>/detections.json."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.evaluate.visualize import visualize_photos


def main(args: argparse.Namespace) -> None:
    vis, bench = load_section("visualize"), load_section("bench")
    visualize_photos(
        Path(args.artifact),
        Path(vis.images),
        Path(args.out),
        input_scale=bench.input_scale,
        letterbox=bench.letterbox,
        score_thresh=vis.score_thresh,
        nms_iou=vis.nms_iou,
    )
    print(f"visualize: {args.out}/*_vis.jpg, {args.out}/detections.json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    run(main, parser)
