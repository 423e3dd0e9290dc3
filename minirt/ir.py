"""minirt's intermediate representation: plain dataclasses, no protobuf.

A :class:`Graph` is a list of :class:`Node` s in topological order, the graph's input and output
:class:`Value` s, its constant tensors (initializers) and the opset version of each domain.
``print(graph)`` shows one line per node with the shapes that are known::

    graph main_graph  (opset ai.onnx=17)
      input  image: float32[N, 1, 8, 8]
      %conv1 = Conv(image, conv1.weight, conv1.bias) {kernel_shape=[3, 3], pads=[1, 1, 1, 1]}  -> float32[N, 8, 8, 8]
      ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Dim = int | str | None  # a fixed size, a symbolic name ("batch"), or unknown


@dataclass
class Value:
    """A named value flowing between nodes: its element type and shape when they are known.

    ``kind`` is "tensor", "sequence", "optional" or "map"; for a sequence/optional of tensors,
    ``dtype``/``shape`` describe the elements.
    """

    name: str
    dtype: np.dtype | None = None
    shape: tuple[Dim, ...] | None = None
    kind: str = "tensor"

    def type_str(self) -> str:
        """``float32[N, 3, 224, 224]``, ``int64[]`` (a scalar), ``?`` when unknown."""
        dt = str(self.dtype) if self.dtype is not None else "?"
        if self.dtype is not None and self.dtype == object:
            dt = "string"
        if self.shape is None:
            s = f"{dt}[...]" if self.dtype is not None else "?"
        else:
            s = f"{dt}[{', '.join('?' if d is None else str(d) for d in self.shape)}]"
        return s if self.kind == "tensor" else f"{self.kind}<{s}>"


@dataclass
class Node:
    """One op application. ``inputs``/``outputs`` are value names; "" marks an absent optional.

    ``attrs`` holds Python values: int, float, str, lists of those, NumPy arrays (tensor
    attributes) and :class:`Graph` (the bodies of If/Loop/Scan).
    """

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""

    def subgraphs(self) -> list[Graph]:
        """The graphs held in this node's attributes (If branches, Loop/Scan bodies)."""
        found = []
        for v in self.attrs.values():
            if isinstance(v, Graph):
                found.append(v)
            elif isinstance(v, list):
                found.extend(g for g in v if isinstance(g, Graph))
        return found

    def __str__(self) -> str:
        outs = ", ".join(f"%{o}" if o else "_" for o in self.outputs)
        ins = ", ".join(i if i else "_" for i in self.inputs)
        op = self.op_type if not self.domain else f"{self.domain}.{self.op_type}"
        attrs = ", ".join(f"{k}={_attr_str(v)}" for k, v in sorted(self.attrs.items()))
        return f"{outs} = {op}({ins})" + (f" {{{attrs}}}" if attrs else "")


def _attr_str(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 4:
            return f"tensor({v.tolist()})"
        return f"tensor<{v.dtype}{list(v.shape)}>"
    if isinstance(v, Graph):
        return f"<graph {v.name}: {len(v.nodes)} nodes>"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


@dataclass
class Graph:
    """A computation graph: nodes in topological order plus its boundary and constants."""

    name: str
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    value_info: dict[str, Value] = field(default_factory=dict)  # known types of intermediates
    opsets: dict[str, int] = field(default_factory=dict)  # domain ("" = ai.onnx) -> version
    metadata: dict[str, str] = field(default_factory=dict)  # producer, doc string ...

    # ----------------------------------------------------------------- structure
    def feed_inputs(self) -> list[Value]:
        """Inputs the caller must (or may) feed: graph inputs that are not initializers."""
        return [v for v in self.inputs if v.name not in self.initializers]

    def producers(self) -> dict[str, Node]:
        """value name -> the node that computes it."""
        return {o: n for n in self.nodes for o in n.outputs if o}

    def outer_names(self) -> set[str]:
        """Names this graph (or a nested subgraph) reads but does not define: the outer scope."""
        defined = {v.name for v in self.inputs} | set(self.initializers)
        defined |= {o for n in self.nodes for o in n.outputs if o}
        used = set()
        for n in self.nodes:
            used.update(i for i in n.inputs if i)
            for g in n.subgraphs():
                used |= g.outer_names()
        used.update(v.name for v in self.outputs)
        return used - defined

    def toposort(self) -> None:
        """Reorder ``nodes`` so every node comes after the producers of its inputs.

        Kahn's algorithm, stable: nodes already in order keep their order. Raises on a cycle.
        """
        producer = self.producers()
        order: list[Node] = []
        state: dict[int, int] = {}  # id(node) -> 1 visiting, 2 done

        def deps(n: Node) -> list[Node]:
            names = [i for i in n.inputs if i]
            for g in n.subgraphs():
                names.extend(g.outer_names())
            return [producer[i] for i in names if i in producer]

        for root in self.nodes:
            stack = [(root, iter(deps(root)))]
            if state.get(id(root)) == 2:
                continue
            state[id(root)] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
                elif state.get(id(nxt)) == 1:
                    raise ValueError(f"graph {self.name!r} has a cycle through node {nxt.name!r}")
                elif state.get(id(nxt)) != 2:
                    state[id(nxt)] = 1
                    stack.append((nxt, iter(deps(nxt))))
        self.nodes = order

    def value(self, name: str) -> Value | None:
        """The known type of a value (input, output, intermediate or initializer), if any."""
        for v in self.inputs + self.outputs:
            if v.name == name:
                return v
        if name in self.value_info:
            return self.value_info[name]
        if name in self.initializers:
            t = self.initializers[name]
            return Value(name, t.dtype, tuple(t.shape))
        return None

    # ----------------------------------------------------------------- summary
    def op_histogram(self) -> dict[str, int]:
        """op type -> number of nodes (nested subgraphs included), most frequent first."""
        counts: dict[str, int] = {}

        def visit(g: Graph) -> None:
            for n in g.nodes:
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
                for sg in n.subgraphs():
                    visit(sg)

        visit(self)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def parameter_count(self) -> tuple[int, int]:
        """(number of weights, bytes) held in initializers."""
        n = sum(int(t.size) for t in self.initializers.values())
        b = sum(int(t.nbytes) for t in self.initializers.values())
        return n, b

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, indent: str = "") -> str:
        opsets = ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in sorted(self.opsets.items()))
        lines = [f"{indent}graph {self.name}" + (f"  (opset {opsets})" if opsets else "")]
        for v in self.feed_inputs():
            lines.append(f"{indent}  input  {v.name}: {v.type_str()}")
        if self.initializers:
            n, b = self.parameter_count()
            lines.append(f"{indent}  weights: {len(self.initializers)} tensors, {n:,} values, {b:,} bytes")
        for node in self.nodes:
            types = []
            for o in node.outputs:
                v = self.value(o) if o else None
                types.append(v.type_str() if v is not None and v.dtype is not None else "")
            shown = ", ".join(t for t in types if t)
            label = f"  [{node.name}]" if node.name else ""
            lines.append(f"{indent}  {node}{'  -> ' + shown if shown else ''}{label}")
            for g in node.subgraphs():
                lines.append(g.to_text(indent + "    "))
        for v in self.outputs:
            lines.append(f"{indent}  output {v.name}: {v.type_str()}")
        return "\n".join(lines)
