"""The plan cache of a session: plans specialized on input shapes, and their bookkeeping.

:class:`minirt.session.InferenceSession` keeps one :class:`SpecializedPlans` (``specialize=N``);
:func:`minirt.passes.specialize.specialize_shapes` builds the graphs. Here: the LRU with its
second-sighting rule and thrash detection, the observer that captures what the generic plan
computed for each folded value, and the check that the two agree.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from minirt.ir import Graph
from minirt.observe import Observer
from minirt.plan import Plan


class SpecializedPlans:
    """LRU of plans specialized on input shapes, and the signatures seen once so far.

    A signature is specialized on its *second* sighting only: a generation loop whose KV cache
    grows every step sees every shape once, and must not pay a rebuild per step.

    It also stops building when the LRU thrashes: a workload cycling through more signatures
    than it holds (the same long generation, request after request) would rebuild plans that
    are evicted before they pay back. Once more than ``size`` plans left the LRU having served
    fewer than ``PAYBACK`` runs each, no new plan is built (the ones held are still used).
    """

    SEEN = 64  # signatures remembered as seen once
    PAYBACK = 16  # runs a plan must serve before eviction for its build to count as worth it

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"specialize must be a number of plans >= 0, got {size}")
        self.size = size
        self.plans: OrderedDict[tuple, Plan] = OrderedDict()
        self.hits: dict[tuple, int] = {}
        self.seen: OrderedDict[tuple, None] = OrderedDict()
        self.wasted = 0  # plans evicted before they served PAYBACK runs
        self.building = True
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Plan | None:
        plan = self.plans.get(key)
        if plan is not None:
            try:
                self.plans.move_to_end(key)
                self.hits[key] += 1
            except KeyError:  # evicted meanwhile by another thread: still usable for this run
                pass
        return plan

    def seen_again(self, key: tuple) -> bool:
        """Record a sighting of ``key``; True when it was seen before (time to specialize)."""
        if not self.building:
            return False
        with self.lock:
            if key in self.seen:
                del self.seen[key]
                return True
            self.seen[key] = None
            while len(self.seen) > self.SEEN:
                self.seen.popitem(last=False)
            return False

    def put(self, key: tuple, plan: Plan) -> None:
        with self.lock:
            self.plans[key] = plan
            self.hits[key] = 0
            while len(self.plans) > self.size:
                old, _ = self.plans.popitem(last=False)
                if self.hits.pop(old, 0) < self.PAYBACK:
                    self.wasted += 1
            if self.wasted > self.size:
                self.building = False
                self.seen.clear()


class Capture(Observer):
    """Keeps the outputs of the given value names during one observed run."""

    def __init__(self, names: set[str]):
        self.names = names
        self.values: dict[str, Any] = {}

    def after(self, node, inputs, outputs, seconds):
        for name, out in zip(node.outputs, outputs):
            if name in self.names:
                self.values[name] = out


def agree(computed: Any, folded: np.ndarray) -> np.ndarray | None:
    """The constant to keep for a folded value, given what the generic plan computed for it:
    ``folded`` when they are bitwise equal; a frozen copy of ``computed`` when they are floats
    that differ by rounding only (a kernel in the generic plan, the reference op in folding:
    keeping the generic plan's bits keeps the outputs bitwise identical); None when they
    disagree (a value the specialization should not have folded)."""
    if isinstance(computed, np.generic):
        computed = np.asarray(computed)
    if not isinstance(computed, np.ndarray) or computed.dtype != folded.dtype or computed.shape != folded.shape:
        return None
    if computed.dtype == object:
        return folded if np.array_equal(computed, folded) else None
    if np.ascontiguousarray(computed).tobytes() == np.ascontiguousarray(folded).tobytes():
        return folded
    if computed.dtype.kind in "fc" and np.allclose(computed, folded, rtol=1e-5, atol=1e-6, equal_nan=True):
        kept = computed.copy()
        kept.flags.writeable = False
        return kept
    return None


def signature(feeds: Mapping[str, Any]) -> tuple | None:
    """``((name, shape, dtype), ...)`` of the feeds, sorted by name; None if one is not an array."""
    key = []
    for name in sorted(feeds):
        x = feeds[name]
        if type(x) is not np.ndarray:
            return None
        key.append((name, x.shape, x.dtype.str))
    return tuple(key)


def worth_specializing(graph: Graph) -> bool:
    """Only a graph that turns shapes into data (Shape/Size) and has an input of a dim not fixed
    in the model can gain from knowing the feeds' shapes."""
    from minirt.passes.specialize import has_shape_nodes

    if not has_shape_nodes(graph):
        return False
    return any(v.kind == "tensor" and (v.shape is None or not all(isinstance(d, int) and d > 0 for d in v.shape))
               for v in graph.feed_inputs())
