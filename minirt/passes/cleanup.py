"""Cleanup passes: drop nodes that do nothing (Identity, inference Dropout, no-op Cast) and
nodes (and weights) whose results nobody reads.
"""

from __future__ import annotations

import numpy as np

from minirt.dtypes import np_dtype
from minirt.ir import Graph, Node
from minirt.passes._util import (
    consumers,
    copy_graph,
    for_each_graph,
    output_names,
    rename_uses,
    set_value_info,
)


def remove_identity(graph: Graph) -> Graph:
    """Return a copy of ``graph`` without pass-through nodes, their readers rewired.

    Pass-through nodes: ``Identity``; ``Dropout`` in inference (its mask output unused, no
    ``training_mode`` input that could be true); ``Cast`` to the dtype its input already has.

    For ``y = Identity(x)`` the readers of ``y`` read ``x`` instead. When ``y`` is a graph
    output its name must not change, so it is ``x`` that is renamed to ``y`` (its producer now
    writes ``y``) — possible only when ``x`` is made by a node of this graph and is not itself a
    graph output; otherwise (``x`` is a graph input, a weight, an outer-scope value, or a second
    output with the same data) the node stays.
    """
    g = copy_graph(graph)
    opsets = g.opsets
    for_each_graph(lambda sg: _remove_identity(sg, opsets), g)
    return g


def _remove_identity(g: Graph, opsets: dict[str, int]) -> None:
    outs = output_names(g)
    for node in list(g.nodes):
        if not _is_passthrough(g, node, opsets):
            continue
        x, y = node.inputs[0], node.outputs[0]
        if y not in outs:
            g.nodes = [n for n in g.nodes if n is not node]
            rename_uses(g, y, x)
            continue
        producer = next((n for n in g.nodes if x in n.outputs), None)
        if producer is None or x in outs:
            continue  # x is an input, a weight or an outer value, or must stay an output itself
        g.nodes = [n for n in g.nodes if n is not node]
        producer.outputs = [y if o == x else o for o in producer.outputs]
        rename_uses(g, x, y)
        set_value_info(g, y, g.value(x))


def _is_passthrough(g: Graph, node: Node, opsets: dict[str, int]) -> bool:
    if node.domain != "" or not node.inputs or not node.inputs[0] or not node.outputs[0]:
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type == "Dropout":
        mask = node.outputs[1] if len(node.outputs) > 1 else ""
        if mask and (mask in output_names(g) or mask in consumers(g)):
            return False
        # opset 12+: training_mode is an input; only a constant False keeps it the identity.
        # (Before opset 7 an `is_test=0` attribute asked for training: minirt, an inference
        # runtime, treats Dropout as the identity there too, as onnxruntime does.)
        if len(node.inputs) > 2 and node.inputs[2]:
            mode = g.initializers.get(node.inputs[2])
            return mode is not None and not bool(np.asarray(mode).any())
        return True
    if node.op_type == "Cast" and "to" in node.attrs:
        v = g.value(node.inputs[0])
        try:
            target = np_dtype(node.attrs["to"])
        except NotImplementedError:
            return False
        return v is not None and v.kind == "tensor" and v.dtype is not None and np.dtype(v.dtype) == target
    return False


def remove_dead_nodes(graph: Graph) -> Graph:
    """Return a copy of ``graph`` without the nodes whose outputs nobody reads, and without
    unused initializers.

    A value is read when it is a graph output, a node input, or read by a nested subgraph from
    its outer scope (``Graph.outer_names``). Subgraphs are cleaned first, so the outer names
    they still read are the ones they really need. An unused initializer that is also listed
    as a graph input leaves the input list too (it could not be fed anyway).
    """
    g = copy_graph(graph)
    _remove_dead(g, root=True)
    return g


def _remove_dead(g: Graph, root: bool) -> None:
    for n in g.nodes:
        for sg in n.subgraphs():
            _remove_dead(sg, root=False)
    live = set(output_names(g))
    kept: list[Node] = []
    for node in reversed(g.nodes):
        if any(o and o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
            for sg in node.subgraphs():
                live |= sg.outer_names()
    g.nodes = kept[::-1]
    if not root:  # a subgraph's inputs are positional (Loop/Scan bodies): keep them all
        live.update(v.name for v in g.inputs)
    dead = [name for name in g.initializers if name not in live]
    for name in dead:
        del g.initializers[name]
    dead_set = set(dead)
    g.inputs = [v for v in g.inputs if v.name not in dead_set]
    produced = {o for n in g.nodes for o in n.outputs}
    g.value_info = {k: v for k, v in g.value_info.items() if k in produced or k in live}
