"""From the model's output tensor to detections: thresholds, class-wise NMS, boxes back on the photo.

The models here end in a YOLO head that has already decoded its boxes: one output of shape
[1, N, 5 + C] whose columns are cx, cy, w, h (in model-input pixels), objectness, then C class
probabilities (already passed through a sigmoid). So decoding is only thresholding, box
conversion, non-maximum suppression and mapping boxes back onto the original photo. numpy only,
so a deploy host without Pillow decodes exactly as we do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.files import atomic_file, write_json


def scale_pixels(pixels: np.ndarray, input_scale: float, dtype: str = "float32") -> np.ndarray:
    """uint8 pixels -> the model's input, in one fixed float32 order so every host computes the same bits."""
    return (pixels.astype(np.float32) * np.float32(input_scale)).astype(dtype, copy=False)


def placement(image_hw: tuple[int, int], input_hw: tuple[int, int], letterbox: bool) -> tuple[float, float, int, int]:
    """Where the photo sits in the model input: x scale, y scale, left and top offset in pixels.

    A plain resize (the seed tool's behaviour) stretches each axis on its own; a letterbox
    (Darknet's and Ultralytics' own preprocessing) keeps the aspect ratio and pads with grey,
    which is what the pretrained weights saw in training and detects large objects far better.
    """
    (img_h, img_w), (in_h, in_w) = image_hw, input_hw
    if not letterbox:
        return in_w / img_w, in_h / img_h, 0, 0
    ratio = min(in_w / img_w, in_h / img_h)
    new_w, new_h = max(1, round(img_w * ratio)), max(1, round(img_h * ratio))
    return new_w / img_w, new_h / img_h, (in_w - new_w) // 2, (in_h - new_h) // 2


@dataclasses.dataclass(frozen=True)
class Detection:
    """One object found in a photo; `box_xyxy` is in the original photo's pixels."""

    class_id: int
    class_name: str
    score: float
    box_xyxy: list[float]


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou_thresh: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression; returns the indices kept, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box is greater than
    `iou_thresh`. Ties in score keep the input order. Each step compares one kept box with all
    remaining ones at once, and stopping after `max_keep` boxes gives exactly the first
    `max_keep` of the full result, which keeps random-weight models (thousands of boxes over
    the threshold) fast.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    limit = len(order) if max_keep is None else max_keep
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[iou(boxes[best], boxes[rest]) <= iou_thresh]
    return np.asarray(keep, dtype=np.int64)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each row of ``boxes`` (0 where the union is empty)."""
    box, boxes = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    overlap = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = overlap[:, 0] * overlap[:, 1]
    area = np.prod(np.clip(box[2:] - box[:2], 0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# decode's `nms` flag shadows the function's name inside decode.
_greedy_nms = nms


def decode(
    output: np.ndarray,
    class_names: list[str],
    input_hw: tuple[int, int],
    image_hw: tuple[int, int],
    score_thresh: float = 0.25,
    nms: bool = True,
    nms_iou: float = 0.45,
    max_dets: int = 300,
    letterbox: bool = False,
) -> list[Detection]:
    """Turn the model's [1, N, 5 + C] output into detections on the original photo, best first.

    Each box gets its best class with score = objectness * class probability; boxes scoring
    above `score_thresh` survive, then class-wise NMS runs in model-input pixels (where the
    model predicted them). Class-wise NMS is one NMS call with each class's boxes shifted to
    their own region, so boxes of different classes never overlap each other.
    """
    preds = np.asarray(output)
    if preds.ndim == 3 and preds.shape[0] == 1:
        preds = preds[0]
    if preds.ndim != 2 or preds.shape[1] < 6:
        raise UserError(
            f"model output has shape {list(np.shape(output))}, expected [1, N, 5 + classes]; "
            "use a YOLO model whose head outputs decoded boxes"
        )
    num_classes = preds.shape[1] - 5
    if num_classes != len(class_names):
        raise UserError(
            f"model predicts {num_classes} classes but {len(class_names)} class names were given; "
            "pass the names file that belongs to this model"
        )
    preds = preds.astype(np.float64, copy=False)
    class_scores = preds[:, 4:5] * preds[:, 5:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(preds)), class_ids]
    candidates = np.flatnonzero(scores > score_thresh)
    scores, class_ids = scores[candidates], class_ids[candidates]

    in_h, in_w = input_hw
    cx, cy, w, h = preds[candidates, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes = np.clip(boxes, 0.0, [in_w, in_h, in_w, in_h])

    if nms:
        offsets = class_ids[:, np.newaxis] * (max(in_w, in_h) + 1.0)
        kept = _greedy_nms(boxes + offsets, scores, nms_iou, max_keep=max_dets)
    else:
        kept = np.argsort(-scores, kind="stable")[:max_dets]

    img_h, img_w = image_hw
    scale_x, scale_y, left, top = placement(image_hw, input_hw, letterbox)
    boxes = (boxes[kept] - [left, top, left, top]) / [scale_x, scale_y, scale_x, scale_y]
    boxes = np.clip(boxes, 0.0, [img_w, img_h, img_w, img_h])
    return [
        Detection(int(c), class_names[c], float(s), [float(v) for v in box])
        for c, s, box in zip(class_ids[kept], scores[kept], boxes)
    ]


def save_detections(dets: Sequence[Detection], path: Path) -> None:
    """Write detections as a JSON list of {class_id, class_name, score, box_xyxy}."""
    write_json(path, [dataclasses.asdict(d) for d in dets])


def save_outputs(outputs: dict[str, np.ndarray] | Sequence[np.ndarray], path: Path) -> None:
    """Write raw model outputs to an .npz (a list becomes output_0, output_1, ...).

    np.savez gets a file handle rather than a name because given a name it appends ".npz",
    and the stage outputs DVC tracks must be exactly the paths in dvc.yaml.
    """
    if not isinstance(outputs, dict):
        outputs = {f"output_{i}": array for i, array in enumerate(outputs)}
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **{name: np.asarray(array) for name, array in outputs.items()})


def detections_for(
    output: np.ndarray,
    meta: dict[str, Any],
    image_hw: tuple[int, int],
    score_thresh: float,
    nms_iou: float,
    letterbox: bool,
    nms: bool = True,
) -> list[Detection]:
    """``decode`` for an artifact's output, with the class names and input size its meta.json records."""
    shape = meta["input_shape"]
    return decode(
        output,
        meta["class_names"],
        input_hw=(shape[2], shape[3]),
        image_hw=image_hw,
        score_thresh=score_thresh,
        nms=nms,
        nms_iou=nms_iou,
        letterbox=letterbox,
    )
