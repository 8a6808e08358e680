"""Photos in and out: preprocessing to the model's input, random input, drawing detections."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.deploy.detect import Detection
from yolov3_tvm_opt.evaluate.images import (
    draw_detections,
    load_image,
    preprocess,
    random_input,
)


def test_preprocess_resizes_scales_and_keeps_rgb_order():
    image = Image.new("RGB", (64, 48), (255, 128, 0))
    x = preprocess(image, (1, 3, 32, 40), 1 / 255)
    assert x.shape == (1, 3, 32, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 5, 5], [1.0, 128 / 255, 0.0], rtol=1e-6)
    assert preprocess(image, (1, 3, 32, 40), 1.0, dtype="float16").dtype == np.float16


def test_preprocess_rejects_non_rgb_single_image_shape():
    with pytest.raises(UserError, match="1, 3, H, W"):
        preprocess(Image.new("RGB", (8, 8)), (2, 3, 8, 8), 1.0)


def test_random_input_is_reproducible_and_in_scaled_pixel_range():
    a = random_input((1, 3, 8, 8), "float32", seed=3, input_scale=1 / 255)
    assert a.dtype == np.float32 and a.shape == (1, 3, 8, 8)
    assert 0.0 <= a.min() and a.max() < 1.0
    again = random_input((1, 3, 8, 8), "float32", seed=3, input_scale=1 / 255)
    np.testing.assert_array_equal(a, again)


def test_load_image_returns_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (10, 6), 77).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (10, 6)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(UserError, match="cannot read image .*JPEG or PNG"):
        load_image(tmp_path / "nope.jpg")


def test_load_image_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a picture")
    with pytest.raises(UserError, match="cannot read image"):
        load_image(path)


DETS = [
    Detection(1, "dog", 0.875, [10.0, 20.0, 50.0, 60.0]),
    Detection(0, "person", 0.5, [0.0, 0.0, 5.0, 100.0]),
]


@pytest.mark.parametrize("name, fmt", [("photo_vis.jpg", "JPEG"), ("photo_vis.png", "PNG")])
def test_draw_detections_saves_original_size(tmp_path, name, fmt):
    image = Image.new("RGB", (120, 90), (40, 40, 40))
    path = tmp_path / name
    draw_detections(image, DETS, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    with Image.open(path) as drawn:
        assert drawn.format == fmt and drawn.size == (120, 90)
        assert drawn.convert("RGB").getpixel((10, 40)) != (40, 40, 40)


def test_draw_detections_rejects_unknown_extension(tmp_path):
    with pytest.raises(UserError, match=r"\.jpg or \.png"):
        draw_detections(Image.new("RGB", (8, 8)), DETS, tmp_path / "x.gif")

