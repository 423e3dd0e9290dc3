"""Common-subexpression elimination: compute each distinct (op, inputs, attributes) once.

Exporters repeat themselves: a transformer graph asks ``Shape(hidden)`` again before every
Reshape, and each copy then feeds its own ``Gather -> Unsqueeze -> Concat`` chain. Two nodes
with the same op, the same attributes and the same inputs compute the same outputs, so the
second one goes and its readers read the first one's outputs (small weights count as the same
input when their values are equal: exporters write the same axis constant under many names) — and, one level down, the chains
that read them become duplicates too (one sweep in topological order catches those).

Not merged: random ops (two draws are two values), nodes holding subgraphs, and a duplicate
whose output is a graph output (its name must stay; the copy is cheap).
"""

from __future__ import annotations

import numpy as np

from minirt.ir import Graph, Node
from minirt.passes._util import copy_graph, for_each_graph, output_names, rename_uses
from minirt.passes.fold import RANDOM_OPS


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where duplicated computations are done once."""
    g = copy_graph(graph)
    for_each_graph(_cse, g)
    return g


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return ("array", str(v.dtype), v.shape, v.tobytes() if v.dtype != object else repr(v.tolist()))
    if isinstance(v, list):
        return ("list", tuple(_attr_key(x) for x in v))
    if isinstance(v, (int, float, str)) or v is None:
        return (type(v).__name__, v)
    return ("other", repr(v))


SMALL = 1024  # weights up to this size are compared by value, larger ones by name


def _key(g: Graph, node: Node):
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items()))
    inputs = []
    for name in node.inputs:
        w = g.initializers.get(name) if name else None
        # exporters write the same small constant (an axis, a shape) many times under new names
        inputs.append(_attr_key(w) if w is not None and w.size <= SMALL else name)
    return (node.domain, node.op_type, tuple(inputs), len(node.outputs), attrs)


def _cse(g: Graph) -> None:
    outs = output_names(g)
    seen: dict[tuple, Node] = {}
    kept: list[Node] = []
    for node in g.nodes:
        if node.subgraphs() or (node.domain == "" and node.op_type in RANDOM_OPS) or not node.outputs:
            kept.append(node)
            continue
        key = _key(g, node)
        first = seen.get(key)
        if first is None or any(o in outs for o in node.outputs) or any(
            o and not f for o, f in zip(node.outputs, first.outputs)
        ):
            seen.setdefault(key, node)
            kept.append(node)
            continue
        for o, f in zip(node.outputs, first.outputs):
            if o:
                rename_uses(g, o, f)
                g.value_info.pop(o, None)
    g.nodes = kept
