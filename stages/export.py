"""DVC stage `export`: the model with its dense ScatterND rewritten to Slice + Concat (no TVM involved).

Bench and any other runtime can read the ScatterND-free file beside the original; a model with
no ScatterND is copied unchanged, so the file is always there.
"""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.models.onnx_export import export_noscatter


def main(args: argparse.Namespace) -> None:
    report = export_noscatter(Path(args.onnx), Path(args.out))
    print(f"export: {args.onnx} -> {args.out}: {report.summary()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--out", required=True)
    run(main, parser)
