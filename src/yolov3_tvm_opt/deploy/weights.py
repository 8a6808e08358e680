"""Synthetic YOLOv3's weights, regenerated on the deploy host from the seed the bundle ships.

A bundle of synthetic YOLOv3 carries ``weights/<sha256>.regenerate.json`` (seed, classes and the
manifest) and the calibration numbers instead of the 250 MB file; this writes the file before the
first artifact loads, with numpy alone, and refuses bytes that do not hash to the manifest's sha256.
The generator is ``models.darknet_cfg`` (numpy only, so it ships too): the build machine proved
with it that the seed reproduces the file before it left the weights out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from ..core.files import atomic_file
from ..models import darknet_cfg


def regenerate_weights(root: Path) -> None:
    """Write every weights file the bundle ships as a recipe (seed + calibration), checked by sha256."""
    for recipe_path in sorted((root / "weights").glob("*.regenerate.json")):
        recipe = json.loads(recipe_path.read_text())
        manifest = recipe["manifest"]
        target = root / "weights" / f"{manifest['sha256']}.bin"
        if target.is_file():
            continue
        print(f">> regenerating the synthetic weights (seed {recipe['seed']}) with numpy ...", flush=True)
        calibration = np.load(root / "weights" / f"{manifest['sha256']}.calibration.npy")
        chunks, made = darknet_cfg.synthetic_weights_file(manifest, recipe["classes"], recipe["seed"], calibration)
        if made["sha256"] != manifest["sha256"]:
            raise UserError(
                f"the regenerated weights hash to {made['sha256'][:12]}..., not {manifest['sha256'][:12]}... "
                f"(numpy {np.__version__} draws other numbers); rebuild the bundle with the weights file shipped"
            )
        with atomic_file(target, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
