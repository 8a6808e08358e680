"""ONNX -> a Relax IRModule with the weights as constants, or as parameters of ``main``, or one clear error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..core.errors import UserError
from ..core.tvm_loader import load_tvm
from ..models.fold import fold_constants
from ..models.onnx_info import input_spec, load_onnx, pin_input

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


def _failing_node(exc: BaseException) -> onnx.NodeProto | None:
    """The ONNX node TVM's importer was converting when it raised (its loop's ``node``), if it can be found."""
    tb = exc.__traceback__
    node = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_construct_nodes":
            node = tb.tb_frame.f_locals.get("node")
        tb = tb.tb_next
    return node if isinstance(node, onnx.NodeProto) else None


def _import_error(onnx_path: Path, model: onnx.ModelProto, exc: Exception) -> UserError:
    """One line: the node TVM could not import, why, and what would make it importable."""
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    node = _failing_node(exc)
    if node is None:
        return UserError(f"TVM's ONNX frontend cannot import {onnx_path} ({reason}); TVM {tvm.__version__} lacks "
                         "what it names: replace that in the export, or report it to TVM with this message")
    constant = {init.name for init in model.graph.initializer}
    constant |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    computed = [x for x in node.input[1:] if x and x not in constant]
    where = f"{node.op_type} node {node.name or node.output[0]!r} of {onnx_path}"
    if computed and any(word in str(exc).lower() for word in ("dynamic", "constant")):
        advice = (f"its input {computed[0]!r} is computed from the image at run time even after constant folding, "
                  "and TVM needs it constant; export the model so that this input does not depend on the image")
    else:
        advice = f"TVM {tvm.__version__} does not import this {node.op_type} as exported; replace it in the export"
    return UserError(f"TVM's ONNX frontend cannot import the {where} ({reason}); {advice}")


def _translate(onnx_path: Path, size: int | None, keep_params_in_input: bool) -> tuple[Any, Any, onnx.ModelProto]:
    """The model with its input fixed and constants folded (``models.fold``), then imported.

    Folding first turns torch's computed pads and scatter indices into initializers and removes
    the Shape nodes of a dynamic-axes export, which would otherwise reach the build as symbolic
    loop extents.
    """
    model = load_onnx(Path(onnx_path))
    spec = input_spec(model, size, onnx_path)
    model, report = fold_constants(pin_input(model, size, onnx_path))
    if report.dynamic_shapes:
        name, tensor = next(iter(report.dynamic_shapes.items()))
        raise UserError(f"the Shape node {name!r} of {onnx_path} reads {tensor!r}, whose shape stays unknown with the "
                        f"input fixed at {list(spec.shape)} (it depends on values computed at run time); "
                        "TVM builds need static shapes: export the model without that data-dependent shape")
    try:
        mod = from_onnx(
            model,
            shape_dict={spec.name: list(spec.shape)},
            dtype_dict={spec.name: spec.dtype},
            keep_params_in_input=keep_params_in_input,
        )
    except Exception as exc:  # the frontend raises many types for unsupported graphs
        raise _import_error(onnx_path, model, exc) from exc
    symbolic = relax.analysis.defined_symbolic_vars(mod["main"])
    if symbolic:
        raise UserError(f"{onnx_path} imports with symbolic extents ({', '.join(map(str, symbolic))}) even with the input "
                        f"fixed at {list(spec.shape)} and its constants folded, so a shape in it depends on values "
                        "computed at run time (NonZero, a computed TopK k, ...); TVM builds need static shapes: "
                        "export the model without data-dependent shapes")
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
