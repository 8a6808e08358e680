"""Detections drawn on every photo of a directory, with one JSON of all detections beside them.

This is what a person looks at to trust the numbers: the artifact that was benchmarked, run on
real photos, boxes on the original images. The whole output directory is written at once, so an
interrupted run leaves the previous result (or nothing), never half a set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import UserError
from ..core.files import atomic_dir, write_json
from ..core.options import VisualizeOptions
from ..deploy.detect import Detection, detections_for, save_detections, save_outputs
from ..runtime import create_vm, load_artifact
from .images import draw_detections, model_input
from .photos import list_photos

DETECTIONS_FILE = "detections.json"


def visualize_photos(
    artifact_dir: Path,
    photo_dir: Path,
    out_dir: Path,
    input_scale: float,
    score_thresh: float = 0.25,
    nms_iou: float = 0.45,
    letterbox: bool = False,
) -> dict[str, list[Detection]]:
    """Run the artifact on each photo; write ``<stem>_vis.jpg`` and ``detections.json`` to out_dir."""
    options = VisualizeOptions(score_thresh=score_thresh, nms_iou=nms_iou)
    photos = list_photos(Path(photo_dir))
    if not photos:
        raise UserError(f"no .jpg/.jpeg/.png photos in {photo_dir}; run `make setup` for the samples or add your own")
    artifact = load_artifact(Path(artifact_dir))
    loaded = create_vm(artifact)
    shape, dtype = artifact.input_shape, artifact.meta["input_dtype"]
    found: dict[str, list[Detection]] = {}
    with atomic_dir(Path(out_dir)) as tmp:
        for photo in photos:
            data, image = model_input(shape, dtype, photo, input_scale, letterbox=letterbox)
            dets = save_results(loaded.run(data), artifact.meta, image, options, letterbox, vis_path=tmp / f"{photo.stem}_vis.jpg")
            found[photo.name] = dets
            print(f"{photo.name}: " + (", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:8]) or "nothing"), flush=True)
        write_json(tmp / DETECTIONS_FILE, {name: [asdict(d) for d in dets] for name, dets in found.items()})
    return found


def save_results(
    outputs: Sequence[np.ndarray],
    meta: dict[str, Any],
    image: Image.Image | None,
    options: VisualizeOptions,
    letterbox: bool,
    nms: bool = True,
    outputs_path: Path | None = None,
    dets_path: Path | None = None,
    vis_path: Path | None = None,
) -> list[Detection]:
    """Write what was asked for one run of an artifact: raw outputs (.npz), its detections (JSON), them drawn on ``image``.

    ``bench --save_outputs/--save_dets/--save_vis`` and the visualize stage both write through
    here, so a photo decoded by hand and by the pipeline gives the same boxes. Detections need the
    photo the input came from (on random pixels they mean nothing); without one they are empty.
    """
    if outputs_path is not None:
        save_outputs({f"output{i}": out for i, out in enumerate(outputs)}, Path(outputs_path))
    if image is None:
        return []
    dets = detections_for(outputs[0], meta, (image.height, image.width), options.score_thresh, options.nms_iou, letterbox, nms=nms)
    if dets_path is not None:
        save_detections(dets, Path(dets_path))
    if vis_path is not None:
        draw_detections(image, dets, Path(vis_path))
    return dets
