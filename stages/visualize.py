"""DVC stage `visualize`: boxes on every photo -> pictures/vis/, latency and profile charts as PNG."""

import sys
from pathlib import Path

from yolov3_tvm_opt.errors import exit_code_of
from yolov3_tvm_opt.params import load_section
from yolov3_tvm_opt.report import plot_pngs
from yolov3_tvm_opt.visualize import visualize_photos


def main() -> None:
    vis, bench, target = load_section("visualize"), load_section("bench"), load_section("target")
    out = Path("pictures/vis")
    visualize_photos(
        Path("artifacts/fastscatter"),
        Path(vis.images),
        out,
        input_scale=bench.input_scale,
        letterbox=bench.letterbox,
        device=target.device,
        score_thresh=vis.score_thresh,
        nms_iou=vis.nms_iou,
    )
    charts = plot_pngs(Path("metrics"), Path("metrics/plots"))
    print(f"visualize: {out}/*_vis.jpg, {out}/detections.json, " + ", ".join(map(str, charts)))


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
