"""The proof that a scatter's constant indices address one dense box, shared by every front end.

A YOLO export writes ``y[..., 0:2] = xy`` as ScatterND with a constant index tensor that lists
every element of the box. When the index tuples, read in row-major order, are exactly those of
a box, the scatter is a slice-and-concat, and every runtime runs that well. The Relax pass
(``compiler.fast_scatter``) and the ONNX rewrite both decide with this one function.
"""

from __future__ import annotations

import numpy as np


def dense_box(indices: np.ndarray, data_shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """The box ``[(start, stop)] * M`` that ``indices`` enumerates in row-major order, or None.

    ``indices`` has ONNX's layout ``[Y..., M]``. It is a dense box exactly when its index tuples,
    read in row-major order, are those of ``meshgrid(range(start_k, stop_k) for k < M)``: then
    ``updates`` reshaped to the box's shape is the box's new content, element for element. The
    comparison is on every tuple, so it is a proof, not a heuristic.
    """
    if indices.ndim < 1 or indices.shape[-1] > len(data_shape) or indices.size == 0:
        return None
    m = indices.shape[-1]
    tuples = indices.reshape(-1, m).astype(np.int64)
    starts, stops = tuples.min(axis=0), tuples.max(axis=0) + 1
    if np.any(starts < 0) or np.any(stops > np.asarray(data_shape[:m])):
        return None
    extent = stops - starts
    if int(np.prod(extent)) != tuples.shape[0]:
        return None
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(starts, stops)], indexing="ij"), axis=-1)
    if not np.array_equal(grid.reshape(-1, m), tuples):
        return None
    return [(int(a), int(b)) for a, b in zip(starts, stops)]
