"""DVC stage `model`: write the model's ONNX from params.yaml's model section (no TVM involved)."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.models.sources import build_model


def main(args: argparse.Namespace) -> None:
    model = load_section("model")
    info = build_model(model.source, model.size, Path(args.out), seed=model.seed)
    note = " (synthetic weights: for latency only)" if info.synthetic else ""
    print(f"model: {info.source} at {info.size}px, {info.scatternd_nodes} ScatterND nodes -> {info.path}{note}"
          f"{info.outputs_note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    run(main, parser)
