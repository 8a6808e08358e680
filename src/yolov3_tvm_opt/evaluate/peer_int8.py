"""The peers' own int8, calibrated on our photos: ONNX Runtime's static QDQ model and OpenVINO's NNCF model.

Our int8 is only worth its name against what each peer's user would do to get int8 from the same
ONNX: ONNX Runtime's ``quantize_static`` (QDQ, per-channel s8 weights, u8 activations, min/max)
and OpenVINO's ``nncf.quantize`` (its defaults). Both see exactly the arrays our ``calibrate``
runs over (``evaluate.calibrate.calibration_inputs``: same photos, size, letterbox and scale),
so no side is calibrated on different pixels.

One departure from ONNX Runtime's defaults, the same one our int8 makes: the box decode after the
heads (Reshape, Sigmoid, Exp, Mul, ScatterND, Concat: every node from which no Conv can be
reached) stays float. Quantized, it puts box coordinates of 0..416 and scores of 0..1 into one u8
tensor, whose steps of a pixel and a half move objectness by up to 0.8, at no gain in speed
(docs/precision.md). NNCF leaves that tail float by itself. A model below opset 13 (torch's
default export writes 12) is converted to 13 first: per-channel QDQ needs it.

The work takes seconds and depends only on the ONNX and the photos, so its result is a
directory the pipeline caches (stage ``quantize_peers``) and ``bench --peers_int8`` reads; its
manifest (``peers.INT8_MANIFEST``) says which model is which and why a peer is missing: nncf or
openvino not installed makes that peer skipped in the bench with that line, never a crash.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..core.files import atomic_dir, sha256_file, write_json
from ..models.onnx_info import InputSpec, input_spec, load_onnx
from .calibrate import calibration_inputs, calibration_photos
from .peers import INT8_MANIFEST, INT8_PEERS

ORT_MODEL = "onnxruntime_int8.onnx"
OPENVINO_MODEL = "openvino_int8.xml"  # and its .bin beside it


class _Inputs:
    """The calibration arrays, re-iterable (NNCF walks them more than once) and read one photo at a time."""

    def __init__(self, photos: list[Path], spec: InputSpec, input_scale: float, letterbox: bool):
        self.photos, self.spec, self.input_scale, self.letterbox = photos, spec, input_scale, letterbox

    def __iter__(self) -> Iterator[np.ndarray]:
        return calibration_inputs(self.photos, self.spec, self.input_scale, self.letterbox)

    def __len__(self) -> int:
        return len(self.photos)


def decode_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes after the detection heads: every non-Conv node from whose outputs no Conv can be reached."""
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers[name].append(i)
    feeds_conv = [False] * len(nodes)
    for i in reversed(range(len(nodes))):  # topological order reversed: every consumer is decided first
        feeds_conv[i] = any(nodes[c].op_type == "Conv" or feeds_conv[c] for out in nodes[i].output for c in consumers[out])
    return [node.name for node, feeds in zip(nodes, feeds_conv) if node.op_type != "Conv" and not feeds]


QDQ_OPSET = 13  # the first ONNX opset with per-channel (``axis``) QuantizeLinear / DequantizeLinear


def quantize_onnxruntime(onnx_path: Path, inputs: _Inputs, out: Path) -> list[str]:
    """ONNX Runtime's static QDQ int8 of ``onnx_path`` into ``out``; returns the nodes left float (the decode)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = ({inputs.spec.name: data} for data in inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    model = load_onnx(Path(onnx_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QDQ_OPSET)
    if opset < QDQ_OPSET:
        # quantize_static writes per-channel DequantizeLinear with an axis, which ONNX has only from
        # opset 13 on, into a model of the older opset, and ONNX Runtime then refuses to load it
        model = onnx.version_converter.convert_version(model, QDQ_OPSET)
    if any(not node.name for node in model.graph.node):  # nodes_to_exclude names nodes: give the nameless ones names
        for i, node in enumerate(model.graph.node):
            node.name = node.name or f"{node.op_type}_{i}"
    excluded = decode_nodes(model.graph)
    quantize_static(model, str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)
    return excluded


def quantize_openvino(onnx_path: Path, inputs: _Inputs, out: Path) -> None:
    """NNCF's post-training int8 of ``onnx_path`` (its defaults) as OpenVINO IR ``out``; ImportError without them."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)  # its "fewer samples than subset_size" warning is every small photo folder's
    model = ov.Core().read_model(str(onnx_path))
    model.reshape({inputs.spec.name: list(inputs.spec.shape)})  # a dynamic input, fixed as every other system runs it
    ov.save_model(nncf.quantize(model, nncf.Dataset(inputs)), str(out), compress_to_fp16=False)


def quantize_peers(onnx_path: Path, images: Path, out_dir: Path, size: int | None, input_scale: float, letterbox: bool) -> dict[str, Any]:
    """Both peers' int8 of ``onnx_path``, calibrated on the photos in ``images``, into ``out_dir``; returns the manifest.

    A peer whose quantizer is not installed is listed under ``skipped`` with the line bench prints.
    """
    photos = calibration_photos(Path(images))
    inputs = _Inputs(photos, input_spec(load_onnx(Path(onnx_path), load_external_data=False), size, onnx_path), input_scale, letterbox)
    systems, skipped = {}, {}
    with atomic_dir(Path(out_dir)) as tmp:
        float_nodes = quantize_onnxruntime(Path(onnx_path), inputs, tmp / ORT_MODEL)
        systems["onnxruntime_int8"] = ORT_MODEL
        try:
            quantize_openvino(Path(onnx_path), inputs, tmp / OPENVINO_MODEL)
            systems["openvino_int8"] = OPENVINO_MODEL
        except ImportError as exc:
            skipped["openvino_int8"] = f"{exc.name or 'nncf'} is not installed (pip install -r requirements.lock), so nothing quantized it"
        manifest = {
            "precision": "int8",
            "onnx_path": str(onnx_path),
            "onnx_sha256": sha256_file(Path(onnx_path)),
            "photos": [p.name for p in photos],
            "input_scale": input_scale,
            "letterbox": letterbox,
            "systems": systems,
            "skipped": skipped,
            "onnxruntime_int8_float_nodes": float_nodes,
        }
        write_json(tmp / INT8_MANIFEST, manifest)
    return manifest


def not_quantized(out_dir: Path, precision: str) -> None:
    """The directory of a build that is not int8: a manifest and no models, so bench times no int8 peer.

    The pipeline's DAG stays the same at every precision; this costs nothing and changes only with it.
    """
    reason = f"the peers are quantized only when target.precision is int8 (it is {precision})"
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / INT8_MANIFEST, {"precision": precision, "systems": {}, "skipped": dict.fromkeys(INT8_PEERS, reason)})
