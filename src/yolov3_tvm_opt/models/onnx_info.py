"""What a YOLO ONNX file says about itself: its image input, its class names, its metadata.

The compiler, the runtime's reference run and the model sources all need the same answers
(input name, static shape, dtype, class names), so they are read here once, with onnx alone.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..core.errors import UserError

OUTPUT_NAME = "output"  # the detections [1, N, 5 + classes], as ultralytics' and our exports name them
SEED_PROP = "weights_seed"  # metadata key: the seed synthetic weights were drawn with
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)


@dataclass(frozen=True)
class InputSpec:
    """The model's image input as the runtime must feed it: name, static shape, numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def coco_names() -> list[str]:
    """The 80 COCO class names in Darknet's order, shipped as package data."""
    text = resources.files("yolov3_tvm_opt").joinpath("data/coco.names").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_onnx(path: Path, load_external_data: bool = True) -> onnx.ModelProto:
    if not path.is_file():
        raise UserError(f"no ONNX file at {path}; check the path (or build the model first)")
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except (DecodeError, ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable ONNX model ({exc}); re-export it") from None
    if not model.graph.node:
        raise UserError(f"{path} holds no ONNX graph (empty or not an ONNX file); re-export it")
    return model


def image_input(model: onnx.ModelProto, where: Path | str) -> onnx.ValueInfoProto:
    """The single 4-D float graph input (initializers listed as inputs by old exporters don't count)."""
    weights = {init.name for init in model.graph.initializer}
    images = [
        vi for vi in model.graph.input
        if vi.name not in weights and vi.type.HasField("tensor_type")
        and vi.type.tensor_type.elem_type in _FLOAT_TYPES
        and vi.type.tensor_type.HasField("shape") and len(vi.type.tensor_type.shape.dim) == 4
    ]
    if not images:
        raise UserError(f"the ONNX {where} has no image input [1,3,H,W] (a 4-D float tensor); export the model with one")
    if len(images) > 1:
        names = ", ".join(vi.name for vi in images)
        raise UserError(f"the ONNX {where} has several image-like inputs ({names}); export it with a single image input")
    return images[0]


def static_shape(vi: onnx.ValueInfoProto, size: int | None, where: Path | str) -> tuple[int, ...]:
    """Input dims with dynamic ones filled: batch 1, channels 3, height and width `size`."""
    fill = (1, 3, size, size)
    shape = []
    for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif fill[axis] is None:
            raise UserError(f"the ONNX {where} input {vi.name!r} has a dynamic height/width; pass an input size")
        else:
            shape.append(fill[axis])
    return tuple(shape)


def input_spec(model: onnx.ModelProto, size: int | None, where: Path | str) -> InputSpec:
    vi = image_input(model, where)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
    return InputSpec(vi.name, static_shape(vi, size, where), dtype)


def read_input_spec(onnx_path: Path, size: int | None = None) -> InputSpec:
    """The image input of a model file; dynamic dims are filled from `size` (batch 1, 3 channels)."""
    return input_spec(load_onnx(Path(onnx_path), load_external_data=False), size, onnx_path)


def inferred_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``'s graph after ONNX shape inference (with data propagation), without the bytes of large float weights.

    Inference reads only the dims of those; leaving their bytes out makes it ~200x faster on
    YOLOv3 at 640 (7 ms instead of 1.5 s), and constant folding runs it every round. Raises
    onnx's InferenceError; use ``take_shapes`` to give the real model what it found.
    """
    light = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions)
    for field in ("node", "input", "output", "value_info"):
        getattr(light.graph, field).extend(getattr(model.graph, field))
    for init in model.graph.initializer:
        if init.data_type in _FLOAT_TYPES and len(init.raw_data) > 4096:
            init = onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims)
        light.graph.initializer.append(init)
    return onnx.shape_inference.infer_shapes(light, data_prop=True)


def take_shapes(model: onnx.ModelProto, inferred: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place) with the output and value_info shapes of ``inferred``."""
    for field in ("output", "value_info"):
        model.graph.ClearField(field)
        getattr(model.graph, field).extend(getattr(inferred.graph, field))
    return model


def pin_input(model: onnx.ModelProto, size: int | None, where: Path | str) -> onnx.ModelProto:
    """A copy of ``model`` with its image input's dynamic dims fixed (``static_shape``) and shapes re-inferred.

    A dynamic-axes export computes its grids from ``Shape`` nodes; once the input is static,
    shape inference pins those and constant folding can remove them.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    vi = image_input(out, where)
    shape = static_shape(vi, size, where)
    for dim, value in zip(vi.type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = value
    # Shapes inferred for the dynamic input would now contradict it: drop them and infer afresh.
    del out.graph.value_info[:]
    for output in out.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        return take_shapes(out, inferred_shapes(out))
    except onnx.shape_inference.InferenceError as exc:
        raise UserError(f"the ONNX {where} does not take a {list(shape)} input ({exc}); "
                        "pick the size it was exported for") from None


def detections_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the output named ``output`` moved first, where it is not already.

    Exports hold more than the detections: torch's YOLO also returns the raw head tensors, after
    ``output``. Everything downstream (bench, detect, visualize, the bundle) decodes the first
    output and compares all of them with ONNX Runtime in order, so the model stage puts the
    detections first, once, for all of them.
    """
    names = [o.name for o in model.graph.output]
    if OUTPUT_NAME not in names or names[0] == OUTPUT_NAME:
        return model
    ordered = [onnx.ValueInfoProto.FromString(o.SerializeToString())  # copies: the field is cleared below
               for o in sorted(model.graph.output, key=lambda o: o.name != OUTPUT_NAME)]
    del model.graph.output[:]
    model.graph.output.extend(ordered)
    return model


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def synthetic_seed(model: onnx.ModelProto) -> int | None:
    """The seed a synthetic model's weights were drawn with (``SEED_PROP``), or None for trained weights.

    Compiling records it in meta.json, so a deploy bundle can ship the seed instead of the weights.
    """
    seed = metadata(model).get(SEED_PROP)
    return int(seed) if seed is not None else None


def class_names(model: onnx.ModelProto | Path) -> list[str]:
    """Class names from the `names` metadata (a JSON list, or Ultralytics' `{0: 'person', ...}`).

    Without it: COCO names when the output has 85 channels (80 classes + box + objectness), else
    `class_i`, else an empty list when the output width is unknown.
    """
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(Path(model), load_external_data=False)
    raw = metadata(model).get("names")
    if raw:
        try:
            names = json.loads(raw)
        except ValueError:
            try:
                names = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                names = None
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names, key=int)]
        if isinstance(names, list):
            return [str(n) for n in names]
    dims = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else []
    width = dims[-1].dim_value if dims else 0
    if width == 85:
        return coco_names()
    return [f"class_{i}" for i in range(max(width - 5, 0))]
