"""Synthetic weights regenerated on the deploy host from a recipe: the very bytes, or one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.files import sha256_file
from yolov3_tvm_opt.core.weights_file import weights_bytes
from yolov3_tvm_opt.deploy.weights import regenerate_weights
from yolov3_tvm_opt.models import darknet_cfg

CLASSES, SEED = 2, 3


@pytest.fixture(scope="module")
def recipe():
    """What a bundle ships for synthetic YOLOv3: the manifest of the weights file, and the calibration.

    Any calibration numbers will do here (the build machine's come from a slow numpy forward):
    the host only draws and scales with them.
    """
    cfg = darknet_cfg.yolov3_cfg(classes=CLASSES)
    convs = [layer for layer in darknet_cfg.build_layers(darknet_cfg.parse_cfg(cfg)) if layer.kind == "convolutional"]
    calibration = np.full(sum(layer.channels + 1 for layer in convs), 0.5, np.float32)
    named = darknet_cfg.named_conv_weights(cfg, darknet_cfg.synthetic_weights(cfg, SEED, calibration))
    _, manifest = weights_bytes(named[:6])  # the first convs keep the test quick; the layout is the same
    return manifest, calibration


def _bundle(root, manifest, calibration, seed):
    (root / "weights").mkdir()
    np.save(root / "weights" / f"{manifest['sha256']}.calibration.npy", calibration)
    recipe = {"generator": "yolov3", "classes": CLASSES, "seed": seed, "manifest": manifest}
    (root / "weights" / f"{manifest['sha256']}.regenerate.json").write_text(json.dumps(recipe))
    return root / "weights" / f"{manifest['sha256']}.bin"


def test_the_seed_regenerates_the_file_the_manifest_names(recipe, tmp_path):
    manifest, calibration = recipe
    target = _bundle(tmp_path, manifest, calibration, SEED)
    regenerate_weights(tmp_path)
    assert sha256_file(target) == manifest["sha256"] and target.stat().st_size == manifest["bytes"]


def test_other_numbers_are_refused_and_nothing_is_written(recipe, tmp_path):
    manifest, calibration = recipe
    target = _bundle(tmp_path, manifest, calibration, SEED + 1)
    with pytest.raises(UserError, match="rebuild the bundle with the weights file shipped"):
        regenerate_weights(tmp_path)
    assert not target.exists() and list((tmp_path / "weights").glob("*.bin")) == []
