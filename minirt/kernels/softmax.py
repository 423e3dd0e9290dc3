"""Softmax and LogSoftmax over rows, one Numba loop per row (parallel over rows).

Opset 13 normalizes along one axis; the fast path is the last axis (rows of a contiguous
``[rows, D]`` view), other axes run the reference. Opsets 1-11 coerce the input to 2-D at
``axis`` — exactly rows again, for every axis.

Each row is three passes: its max, the sum of exp(x - max) (accumulated in float64), then the
output. float16 runs the reference.

For small inputs (below ``KERNEL_MAX`` = 4096 elements: a transformer's attention at batch 1,
a classifier's logits) the plain loops, serial, are 2-4x faster than the reference's five
NumPy calls (6 us instead of 21 for 2x16x16). Their ``math.exp`` is a call per element (~4 ns),
where NumPy's SIMD exp takes ~0.4: on bigger float64 inputs the reference runs. **float32 from
``ROWS32_MIN`` elements** runs ``_softmax_rows32`` / ``_log_softmax_rows32`` instead: an exp
LLVM vectorizes (``_exp_shifted32``: a degree-7 polynomial after Cody-Waite range reduction, the
power of two added to the result's exponent bits; within 1.2 ulp of float64's exp rounded,
checked on 2 M points), the row's max in 16 lanes and its sum with reassociation: chargpt's
attention [1, 4, 128, 128] 131 us (NumPy) -> 76, [96, 128, 128] 3.4 ms -> 1.8, [64, 1000] 91 -> 58.
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


# float32 exp(t) for t <= 0 (the rows' shifted values), vectorizable: t = k*ln2 + r with k an
# integer and |r| <= ln2/2, exp(r) by its Taylor polynomial of degree 7 (the first term left out,
# r^8/8! < 6e-9, is below float32's half ulp), then 2^k added to the result's exponent bits
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693145751953125)  # ln 2 in two parts (Cody and Waite): k * _LN2_HI is exact
_LN2_LO = np.float32(1.4286068203094172e-06)
_EXP_MIN = np.float32(-86.5)  # exp below this is < 2^-124.8 (~2.6e-38): taken as 0, which keeps 2^k normal
_C = tuple(np.float32(1.0 / math.factorial(n)) for n in range(8))  # 1, 1, 1/2, ..., 1/7!


def _exp_shifted32(x, m, y, k):
    """y[j] = exp(x[j] - m) for float32 rows x, y [D] (m >= every x[j]; k [D] int32 scratch):
    NaN for a NaN, 0 below ``_EXP_MIN`` (inf - inf included), otherwise within ~2 ulp of exp.

    Two loops LLVM vectorizes (``math.exp`` is a call per element: NumPy's SIMD exp was 3x
    faster, so big rows ran the reference): the polynomial and k, then k added to the exponent
    field of the result's bits (an int32 view of y), which multiplies it by 2^k exactly."""
    D = x.shape[0]
    zero, half = np.float32(0), np.float32(0.5)
    for j in range(D):
        t = x[j] - m
        ok = t >= _EXP_MIN  # False for NaN too
        tc = t if ok else zero  # (the polynomial of a safe value; replaced below)
        kf = np.floor(tc * _LOG2E + half)
        r = tc - kf * _LN2_HI - kf * _LN2_LO
        p = _C[0] + r * (_C[1] + r * (_C[2] + r * (_C[3] + r * (_C[4] + r * (_C[5] + r * (_C[6] + r * _C[7]))))))
        if ok:
            y[j] = p
            k[j] = np.int32(kf)
        else:
            y[j] = zero if t < _EXP_MIN else t  # 0 for tiny ones, NaN stays NaN
            k[j] = 0
    bits = y.view(np.int32)
    for j in range(D):
        bits[j] += k[j] << 23  # y[j] *= 2^k[j] (p in [0.7, 1.42], k >= -125: the result stays normal)


def _row_max(x):
    """max of a row x [D] in 16 lanes, then across them: each step of the inner loop is one
    vector compare (a running max, one element after another, waits for the previous compare:
    ~1 ns an element). A NaN is skipped here; it makes its row NaN in the exp that follows."""
    D = x.shape[0]
    lanes = np.full(16, x[0])
    for j0 in range(0, D - 15, 16):
        for i in range(16):
            v = x[j0 + i]
            lanes[i] = v if v > lanes[i] else lanes[i]
    m = lanes[0]
    for i in range(1, 16):
        m = lanes[i] if lanes[i] > m else m
    for j in range(D - D % 16, D):
        m = x[j] if x[j] > m else m
    return m


def _row_sum(y):
    """sum of a float32 row in float64, compiled with ``fastmath={"reassoc"}`` so LLVM may split
    it into vector lanes (a sum in strict order adds one element at a time)."""
    total = 0.0
    for j in range(y.shape[0]):
        total += y[j]
    return total


def _row_exps(x, y, k):
    """y = exp(x - max(x)) for one float32 row (k: :func:`_exp_shifted32`'s scratch); returns
    the max and the sum of y (float64): the part Softmax and LogSoftmax share."""
    m = _row_max(x)
    _exp_shifted32(x, m, y, k)
    return m, _row_sum(y)


def _softmax_rows32(x, y):
    """:func:`_softmax_rows` for float32 with :func:`_exp_shifted32`; the sum in float64."""
    R, D = x.shape
    k = np.empty(D, np.int32)
    for r in range(R):
        xr, yr = x[r], y[r]
        s = np.float32(_row_exps(xr, yr, k)[1])
        for j in range(D):
            yr[j] = yr[j] / s


def _log_softmax_rows32(x, y):
    """:func:`_log_softmax_rows` for float32 with :func:`_exp_shifted32` (exps into y first)."""
    R, D = x.shape
    k = np.empty(D, np.int32)
    for r in range(R):
        xr, yr = x[r], y[r]
        m, total = _row_exps(xr, yr, k)
        log_total = np.float32(math.log(total))
        for j in range(D):
            yr[j] = (xr[j] - m) - log_total


# serial: the inputs they get are small (see the module doc); prange runs as range
softmax_rows = numba.njit(cache=True)(_softmax_rows)
log_softmax_rows = numba.njit(cache=True)(_log_softmax_rows)
_exp_shifted32 = numba.njit(cache=True, inline="always", error_model="numpy")(_exp_shifted32)
_row_max = numba.njit(cache=True)(_row_max)
_row_sum = numba.njit(cache=True, fastmath={"reassoc"})(_row_sum)  # its own function: flags are per function
_row_exps = numba.njit(cache=True, inline="always", error_model="numpy")(_row_exps)
softmax_rows32 = numba.njit(cache=True, error_model="numpy")(_softmax_rows32)
log_softmax_rows32 = numba.njit(cache=True, error_model="numpy")(_log_softmax_rows32)
KERNEL_MAX = 1 << 12  # float64 elements: from here on the reference (NumPy) is faster
ROWS32_MIN = 1 << 10  # float32 elements from which the rows32 loops run (below, the plain loops are
#                       as fast: [4, 16, 16] 3.9 / 4.0 us; [4, 32, 32] 9.3 / 15.6, [1, 4, 128, 128]
#                       76 / 261, NumPy's reference 131)


def _rows(input, axis, loops):
    """Run a row kernel over input seen as [prod(shape[:axis]), prod(shape[axis:])]."""
    x = np.ascontiguousarray(input).reshape(math.prod(input.shape[:axis]), -1)  # [..] -> [R, D]
    y = np.empty_like(x)
    loops(x, y)
    return y.reshape(input.shape)  # [R, D] -> input shape


def _loops(input, loops, loops32):
    """The row kernel for ``input``: ``loops32`` for float32 from ``ROWS32_MIN`` elements,
    ``loops`` for small float32/float64 inputs, None for the reference."""
    if input.dtype == np.float32 and input.size >= ROWS32_MIN:
        return loops32
    if input.dtype in _FAST_DTYPES and 0 < input.size < KERNEL_MAX and input.ndim > 0:
        return loops
    return None


@kernel("Softmax", since=13)
def Softmax(input, *, axis=-1):
    """Fast Softmax along the last axis; other axes and dtypes run the reference."""
    loops = _loops(input, softmax_rows, softmax_rows32)
    if loops is not None and normalize_axis(axis, input.ndim) == input.ndim - 1:
        return _rows(input, input.ndim - 1, loops)
    return Softmax_reference(input, axis=axis)


@kernel("Softmax", since=1)
def Softmax_1(input, *, axis=1):
    """Fast Softmax-1/11: the input coerced to 2-D at axis, each row normalized."""
    loops = _loops(input, softmax_rows, softmax_rows32)
    if loops is not None:
        return _rows(input, normalize_axis(axis, input.ndim), loops)
    return Softmax_1_reference(input, axis=axis)


@kernel("LogSoftmax", since=13)
def LogSoftmax(input, *, axis=-1):
    """Fast LogSoftmax along the last axis; other axes and dtypes run the reference."""
    loops = _loops(input, log_softmax_rows, log_softmax_rows32)
    if loops is not None and normalize_axis(axis, input.ndim) == input.ndim - 1:
        return _rows(input, input.ndim - 1, loops)
    return LogSoftmax_reference(input, axis=axis)


@kernel("LogSoftmax", since=1)
def LogSoftmax_1(input, *, axis=1):
    """Fast LogSoftmax-1/11: the input coerced to 2-D at axis, each row normalized."""
    loops = _loops(input, log_softmax_rows, log_softmax_rows32)
    if loops is not None:
        return _rows(input, normalize_axis(axis, input.ndim), loops)
    return LogSoftmax_1_reference(input, axis=axis)
