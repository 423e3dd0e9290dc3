"""Constant folding: compute, once at load time, every value that does not depend on the inputs.

A node is folded when all its inputs are constants (initializers, or outputs of nodes folded
before it): it is run with the registry's reference op, its outputs become initializers and
the node goes away. ``Constant`` nodes (no inputs) fold the same way.

Exporters (PyTorch, transformers) write many ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape`` chains that compute a shape at run time. When the shape is static, ONNX shape
inference (run by the frontend) already knows it, so:

- ``Shape(x)`` (with ``start``/``end``) and ``Size(x)`` fold when every dim of ``x`` is known;
- ``Gather(Shape(x), i)`` and ``Slice(Shape(x), ...)`` fold when the dims they pick are known,
  even when other dims of ``x`` are symbolic (``batch``, ``seq``) — the hidden size of a
  ``[batch, seq, 768]`` tensor is a constant.

Never folded: nodes holding subgraphs (If/Loop/Scan), random ops, ops minirt does not know,
and results larger than ``max_elements`` (default 1M) that are larger than the constants they
come from — ``Expand``/``Tile`` can turn a few bytes into gigabytes, and a model file stays
small for a reason. ``ConstantOfShape`` of a constant shape is the exception: every run would
rebuild the same fill whole, so it is folded whatever its size.

A folded node whose output is a graph output becomes an initializer *of the same name*, so
the output keeps its name (the session hands the caller a copy of it, as for any weight).

Initializers that are also listed as graph inputs are treated as constants: minirt's session
does not let a caller override them (see ``Graph.feed_inputs``).
"""

from __future__ import annotations

import math

import numpy as np

from minirt import registry
from minirt.ir import Graph, Node
from minirt.passes._util import copy_graph, for_each_graph, frozen, known_dims

RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
)
MAX_ELEMENTS = 1 << 20


def fold_constants(graph: Graph, *, max_elements: int = MAX_ELEMENTS) -> Graph:
    """Return a copy of ``graph`` with every constant computation done (see the module doc)."""
    g = copy_graph(graph)
    opsets = g.opsets
    for_each_graph(lambda sg: _fold(sg, opsets, max_elements), g)
    return g


def _fold(g: Graph, opsets: dict[str, int], max_elements: int) -> None:
    const: dict[str, np.ndarray] = dict(g.initializers)
    # value name -> the dims a Shape node produced (None where the dim is not known)
    shape_dims: dict[str, list[int | None]] = {}
    kept: list[Node] = []
    for node in g.nodes:
        results = _evaluate(g, node, const, shape_dims, opsets, max_elements)
        if results is None:
            kept.append(node)
            continue
        for name, arr in zip(node.outputs, results):
            if name:
                arr = frozen(arr)
                g.initializers[name] = arr
                const[name] = arr
    g.nodes = kept


def _evaluate(g, node, const, shape_dims, opsets, max_elements) -> tuple[np.ndarray, ...] | None:
    """The node's outputs when they can be computed now, else None."""
    if node.subgraphs() or (node.domain == "" and node.op_type in RANDOM_OPS):
        return None
    if node.domain == "":
        if node.op_type == "Shape":
            return _fold_shape(g, node, shape_dims)
        if node.op_type == "Size":
            dims = known_dims(g, node.inputs[0])
            if dims is not None and None not in dims:
                return (np.asarray(math.prod(dims), dtype=np.int64),)
        if node.op_type in ("Gather", "Slice") and node.inputs[0] in shape_dims:
            picked = _pick_dims(node, shape_dims[node.inputs[0]], const)
            if picked is not None:
                return (picked,)
    if any(i and i not in const for i in node.inputs):
        return None
    opdef = registry.lookup(node.domain, node.op_type, opsets.get(node.domain, 1))
    if opdef is None:
        return None
    attrs = {k: v for k, v in node.attrs.items()}
    if not opdef.takes_any_attribute and set(attrs) - opdef.attributes:
        return None
    if "num_outputs" in opdef.attributes and "num_outputs" not in attrs:
        attrs["num_outputs"] = len(node.outputs)  # as the plan does (Split before opset 18)
    args = [const[i] if i else None for i in node.inputs]
    in_size = sum(int(a.size) for a in args if isinstance(a, np.ndarray))
    limit = max(max_elements, in_size)  # never grow past the limit; shrinking or moving is fine
    if node.domain == "" and node.op_type == "ConstantOfShape":
        # a fill of constant shape is recomputed, whole, by every run: fold it whatever its size
        # (the light ONNX models build all their weights this way, ~550 MB for VGG-19)
        limit = None
    guess = _output_size(g, node, args)
    if limit is not None and guess is not None and guess > limit:
        return None
    try:
        result = opdef.fn(*args, **attrs)
    except Exception:  # noqa: BLE001  (leave it to run time, where the error names the node)
        return None
    results = result if isinstance(result, tuple) else (result,)
    if len(results) < sum(1 for o in node.outputs if o):
        return None
    out = []
    for r in results:
        if isinstance(r, np.generic):
            r = np.asarray(r)
        if not isinstance(r, np.ndarray) or (limit is not None and r.size > limit):  # sequences stay dynamic
            return None
        out.append(r)
    return tuple(out)


def _fold_shape(g: Graph, node: Node, shape_dims: dict) -> tuple[np.ndarray] | None:
    """Shape(x)[start:end] when those dims are known; else remember the partly known dims."""
    dims = known_dims(g, node.inputs[0])
    if dims is None:
        return None
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    picked = list(dims[start:end])  # Python slicing clamps exactly as the spec asks
    if None in picked:
        shape_dims[node.outputs[0]] = picked
        return None
    return (np.asarray(picked, dtype=np.int64),)


def _pick_dims(node: Node, dims: list[int | None], const: dict) -> np.ndarray | None:
    """Gather/Slice of a partly known shape: the picked dims, when all of them are known."""
    pos = np.arange(len(dims))
    try:
        if node.op_type == "Gather":
            idx = const.get(node.inputs[1]) if len(node.inputs) > 1 else None
            if idx is None or node.attrs.get("axis", 0) != 0:
                return None
            chosen = pos[np.asarray(idx, dtype=np.int64)]  # negative indices count from the back
        else:  # Slice, opset 10+: starts, ends, axes, steps as inputs
            if len(node.inputs) < 3 or "starts" in node.attrs:
                return None
            parts = [const.get(i) if i else None for i in node.inputs[1:5]]
            if any(p is None for p, i in zip(parts, node.inputs[1:5]) if i):
                return None
            starts, ends = parts[0], parts[1]
            axes = parts[2] if len(parts) > 2 else None
            steps = parts[3] if len(parts) > 3 else None
            if starts.size != 1 or (axes is not None and int(np.ravel(axes)[0]) not in (0, -1)):
                return None
            step = int(np.ravel(steps)[0]) if steps is not None else 1
            chosen = pos[int(np.ravel(starts)[0]):int(np.ravel(ends)[0]):step]  # clamped like ONNX
    except (IndexError, ValueError, TypeError):
        return None
    values = [dims[int(i)] for i in np.ravel(chosen)]
    if None in values:
        return None
    return np.asarray(values, dtype=np.int64).reshape(np.shape(chosen))


def _output_size(g: Graph, node: Node, args: list) -> int | None:
    """How many elements the node will produce, when that can be told before running it."""
    try:
        if node.op_type == "ConstantOfShape" and args and args[0] is not None:
            return int(np.prod(args[0], dtype=np.int64))
        if node.op_type == "Expand" and len(args) == 2:
            return int(math.prod(np.broadcast_shapes(args[0].shape, tuple(int(d) for d in args[1]))))
        if node.op_type == "Tile" and len(args) == 2:
            return int(args[0].size * np.prod(args[1], dtype=np.int64))
    except (ValueError, TypeError, OverflowError):
        return None
    sizes = []
    for o in node.outputs:
        dims = known_dims(g, o) if o else None
        if dims is None or None in dims:
            return None
        sizes.append(math.prod(dims))
    return max(sizes) if sizes else None
