"""Element-wise kernels: Erf and the exact (erf) Gelu as Numba loops, Pow by a small integer.

**Pow** with a scalar exponent of 2 or 3 (the tanh-GELU of GPT-2 computes ``x ** 3``) is
``x * x (* x)``: NumPy's float32 ``power`` takes a slow path for negative bases (~70 ns an
element, 20x a multiply). onnxruntime special-cases the same exponents; the results differ from
``power`` by at most an ulp or two (two roundings instead of one).

**Erf / Gelu**:

NumPy has no erf: the reference ``minirt.ops.elementwise.Erf`` evaluates a series and a continued
fraction in float64 with whole-array passes (tens of them). float64 runs ``math.erf`` (the C
library's) in a single Numba loop. float32 runs :func:`_erf32`, a rational function fitted by
``scripts/fit_erf.py`` and evaluated in float64, within 1 ulp of the correctly rounded float32
erf: ``math.erf`` is a scalar call (~9 ns an element), the rational function a few multiply-adds
and a division that LLVM vectorizes (chargpt's [1, 128, 256] Erf: 370 -> ~25 us).
Small arrays run serially (no thread pool wake-up); float16 and other dtypes run the reference.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from minirt.kernels._jit import renamed  # the serial build gets its own Numba cache entry
from minirt.ops.activation import Gelu as Gelu_reference
from minirt.ops.activation import Gelu_ms as Gelu_ms_reference
from minirt.ops.elementwise import Erf as Erf_reference
from minirt.ops.elementwise import Pow as Pow_reference
from minirt.registry import kernel

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
PARALLEL_MIN = 1 << 16  # elements: below this, waking Numba's threads costs more than it saves


ERF_X_MAX = 3.92  # from here on erf(x) rounds to +-1 in float32 (1 - erf(3.92) = 2.6e-8)
# erf(x) = x P(t) / Q(t), t = (x / ERF_X_MAX)^2, on |x| <= ERF_X_MAX: scripts/fit_erf.py
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (1.1283791679285318, 2.4861840734718594, 11.813851764027829, 9.83729468809678,
                                     15.985747323625644, -1.406725598604767, -0.7106887276126774)
_Q1, _Q2, _Q3, _Q4, _Q5, _Q6 = (7.325457086362504, 24.37904457834684, 47.01043589172897, 53.98247335855913,
                                30.167986258612608, -10.459945161727795)


def _erf32(v):
    """erf(v) to float32 accuracy (within 1 ulp once rounded to float32), in float64: a rational
    function on |v| < ERF_X_MAX, exactly +-1 beyond; NaN stays NaN (the comparisons are false).
    The branches become selects and the loops that call it vectorize: their builds use NumPy's
    error model (a division by zero gives inf, as in NumPy, instead of raising — Q has no zero on
    the range), since Python's zero-divisor check is a branch out of the loop that stops LLVM."""
    x = float(v)
    big = x >= ERF_X_MAX or x <= -ERF_X_MAX
    if big:
        x = 0.0  # (any value in range: the result is replaced below)
    t = x * x * (1.0 / (ERF_X_MAX * ERF_X_MAX))
    p = ((((((_P6 * t + _P5) * t + _P4) * t + _P3) * t + _P2) * t + _P1) * t + _P0)
    q = ((((((_Q6 * t + _Q5) * t + _Q4) * t + _Q3) * t + _Q2) * t + _Q1) * t + 1.0)
    r = x * p / q
    if big:
        r = 1.0 if v > 0 else -1.0
    return r


def _erf_loop(x, y):
    """y[i] = erf(x[i]) for flat float64 x, y (the C library's erf)."""
    for i in numba.prange(x.size):
        y[i] = math.erf(x[i])


def _erf32_loop(x, y):
    """y[i] = erf(x[i]) for flat float32 x, y (:func:`_erf32`: vectorized)."""
    for i in numba.prange(x.size):
        y[i] = _erf32(x[i])


def _gelu_loop(x, y):
    """y[i] = 0.5 x[i] (1 + erf(x[i] / sqrt(2))) for flat float64 x, y."""
    for i in numba.prange(x.size):
        v = float(x[i])
        y[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


def _gelu32_loop(x, y):
    """y[i] = 0.5 x[i] (1 + erf(x[i] / sqrt(2))) for flat float32 x, y, in float64 (:func:`_erf32`)."""
    for i in numba.prange(x.size):
        v = float(x[i])
        y[i] = 0.5 * v * (1.0 + _erf32(v * 0.7071067811865476))


_erf32 = numba.njit(cache=True, inline="always", error_model="numpy")(_erf32)
erf_loop = numba.njit(parallel=True, cache=True)(_erf_loop)
erf_loop_serial = numba.njit(cache=True)(renamed(_erf_loop, "serial"))
erf32_loop = numba.njit(parallel=True, cache=True, error_model="numpy")(_erf32_loop)
erf32_loop_serial = numba.njit(cache=True, error_model="numpy")(renamed(_erf32_loop, "serial"))
gelu_loop = numba.njit(parallel=True, cache=True)(_gelu_loop)
gelu_loop_serial = numba.njit(cache=True)(renamed(_gelu_loop, "serial"))
gelu32_loop = numba.njit(parallel=True, cache=True, error_model="numpy")(_gelu32_loop)
gelu32_loop_serial = numba.njit(cache=True, error_model="numpy")(renamed(_gelu32_loop, "serial"))
_ERF_LOOPS = {np.dtype(np.float32): (erf32_loop, erf32_loop_serial), np.dtype(np.float64): (erf_loop, erf_loop_serial)}
_GELU_LOOPS = {np.dtype(np.float32): (gelu32_loop, gelu32_loop_serial),
               np.dtype(np.float64): (gelu_loop, gelu_loop_serial)}


def _elementwise(x, loops):
    flat = np.ascontiguousarray(x).reshape(-1)  # [...] -> [size]
    y = np.empty_like(flat)
    parallel, serial = loops
    (parallel if flat.size >= PARALLEL_MIN else serial)(flat, y)
    return y.reshape(x.shape)


@kernel("Erf", since=9)
def Erf(input):
    """Fast Erf for float32/float64; other dtypes run the reference."""
    if input.dtype not in _FAST_DTYPES:
        return Erf_reference(input)
    return _elementwise(input, _ERF_LOOPS[input.dtype])


@kernel("Gelu", since=20)
def Gelu(X, *, approximate="none"):
    """Fast exact Gelu for float32/float64; the tanh form and other dtypes run the reference."""
    if approximate != "none" or X.dtype not in _FAST_DTYPES:
        return Gelu_reference(X, approximate=approximate)
    return _elementwise(X, _GELU_LOOPS[X.dtype])


@kernel("Gelu", since=1, domain="com.microsoft")
def Gelu_ms(X):
    """Fast com.microsoft.Gelu (exact) for float32/float64."""
    if X.dtype not in _FAST_DTYPES:
        return Gelu_ms_reference(X)
    return _elementwise(X, _GELU_LOOPS[X.dtype])


@kernel("Pow", since=7)
def Pow(X, Y):
    """Fast Pow for a float32/float64 X and a scalar exponent 2 or 3; otherwise the reference."""
    if X.dtype in _FAST_DTYPES and Y.size == 1 and Y.dtype.kind == "f":
        e = float(Y.reshape(-1)[0])
        if e == 2.0 and Y.ndim <= X.ndim:
            return X * X
        if e == 3.0 and Y.ndim <= X.ndim:
            y = X * X
            y *= X
            return y
    return Pow_reference(X, Y)
