from __future__ import annotations

import shutil

import pytest
from PIL import Image

from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.files import sha256_file
from yolov3_tvm_opt.evaluate.photos import (
    SAMPLE_PHOTOS,
    install_sample_photos,
    list_photos,
    verify_sha256,
)


def test_install_copies_verified_photos(tmp_path):
    paths = install_sample_photos(tmp_path / "pictures")
    assert [p.name for p in paths] == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "motorcycle_left.png",
        "grace_hopper.jpg",
    ]
    for path, photo in zip(paths, SAMPLE_PHOTOS.values()):
        assert sha256_file(path) == photo.sha256
        with Image.open(path) as image:
            image.verify()
    assert list_photos(tmp_path / "pictures") == sorted(paths)


def test_install_leaves_good_copy_alone_and_replaces_bad_one(tmp_path):
    [path] = install_sample_photos(tmp_path, ["grace_hopper"])
    mtime = path.stat().st_mtime_ns
    assert install_sample_photos(tmp_path, ["grace_hopper"]) == [path]
    assert path.stat().st_mtime_ns == mtime
    path.write_bytes(b"damaged")
    install_sample_photos(tmp_path, ["grace_hopper"])
    assert sha256_file(path) == SAMPLE_PHOTOS["grace_hopper"].sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grace_hopper.jpg"]


def test_verify_sha256_rejects_tampered_copy(tmp_path):
    [path] = install_sample_photos(tmp_path, ["chelsea"])
    tampered = tmp_path / "tampered.png"
    shutil.copyfile(path, tampered)
    with open(tampered, "ab") as handle:
        handle.write(b"\0")
    verify_sha256(path, SAMPLE_PHOTOS["chelsea"].sha256)
    with pytest.raises(UserError, match="tampered.png.*reinstall the pinned requirements"):
        verify_sha256(tampered, SAMPLE_PHOTOS["chelsea"].sha256)


def test_unknown_photo_name_lists_known_ones(tmp_path):
    with pytest.raises(UserError, match="unknown sample photo.*rocket.*choose from astronaut"):
        install_sample_photos(tmp_path, ["astronaut", "rocket"])
    assert list(tmp_path.iterdir()) == []


def test_list_photos_skips_visualisations_and_other_files(tmp_path):
    for name in ["b.JPG", "a.png", "c.jpeg", "a_vis.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in list_photos(tmp_path)] == ["a.png", "b.JPG", "c.jpeg"]


def test_list_photos_missing_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        list_photos(tmp_path / "missing")
