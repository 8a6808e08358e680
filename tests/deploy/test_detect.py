"""Decoding the model output: thresholds, class-wise NMS, boxes back on the photo, saved detections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.deploy.detect import (
    Detection,
    decode,
    nms,
    placement,
    save_detections,
    save_outputs,
)
from yolov3_tvm_opt.evaluate.images import (
    preprocess,
)

NAMES = ["person", "dog", "cat"]


def _row(cx, cy, w, h, obj, class_id, prob):
    row = [cx, cy, w, h, obj] + [0.0] * len(NAMES)
    row[5 + class_id] = prob
    return row


def _output(*rows):
    return np.asarray([rows], dtype=np.float32)


def test_decode_keeps_best_of_overlapping_same_class_boxes():
    out = _output(_row(100, 100, 40, 40, 1.0, 1, 0.9), _row(102, 101, 40, 40, 1.0, 1, 0.8))
    dets = decode(out, NAMES, (416, 416), (416, 416))
    assert len(dets) == 1
    assert dets[0].class_name == "dog"
    assert dets[0].score == pytest.approx(0.9)


def test_decode_keeps_overlapping_boxes_of_different_classes_sorted_by_score():
    out = _output(_row(100, 100, 40, 40, 1.0, 1, 0.6), _row(100, 100, 40, 40, 1.0, 2, 0.8))
    dets = decode(out, NAMES, (416, 416), (416, 416))
    assert [d.class_id for d in dets] == [2, 1]


def test_decode_without_nms_keeps_overlaps():
    out = _output(_row(100, 100, 40, 40, 1.0, 1, 0.9), _row(102, 101, 40, 40, 1.0, 1, 0.8))
    assert len(decode(out, NAMES, (416, 416), (416, 416), nms=False)) == 2


def test_decode_drops_boxes_below_threshold_using_objectness_times_class_prob():
    out = _output(_row(100, 100, 40, 40, 0.5, 0, 0.4), _row(300, 300, 40, 40, 0.9, 0, 0.9))
    dets = decode(out, NAMES, (416, 416), (416, 416), score_thresh=0.25)
    assert len(dets) == 1
    assert dets[0].score == pytest.approx(0.81)


def test_decode_maps_boxes_to_original_pixels_and_clips():
    # Input 320x160 (H x W); the photo is 640 high and 480 wide: y scales by 2, x by 3.
    out = np.asarray(
        [_row(80, 40, 20, 10, 1.0, 0, 1.0), _row(155, 155, 20, 20, 1.0, 2, 0.5)], dtype=np.float64
    )
    dets = decode(out, NAMES, (320, 160), (640, 480))
    assert dets[0] == Detection(0, "person", 1.0, [210.0, 70.0, 270.0, 90.0])
    assert dets[1].box_xyxy == [435.0, 290.0, 480.0, 330.0]


def test_decode_caps_detections():
    rows = [_row(20 * i + 10, 10, 5, 5, 1.0, 0, 0.5 + i / 100) for i in range(10)]
    dets = decode(_output(*rows), NAMES, (416, 416), (416, 416), max_dets=3)
    assert [d.score for d in dets] == pytest.approx([0.59, 0.58, 0.57])


@pytest.mark.parametrize("shape", [(10,), (2, 4, 8), (1, 4, 5)])
def test_decode_rejects_wrong_shape(shape):
    with pytest.raises(UserError, match="expected"):
        decode(np.zeros(shape, np.float32), NAMES, (416, 416), (416, 416))


def test_decode_rejects_wrong_number_of_names():
    with pytest.raises(UserError, match="names"):
        decode(np.zeros((1, 4, 5 + 2), np.float32), NAMES, (416, 416), (416, 416))


def _reference_nms(boxes, scores, thresh):
    """Plain-Python greedy NMS, one pair at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    area = [max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) for b in boxes]
    keep = []
    for i in order:
        suppressed = False
        for k in keep:
            inter_w = max(min(boxes[k][2], boxes[i][2]) - max(boxes[k][0], boxes[i][0]), 0.0)
            inter_h = max(min(boxes[k][3], boxes[i][3]) - max(boxes[k][1], boxes[i][1]), 0.0)
            inter = inter_w * inter_h
            union = area[k] + area[i] - inter
            if union > 0 and inter / union > thresh:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return keep


_coord = st.integers(0, 50).map(float)
_box = st.tuples(_coord, _coord, st.integers(0, 30), st.integers(0, 30)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_box, st.integers(0, 5).map(lambda s: s / 5)), max_size=25),
    st.sampled_from([0.0, 0.3, 0.45, 0.7, 1.0]),
)
def test_nms_matches_brute_force(items, thresh):
    boxes = [b for b, _ in items]
    scores = [s for _, s in items]
    box_array, score_array = np.asarray(boxes).reshape(-1, 4), np.asarray(scores)
    kept = nms(box_array, score_array, thresh)
    assert kept.tolist() == _reference_nms(boxes, scores, thresh)
    assert nms(box_array, score_array, thresh, max_keep=2).tolist() == kept[:2].tolist()


def _only(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


DETS = [
    Detection(1, "dog", 0.875, [10.0, 20.0, 50.0, 60.0]),
    Detection(0, "person", 0.5, [0.0, 0.0, 5.0, 100.0]),
]


def test_save_detections_writes_json_atomically(tmp_path):
    path = tmp_path / "out" / "dets.json"
    save_detections(DETS, path)
    assert _only(path.parent) == ["dets.json"]
    assert json.loads(path.read_text())[0] == {
        "class_id": 1,
        "class_name": "dog",
        "score": 0.875,
        "box_xyxy": [10.0, 20.0, 50.0, 60.0],
    }


def test_failed_save_leaves_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "outputs.npz"
    save_outputs([np.arange(3)], path)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_outputs({"ragged": [[1], [1, 2]]}, path)
    assert path.read_bytes() == before
    assert _only(tmp_path) == ["outputs.npz"]


def test_save_outputs_keeps_exact_name(tmp_path):
    path = tmp_path / "raw.outputs"
    save_outputs({"boxes": np.ones((1, 2, 8), np.float32)}, path)
    assert _only(tmp_path) == ["raw.outputs"]
    with np.load(path) as data:
        np.testing.assert_array_equal(data["boxes"], np.ones((1, 2, 8), np.float32))


def test_letterbox_keeps_aspect_pads_grey_and_decode_inverts_it():
    # A 200 wide x 100 high photo in a 100x100 input: scale 0.5, 25 px grey bars top and bottom.
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    x = preprocess(image, (1, 3, 100, 100), 1 / 255, letterbox=True)
    np.testing.assert_allclose(x[0, :, 10, 50], [128 / 255] * 3, rtol=1e-6)  # padding
    np.testing.assert_allclose(x[0, :, 50, 50], [1.0, 0.0, 0.0], rtol=1e-6)  # photo
    assert placement((100, 200), (100, 100), letterbox=True) == (0.5, 0.5, 0, 25)
    out = _output(_row(50, 50, 20, 10, 1.0, 1, 1.0))
    (det,) = decode(out, NAMES, (100, 100), (100, 200), letterbox=True)
    assert det.box_xyxy == [80.0, 40.0, 120.0, 60.0]
