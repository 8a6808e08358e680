"""DVC stage `model`: write models/model.onnx from params.yaml's model section."""

import sys
from pathlib import Path

from yolov3_tvm_opt.errors import exit_code_of
from yolov3_tvm_opt.models import build_model
from yolov3_tvm_opt.params import load_section


def main() -> None:
    model = load_section("model")
    info = build_model(model.source, model.size, Path("models/model.onnx"), seed=model.seed)
    note = " (synthetic weights: for latency only)" if info.synthetic else ""
    print(f"model: {info.source} at {info.size}px, {info.scatternd_nodes} ScatterND nodes -> {info.path}{note}")


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
