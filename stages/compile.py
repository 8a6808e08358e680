"""DVC stages `compile_baseline` / `compile_fastscatter`: models/model.onnx -> artifacts/<variant>/."""

import sys
from pathlib import Path

from yolov3_tvm_opt.compile import compile_onnx
from yolov3_tvm_opt.errors import UserError, exit_code_of
from yolov3_tvm_opt.params import load_section

VARIANTS = ("baseline", "fastscatter")


def main() -> None:
    variant = sys.argv[1] if len(sys.argv) == 2 else ""
    if variant not in VARIANTS:
        raise UserError(f"usage: stages/compile.py {{{'|'.join(VARIANTS)}}}")
    target, tune = load_section("target"), load_section("tune")
    options = target.compile_options(
        fast_scatter_nd=variant == "fastscatter",
        size=load_section("model").size,
        tuning_dir="tuning" if tune.enabled else None,
    )
    print(f"compile_{variant}: models/model.onnx for {target.kind} ...", flush=True)
    meta = compile_onnx(Path("models/model.onnx"), Path("artifacts") / variant, options)
    print(
        f"compile_{variant}: artifacts/{variant} in {meta['compile_seconds']:.1f} s, scatter_nd {meta['scatter_nd']}, "
        f"tuned functions {meta['tuned_functions']}"
    )


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
