"""The smoke test: can this TVM import, compile, export, load and run a model on the target?

It builds a one-node identity ONNX so it needs no model file, and goes through the very same
``compile_onnx`` / ``load_artifact`` / ``create_vm`` path the real models take: when it passes,
a failure later is the model's, not the installation's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..compiler.compile import compile_onnx
from ..core.options import CompileOptions, TargetOptions
from ..runtime import create_vm, load_artifact
from ..runtime.device import cuda_available


def identity_onnx(path: Path, shape: tuple[int, ...] = (1, 3, 32, 32)) -> Path:
    """Write a one-node Identity ONNX model with an image-shaped input named ``images``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def run_smoke(target: TargetOptions) -> dict[str, Any]:
    """Compile and (when the device is here) run the identity model; return a report dict.

    The report holds only facts, no timings, so a rerun on an unchanged installation writes the
    same file and the stages after smoke stay cached.
    """
    report: dict[str, Any] = {"cuda_enabled": cuda_available(), "target_kind": target.kind}
    with tempfile.TemporaryDirectory(prefix="yolov3-tvm-smoke-") as tmp:
        onnx_path = identity_onnx(Path(tmp) / "identity.onnx")
        meta = compile_onnx(onnx_path, Path(tmp) / "artifact", CompileOptions(target=target)).meta
        report["target"] = meta["target"]
        report["tvm_version"] = meta["tvm_version"]
        device = target.device
        if device == "cuda" and not report["cuda_enabled"]:
            report["ran"] = False
            report["note"] = "built for cuda; no GPU here to run it"
            return report
        loaded = create_vm(load_artifact(Path(tmp) / "artifact"), device)
        data = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        (output,) = loaded.run(data)
        report["ran"] = True
        report["max_abs_diff"] = float(np.max(np.abs(output - data)))
        if report["max_abs_diff"] != 0.0:
            raise RuntimeError(f"smoke: identity model returned different values (max diff {report['max_abs_diff']})")
    return report
