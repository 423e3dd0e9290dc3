"""Element-wise kernels: Erf and the exact (erf) Gelu as Numba loops, Pow by a small integer.

**Pow** with a scalar exponent of 2 or 3 (the tanh-GELU of GPT-2 computes ``x ** 3``) is
``x * x (* x)``: NumPy's float32 ``power`` takes a slow path for negative bases (~70 ns an
element, 20x a multiply). onnxruntime special-cases the same exponents; the results differ from
``power`` by at most an ulp or two (two roundings instead of one).

**Erf / Gelu**:

NumPy has no erf: the reference ``minirt.ops.elementwise.Erf`` evaluates a series and a continued
fraction in float64 with whole-array passes (tens of them). Numba compiles ``math.erf`` (the C
library's) into a single loop: one pass, float64 inside, the input's dtype out.
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


def _erf_loop(x, y):
    """y[i] = erf(x[i]) for flat x, y."""
    for i in numba.prange(x.size):
        y[i] = math.erf(x[i])


def _gelu_loop(x, y):
    """y[i] = 0.5 x[i] (1 + erf(x[i] / sqrt(2))) for flat x, y."""
    for i in numba.prange(x.size):
        v = float(x[i])
        y[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


erf_loop = numba.njit(parallel=True, cache=True)(_erf_loop)
erf_loop_serial = numba.njit(cache=True)(renamed(_erf_loop, "serial"))
gelu_loop = numba.njit(parallel=True, cache=True)(_gelu_loop)
gelu_loop_serial = numba.njit(cache=True)(renamed(_gelu_loop, "serial"))


def _elementwise(x, parallel, serial):
    flat = np.ascontiguousarray(x).reshape(-1)  # [...] -> [size]
    y = np.empty_like(flat)
    (parallel if flat.size >= PARALLEL_MIN else serial)(flat, y)
    return y.reshape(x.shape)


@kernel("Erf", since=9)
def Erf(input):
    """Fast Erf for float32/float64; other dtypes run the reference."""
    if input.dtype not in _FAST_DTYPES:
        return Erf_reference(input)
    return _elementwise(input, erf_loop, erf_loop_serial)


@kernel("Gelu", since=20)
def Gelu(X, *, approximate="none"):
    """Fast exact Gelu for float32/float64; the tanh form and other dtypes run the reference."""
    if approximate != "none" or X.dtype not in _FAST_DTYPES:
        return Gelu_reference(X, approximate=approximate)
    return _elementwise(X, gelu_loop, gelu_loop_serial)


@kernel("Gelu", since=1, domain="com.microsoft")
def Gelu_ms(X):
    """Fast com.microsoft.Gelu (exact) for float32/float64."""
    if X.dtype not in _FAST_DTYPES:
        return Gelu_ms_reference(X)
    return _elementwise(X, gelu_loop, gelu_loop_serial)


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
