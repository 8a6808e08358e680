"""A ScatterND-free ONNX: the fast scatter rewrite at the ONNX level, so every runtime gets it.

Why: YOLO exports write the in-place decode ``y[..., 0:2] = xy`` as ScatterND with a constant
index tensor, and runtime after runtime lacked or serialised that op (TensorRT < 8.2, ncnn,
TIDL, OpenCV before 2022, TVM's own TOPI kernel). When the indices provably enumerate a dense
box (``models.dense_box``, the proof the Relax pass uses too), the scatter is exactly::

    before: out = ScatterND(y, idx, xy)                 idx: const [1, 3, 13, 13, 2, 5]
    after:  out = Concat(xy, Slice(y, 4, 2, 85), axis=4)

Slices and concats only copy, so the rewritten model's outputs are bit-identical. A reduction
(add/mul/min/max) first combines the updates with the old slice of the box, element by element
as ScatterND would (a dense box has no duplicate index, so the order of updates cannot matter).

Constant subgraphs are folded first (``models.fold``): torch builds the indices through chains of
ConstantOfShape / Where / Expand / Concat, other exporters wrap them in ``Where(Less(i, 0),
Add(i, dim), i)``, and after folding they are initializers. Indices computed from a graph input,
a dynamic data shape or indices that are not a box: the ScatterND stays, with the reason
reported. Nodes and initializers that only fed the rewritten scatters are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..core.errors import UserError
from ..core.files import write_bytes
from .dense_box import dense_box, replace_box
from .fold import fold_constants, static_shapes, subgraph_reads
from .onnx_info import load_onnx, pin_input

SCATTER = "ScatterND"
_COMBINE = {"add": "Add", "mul": "Mul", "min": "Min", "max": "Max"}


@dataclass(frozen=True)
class ExportReport:
    """What the rewrite did: node counts, the scatters it replaced, and why the others stayed."""

    nodes_before: int
    nodes_after: int
    rewritten: list[str]
    kept: dict[str, str] = field(default_factory=dict)
    folded: int = 0  # constant nodes folded to initializers first

    def summary(self) -> str:
        folded = f"folded {self.folded} constant nodes; " if self.folded else ""
        if not self.rewritten and not self.kept:
            return f"{folded}no ScatterND in the model: nothing to rewrite"
        line = (f"{folded}{len(self.rewritten)} of {len(self.rewritten) + len(self.kept)} ScatterND rewritten to "
                f"Slice + Concat, {len(self.kept)} left; nodes {self.nodes_before} -> {self.nodes_after}")
        return "\n".join([line, *(f"  left {name!r}: {why}" for name, why in self.kept.items())])


class _NotConstant(Exception):
    """Raised for scatter indices that are only known at run time."""


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Constants:
    """The index tensors a folded graph holds as constants, or why one is not constant."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> None:
        self.initializers = {init.name: init for init in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.shapes = shapes

    def value(self, name: str) -> np.ndarray:
        """The tensor's value, or ``_NotConstant`` saying what it depends on at run time."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        if name not in self.producer:
            raise _NotConstant(f"indices come from the graph input {name!r}")
        node = self.producer[name]
        inputs = sorted(self._graph_inputs(name))
        source = f" from {', '.join(map(repr, inputs))}" if inputs else ""
        raise _NotConstant(f"indices are computed at run time{source} (by {node.op_type} {node.name!r})")

    def _graph_inputs(self, name: str) -> set[str]:
        """The graph inputs ``name`` is computed from (constant folding already removed every constant chain)."""
        seen, pending, found = set(), [name], set()
        while pending:
            x = pending.pop()
            if x in seen or x in self.initializers:
                continue
            seen.add(x)
            if x in self.producer:
                pending.extend(i for i in self.producer[x].input if i)
            else:
                found.add(x)
        return found


class _Emitter:
    """New nodes and deduplicated constant initializers, with names no tensor of the graph uses."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = taken
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._consts: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def fresh(self, hint: str) -> str:
        name, i = hint, 0
        while name in self.taken:
            i += 1
            name = f"{hint}_{i}"
        self.taken.add(name)
        return name

    def const(self, values: Iterable[int]) -> str:
        array = np.asarray(list(values), np.int64)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = self.fresh("noscatter_const_" + "_".join(str(v).replace("-", "m") for v in array.tolist()))
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def node(self, op_type: str, inputs: list[str], hint: str, **attrs: object) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def slice(self, x: str, axes: list[int], starts: list[int], stops: list[int], hint: str) -> str:
        return self.node("Slice", [x, self.const(starts), self.const(stops), self.const(axes)], hint)


def _rewrite_one(node: onnx.NodeProto, constants: _Constants, emit: _Emitter) -> str | None:
    """Emit the slices and concats for one ScatterND; None when proven, else why it must stay."""
    data, indices_name, updates = node.input
    reduction = _attr(node, "reduction", b"none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    shape = constants.shapes.get(data)
    if shape is None:
        return f"the shape of its data {data!r} is not static"
    try:
        indices = constants.value(indices_name)
    except _NotConstant as why:
        return str(why)
    box = dense_box(indices, shape)
    if box is None:
        return "its constant indices do not enumerate a dense box in row-major order"
    if reduction != "none" and reduction not in _COMBINE:
        return f"reduction {reduction!r} is not one ONNX defines"
    name, m, first = node.name or node.output[0], len(box), len(emit.nodes)
    box_shape = [b - a for a, b in box] + list(shape[m:])
    content = updates
    if list(indices.shape[:-1]) + list(shape[m:]) != box_shape:
        content = emit.node("Reshape", [updates, emit.const(box_shape)], f"{name}/box_updates")
    if reduction != "none":
        cut = [axis for axis, (a, b) in enumerate(box) if (a, b) != (0, shape[axis])]
        old = emit.slice(data, cut, [box[k][0] for k in cut], [box[k][1] for k in cut], f"{name}/box_old") if cut else data
        content = emit.node(_COMBINE[reduction], [old, content], f"{name}/box_{reduction}")
    result = replace_box(
        data, shape, box, content,
        take=lambda x, axis, start, stop: emit.slice(x, [axis], [start], [stop], f"{name}/slice{axis}"),
        join=lambda pieces, axis: emit.node("Concat", pieces, f"{name}/concat{axis}", axis=axis),
    )
    out = node.output[0]
    if len(emit.nodes) > first and emit.nodes[-1].output[0] == result:
        emit.nodes[-1].output[0] = out  # the last node built the result: let it write the scatter's output
    else:
        emit.nodes.append(helper.make_node("Identity", [result], [out], name=emit.fresh(f"{name}/box_all")))
    return None


def _needed(graph: onnx.GraphProto, keep: Callable[[onnx.NodeProto], bool]) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes the outputs (and the nodes ``keep`` pins) depend on, and every name they read."""
    needed = {out.name for out in graph.output}
    kept = []
    for node in reversed(graph.node):
        if keep(node) or any(out in needed for out in node.output):
            kept.append(node)
            needed.update(x for x in node.input if x)
            needed |= subgraph_reads([node])
    return kept[::-1], needed


def _drop_dead(graph: onnx.GraphProto, was_needed: set[str], dead_before: set[tuple[str, ...]]) -> None:
    """Remove nodes and initializers that fed the outputs before the rewrite and feed nothing now.

    What was already dead stays as it was, and so does whatever it reads: the rewrite removes
    only what it made unnecessary.
    """
    nodes, needed = _needed(graph, keep=lambda node: tuple(node.output) in dead_before)
    del graph.node[:]
    graph.node.extend(nodes)
    gone = {init.name for init in graph.initializer if init.name in was_needed and init.name not in needed}
    inits = [init for init in graph.initializer if init.name not in gone]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    inputs = [vi for vi in graph.input if vi.name not in gone]
    del graph.input[:]
    graph.input.extend(inputs)
    existing = {o for node in graph.node for o in node.output} | {init.name for init in graph.initializer}
    value_info = [vi for vi in graph.value_info if vi.name in existing]
    del graph.value_info[:]
    graph.value_info.extend(value_info)


def rewrite_dense_scatternd(model: onnx.ModelProto) -> tuple[onnx.ModelProto, ExportReport]:
    """A copy of ``model``, its constant subgraphs folded (``models.fold``), with every provably dense ScatterND replaced.

    The input is not changed.
    """
    nodes_before = len(model.graph.node)
    out, folding = fold_constants(model)
    graph = out.graph
    scatters = [n for n in graph.node if n.op_type == SCATTER and n.domain in ("", "ai.onnx")]
    if not scatters:
        return out, ExportReport(nodes_before, len(graph.node), [], folded=folding.folded)
    constants = _Constants(graph, static_shapes(out))
    _, was_needed = _needed(graph, keep=lambda node: False)
    dead_before = {tuple(node.output) for node in graph.node if not any(o in was_needed for o in node.output)}
    taken = {x for node in graph.node for x in (*node.input, *node.output, node.name)}
    taken |= {init.name for init in graph.initializer} | {vi.name for vi in (*graph.input, *graph.output)}
    emit = _Emitter(taken)
    rewritten, kept, new_nodes = [], {}, []
    for node in graph.node:
        if node.op_type != SCATTER or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        first = len(emit.nodes)
        why = _rewrite_one(node, constants, emit)
        name = node.name or node.output[0]
        if why is None:
            rewritten.append(name)
            new_nodes.extend(emit.nodes[first:])
        else:
            kept[name] = why
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(emit.initializers)
    _drop_dead(graph, was_needed, dead_before)
    return out, ExportReport(nodes_before, len(graph.node), rewritten, kept, folding.folded)


def export_noscatter(onnx_path: Path, out: Path, size: int | None = None) -> ExportReport:
    """Write ``onnx_path`` folded and with its dense ScatterNDs rewritten to ``out`` (atomically), checked.

    ``size`` fixes a dynamic image input first (``onnx_info.pin_input``), so that the grids and
    indices a dynamic-axes export computes from Shape nodes fold too. A model with no ScatterND
    and nothing to fold is copied unchanged, byte for byte, so a pipeline can always read
    ``out``; the report says there was nothing to do.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    model = load_onnx(onnx_path)
    if size is not None:
        model = pin_input(model, size, onnx_path)
    rewritten, report = rewrite_dense_scatternd(model)
    if not report.rewritten and not report.kept and not report.folded and size is None:
        write_bytes(out, onnx_path.read_bytes())
        return report
    rewritten = onnx.shape_inference.infer_shapes(rewritten)
    onnx.checker.check_model(rewritten, full_check=True)
    write_bytes(out, rewritten.SerializeToString())
    return report
