"""Constant subgraphs folded to initializers, by onnx's own reference evaluator, before anything reads a model.

Why: torch's TorchScript exporter leaves index and shape arithmetic in the graph. The in-place
decode ``y[..., 0:2] = xy`` becomes a ScatterND whose indices are built by chains of
Shape / ConstantOfShape / Mul / Equal / Where / Expand / Unsqueeze / Concat; ``ZeroPad2d``
becomes a Pad whose pads are computed the same way. None of it reads the image's values, but
whoever needs those tensors constant (TVM's Pad, the dense-box proof of the ScatterND rewrite)
sees computed ones, and a dynamic-axes export keeps its grids symbolic. Folding first turns them
into plain initializers, so every reader after it sees constants::

    before: Shape(conv_out) -> Gather -> ... -> ConstantOfShape -> Where -> Expand -> ScatterND.indices
    after:  ScatterND.indices = initializer int64 [1, 3, 13, 13, 2, 5]

A node folds when its inputs are all constant (initializers, Constant nodes, outputs folded
before it), or when it is a Shape or Size of a tensor whose shape inference pins completely.
``onnx.reference.ReferenceEvaluator`` computes the values: it implements every standard op from
the ONNX spec, so there is no op list of ours to keep. Random ops, ops outside the standard
domain and ops carrying subgraphs are never folded.

Exactness: only integer and bool tensors (indices, shapes, pads, masks) enter the model as new
initializers, and float tensors that feed nothing but such folded nodes disappear with them.
A float computed from constants that reaches the network's arithmetic stays a node, so the
runtime computes every float itself: outputs stay bit-identical, because the numpy reference
and a runtime's kernels need not round transcendental ops alike. Shape inference runs between
rounds, since folding a chain can pin the shapes the next chain reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ..core.errors import UserError
from .onnx_info import inferred_shapes, take_shapes

_NEVER = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
_MAX_ROUNDS = 8  # each round can pin shapes for the next; torch's exports settle in two or three


@dataclass(frozen=True)
class FoldReport:
    """How many nodes folded away, and the Shape/Size nodes left reading a shape that is not static."""

    nodes_before: int
    nodes_after: int
    dynamic_shapes: dict[str, str]  # node name -> the tensor whose shape stays unknown

    @property
    def folded(self) -> int:
        return self.nodes_before - self.nodes_after

    def summary(self) -> str:
        return f"folded {self.folded} constant nodes (nodes {self.nodes_before} -> {self.nodes_after})"


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return inferred_shapes(model)
    except onnx.shape_inference.InferenceError as exc:
        raise UserError(f"ONNX shape inference fails on this model ({str(exc).splitlines()[0]}); "
                        "re-export it with consistent shapes") from None


def _shapes(inferred: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    g = inferred.graph
    shapes = {}
    for vi in (*g.input, *g.value_info, *g.output):
        dims = vi.type.tensor_type.shape.dim if vi.type.tensor_type.HasField("shape") else None
        if dims is not None and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor whose shape ONNX shape inference (with data propagation) pins down completely."""
    return _shapes(_inferred(model))


def _foldable(node: onnx.NodeProto) -> bool:
    return (node.domain in ("", "ai.onnx") and node.op_type not in _NEVER
            and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute))


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return np.asarray(shape[attrs.get("start", 0):attrs.get("end")], np.int64)


def _candidates(graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]]) -> list[onnx.NodeProto]:
    """The nodes computable from constants, in graph order; Shape/Size of static tensors become Constants."""
    # an initializer that is also a graph input is only a default: the caller may feed another value
    known = {init.name for init in graph.initializer} - {vi.name for vi in graph.input}
    found = []
    for node in graph.node:
        if not _foldable(node):
            continue
        if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
            value = _shape_value(node, shapes[node.input[0]])
            node = helper.make_node("Constant", [], list(node.output), name=node.name,
                                    value=numpy_helper.from_array(value))
        elif not all(x in known for x in node.input if x):
            continue
        found.append(node)
        known.update(node.output)
    return found


def _run(model: onnx.ModelProto, nodes: list[onnx.NodeProto], known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of ``nodes``, which read only initializers, ``known`` values and each other."""
    read = {x for node in nodes for x in node.input if x}
    inits = [init for init in model.graph.initializer if init.name in read and init.name not in known]
    inits += [numpy_helper.from_array(value, name) for name, value in known.items() if name in read]
    outputs = [helper.make_empty_tensor_value_info(out) for node in nodes for out in node.output if out]
    graph = helper.make_graph(nodes, "constants", [], outputs, inits)
    sub = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    values = ReferenceEvaluator(sub).run(None, {})
    return {vi.name: np.asarray(v) for vi, v in zip(outputs, values)}


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> dict[str, np.ndarray]:
    """The values of ``nodes``' outputs; a node the reference evaluator cannot run is left out, with what reads it."""
    try:
        return _run(model, nodes, {})
    except Exception:  # an op it lacks or rejects: fold around that node, one node at a time
        values: dict[str, np.ndarray] = {}
        constant = {init.name for init in model.graph.initializer}
        for node in nodes:
            if all(x in values or x in constant for x in node.input if x):
                try:
                    values.update(_run(model, [node], values))
                except Exception:  # this node stays in the graph, computed at run time
                    continue
        return values


def _one_round(model: onnx.ModelProto) -> bool:
    """Fold what can be folded now; False when nothing could."""
    graph = model.graph
    candidates = _candidates(graph, static_shapes(model))
    if not candidates:
        return False
    values = _evaluate(model, candidates)
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node.output[0] if node.output else node.name)
    for x in subgraph_reads(list(graph.node)):
        consumers.setdefault(x, []).append("")  # read inside an If/Loop body: never folded away
    outputs = {vi.name for vi in graph.output}
    folded: set[str] = set()  # first outputs of the folded nodes
    for node in reversed(candidates):  # consumers come after producers: decide them first
        outs = [o for o in node.output if o]
        if not all(o in values for o in outs):
            continue
        exact = all(values[o].dtype.kind in "biu" for o in outs)
        readers = [c for o in outs for c in consumers.get(o, [])]
        if not readers or any(o in outputs for o in outs):
            continue  # dead nodes stay as they were; a graph output stays a node's output
        if not (exact or all(c in folded for c in readers)):
            continue
        folded.add(node.output[0])
    if not folded:
        return False
    kept = [node for node in graph.node if not (node.output and node.output[0] in folded)]
    read = {x for node in kept for x in node.input if x} | outputs | subgraph_reads(kept)
    produced = {o for node in candidates if node.output[0] in folded for o in node.output}
    new_inits = [numpy_helper.from_array(values[name], name) for name in sorted(produced & read)]
    fed_folded = {x for node in graph.node if node.output and node.output[0] in folded for x in node.input}
    dropped = {init.name for init in graph.initializer if init.name in fed_folded and init.name not in read}
    inits = [init for init in graph.initializer if init.name not in dropped] + new_inits
    inputs = [vi for vi in graph.input if vi.name not in dropped]
    value_info = [vi for vi in graph.value_info if vi.name not in produced]
    for field, items in (("node", kept), ("initializer", inits), ("input", inputs), ("value_info", value_info)):
        graph.ClearField(field)
        getattr(graph, field).extend(items)
    return True


def subgraph_reads(nodes: Sequence[onnx.NodeProto]) -> set[str]:
    """Outer tensors an If/Loop/Scan body may read (every name its nodes read, to be safe)."""
    names: set[str] = set()
    for node in nodes:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names.update(x for n in sub.node for x in n.input if x)
                names |= subgraph_reads(list(sub.node))
    return names


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, FoldReport]:
    """A copy of ``model`` with its constant integer subgraphs folded to initializers; the input is not changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    before = len(out.graph.node)
    for _ in range(_MAX_ROUNDS):
        if not _one_round(out):
            break
    inferred = _inferred(out)  # with the chains gone, shapes reach the outputs that had none
    take_shapes(out, inferred)
    shapes = _shapes(inferred)
    dynamic = {node.name or node.output[0]: node.input[0] for node in out.graph.node
               if node.op_type in ("Shape", "Size") and node.input[0] not in shapes}
    return out, FoldReport(before, len(out.graph.node), dynamic)
