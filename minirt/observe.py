"""Watching a run node by node: hooks, verbose printing, profiling.

The plan's fast loop knows nothing of these. When a session has observers, the plan runs its
second loop, which times each op and calls ``before``/``after`` around it.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from minirt.ir import Node
from minirt.plan import describe


class Observer:
    """Watches a run node by node. Subclass it, or pass ``before``/``after`` callables.

    ``before(node, inputs)`` is called with the node's input arrays; ``after(node, inputs,
    outputs, seconds)`` with its outputs and the time its op took.
    """

    _before: Callable | None = None
    _after: Callable | None = None

    def __init__(self, before: Callable | None = None, after: Callable | None = None):
        self._before, self._after = before, after

    def before(self, node: Node, inputs: list[Any]) -> None:
        if self._before is not None:
            self._before(node, inputs)

    def after(self, node: Node, inputs: list[Any], outputs: list[Any], seconds: float) -> None:
        if self._after is not None:
            self._after(node, inputs, outputs, seconds)


class _Observers(Observer):
    """Several observers as one."""

    def __init__(self, observers: list[Observer]):
        self.observers = observers

    def before(self, node, inputs):
        for o in self.observers:
            o.before(node, inputs)

    def after(self, node, inputs, outputs, seconds):
        for o in self.observers:
            o.after(node, inputs, outputs, seconds)


class VerbosePrinter(Observer):
    """``verbose=1`` prints each node with its time; ``verbose=2`` adds output shapes and ranges."""

    def __init__(self, level: int, file=None):
        self.level, self.file = level, file

    def after(self, node, inputs, outputs, seconds):
        line = f"[minirt] {node.op_type:<20} {node.name:<40} {seconds * 1e3:8.3f} ms"
        if self.level >= 2:
            line += "  -> " + ", ".join(_stats(o) for o in outputs)
        print(line, file=self.file or sys.stderr)


def _stats(a: Any) -> str:
    text = describe(a)
    if isinstance(a, np.ndarray) and a.size and a.dtype.kind in "fiub":
        af = a.astype(np.float64, copy=False)
        text += f" [{af.min():.4g}, {af.max():.4g}]"
    return text
