"""The systems TVM is timed against, each reduced to one shape: a ready call and its outputs.

A :class:`System` is all the rounds need: ``run_once`` (one inference on the prepared input) and
the outputs that input gave, for the max |diff| check. ``PEERS`` maps a name to the function that
prepares one, so adding a peer is one line there. Every peer gets the same ONNX input, the same
input array and the same thread count as TVM, and its thread pool is told not to spin: a pool
that keeps spinning after its turn would steal a core from whoever runs next in the round.

The peers' own int8 (``onnxruntime_int8``, ``openvino_int8``) run models that
``evaluate.peer_int8`` quantized beforehand into one directory, listed by its manifest; the
layout lives here, where bench reads it, so that bench never imports a quantizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.files import sha256_file


@dataclass
class System:
    """One timed contestant: ``run_once`` runs one inference on the prepared input."""

    name: str
    run_once: Callable[[], Any]
    outputs: list[np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class PeerInput:
    """What every peer is prepared from: the same ONNX, input and thread count as TVM."""

    onnx: Path
    input_name: str
    data: np.ndarray
    threads: int
    onnx_noscatter: Path | None = None  # the same model exported without ScatterND, when there is one
    int8_dir: Path | None = None  # the peers' own int8 models (``evaluate.peer_int8``), when there are some


class PeerUnavailable(Exception):
    """A peer that cannot run here (not installed, no such file); the bench goes on without it."""


def onnxruntime_system(name: str, onnx: Path, spec: PeerInput) -> System:
    """ONNX Runtime on ``onnx``: CPU, ``threads`` intra-op threads, no spinning between turns."""
    import onnxruntime as ort

    if not Path(onnx).is_file():
        raise UserError(f"the ONNX file {onnx} is missing; {name} needs it: restore it or recompile the artifact")
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    feed = {spec.input_name: spec.data}
    return System(name, lambda: session.run(None, feed), session.run(None, feed))


def openvino_system(name: str, model: Path, spec: PeerInput, precision: str | None) -> System:
    """OpenVINO's CPU plugin on ``model`` (the same ONNX, or NNCF's int8 IR), latency hint, ``threads`` threads.

    ``precision=None`` keeps OpenVINO's own choice, which is bf16 on CPUs that have it: what a
    user who just loads the model gets. ``"f32"`` is the like-for-like comparison with TVM.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise PeerUnavailable("openvino is not installed (pip install -r requirements.lock)") from exc
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": spec.threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(str(model), "CPU", config)
    request = compiled.create_infer_request()
    feed = {spec.input_name: spec.data}
    first = request.infer(feed)
    outputs = [np.array(first[port]) for port in compiled.outputs]
    return System(name, lambda: request.infer(feed), outputs)


def _noscatter(spec: PeerInput) -> System:
    if spec.onnx_noscatter is None:
        raise PeerUnavailable("no ScatterND-free ONNX was given (--onnx_noscatter)")
    return onnxruntime_system("onnxruntime_noscatter", spec.onnx_noscatter, spec)


INT8_PEERS = ("onnxruntime_int8", "openvino_int8")
INT8_MANIFEST = "peers_int8.json"  # in the int8 directory: what was quantized from which ONNX, and what was skipped


def read_int8_manifest(directory: Path) -> dict[str, Any]:
    """The manifest ``evaluate.peer_int8`` wrote; one error line if ``directory`` holds none."""
    try:
        return json.loads((Path(directory) / INT8_MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{directory} holds no readable {INT8_MANIFEST} ({exc}); run `yolov3-tvm quantize-peers` to write it") from exc


def int8_peers(directory: Path) -> list[str]:
    """The int8 peers a bench over ``directory`` should time: all of them where it was quantized, else none.

    A directory written for another precision (the pipeline at fp32) asks for none, so the
    pipeline's bench at fp32 times exactly what it did before; one quantized for int8 asks for
    both, so a peer whose quantizer was missing is reported as skipped rather than forgotten.
    """
    return list(INT8_PEERS) if read_int8_manifest(directory).get("precision") == "int8" else []


def _int8_model(name: str, spec: PeerInput) -> Path:
    """Where ``name``'s quantized model is, checked against the ONNX every other system runs."""
    if spec.int8_dir is None:
        raise PeerUnavailable("no quantized models were given (--peers_int8 DIR, which `yolov3-tvm quantize-peers` writes)")
    manifest = read_int8_manifest(spec.int8_dir)
    if name in manifest.get("skipped", {}):
        raise PeerUnavailable(manifest["skipped"][name])
    if manifest.get("onnx_sha256") != sha256_file(spec.onnx):
        raise UserError(f"the models in {spec.int8_dir} were quantized from another ONNX than {spec.onnx}; "
                        "run `yolov3-tvm quantize-peers` on it again")
    path = Path(spec.int8_dir) / manifest.get("systems", {}).get(name, f"{name} (not in {INT8_MANIFEST})")
    if not path.is_file():
        raise UserError(f"{path} is missing; run `yolov3-tvm quantize-peers` again")
    return path


# name -> how to prepare it. "onnxruntime" comes first: it is the reference every diff is taken against.
PEERS: dict[str, Callable[[PeerInput], System]] = {
    "onnxruntime": lambda spec: onnxruntime_system("onnxruntime", spec.onnx, spec),
    "onnxruntime_noscatter": _noscatter,
    "openvino_f32": lambda spec: openvino_system("openvino_f32", spec.onnx, spec, "f32"),
    "openvino": lambda spec: openvino_system("openvino", spec.onnx, spec, None),
    # the peers' own int8, each at its runtime's defaults otherwise (OpenVINO's bf16 for what NNCF left float)
    "onnxruntime_int8": lambda spec: onnxruntime_system("onnxruntime_int8", _int8_model("onnxruntime_int8", spec), spec),
    "openvino_int8": lambda spec: openvino_system("openvino_int8", _int8_model("openvino_int8", spec), spec, None),
}
REFERENCE = "onnxruntime"


def prepare_peers(names: list[str], spec: PeerInput) -> tuple[dict[str, System], dict[str, str]]:
    """The peers among ``names`` that run here, and why each of the others was skipped."""
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise UserError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    ready, skipped = {}, {}
    for name in names:
        try:
            ready[name] = PEERS[name](spec)
        except PeerUnavailable as exc:
            skipped[name] = str(exc)
    return ready, skipped
