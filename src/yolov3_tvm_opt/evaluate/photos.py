"""Real sample photos for the pipeline, taken from wheels that are already installed.

The machines that run the pipeline reach only the package index, so photos cannot be
downloaded; scikit-image and matplotlib happen to ship a few real photographs as package data.
Their sha256 sums are fixed by the pinned wheels (requirements.lock), so a mismatch means a
different or damaged install, and we stop rather than benchmark on unexpected images.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import NamedTuple

from ..core.errors import UserError
from ..core.files import atomic_file, sha256_file

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
# Images whose stem ends like this were drawn by detect.draw_detections, not taken by a camera.
VISUALISED_STEM_SUFFIX = "_vis"


class SamplePhoto(NamedTuple):
    """Where a sample photo lives inside an installed package, and what its bytes must hash to."""

    package: str
    relative_path: str
    sha256: str


SAMPLE_PHOTOS: dict[str, SamplePhoto] = {
    "astronaut": SamplePhoto(
        "skimage",
        "data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    ),
    "chelsea": SamplePhoto(
        "skimage",
        "data/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    ),
    "coffee": SamplePhoto(
        "skimage",
        "data/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    ),
    "motorcycle_left": SamplePhoto(
        "skimage",
        "data/motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    ),
    "grace_hopper": SamplePhoto(
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    ),
}


def verify_sha256(path: Path, expected: str) -> None:
    """Stop when a packaged photo's bytes are not the ones the pinned wheel ships."""
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(
            f"{path} has sha256 {actual}, expected {expected}; "
            "reinstall the pinned requirements (pip install -r requirements.lock)"
        )


def _package_dir(package: str) -> Path:
    """The installed package's directory, found without importing it (skimage is slow to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"package {package} is not installed; "
            "install the pinned requirements (pip install -r requirements.lock)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def install_sample_photos(dest: Path, names: list[str] | None = None) -> list[Path]:
    """Copy the named sample photos (all by default) into `dest` and return their paths.

    A photo already in `dest` with the right bytes is left alone, so re-running the stage does
    not touch file times; each copy is atomic, so an interrupted run leaves no partial photo.
    """
    chosen = list(SAMPLE_PHOTOS) if names is None else names
    unknown = [name for name in chosen if name not in SAMPLE_PHOTOS]
    if unknown:
        raise UserError(
            f"unknown sample photo(s) {', '.join(unknown)}; "
            f"choose from {', '.join(SAMPLE_PHOTOS)}"
        )
    dest = Path(dest)
    installed = []
    for name in chosen:
        photo = SAMPLE_PHOTOS[name]
        source = _package_dir(photo.package) / photo.relative_path
        if not source.is_file():
            raise UserError(
                f"sample photo {source} is missing from package {photo.package}; "
                "reinstall the pinned requirements (pip install -r requirements.lock)"
            )
        verify_sha256(source, photo.sha256)
        target = dest / f"{name}{source.suffix}"
        if not (target.is_file() and sha256_file(target) == photo.sha256):
            with open(source, "rb") as src, atomic_file(target, "wb") as out:
                shutil.copyfileobj(src, out)
        installed.append(target)
    return installed


def list_photos(directory: Path) -> list[Path]:
    """The JPEG and PNG photos in `directory`, sorted by name, leaving out drawn detections."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(
            f"photo directory {directory} does not exist; "
            "create it and put JPEG or PNG photos in it"
        )
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file()
        and path.suffix.lower() in PHOTO_SUFFIXES
        and not path.stem.endswith(VISUALISED_STEM_SUFFIX)
    )
