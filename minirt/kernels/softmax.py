"""Softmax and LogSoftmax over rows, one Numba loop per row (parallel over rows).

Opset 13 normalizes along one axis; the fast path is the last axis (rows of a contiguous
``[rows, D]`` view), other axes run the reference. Opsets 1-11 coerce the input to 2-D at
``axis`` — exactly rows again, for every axis.

Each row is three passes: its max, the sum of exp(x - max) (accumulated in float64), then the
output. float16 runs the reference.

**Only for small inputs** (below ``KERNEL_MAX`` = 4096 elements: a transformer's attention at
batch 1, a classifier's logits), where the loop, serial, is 2-4x faster than the reference's five
NumPy calls (6 us instead of 21 for 2x16x16). On bigger inputs NumPy's vectorized float32 ``exp``
wins: the loops (even on 2 threads) were 2-3x *slower* than the reference (96x128x128: 6.5 ms vs
3.5 ms; 64x1000: 0.26 vs 0.09 ms), so they run the reference. (The kernel costs ~3 us + 4 ns an
element, the reference ~18 us + 1.4 ns: they cross near 6000 elements.)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from minirt.ops._common import normalize_axis
from minirt.ops.norm import LogSoftmax as LogSoftmax_reference
from minirt.ops.norm import LogSoftmax_1 as LogSoftmax_1_reference
from minirt.ops.norm import Softmax as Softmax_reference
from minirt.ops.norm import Softmax_1 as Softmax_1_reference
from minirt.registry import kernel

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _softmax_rows(x, y):
    """y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)) for each row r of x [R, D]."""
    R, D = x.shape
    for r in numba.prange(R):
        m = x[r, 0]
        for j in range(1, D):
            m = max(m, x[r, j])
        total = 0.0
        for j in range(D):
            e = math.exp(x[r, j] - m)
            y[r, j] = e
            total += e
        inv = 1.0 / total
        for j in range(D):
            y[r, j] *= inv


def _log_softmax_rows(x, y):
    """y[r, :] = (x[r, :] - max) - log(sum(exp(x[r, :] - max))) for each row r of x [R, D]."""
    R, D = x.shape
    for r in numba.prange(R):
        m = x[r, 0]
        for j in range(1, D):
            m = max(m, x[r, j])
        total = 0.0
        for j in range(D):
            total += math.exp(x[r, j] - m)
        log_total = math.log(total)
        for j in range(D):
            y[r, j] = (x[r, j] - m) - log_total


# serial: the inputs they get are small (see the module doc); prange runs as range
softmax_rows = numba.njit(cache=True)(_softmax_rows)
log_softmax_rows = numba.njit(cache=True)(_log_softmax_rows)
KERNEL_MAX = 1 << 12  # elements: from here on the reference (NumPy) is faster


def _rows(input, axis, loops):
    """Run a row kernel over input seen as [prod(shape[:axis]), prod(shape[axis:])]."""
    x = np.ascontiguousarray(input).reshape(math.prod(input.shape[:axis]), -1)  # [..] -> [R, D]
    y = np.empty_like(x)
    loops(x, y)
    return y.reshape(input.shape)  # [R, D] -> input shape


def _fast(input):
    return input.dtype in _FAST_DTYPES and 0 < input.size < KERNEL_MAX and input.ndim > 0


@kernel("Softmax", since=13)
def Softmax(input, *, axis=-1):
    """Fast Softmax along the last axis; other axes and dtypes run the reference."""
    if _fast(input) and normalize_axis(axis, input.ndim) == input.ndim - 1:
        return _rows(input, input.ndim - 1, softmax_rows)
    return Softmax_reference(input, axis=axis)


@kernel("Softmax", since=1)
def Softmax_1(input, *, axis=1):
    """Fast Softmax-1/11: the input coerced to 2-D at axis, each row normalized."""
    if _fast(input):
        return _rows(input, normalize_axis(axis, input.ndim), softmax_rows)
    return Softmax_1_reference(input, axis=axis)


@kernel("LogSoftmax", since=13)
def LogSoftmax(input, *, axis=-1):
    """Fast LogSoftmax along the last axis; other axes and dtypes run the reference."""
    if _fast(input) and normalize_axis(axis, input.ndim) == input.ndim - 1:
        return _rows(input, input.ndim - 1, log_softmax_rows)
    return LogSoftmax_reference(input, axis=axis)


@kernel("LogSoftmax", since=1)
def LogSoftmax_1(input, *, axis=1):
    """Fast LogSoftmax-1/11: the input coerced to 2-D at axis, each row normalized."""
    if _fast(input):
        return _rows(input, normalize_axis(axis, input.ndim), log_softmax_rows)
    return LogSoftmax_1_reference(input, axis=axis)
