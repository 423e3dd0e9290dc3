"""Graph passes: rewrite an :class:`minirt.ir.Graph` into one that computes the same outputs
with fewer, cheaper nodes.

Every pass is a plain function ``pass(graph) -> graph`` that returns a *new* graph and leaves
its argument unchanged (the weight arrays are shared: they are read-only). So each one can be
run, printed and tested alone::

    g = minirt.load("model.onnx")
    g2 = fold_constants(g)            # g is unchanged
    print(len(g.nodes), "->", len(g2.nodes))

``optimize`` runs them in order, by level:

    level 0   nothing
    level 1   fuse_qdq, fuse_dynamic_matmul, fold_constants, remove_identity, eliminate_common_subexpressions,
              remove_dead_nodes (fewer nodes; QDQ islands become integer ops)
    level 2   + fold_conv_batchnorm, fuse_matmul_add, fuse_elementwise, chain_concats, remove_dead_nodes
              (level 2 may add ops of the private domain "minirt": FusedConv, FusedMatMul, FusedGemm,
              ChainConcat)

or exactly the ``passes=`` you name. :func:`optimize_with_report` also says what each pass did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from minirt.ir import Graph
from minirt.passes import fused_ops  # noqa: F401  (registers minirt.FusedConv & co.)
from minirt.passes._util import copy_graph, node_count
from minirt.passes.cleanup import remove_dead_nodes, remove_identity
from minirt.passes.concat import chain_concats
from minirt.passes.cse import eliminate_common_subexpressions
from minirt.passes.fold import fold_constants
from minirt.passes.fuse import fold_conv_batchnorm, fuse_elementwise, fuse_matmul_add
from minirt.passes.quant import fuse_dynamic_matmul, fuse_qdq
from minirt.passes.specialize import specialize_shapes  # not a level pass: the session calls it per input shapes

Pass = Callable[[Graph], Graph]

PASSES: dict[str, Pass] = {
    "fuse_qdq": fuse_qdq,
    "fuse_dynamic_matmul": fuse_dynamic_matmul,
    "fold_constants": fold_constants,
    "remove_identity": remove_identity,
    "eliminate_common_subexpressions": eliminate_common_subexpressions,
    "remove_dead_nodes": remove_dead_nodes,
    "fold_conv_batchnorm": fold_conv_batchnorm,
    "fuse_matmul_add": fuse_matmul_add,
    "fuse_elementwise": fuse_elementwise,
    "chain_concats": chain_concats,
}

LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("fuse_qdq", "fuse_dynamic_matmul", "fold_constants", "remove_identity", "eliminate_common_subexpressions",
        "remove_dead_nodes"),
    2: ("fuse_qdq", "fuse_dynamic_matmul", "fold_constants", "remove_identity", "eliminate_common_subexpressions", "remove_dead_nodes",
        "fold_conv_batchnorm", "fuse_matmul_add", "fuse_elementwise", "chain_concats", "remove_dead_nodes"),
}
DEFAULT_LEVEL = 2


@dataclass
class PassResult:
    """What one pass did: node counts (nested subgraphs included) and op histograms."""

    name: str
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    seconds: float

    def changes(self) -> dict[str, int]:
        """op type -> change in count (only the ops whose count changed)."""
        ops = set(self.ops_before) | set(self.ops_after)
        delta = {o: self.ops_after.get(o, 0) - self.ops_before.get(o, 0) for o in ops}
        return {o: d for o, d in sorted(delta.items(), key=lambda kv: (kv[1], kv[0])) if d}


@dataclass
class OptimizeReport:
    """Before/after op counts of a whole ``optimize`` run, and of each pass in it."""

    before: dict[str, int]
    after: dict[str, int]
    passes: list[PassResult] = field(default_factory=list)

    @property
    def nodes_before(self) -> int:
        return sum(self.before.values())

    @property
    def nodes_after(self) -> int:
        return sum(self.after.values())

    def __str__(self) -> str:
        lines = [f"optimized: {self.nodes_before} -> {self.nodes_after} nodes"]
        for p in self.passes:
            changes = ", ".join(f"{op} {d:+d}" for op, d in p.changes().items())
            lines.append(
                f"  {p.name:<32} {p.nodes_before:>6} -> {p.nodes_after:<6} {p.seconds * 1e3:7.1f} ms"
                + (f"  {changes}" if changes else "")
            )
        ops = sorted(set(self.before) | set(self.after),
                     key=lambda o: (-max(self.before.get(o, 0), self.after.get(o, 0)), o))
        lines.append(f"  {'op':<24} {'before':>7} {'after':>7}")
        for o in ops:
            lines.append(f"  {o:<24} {self.before.get(o, 0):>7} {self.after.get(o, 0):>7}")
        return "\n".join(lines)


def _resolve(level: int | None, passes: Sequence[str | Pass] | None) -> list[tuple[str, Pass]]:
    if passes is not None:
        chosen = []
        for p in passes:
            if callable(p):
                chosen.append((getattr(p, "__name__", "pass"), p))
            elif p in PASSES:
                chosen.append((p, PASSES[p]))
            else:
                raise ValueError(f"unknown pass {p!r}: minirt's passes are {list(PASSES)}")
        return chosen
    level = DEFAULT_LEVEL if level is None else level
    if level not in LEVELS:
        raise ValueError(f"optimization level must be one of {sorted(LEVELS)}, got {level!r}")
    return [(name, PASSES[name]) for name in LEVELS[level]]


def optimize_with_report(graph: Graph, level: int | None = None,
                         passes: Sequence[str | Pass] | None = None) -> tuple[Graph, OptimizeReport]:
    """Like :func:`optimize`, and also return an :class:`OptimizeReport` (print it)."""
    chosen = _resolve(level, passes)
    report = OptimizeReport(before=graph.op_histogram(), after={})
    g = copy_graph(graph)  # level 0 too returns a graph of its own
    for name, fn in chosen:
        ops_before, n_before = g.op_histogram(), node_count(g)
        t0 = time.perf_counter()
        g = fn(g)
        seconds = time.perf_counter() - t0
        report.passes.append(PassResult(name, n_before, node_count(g), ops_before, g.op_histogram(), seconds))
    report.after = g.op_histogram()
    return g, report


def optimize(graph: Graph, level: int | None = None, passes: Sequence[str | Pass] | None = None) -> Graph:
    """Return an optimized copy of ``graph``; ``graph`` itself is left unchanged.

    ``level`` 0, 1 or 2 (default 2) picks the passes (see the module doc); ``passes`` names
    them explicitly instead, in order: names from ``PASSES`` or your own ``Graph -> Graph`` functions.
    """
    return optimize_with_report(graph, level, passes)[0]


__all__ = [
    "LEVELS",
    "chain_concats",
    "eliminate_common_subexpressions",
    "OptimizeReport",
    "PASSES",
    "PassResult",
    "fold_constants",
    "fuse_qdq",
    "fuse_dynamic_matmul",
    "fold_conv_batchnorm",
    "fuse_elementwise",
    "fuse_matmul_add",
    "optimize",
    "optimize_with_report",
    "remove_dead_nodes",
    "remove_identity",
    "specialize_shapes",
]
