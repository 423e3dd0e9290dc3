"""Concat chains: a Concat whose first input is another Concat's output, along the same axis.

DenseNet builds each dense block as such a chain — ``c1 = Concat(x, f1)``, ``c2 = Concat(c1, f2)``
and so on, every link the input of the next (and of the layer that reads it). :func:`chain_concats`
turns the links of each chain into ``minirt.ChainConcat`` nodes that carry the chain's final size
along the axis (``capacity``); their kernel (:func:`minirt.kernels.concat.chain_concat`) keeps the
whole chain in one buffer and copies only each link's new inputs, instead of the whole chain so
far (DenseNet-121: 2.2 ms of Concat a run; see docs/performance.md).

A link qualifies when

- it is a Concat (opset >= 4: its axis is an attribute) whose output has a known rank and a
  float type, a feature map (shape computations, int64 vectors, are left to constant folding);
- its first input is the output of the chain's previous Concat, along the same axis; that
  output is the first input of no other Concat, and not a graph output (a graph output must not
  share its memory with the values after it);
- the chain's last output has a known size along the axis: the buffer's size.

The result does not depend on any of this being true at run time: a link whose first input is
not the filled front of a chain buffer (another shape, batch > 1) concatenates as Concat does.
"""

from __future__ import annotations

from minirt.ir import Graph, Node
from minirt.passes._util import consumers, copy_graph, known_dims, output_names, rewrite_each_graph
from minirt.passes.fused_ops import DOMAIN


def chain_concats(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where the Concats of each chain are ``minirt.ChainConcat`` nodes
    with ``capacity`` = the chain's last output size along the axis (see the module doc). Adds
    "minirt": 1 to the opsets when it changes anything."""
    g = copy_graph(graph)
    if g.opsets.get("", 1) < 4:  # Concat's axis became a required attribute in opset 4
        return g
    rewrite_each_graph(_chain_concats, g, DOMAIN)
    return g


def _axis(g: Graph, node: Node) -> int | None:
    """A Concat's axis, made non-negative, when its output is a float tensor of known rank."""
    if node.domain != "" or node.op_type != "Concat" or not node.outputs or "axis" not in node.attrs:
        return None
    v = g.value(node.outputs[0])
    dims = known_dims(g, node.outputs[0])
    if dims is None or v.dtype is None or v.dtype.kind != "f":
        return None
    axis = int(node.attrs["axis"])
    axis = axis + len(dims) if axis < 0 else axis
    return axis if 0 <= axis < len(dims) else None


def _chain_concats(g: Graph) -> int:
    users = consumers(g)
    outputs = output_names(g)
    producer = {o: n for n in g.nodes for o in n.outputs if o}
    nxt: dict[int, Node] = {}  # id(a Concat) -> the Concat that extends its output
    extended: set[int] = set()  # ids of Concats that extend another
    for node in g.nodes:
        axis = _axis(g, node)
        front = node.inputs[0] if node.inputs else ""
        prev = producer.get(front)
        if axis is None or prev is None or _axis(g, prev) != axis or front in outputs or node.inputs.count(front) > 1:
            continue
        extenders = [u for u in users.get(front, []) if u.op_type == "Concat" and u.domain == "" and u.inputs[0] == front]
        if len(extenders) == 1:
            nxt[id(prev)] = node
            extended.add(id(node))
    count = 0
    for head in list(g.nodes):  # (a copy: links are replaced in g.nodes as the chains are found)
        if id(head) not in nxt or id(head) in extended:
            continue
        chain = [head]
        while id(chain[-1]) in nxt:
            chain.append(nxt[id(chain[-1])])
        axis = _axis(g, head)
        capacity = known_dims(g, chain[-1].outputs[0])[axis]
        if capacity is None:
            continue
        for link in chain:
            at = next(k for k, n in enumerate(g.nodes) if n is link)
            g.nodes[at] = Node("ChainConcat", list(link.inputs), list(link.outputs),
                               {"axis": axis, "capacity": capacity}, name=link.name, domain=DOMAIN)
            count += 1
    return count
