"""Small graph-editing helpers shared by the passes: copy, consumers, rename, fresh names.

Every pass works on a copy made by :func:`copy_graph`: the node lists, attribute dicts and
value records are new, the initializer *arrays* are shared (they are read-only: the frontend
marks them so, and the passes write new arrays instead of changing old ones).
"""

from __future__ import annotations

import copy
from typing import Callable, Iterator

import numpy as np

from minirt.ir import Graph, Node, Value


def copy_graph(g: Graph) -> Graph:
    """A structural copy of ``g`` (nested subgraphs too) that shares the initializer arrays."""
    return Graph(
        name=g.name,
        nodes=[copy_node(n) for n in g.nodes],
        inputs=[copy.copy(v) for v in g.inputs],
        outputs=[copy.copy(v) for v in g.outputs],
        initializers=dict(g.initializers),
        value_info={k: copy.copy(v) for k, v in g.value_info.items()},
        opsets=dict(g.opsets),
        metadata=dict(g.metadata),
    )


def copy_node(n: Node) -> Node:
    attrs = {}
    for k, v in n.attrs.items():
        if isinstance(v, Graph):
            v = copy_graph(v)
        elif isinstance(v, list):
            v = [copy_graph(x) if isinstance(x, Graph) else x for x in v]
        attrs[k] = v
    return Node(n.op_type, list(n.inputs), list(n.outputs), attrs, n.name, n.domain)


def output_names(g: Graph) -> set[str]:
    return {v.name for v in g.outputs}


def consumers(g: Graph) -> dict[str, list[Node]]:
    """value name -> the nodes of ``g`` that read it (a node whose subgraph reads it counts)."""
    users: dict[str, list[Node]] = {}
    for n in g.nodes:
        names = {i for i in n.inputs if i}
        for sg in n.subgraphs():
            names |= sg.outer_names()
        for name in names:
            users.setdefault(name, []).append(n)
    return users


def read_by_subgraph(g: Graph, name: str) -> bool:
    """True when a nested subgraph of ``g`` reads ``name`` from the outer scope."""
    return any(name in sg.outer_names() for n in g.nodes for sg in n.subgraphs())


def only_consumer(g: Graph, users: dict[str, list[Node]], name: str) -> Node | None:
    """The single node reading ``name`` through a plain input, if ``name`` feeds only that node
    (once or more) and is neither a graph output nor read by a subgraph. Else None."""
    readers = users.get(name, [])
    if len(readers) != 1 or name in output_names(g):
        return None
    node = readers[0]
    if name not in node.inputs or any(name in sg.outer_names() for sg in node.subgraphs()):
        return None
    return node


def rename_uses(g: Graph, old: str, new: str) -> None:
    """Make every reader of ``old`` read ``new`` instead: node inputs, graph outputs, and nested
    subgraphs that read ``old`` from the outer scope (unless they define a value of that name)."""
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        for sg in n.subgraphs():
            if old in sg.outer_names():
                _rename_outer(sg, old, new)


def _rename_outer(g: Graph, old: str, new: str) -> None:
    rename_uses(g, old, new)
    for v in g.outputs:  # a subgraph output may be an outer value passed through
        if v.name == old:
            v.name = new


def all_names(g: Graph) -> set[str]:
    """Every value name used anywhere in ``g`` and its subgraphs (to pick fresh names)."""
    names = {v.name for v in g.inputs + g.outputs} | set(g.initializers) | set(g.value_info)
    for n in g.nodes:
        names.update(n.inputs)
        names.update(n.outputs)
        for sg in n.subgraphs():
            names |= all_names(sg)
    return names


class NameMaker:
    """Fresh value names ``base``, ``base_1``, ... that collide with nothing in the graph."""

    def __init__(self, g: Graph):
        self.taken = all_names(g)

    def __call__(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name


def constant(g: Graph, name: str) -> np.ndarray | None:
    """The initializer called ``name``, or None (also for "" and for non-constant values)."""
    return g.initializers.get(name) if name else None


def frozen(a) -> np.ndarray:
    """``a`` as a read-only array: every initializer is shared by all runs."""
    a = np.asarray(a)
    a.flags.writeable = False
    return a


def walk(g: Graph) -> Iterator[Graph]:
    """``g`` and every nested subgraph, outermost first."""
    yield g
    for n in g.nodes:
        for sg in n.subgraphs():
            yield from walk(sg)


def for_each_graph(fn: Callable[[Graph], None], g: Graph) -> None:
    """Apply an in-place, one-level rewrite to ``g`` and then to every nested subgraph."""
    fn(g)
    for n in g.nodes:
        for sg in n.subgraphs():
            for_each_graph(fn, sg)


def rewrite_each_graph(rewrite: Callable[[Graph], int], g: Graph, domain: str) -> int:
    """:func:`for_each_graph` for a rewrite that returns how many nodes it replaced with ops of
    ``domain``: when it replaced any, ``g`` and every nested subgraph import ``domain`` (version
    1). Returns the total."""
    count = [0]
    for_each_graph(lambda sg: count.__setitem__(0, count[0] + rewrite(sg)), g)
    if count[0]:
        for sg in walk(g):
            sg.opsets[domain] = 1
    return count[0]


def node_count(g: Graph) -> int:
    return sum(len(x.nodes) for x in walk(g))


def static_shape(g: Graph, name: str) -> tuple[int, ...] | None:
    """The shape of ``name`` when every dim is a known positive size, else None.

    A 0 is not trusted: ONNX writes 0 for some unknown dims in old models, and the session
    only checks declared input dims that are > 0.
    """
    v = g.value(name)
    if v is None or v.kind != "tensor" or v.shape is None:
        return None
    if all(isinstance(d, int) and d > 0 for d in v.shape):
        return tuple(v.shape)
    return None


def known_dims(g: Graph, name: str) -> tuple[int | None, ...] | None:
    """The dims of ``name`` with None for each dim that is not a known positive size; None if
    the rank is unknown."""
    v = g.value(name)
    if v is None or v.kind != "tensor" or v.shape is None:
        return None
    return tuple(d if isinstance(d, int) and d > 0 else None for d in v.shape)


def set_value_info(g: Graph, name: str, like: Value | None) -> None:
    """Record ``like``'s type under ``name`` (when ``name`` has no record of its own)."""
    if like is not None and g.value(name) is None:
        g.value_info[name] = Value(name, like.dtype, like.shape, like.kind)
