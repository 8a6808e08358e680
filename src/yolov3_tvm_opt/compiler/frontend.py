"""ONNX -> a Relax IRModule with the weights as constants, or as parameters of ``main``, or one clear error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..core.errors import UserError
from ..core.tvm_loader import load_tvm
from ..models.onnx_info import read_input_spec

tvm = load_tvm()

from tvm import relax  # noqa: E402  (after load_tvm so a TVM_HOME build is importable)
from tvm.relax.frontend import detach_params  # noqa: E402
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402


@dataclass(frozen=True)
class Weight:
    """One parameter ``main`` takes after the image: its ONNX initializer name and its value."""

    name: str
    array: np.ndarray


def conv_weight_names(model: onnx.ModelProto) -> set[str]:
    """The initializers that are a Conv's weight or bias: the bulk of a CNN's bytes, and nothing else.

    Only these leave the executable with ``--weights separate``. Every other initializer (shapes,
    slice bounds, the head's grid and scatter indices) stays a constant, because passes prove things
    from constants: the fast scatter_nd rewrite needs the scatter indices it checks for a dense box.
    """
    initializers = {init.name for init in model.graph.initializer}
    return {name for node in model.graph.node if node.op_type == "Conv" for name in node.input[1:3] if name in initializers}


def _translate(onnx_path: Path, size: int | None, keep_params_in_input: bool) -> tuple[Any, Any, onnx.ModelProto]:
    spec = read_input_spec(onnx_path, size)
    model = onnx.load(str(onnx_path))
    try:
        mod = from_onnx(
            model,
            shape_dict={spec.name: list(spec.shape)},
            dtype_dict={spec.name: spec.dtype},
            keep_params_in_input=keep_params_in_input,
        )
    except Exception as exc:  # the frontend raises many types for unsupported graphs
        raise UserError(
            f"TVM's ONNX frontend cannot import {onnx_path}: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
            "re-export the model with opset 11-17 and static shapes"
        ) from exc
    return mod, spec, model


def import_onnx(onnx_path: Path, size: int | None = None) -> tuple[Any, Any, onnx.ModelProto]:
    """Load an ONNX file and translate it to a Relax IRModule with the weights as constants."""
    mod, spec, model = _translate(onnx_path, size, keep_params_in_input=False)
    return relax.transform.DecomposeOpsForInference()(mod), spec, model


def import_onnx_separate(onnx_path: Path, size: int | None = None) -> tuple[Any, Any, onnx.ModelProto, list[Weight]]:
    """Like ``import_onnx``, but the conv weights become parameters of ``main``, returned beside it.

    ``main`` then takes the image and, after it, the conv weights in ONNX initializer order
    (attribute ``num_input`` = 1, which ``LiftTransformParams`` reads); every other initializer
    is bound back as a constant.
    """
    mod, spec, model = _translate(onnx_path, size, keep_params_in_input=True)
    mod, params = detach_params(mod)
    names = [init.name for init in model.graph.initializer]  # from_onnx's parameter order
    values = dict(zip(names, params["main"]))
    kept = conv_weight_names(model)
    bound = {var: values[name] for var, name in zip(mod["main"].params[1:], names) if name not in kept}
    mod = relax.transform.BindParams("main", bound)(mod)
    weights = [Weight(name, values[name].numpy()) for name in names if name in kept]
    return relax.transform.DecomposeOpsForInference()(mod), spec, model, weights
