"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
ReduceLogSum, ReduceLogSumExp, ReduceSumSquare.

Two forms of each op:
- the new one (ReduceSum from opset 13, the others from 18) takes ``axes`` as an optional
  int64 *input*; no axes means "all axes", or "no axes" when ``noop_with_empty_axes=1``;
- the old one (``Reduce*_1``) takes ``axes`` as an *attribute*; no axes means "all axes".

Reducing over no axes (the noop case) still applies the element-wise part of the op, so
``ReduceSumSquare`` with noop returns ``x**2`` (as the ONNX reference does).
Results keep the input dtype; float16/bfloat16 accumulate in float32. Reducing an empty set
gives the op's identity: 0 for sums, 1 for products, -inf / the lowest integer for ReduceMax.
"""

from __future__ import annotations

import numpy as np

from minirt.ops._common import as_ints, normalize_axis
from minirt.registry import op


def _axes(data, axes, noop_with_empty_axes=0) -> tuple[int, ...]:
    """The axes to reduce: all of them when none are given, or none with noop_with_empty_axes."""
    if axes is None or len(as_ints(axes)) == 0:
        return () if noop_with_empty_axes else tuple(range(data.ndim))
    return tuple(sorted(normalize_axis(a, data.ndim) for a in as_ints(axes)))


def _wide(x):
    """float16 / bfloat16 -> float32 for accumulation; other dtypes unchanged."""
    return x.astype(np.float32) if x.dtype.name in ("float16", "bfloat16") else x


def _like(y, data):
    """The result as an array (never a NumPy scalar) of data's dtype."""
    return np.asarray(y).astype(data.dtype, copy=False)


def _lowest(dtype):
    """The identity of max: -inf for floats, the smallest integer, False for bool."""
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def _highest(dtype):
    """The identity of min: +inf for floats, the largest integer, True for bool."""
    if dtype == np.bool_:
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return np.inf


@op("ReduceSum", since=13)
def ReduceSum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = sum(x) over axes — https://onnx.ai/onnx/operators/onnx__ReduceSum.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    return _like(np.sum(_wide(data), axis=ax, keepdims=bool(keepdims)), data)


@op("ReduceSum", since=1)
def ReduceSum_1(data, *, axes=None, keepdims=1):
    """ReduceSum with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceSum.html"""
    return ReduceSum(data, axes, keepdims=keepdims)


@op("ReduceMean", since=18)
def ReduceMean(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = mean(x) over axes — https://onnx.ai/onnx/operators/onnx__ReduceMean.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    count = int(np.prod([data.shape[a] for a in ax]))
    total = np.sum(_wide(data), axis=ax, keepdims=bool(keepdims))
    with np.errstate(invalid="ignore", divide="ignore"):  # the mean of nothing is nan
        return _like(total / count, data)  # an integer mean truncates toward zero


@op("ReduceMean", since=1)
def ReduceMean_1(data, *, axes=None, keepdims=1):
    """ReduceMean with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceMean.html"""
    return ReduceMean(data, axes, keepdims=keepdims)


@op("ReduceMax", since=18)
def ReduceMax(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = max(x) over axes; -inf (lowest int) for an empty set —
    https://onnx.ai/onnx/operators/onnx__ReduceMax.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    return _like(np.max(data, axis=ax, keepdims=bool(keepdims), initial=_lowest(data.dtype)), data)


@op("ReduceMax", since=1)
def ReduceMax_1(data, *, axes=None, keepdims=1):
    """ReduceMax with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceMax.html"""
    return ReduceMax(data, axes, keepdims=keepdims)


@op("ReduceMin", since=18)
def ReduceMin(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = min(x) over axes; +inf (largest int) for an empty set —
    https://onnx.ai/onnx/operators/onnx__ReduceMin.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    return _like(np.min(data, axis=ax, keepdims=bool(keepdims), initial=_highest(data.dtype)), data)


@op("ReduceMin", since=1)
def ReduceMin_1(data, *, axes=None, keepdims=1):
    """ReduceMin with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceMin.html"""
    return ReduceMin(data, axes, keepdims=keepdims)


@op("ReduceProd", since=18)
def ReduceProd(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = prod(x) over axes — https://onnx.ai/onnx/operators/onnx__ReduceProd.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    return _like(np.prod(_wide(data), axis=ax, keepdims=bool(keepdims)), data)


@op("ReduceProd", since=1)
def ReduceProd_1(data, *, axes=None, keepdims=1):
    """ReduceProd with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceProd.html"""
    return ReduceProd(data, axes, keepdims=keepdims)


@op("ReduceL1", since=18)
def ReduceL1(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = sum(|x|) over axes — https://onnx.ai/onnx/operators/onnx__ReduceL1.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    return _like(np.sum(np.abs(_wide(data)), axis=ax, keepdims=bool(keepdims)), data)


@op("ReduceL1", since=1)
def ReduceL1_1(data, *, axes=None, keepdims=1):
    """ReduceL1 with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceL1.html"""
    return ReduceL1(data, axes, keepdims=keepdims)


@op("ReduceL2", since=18)
def ReduceL2(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = sqrt(sum(x^2)) over axes — https://onnx.ai/onnx/operators/onnx__ReduceL2.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    x = _wide(data)
    return _like(np.sqrt(np.sum(x * x, axis=ax, keepdims=bool(keepdims))), data)


@op("ReduceL2", since=1)
def ReduceL2_1(data, *, axes=None, keepdims=1):
    """ReduceL2 with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceL2.html"""
    return ReduceL2(data, axes, keepdims=keepdims)


@op("ReduceSumSquare", since=18)
def ReduceSumSquare(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = sum(x^2) over axes — https://onnx.ai/onnx/operators/onnx__ReduceSumSquare.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    x = _wide(data)
    return _like(np.sum(x * x, axis=ax, keepdims=bool(keepdims)), data)


@op("ReduceSumSquare", since=1)
def ReduceSumSquare_1(data, *, axes=None, keepdims=1):
    """ReduceSumSquare with axes as an attribute —
    https://onnx.ai/onnx/operators/onnx__ReduceSumSquare.html"""
    return ReduceSumSquare(data, axes, keepdims=keepdims)


@op("ReduceLogSum", since=18)
def ReduceLogSum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = log(sum(x)) over axes — https://onnx.ai/onnx/operators/onnx__ReduceLogSum.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    with np.errstate(divide="ignore"):  # log(0) = -inf, the value for an empty set
        return _like(np.log(np.sum(_wide(data), axis=ax, keepdims=bool(keepdims))), data)


@op("ReduceLogSum", since=1)
def ReduceLogSum_1(data, *, axes=None, keepdims=1):
    """ReduceLogSum with axes as an attribute — https://onnx.ai/onnx/operators/onnx__ReduceLogSum.html"""
    return ReduceLogSum(data, axes, keepdims=keepdims)


@op("ReduceLogSumExp", since=18)
def ReduceLogSumExp(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """y = log(sum(exp(x))) over axes, computed as m + log(sum(exp(x - m))), m = max(x) —
    https://onnx.ai/onnx/operators/onnx__ReduceLogSumExp.html"""
    ax = _axes(data, axes, noop_with_empty_axes)
    x = _wide(data)
    m = np.max(x, axis=ax, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)  # all -inf (or +inf) rows: shift by 0 instead
    with np.errstate(divide="ignore"):  # log(0) = -inf, the value for an empty set
        y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    if not keepdims:
        y = np.squeeze(y, axis=ax)
    return _like(y, data)


@op("ReduceLogSumExp", since=1)
def ReduceLogSumExp_1(data, *, axes=None, keepdims=1):
    """ReduceLogSumExp with axes as an attribute —
    https://onnx.ai/onnx/operators/onnx__ReduceLogSumExp.html"""
    return ReduceLogSumExp(data, axes, keepdims=keepdims)
