"""Photos in and out: a photo as the model's input tensor, and detections drawn back onto it.

Preprocessing is a plain bilinear resize to the model's input size by default, because that is
what the user's original tool did, or a letterbox (aspect kept, grey padding) on request, which is
what Darknet-trained weights expect; ``detect.placement`` describes either, and decoding inverts it.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from ..core.errors import UserError
from ..core.files import atomic_file
from ..deploy.detect import Detection, placement, scale_pixels


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


def preprocess(
    image: Image.Image,
    input_shape: tuple[int, int, int, int],
    input_scale: float,
    dtype: str = "float32",
    letterbox: bool = False,
) -> np.ndarray:
    """Turn an RGB photo into the model's NCHW input: bilinear resize (or letterbox), times input_scale."""
    return scale_pixels(pixels_nchw(image, input_shape, letterbox), input_scale, dtype)


def pixels_nchw(image: Image.Image, input_shape: Sequence[int], letterbox: bool = False) -> np.ndarray:
    """The photo resized (or letterboxed) to the model's input, as uint8 NCHW pixels: what a bundle ships."""
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
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8).transpose(2, 0, 1)[np.newaxis])


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
