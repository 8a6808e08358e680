"""Calibration for int8 builds: each conv input's activation range over real photos, in a small JSON.

Static post-training quantization needs, before compiling, the range each conv's input takes on
the images the model will see. We run the fp32 ONNX model with ONNX Runtime (the same graph TVM
imports, and fast) over the calibration photos, preprocessed as the benchmark and the detectors
preprocess them (letterbox, ``input_scale``), with every conv input added as a graph output, and
keep each one's min and max over all photos.

Min/max, not a percentile: with a handful of photos a percentile of one photo's values is mostly
the noise of that photo, while min/max never clips an activation the model is known to produce;
u8 over the full range costs resolution only where one layer has rare outliers, which the
accuracy contract (``compare-dets`` against fp32) would show. The file is keyed by
``core.calibration.weight_key`` (the sha256 of each conv's weights), which is what the compiler can see
after import.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..core.calibration import CALIBRATION_FORMAT, weight_key
from ..core.errors import UserError
from ..core.files import write_json
from ..models.onnx_info import InputSpec, input_spec, load_onnx, metadata
from .images import load_image, preprocess
from .photos import list_photos

METHOD = "min/max over every calibration photo"


def calibration_photos(directory: Path) -> list[Path]:
    """The photos in ``directory``; one error line when there are none or something else is there.

    A file that is not a JPEG or PNG in a calibration folder is a mistake worth stopping for: the
    ranges would silently come from fewer images than the user meant.
    """
    photos = list_photos(Path(directory))
    others = sorted(p.name for p in Path(directory).iterdir() if p not in photos and not p.name.startswith("."))
    if others:
        raise UserError(f"calibration folder {directory} holds files that are not JPEG or PNG photos ({', '.join(others[:3])}); "
                        "remove them or point calibrate.images elsewhere")
    if not photos:
        raise UserError(
            f"calibration folder {directory} holds no JPEG or PNG photos; put some in it, or point calibrate.images at the sample photos"
        )
    return photos


def calibration_inputs(photos: list[Path], spec: InputSpec, input_scale: float, letterbox: bool) -> Iterator[np.ndarray]:
    """Each photo as the model's input, preprocessed as bench and the detectors feed it.

    Every calibration runs over exactly these arrays: ours here, and the peers' own int8
    (``evaluate.peer_int8``), so no quantizer sees different pixels. One at a time: a large
    calibration folder need not fit in memory.
    """
    for photo in photos:
        yield preprocess(load_image(photo), spec.shape, input_scale, spec.dtype, letterbox)


def calibrate(onnx_path: Path, images: Path, out: Path, size: int | None, input_scale: float, letterbox: bool) -> dict[str, Any]:
    """Run the fp32 model over the photos in ``images`` and write each conv input's range to ``out``.

    Returns what was written. Convs whose weights are not constants of the model are left out
    (the int8 build keeps them fp32).
    """
    import onnxruntime as ort

    photos = calibration_photos(images)
    model = load_onnx(Path(onnx_path))
    spec = input_spec(model, size, onnx_path)
    initializers = {init.name: init for init in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv" and node.input[1] in initializers]
    inputs = sorted({conv.input[0] for conv in convs} - {spec.name})
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in inputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    low, high = defaultdict(lambda: np.inf), defaultdict(lambda: -np.inf)
    for data in calibration_inputs(photos, spec, input_scale, letterbox):
        # the image input is no graph output: its range is the preprocessed photo's
        for name, value in [(spec.name, data), *zip(inputs, session.run(inputs, {spec.name: data}))]:
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    result = {
        "format": CALIBRATION_FORMAT,
        "onnx_path": str(onnx_path),
        "method": METHOD,
        "photos": [p.name for p in photos],
        # the ranges hold only for input fed this way: an int8 build must be run with the same preprocessing
        "input_scale": input_scale,
        "letterbox": letterbox,
        "synthetic_weights": metadata(model).get("weights", "").startswith("synthetic"),
        "convs": {
            weight_key(numpy_helper.to_array(initializers[conv.input[1]])): {
                "node": conv.name or conv.output[0],
                "low": low[conv.input[0]],
                "high": high[conv.input[0]],
            }
            for conv in convs
        },
    }
    write_json(Path(out), result)
    return result


def not_calibrated(out: Path, precision: str) -> None:
    """The calibration file of a build that needs none: no ranges, so it changes only with the precision.

    What the pipeline's compile stages read when the precision is not int8 (they always depend on
    the file); ``load_calibration`` refuses it, so it can never quantize anything.
    """
    write_json(Path(out), {"format": CALIBRATION_FORMAT, "precision": precision, "convs": {}})
