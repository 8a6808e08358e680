"""From a photo to model input, and from the model's one output tensor to drawn, saved detections.

The models here end in a YOLO head that has already decoded its boxes: one output of shape
[1, N, 5 + C] whose columns are cx, cy, w, h (in model-input pixels), objectness, then C class
probabilities (already passed through a sigmoid). So decoding is only thresholding, box
conversion, non-maximum suppression and mapping boxes back onto the original photo.

Preprocessing is a plain bilinear resize to the model's input size by default, because that is
what the user's original tool did, or a letterbox (aspect kept, grey padding) on request, which is
what Darknet-trained weights expect; ``placement`` describes either, and decoding inverts it.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from yolov3_tvm_opt.artifact_io import atomic_file, write_json
from yolov3_tvm_opt.errors import UserError


def load_image(path: Path) -> Image.Image:
    """Read a photo as RGB, turned upright according to its EXIF orientation.

    Phone photos are often stored sideways with an orientation tag; OpenCV's imread (which the
    original tool used) applies that tag, so we do too, or boxes would land on a rotated image.
    """
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"cannot read image {path}: {reason}; pass a JPEG or PNG file") from exc


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


def preprocess(
    image: Image.Image,
    input_shape: tuple[int, int, int, int],
    input_scale: float,
    dtype: str = "float32",
    letterbox: bool = False,
) -> np.ndarray:
    """Turn an RGB photo into the model's NCHW input: bilinear resize (or letterbox), times input_scale."""
    batch, channels, height, width = input_shape
    if batch != 1 or channels != 3:
        raise UserError(
            f"model input shape {list(input_shape)} is not [1, 3, H, W]; "
            "use a model that takes one RGB image per call"
        )
    scale_x, scale_y, left, top = placement((image.height, image.width), (height, width), letterbox)
    size = (round(image.width * scale_x), round(image.height * scale_y))
    resized = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    canvas.paste(resized, (left, top))
    pixels = np.asarray(canvas, dtype=np.float32) * np.float32(input_scale)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis]).astype(dtype, copy=False)


def random_input(
    shape: Sequence[int],
    dtype: str = "float32",
    seed: int = 0,
    input_scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """A reproducible stand-in for a preprocessed photo, for benchmarks that need no real image.

    Values are uniform pixel intensities in [0, 255) times `input_scale`, i.e. the same range a
    real photo has after `preprocess`, so activations (and anything data-dependent in the model)
    behave as they would on real input.
    """
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.0, 255.0, size=tuple(shape)) * input_scale).astype(dtype)


def model_input(
    shape: Sequence[int],
    dtype: str,
    image_path: Path | None,
    input_scale: float,
    seed: int = 0,
    letterbox: bool = False,
) -> tuple[np.ndarray, Image.Image | None]:
    """The benchmark's input: the photo at ``image_path`` preprocessed, else seeded random pixels.

    Returns the image too, so detections can be drawn on the very photo that was measured.
    """
    if image_path is None:
        return random_input(shape, dtype, seed=seed, input_scale=input_scale), None
    image = load_image(Path(image_path))
    return preprocess(image, tuple(shape), input_scale, dtype, letterbox), image


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
    sides = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    areas = sides[:, 0] * sides[:, 1]
    limit = len(order) if max_keep is None else max_keep
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        overlap = np.clip(bottom_right - top_left, 0, None)
        inter = overlap[:, 0] * overlap[:, 1]
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_thresh]
    return np.asarray(keep, dtype=np.int64)


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


def _class_colour(class_id: int) -> tuple[int, int, int]:
    """A bright colour per class; golden-ratio hue steps keep neighbouring ids far apart."""
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _image_format(path: Path) -> str:
    """PIL's format name for the file's extension, so the saved bytes match the name."""
    image_format = Image.registered_extensions().get(Path(path).suffix.lower())
    if image_format not in ("JPEG", "PNG"):
        raise UserError(f"cannot save an image as {path}; use a .jpg or .png file name")
    return image_format


def draw_detections(image: Image.Image, dets: Sequence[Detection], path: Path) -> None:
    """Save a copy of the original photo with each detection's box and "name score" label."""
    image_format = _image_format(path)
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(min(canvas.size) / 250))
    font = ImageFont.load_default(size=max(12, round(min(canvas.size) / 40)))
    for det in dets:
        colour = _class_colour(det.class_id)
        x0, y0, x1, y1 = det.box_xyxy
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line_width)
        label = f"{det.class_name} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        # Above the box when there is room, otherwise just inside its top edge.
        label_y = y0 - text_h - 4 if y0 - text_h - 4 >= 0 else y0
        draw.rectangle((x0, label_y, x0 + text_w + 4, label_y + text_h + 4), fill=colour)
        draw.text((x0 + 2 - left, label_y + 2 - top), label, fill=(0, 0, 0), font=font)
    with atomic_file(path, "wb") as handle:
        canvas.save(handle, format=image_format)


def save_outputs(outputs: dict[str, np.ndarray] | Sequence[np.ndarray], path: Path) -> None:
    """Write raw model outputs to an .npz (a list becomes output_0, output_1, ...).

    np.savez gets a file handle rather than a name because given a name it appends ".npz",
    and the stage outputs DVC tracks must be exactly the paths in dvc.yaml.
    """
    if not isinstance(outputs, dict):
        outputs = {f"output_{i}": array for i, array in enumerate(outputs)}
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **{name: np.asarray(array) for name, array in outputs.items()})
