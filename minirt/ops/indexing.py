"""Indexing ops: Slice, Gather*, Scatter*, TopK, ArgMax, Unique, CumSum, OneHot ...

ONNX indices may be negative (counting from the end, like Python); NumPy fancy indexing
already wraps them, and raises IndexError when an index is out of range. Index outputs are
int64. Scatter ops never write into their input: they copy it first.
"""

from __future__ import annotations

import math

import numpy as np

from minirt.ops._common import as_ints, normalize_axis
from minirt.registry import op

# --------------------------------------------------------------------------------------------
# slicing


_INT32_MAX = 2**31 - 1


def _clamped_slice(start: int, end: int, step: int, dim: int) -> slice:
    """The spec's clamping: negatives count from the end, then start/end are clamped to
    [0, dim] (step > 0) or [0, dim-1] / [-1, dim-1] (step < 0, where -1 means "past the front")."""
    if step == 0:
        raise ValueError("Slice: steps must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    if dim == 0:
        return slice(0, 0)
    if end >= _INT32_MAX:
        # exporters write INT_MAX for "no bound"; ORT reads it as "to the front" when stepping
        # backwards (clamping it to dim-1 as the spec says would give an empty slice)
        end = -1
    start = min(max(start, 0), dim - 1)
    end = min(max(end, -1), dim - 1)
    return slice(start, None if end == -1 else end, step)  # a Python stop of -1 would mean dim-1


@op("Slice", since=10)
def Slice(data, starts, ends, axes=None, steps=None):
    """y = data[starts:ends:steps] along axes; out-of-range starts/ends are clamped, INT_MAX means no bound
    — https://onnx.ai/onnx/operators/onnx__Slice.html"""
    starts, ends = as_ints(starts), as_ints(ends)
    axes = list(range(len(starts))) if axes is None else as_ints(axes)
    steps = [1] * len(starts) if steps is None else as_ints(steps)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = normalize_axis(axis, data.ndim)
        index[axis] = _clamped_slice(start, end, step, data.shape[axis])
    return data[tuple(index)]


@op("Slice", since=1)
def Slice_1(data, *, starts, ends, axes=None):
    """y = data[starts:ends] along axes, given as attributes — https://onnx.ai/onnx/operators/onnx__Slice.html"""
    return Slice(data, starts, ends, axes)


@op("Compress", since=9)
def Compress(input, condition, *, axis=None):
    """y = the slices of input along axis (flattened input when absent) where condition is true
    — https://onnx.ai/onnx/operators/onnx__Compress.html"""
    return np.compress(np.asarray(condition, dtype=bool), input, axis=axis)


@op("NonZero", since=9)
def NonZero(X):
    """y[:, j] = the index of the j-th non-zero element of X (row-major order), as [rank, count] int64
    — https://onnx.ai/onnx/operators/onnx__NonZero.html"""
    if X.ndim == 0:  # NumPy refuses 0-d; ORT treats a scalar as one element of a 1-D tensor
        X = X.reshape(1)
    return np.array(np.nonzero(X), dtype=np.int64)  # [rank, count]


# --------------------------------------------------------------------------------------------
# gathering


@op("Gather", since=1)
def Gather(data, indices, *, axis=0):
    """y = data indexed along axis by indices: y.shape = data.shape[:axis] + indices.shape + data.shape[axis+1:]
    — https://onnx.ai/onnx/operators/onnx__Gather.html"""
    # negative indices wrap; 0-d stays an array (the method, no index copy: 1.6 -> 0.5 us)
    return np.asarray(data.take(indices.astype(np.int64, copy=False), axis=axis))


def _element_index(indices, axis: int, dim: int):
    """Fancy index selecting data[i0, .., indices[i0, .., ik], .., ik] for every position of indices."""
    grid = list(np.ix_(*(np.arange(n) for n in indices.shape)))  # open mesh over indices' shape
    idx = indices.astype(np.int64)
    grid[axis] = np.where(idx < 0, idx + dim, idx)
    return tuple(grid)


@op("GatherElements", since=11)
def GatherElements(data, indices, *, axis=0):
    """y[i][j][k] = data[indices[i][j][k]][j][k] (for axis=0); y has indices' shape
    — https://onnx.ai/onnx/operators/onnx__GatherElements.html"""
    axis = normalize_axis(axis, data.ndim)
    return data[_element_index(indices, axis, data.shape[axis])]


@op("GatherND", since=11)
def GatherND(data, indices, *, batch_dims=0):
    """y[b.., m..] = data[b.., *indices[b.., m.., :]] — https://onnx.ai/onnx/operators/onnx__GatherND.html"""
    k = indices.shape[-1]
    n_batch = math.prod(data.shape[:batch_dims])
    n_lookups = math.prod(indices.shape[batch_dims:-1])
    flat = data.reshape((n_batch,) + data.shape[batch_dims:])  # [B.., rest] -> [B, rest]
    idx = indices.astype(np.int64).reshape(n_batch, n_lookups, k)  # [B.., M.., k] -> [B, M, k]
    batch = np.arange(n_batch).reshape(n_batch, 1)  # [B, 1], broadcasts against [B, M]
    picked = flat[(batch,) + tuple(idx[..., j] for j in range(k))]  # [B, M, *data.shape[b+k:]]
    return picked.reshape(indices.shape[:-1] + data.shape[batch_dims + k:])


# --------------------------------------------------------------------------------------------
# scattering

_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(out, index, updates, reduction: str):
    """out[index] = updates, or out[index] = reduce(out[index], updates) applied once per update."""
    if reduction == "none":
        out[index] = updates  # duplicate indices: the last update wins (the spec leaves it undefined)
    elif reduction in _REDUCTIONS:
        _REDUCTIONS[reduction].at(out, index, updates)  # unbuffered: duplicates all count
    else:
        raise ValueError(f"Scatter: reduction must be none/add/mul/max/min, got {reduction!r}")
    return out


@op("ScatterElements", since=11)
def ScatterElements(data, indices, updates, *, axis=0, reduction="none"):
    """y = copy of data with y[indices[i][j]][j] = updates[i][j] (axis=0), or reduced into it
    — https://onnx.ai/onnx/operators/onnx__ScatterElements.html"""
    axis = normalize_axis(axis, data.ndim)
    return _scatter(data.copy(), _element_index(indices, axis, data.shape[axis]), updates, reduction)


@op("Scatter", since=9)
def Scatter(data, indices, updates, *, axis=0):
    """Deprecated name of ScatterElements (no reduction) — https://onnx.ai/onnx/operators/onnx__Scatter.html"""
    return ScatterElements(data, indices, updates, axis=axis)


@op("ScatterND", since=11)
def ScatterND(data, indices, updates, *, reduction="none"):
    """y = copy of data with y[*indices[m, :]] = updates[m] (or reduced into it)
    — https://onnx.ai/onnx/operators/onnx__ScatterND.html"""
    idx = indices.astype(np.int64)
    index = tuple(idx[..., j] for j in range(idx.shape[-1]))  # k arrays of shape indices.shape[:-1]
    return _scatter(data.copy(), index, updates, reduction)


@op("TensorScatter", since=24)
def TensorScatter(past_cache, update, write_indices=None, *, mode="linear", axis=-2):
    """present = past_cache with update written along axis at write_indices[b] (mod max length if
    circular) for each batch b — https://onnx.ai/onnx/operators/onnx__TensorScatter.html"""
    axis = normalize_axis(axis, past_cache.ndim)
    if axis == 0:
        raise ValueError("TensorScatter: axis must not be the batch axis 0")
    batch, max_len, seq_len = past_cache.shape[0], past_cache.shape[axis], update.shape[axis]
    starts = np.zeros(batch, dtype=np.int64) if write_indices is None else write_indices.astype(np.int64)
    out = past_cache.copy()
    for b in range(batch):
        positions = starts[b] + np.arange(seq_len)
        if mode == "circular":
            positions = positions % max_len
        elif mode != "linear":
            raise ValueError(f"TensorScatter: mode must be 'linear' or 'circular', got {mode!r}")
        # move the sequence axis to the front of batch b's slab (a view, so writes land in out)
        np.moveaxis(out[b], axis - 1, 0)[positions] = np.moveaxis(update[b], axis - 1, 0)
    return out


# --------------------------------------------------------------------------------------------
# sorting and searching


def _argsort_desc(X, axis: int):
    """Indices that sort X descending along axis, ties keeping the lower index first."""
    n = X.shape[axis]
    flipped = np.flip(X, axis)
    order = np.argsort(flipped, axis=axis, kind="stable")  # ascending; ties: higher original index first
    return n - 1 - np.flip(order, axis)  # descending; ties: lower original index first


@op("TopK", since=11)
def TopK(X, K, *, axis=-1, largest=1, sorted=1):
    """(values, indices) of the K largest (or smallest) elements along axis, ties to the lower index
    — https://onnx.ai/onnx/operators/onnx__TopK.html"""
    axis = normalize_axis(axis, X.ndim)
    k = as_ints(K)[0]
    if largest:
        order = _argsort_desc(X, axis)
    else:
        order = np.argsort(X, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)  # [.., n, ..] -> [.., k, ..]
    values = np.take_along_axis(X, indices, axis=axis)
    return values, indices.astype(np.int64)


@op("TopK", since=10)
def TopK_10(X, K, *, axis=-1):
    """(values, indices) of the K largest elements along axis — https://onnx.ai/onnx/operators/onnx__TopK.html"""
    return TopK(X, K, axis=axis)


@op("TopK", since=1)
def TopK_1(X, *, axis=-1, k):
    """(values, indices) of the k (attribute) largest elements along axis
    — https://onnx.ai/onnx/operators/onnx__TopK.html"""
    return TopK(X, np.array([k]), axis=axis)


def _arg_extreme(fn, data, axis, keepdims, select_last_index):
    """argmax/argmin along axis as int64; ties go to the first index, or the last one if asked."""
    axis = normalize_axis(axis, data.ndim)
    if select_last_index:
        last = fn(np.flip(data, axis), axis=axis, keepdims=bool(keepdims))
        return np.asarray(data.shape[axis] - 1 - last, dtype=np.int64)
    return np.asarray(fn(data, axis=axis, keepdims=bool(keepdims)), dtype=np.int64)


@op("ArgMax", since=1)
def ArgMax(data, *, axis=0, keepdims=1, select_last_index=0):
    """y = index of the largest element along axis (int64) — https://onnx.ai/onnx/operators/onnx__ArgMax.html"""
    return _arg_extreme(np.argmax, data, axis, keepdims, select_last_index)


@op("ArgMin", since=1)
def ArgMin(data, *, axis=0, keepdims=1, select_last_index=0):
    """y = index of the smallest element along axis (int64) — https://onnx.ai/onnx/operators/onnx__ArgMin.html"""
    return _arg_extreme(np.argmin, data, axis, keepdims, select_last_index)


@op("Unique", since=11)
def Unique(X, *, axis=None, sorted=1):
    """(Y, indices, inverse_indices, counts): unique values (or slices along axis), their first
    positions, each element's slot in Y, and their counts — https://onnx.ai/onnx/operators/onnx__Unique.html"""
    flat = X.reshape(-1) if axis is None else X
    axis = 0 if axis is None else normalize_axis(axis, X.ndim)
    Y, first, inverse, counts = np.unique(
        flat, return_index=True, return_inverse=True, return_counts=True, axis=axis
    )
    inverse = inverse.reshape(-1)
    if not sorted:  # re-order the unique values by first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        Y, first, counts, inverse = np.take(Y, order, axis=axis), first[order], counts[order], rank[inverse]
    return Y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)


# --------------------------------------------------------------------------------------------
# running totals, one-hot, reversal


def _cumulative(ufunc, identity, x, axis, exclusive, reverse):
    """ufunc.accumulate along axis, optionally excluding the current element and/or from the end."""
    axis = normalize_axis(as_ints(axis)[0], x.ndim)
    if reverse:
        x = np.flip(x, axis)
    y = ufunc.accumulate(x, axis=axis, dtype=x.dtype)
    if exclusive:  # shift by one: [a, a+b, a+b+c] -> [identity, a, a+b]
        head = np.full_like(np.take(y, [0], axis=axis), identity)
        y = np.concatenate([head, np.take(y, np.arange(x.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(y, axis) if reverse else y


@op("CumSum", since=11)
def CumSum(x, axis, *, exclusive=0, reverse=0):
    """y[i] = x[0] + .. + x[i] along axis — https://onnx.ai/onnx/operators/onnx__CumSum.html"""
    return _cumulative(np.add, 0, x, axis, exclusive, reverse)


@op("CumProd", since=26)
def CumProd(x, axis, *, exclusive=0, reverse=0):
    """y[i] = x[0] * .. * x[i] along axis — https://onnx.ai/onnx/operators/onnx__CumProd.html"""
    return _cumulative(np.multiply, 1, x, axis, exclusive, reverse)


@op("OneHot", since=9)
def OneHot(indices, depth, values, *, axis=-1):
    """y[.., i, ..] = values[1] if indices[..] == i (negatives wrap) else values[0], i < depth,
    with the new dim at axis — https://onnx.ai/onnx/operators/onnx__OneHot.html"""
    depth = int(np.asarray(depth).reshape(-1)[0])
    axis = normalize_axis(axis, indices.ndim + 1)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # out-of-range indices match no class: all off
    classes_shape = [1] * (indices.ndim + 1)
    classes_shape[axis] = depth
    classes = np.arange(depth).reshape(classes_shape)
    hot = np.expand_dims(idx, axis) == classes  # [.., 1, ..] vs [1, .., depth, ..] -> [.., depth, ..]
    off, on = values[0], values[1]
    return np.where(hot, on, off).astype(values.dtype)


@op("ReverseSequence", since=10)
def ReverseSequence(input, sequence_lens, *, batch_axis=1, time_axis=0):
    """Reverse the first sequence_lens[b] steps along time_axis of each batch entry b, copy the rest
    — https://onnx.ai/onnx/operators/onnx__ReverseSequence.html"""
    out = input.copy()
    src = np.moveaxis(input, (batch_axis, time_axis), (0, 1))  # [.., B, .., T, ..] -> [B, T, ..]
    dst = np.moveaxis(out, (batch_axis, time_axis), (0, 1))  # a view of out
    for b, length in enumerate(as_ints(sequence_lens)):
        dst[b, :length] = src[b, :length][::-1]
    return out
