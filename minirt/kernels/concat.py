"""Concat chains that append in place: each link copies only what it adds.

DenseNet joins every layer's new feature maps to all the maps before them, as a chain of
Concats: ``c1 = Concat(x, f1)``, ``c2 = Concat(c1, f2)``, ... each one the input of the next. Done
one by one, link k copies everything the chain holds so far: a dense block of n layers copies
O(n^2) maps (DenseNet-121: ~40 MB a run, 4-5% of its time). :func:`chain_concat` instead gives
the whole chain ONE buffer, as big as the chain's last output along the axis (``capacity``): the
first link (the head) makes it and copies its inputs into its front; each later link finds its
first input to be exactly the front of that buffer, filled so far, copies only its other inputs
right after it, and returns a longer front. Every link's output is a view of the same memory,
and no value is ever changed: a front that was handed out is never written again.

The buffer may be shared only while the fronts are contiguous, i.e. every dim before the axis is
1 (batch 1, channels): otherwise — and whenever the first input is not the filled front of such
a buffer (a chain broken up, another shape, a link run twice on one front) — a link simply
allocates and copies like ``np.concatenate``. Which buffers are chain buffers, and how far each
is filled, is kept in ``_fronts``: for each chain buffer (by id, with a weak reference that drops
the entry when the buffer dies), the front handed out last — only that very array may be
extended, so a link never writes into memory that another array owns or that a value shows.

The graph pass that makes the chains is :func:`minirt.passes.concat.chain_concats`.
"""

from __future__ import annotations

import weakref

import numpy as np

# id(buffer) -> (weak references to the buffer and to the front of it handed out last)
_fronts: dict[int, tuple[weakref.ref, weakref.ref]] = {}


def _buffer_of(front: np.ndarray) -> np.ndarray | None:
    """The chain buffer of which ``front`` is the front handed out last (so nothing lies after
    it yet), else None. An identity check: a reshaped or sliced view of it is not it."""
    buf = front.base
    entry = _fronts.get(id(buf)) if buf is not None else None
    if entry is None or entry[0]() is not buf or entry[1]() is not front:
        return None
    return buf


def _hand_out(buf: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Record ``front`` as the part of ``buf`` filled so far, and return it."""
    entry = _fronts.get(id(buf))
    if entry is None or entry[0]() is not buf:  # a new buffer: its entry goes when it does
        key = id(buf)
        entry = (weakref.ref(buf, lambda _, key=key: _fronts.pop(key, None)), None)
    _fronts[id(buf)] = (entry[0], weakref.ref(front))
    return front


def chain_concat(inputs, axis: int, capacity: int) -> np.ndarray:
    """Concat(inputs) along ``axis``, appending in place into the chain's buffer when it can.

    ``capacity``: the chain's last output size along ``axis`` (the buffer's size). The result
    equals ``np.concatenate(inputs, axis)`` in every case; only whether it copies the first
    input differs.
    """
    first = inputs[0]
    axis = axis + first.ndim if axis < 0 else axis
    if not 0 <= axis < first.ndim or any(d != 1 for d in first.shape[:axis]):
        return np.concatenate(inputs, axis=axis)  # batch > 1: the fronts would not be contiguous
    others = first.shape[:axis], first.shape[axis + 1:]
    total = first.shape[axis]
    for x in inputs[1:]:
        if x.dtype != first.dtype or x.ndim != first.ndim or (x.shape[:axis], x.shape[axis + 1:]) != others:
            return np.concatenate(inputs, axis=axis)  # shapes np.concatenate must judge (or promote)
        total += x.shape[axis]
    if total > capacity:
        return np.concatenate(inputs, axis=axis)
    buf = _buffer_of(first)
    if buf is None:  # the head of the chain (or a link that cannot append): a new buffer
        buf = np.empty(others[0] + (capacity,) + others[1], dtype=first.dtype)
        start, new = 0, inputs
    else:  # first IS the filled front: append the others after it
        start, new = first.shape[axis], inputs[1:]
    lead = (slice(None),) * axis
    for x in new:
        n = x.shape[axis]
        np.copyto(buf[lead + (slice(start, start + n),)], x)  # [.., n, ..] -> its place in the buffer
        start += n
    return _hand_out(buf, buf[lead + (slice(0, total),)])  # later links append after it; it never changes
