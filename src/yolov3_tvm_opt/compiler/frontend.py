"""ONNX -> a Relax IRModule with the weights as constants, or one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from ..core.errors import UserError
from ..core.tvm_loader import load_tvm
from ..models.onnx_info import read_input_spec

tvm = load_tvm()

from tvm import relax  # noqa: E402  (after load_tvm so a TVM_HOME build is importable)
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402


def import_onnx(onnx_path: Path, size: int | None = None) -> tuple[Any, Any, onnx.ModelProto]:
    """Load an ONNX file and translate it to a Relax IRModule with the weights as constants."""
    spec = read_input_spec(onnx_path, size)
    model = onnx.load(str(onnx_path))
    try:
        mod = from_onnx(
            model,
            shape_dict={spec.name: list(spec.shape)},
            dtype_dict={spec.name: spec.dtype},
            keep_params_in_input=False,
        )
    except Exception as exc:  # the frontend raises many types for unsupported graphs
        raise UserError(
            f"TVM's ONNX frontend cannot import {onnx_path}: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
            "re-export the model with opset 11-17 and static shapes"
        ) from exc
    return relax.transform.DecomposeOpsForInference()(mod), spec, model
