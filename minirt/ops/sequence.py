"""Sequences and optionals.

A sequence value is a Python ``list`` of arrays; an absent optional is ``None``. Ops build new
lists and never change the one they were given.
"""

from __future__ import annotations

import numpy as np

from minirt.ops._common import as_ints, normalize_axis
from minirt.registry import op


def _position(position, length: int, default: int) -> int:
    """A position input (int tensor, may be negative or absent) as a list index in 0..length."""
    if position is None:
        return default
    p = int(np.asarray(position).item())
    return p + length if p < 0 else p


# --- sequences ---


@op("SequenceConstruct", since=11)
def SequenceConstruct(*inputs):
    """[inputs[0], ..., inputs[n-1]] — https://onnx.ai/onnx/operators/onnx__SequenceConstruct.html"""
    return list(inputs)


@op("SequenceEmpty", since=11)
def SequenceEmpty(*, dtype=1):
    """[] (of element type dtype) — https://onnx.ai/onnx/operators/onnx__SequenceEmpty.html"""
    return []


@op("SequenceInsert", since=11)
def SequenceInsert(input_sequence, tensor, position=None):
    """seq[:p] + [tensor] + seq[p:], p defaults to the end —
    https://onnx.ai/onnx/operators/onnx__SequenceInsert.html"""
    p = _position(position, len(input_sequence), default=len(input_sequence))
    return input_sequence[:p] + [tensor] + input_sequence[p:]


@op("SequenceAt", since=11)
def SequenceAt(input_sequence, position):
    """seq[position] — https://onnx.ai/onnx/operators/onnx__SequenceAt.html"""
    return input_sequence[_position(position, len(input_sequence), default=0)]


@op("SequenceErase", since=11)
def SequenceErase(input_sequence, position=None):
    """seq without seq[p], p defaults to the last — https://onnx.ai/onnx/operators/onnx__SequenceErase.html"""
    p = _position(position, len(input_sequence), default=len(input_sequence) - 1)
    return input_sequence[:p] + input_sequence[p + 1:]


@op("SequenceLength", since=11)
def SequenceLength(input_sequence):
    """len(seq) as an int64 scalar — https://onnx.ai/onnx/operators/onnx__SequenceLength.html"""
    return np.asarray(len(input_sequence), dtype=np.int64)


@op("SplitToSequence", since=11)
def SplitToSequence(input, split=None, *, axis=0, keepdims=1):
    """Split input along axis into a sequence of chunks —
    https://onnx.ai/onnx/operators/onnx__SplitToSequence.html"""
    axis = normalize_axis(axis, input.ndim)
    length = input.shape[axis]
    if split is None:
        # chunks of 1; without keepdims the split axis is dropped
        chunks = [np.take(input, i, axis=axis) for i in range(length)]
        if keepdims:
            chunks = [np.expand_dims(c, axis) for c in chunks]
        return chunks
    if np.ndim(split) == 0:
        step = int(np.asarray(split).item())  # equal chunks of `step`, the last may be shorter
        sizes = [min(step, length - start) for start in range(0, length, step)]
    else:
        sizes = as_ints(split)
    boundaries = np.cumsum(sizes)[:-1]
    return np.split(input, boundaries, axis=axis)  # each [..., sizes[k] at axis, ...]


@op("ConcatFromSequence", since=11)
def ConcatFromSequence(input_sequence, *, axis, new_axis=0):
    """concatenate(seq, axis), or stack(seq, axis) when new_axis=1 —
    https://onnx.ai/onnx/operators/onnx__ConcatFromSequence.html"""
    if new_axis:
        return np.stack(input_sequence, axis=axis)  # n x [...] -> [..., n at axis, ...]
    return np.concatenate(input_sequence, axis=axis)


@op("SequenceMap", since=17)
def SequenceMap(input_sequence, *additional_inputs, body):
    """out_k[i] = body(seq[i], extra[i] or extra)_k, k over the body's outputs —
    https://onnx.ai/onnx/operators/onnx__SequenceMap.html"""
    results = []  # one list of body outputs per element
    for i, element in enumerate(input_sequence):
        # a sequence input contributes its i-th element, a tensor input is passed whole
        extras = [x[i] if isinstance(x, list) else x for x in additional_inputs]
        results.append(body(element, *extras))
    if not results:  # an empty input sequence maps to empty output sequences, one per body output
        return tuple([] for _ in getattr(body, "outputs", []))
    return tuple(list(values) for values in zip(*results))


# --- optionals ---


@op("Optional", since=15)
def Optional(input=None, *, type=None):
    """Some(input), or None (empty, of type `type`) — https://onnx.ai/onnx/operators/onnx__Optional.html"""
    return input


@op("OptionalHasElement", since=15)
def OptionalHasElement(input=None):
    """input is not None, as a bool scalar — https://onnx.ai/onnx/operators/onnx__OptionalHasElement.html"""
    return np.asarray(input is not None)


@op("OptionalGetElement", since=15)
def OptionalGetElement(input):
    """The value inside the optional (a plain tensor or sequence passes through) —
    https://onnx.ai/onnx/operators/onnx__OptionalGetElement.html"""
    if input is None:
        raise ValueError("OptionalGetElement: the optional input is empty (None); it has no element")
    return input
