"""Detections drawn on every photo of a directory, with one JSON of all detections beside them.

This is what a person looks at to trust the numbers: the artifact that was benchmarked, run on
real photos, boxes on the original images. The whole output directory is written at once, so an
interrupted run leaves the previous result (or nothing), never half a set.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..core.errors import UserError
from ..core.files import atomic_dir, write_json
from ..runtime import create_vm, load_artifact
from ..deploy.detect import Detection, detections_for
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
            (output, *_) = loaded.run(data)
            dets = detections_for(output, artifact.meta, (image.height, image.width), score_thresh, nms_iou, letterbox)
            draw_detections(image, dets, tmp / f"{photo.stem}_vis.jpg")
            found[photo.name] = dets
            print(f"{photo.name}: " + (", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:8]) or "nothing"), flush=True)
        write_json(tmp / DETECTIONS_FILE, {name: [asdict(d) for d in dets] for name, dets in found.items()})
    return found
