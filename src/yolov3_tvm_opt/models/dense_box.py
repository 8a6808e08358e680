"""The proof that a scatter's constant indices address one dense box, shared by every front end.

A YOLO export writes ``y[..., 0:2] = xy`` as ScatterND with a constant index tensor that lists
every element of the box. When the index tuples, read in row-major order, are exactly those of
a box, the scatter is a slice-and-concat, and every runtime runs that well. The Relax pass
(``compiler.fast_scatter``) and the ONNX rewrite (``models.onnx_export``) both decide with
``dense_box`` and both spell the result with ``replace_box``: one proof, one decomposition, two
front ends that only say how to slice and concatenate in their own IR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

Expr = TypeVar("Expr")


def dense_box(indices: np.ndarray, data_shape: Sequence[int]) -> list[tuple[int, int]] | None:
    """The box ``[(start, stop)] * M`` that ``indices`` enumerates in row-major order, or None.

    ``indices`` has ONNX's layout ``[Y..., M]``. Negative entries count from the end of their
    axis, as ONNX allows (``-s <= i < s``); they are normalised first, and anything out of that
    range proves nothing. It is a dense box exactly when its index tuples, read in row-major
    order, are those of ``meshgrid(range(start_k, stop_k) for k < M)``: then ``updates``
    reshaped to the box's shape is the box's new content, element for element. The comparison
    is on every tuple, so it is a proof, not a heuristic.
    """
    if indices.ndim < 1 or indices.shape[-1] > len(data_shape) or indices.size == 0:
        return None
    m = indices.shape[-1]
    dims = np.asarray(data_shape[:m], dtype=np.int64)
    tuples = indices.reshape(-1, m).astype(np.int64)
    if np.any(tuples < -dims) or np.any(tuples >= dims):
        return None
    tuples = np.where(tuples < 0, tuples + dims, tuples)
    starts, stops = tuples.min(axis=0), tuples.max(axis=0) + 1
    extent = stops - starts
    if int(np.prod(extent)) != tuples.shape[0]:
        return None
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(starts, stops)], indexing="ij"), axis=-1)
    if not np.array_equal(grid.reshape(-1, m), tuples):
        return None
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def replace_box(
    data: Expr,
    shape: Sequence[int],
    box: Sequence[tuple[int, int]],
    content: Expr,
    take: Callable[[Expr, int, int, int], Expr],
    join: Callable[[list[Expr], int], Expr],
    axis: int = 0,
) -> Expr:
    """``data`` with ``data[box]`` replaced by ``content``, built from slices and concats axis by axis.

    ``take(x, axis, start, stop)`` slices one axis and ``join(pieces, axis)`` concatenates; axes
    the box spans whole need neither. For YOLO's ``[0:1, 0:3, 0:13, 0:13, 2:4]`` of
    ``[1, 3, 13, 13, 85]`` that is ``join([take(y, 4, 0, 2), content, take(y, 4, 4, 85)], 4)``.
    """
    if axis == len(box):
        return content
    start, stop = box[axis]
    if start == 0 and stop == shape[axis]:
        return replace_box(data, shape, box, content, take, join, axis + 1)
    if all(box[k] == (0, shape[k]) for k in range(axis + 1, len(box))):
        inner = content  # nothing further in is cut: the box's slab along this axis is all content
    else:
        inner_shape = [*shape[:axis], stop - start, *shape[axis + 1 :]]
        inner = replace_box(take(data, axis, start, stop), inner_shape, box, content, take, join, axis + 1)
    pieces = [inner]
    if start > 0:
        pieces.insert(0, take(data, axis, 0, start))
    if stop < shape[axis]:
        pieces.append(take(data, axis, stop, shape[axis]))
    return join(pieces, axis)
