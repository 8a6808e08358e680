"""``weights.bin``: the weights an artifact built with ``--weights separate`` takes at run time.

The file is the arrays' raw little-endian bytes, back to back in the order ``main`` takes them;
meta.json's ``weights`` entry lists each one (name, dtype, shape, offset) with the file's sha256.
Raw bytes rather than .npz: the same arrays always give the same bytes (a zip records times), so
the sha256 identifies the weights of a model whichever variant or machine wrote them, and the
runtime reads them with numpy alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .files import atomic_file, sha256_file


def weights_bytes(arrays: Sequence[tuple[str, np.ndarray]]) -> tuple[list[bytes], dict[str, Any]]:
    """The chunks of the file and its manifest (everything but the file name)."""
    chunks, tensors, offset = [], [], 0
    digest = hashlib.sha256()
    for name, array in arrays:
        data = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<")).tobytes()
        tensors.append({"name": name, "dtype": str(array.dtype), "shape": list(array.shape), "offset": offset})
        chunks.append(data)
        digest.update(data)
        offset += len(data)
    return chunks, {"sha256": digest.hexdigest(), "bytes": offset, "tensors": tensors}


def write_weights(path: Path, arrays: Sequence[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """Write ``arrays`` to ``path`` atomically; return the manifest meta.json records."""
    chunks, manifest = weights_bytes(arrays)
    with atomic_file(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return {"file": Path(path).name, **manifest}


def check_weights(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a weights file that is missing or is not the one the manifest describes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing; the artifact was built with --weights separate and needs it beside model.so")
    if sha256_file(path) != manifest["sha256"]:
        raise UserError(f"{path} does not match the sha256 in meta.json (truncated or replaced); copy it again or recompile")


def read_weights(path: Path, manifest: dict[str, Any]) -> list[np.ndarray]:
    """The arrays of a checked weights file, in ``main``'s order (views of a read-only memory map)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    arrays = []
    for item in manifest["tensors"]:
        dtype = np.dtype(item["dtype"]).newbyteorder("<")
        count = int(np.prod(item["shape"], dtype=np.int64))
        arrays.append(np.frombuffer(data, dtype, count, item["offset"]).reshape(item["shape"]))
    return arrays
