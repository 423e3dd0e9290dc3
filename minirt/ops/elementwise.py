"""Elementwise math, comparisons, logic, bit ops, casts.

Every op here maps one or more tensors to a tensor of the broadcast shape, element by element.
NumPy already broadcasts the ONNX way (multidirectional, from opset 7 on); the opset-1/6
arithmetic ops had their own limited broadcasting (``broadcast``/``axis`` attributes), which
``_legacy_broadcast`` spells out.

Dtypes: ONNX binary ops take two tensors of the *same* type, so NumPy keeps that type. The
places where NumPy would widen (Python floats times int arrays, ``np.power`` of int by float,
0-d results turning into NumPy scalars) are handled explicitly.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np

from minirt.dtypes import np_dtype
from minirt.registry import op

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _legacy_broadcast(A, B, broadcast, axis):
    """Opset-1/6 broadcasting: B is stretched to A's shape, its dims lining up from ``axis``.

    Without ``axis`` the dims of B match the trailing dims of A (suffix matching).
    Returns B reshaped so that NumPy broadcasting does the rest.
    """
    if not broadcast:
        if A.shape != B.shape:
            raise ValueError(
                f"shapes {A.shape} and {B.shape} differ and broadcast=0 (opset < 7 needs "
                "broadcast=1 to broadcast)"
            )
        return B
    if B.size == 1:
        return B.reshape(())  # a single element broadcasts anywhere
    if axis is None:
        axis = A.ndim - B.ndim
    elif axis < 0:
        axis += A.ndim
    return B.reshape((1,) * axis + B.shape + (1,) * (A.ndim - axis - B.ndim))  # align at axis


def _with_consumed_inputs(fn):
    """Register the opset-1 form of a unary op: same math plus an ignored `consumed_inputs`."""

    def legacy(X, *, consumed_inputs=None):
        return fn(X)

    legacy.__name__ = legacy.__qualname__ = f"{fn.__name__}_1"
    legacy.__doc__ = f"{fn.__name__} with the legacy `consumed_inputs` attribute (ignored)."
    return op(fn.__name__, since=1)(legacy)


def _same_dtype(result, like):
    """``result`` as an array of ``like``'s dtype (NumPy may widen, or return a 0-d scalar)."""
    return np.asarray(result).astype(like.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# arithmetic
# ---------------------------------------------------------------------------------------------


@op("Add", since=7)
def Add(A, B):
    """C = A + B (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Add.html"""
    return np.asarray(np.add(A, B))


@op("Sub", since=7)
def Sub(A, B):
    """C = A - B (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Sub.html"""
    return np.asarray(np.subtract(A, B))


@op("Mul", since=7)
def Mul(A, B):
    """C = A * B (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Mul.html"""
    return np.asarray(np.multiply(A, B))


@op("Div", since=7)
def Div(A, B):
    """C = A / B; integers truncate toward zero, as in C — https://onnx.ai/onnx/operators/onnx__Div.html"""
    if A.dtype.kind in "iu":
        with np.errstate(divide="ignore"):  # x / 0 is undefined for integers; NumPy gives 0
            quotient = np.floor_divide(A, B)
            # floor rounds toward -inf: step back by one where the exact quotient was negative
            inexact = (np.remainder(A, B) != 0) & ((A < 0) != (B < 0))
        return np.asarray(quotient + inexact.astype(A.dtype))
    return np.asarray(np.divide(A, B))


@op("Add", since=1)
def Add_1(A, B, *, axis=None, broadcast=0, consumed_inputs=None):
    """C = A + B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Add.html"""
    return Add(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Sub", since=1)
def Sub_1(A, B, *, axis=None, broadcast=0, consumed_inputs=None):
    """C = A - B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Sub.html"""
    return Sub(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Mul", since=1)
def Mul_1(A, B, *, axis=None, broadcast=0, consumed_inputs=None):
    """C = A * B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Mul.html"""
    return Mul(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Div", since=1)
def Div_1(A, B, *, axis=None, broadcast=0, consumed_inputs=None):
    """C = A / B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Div.html"""
    return Div(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Pow", since=7)
def Pow(X, Y):
    """Z = X ** Y, Z has X's dtype — https://onnx.ai/onnx/operators/onnx__Pow.html"""
    if X.dtype.kind in "iu" and Y.dtype.kind in "iu" and np.all(Y >= 0):
        return _same_dtype(np.power(X, Y.astype(X.dtype)), X)  # exact integer power
    if X.dtype.kind in "iu" or Y.dtype.kind in "iu":
        # mixed int/float (or a negative integer exponent): compute in float64, cast back
        with np.errstate(divide="ignore", invalid="ignore"):
            return _same_dtype(np.power(X.astype(np.float64), Y.astype(np.float64)), X)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # (-2) ** 0.5 is NaN
        return _same_dtype(np.power(X, Y.astype(X.dtype)), X)


@op("Pow", since=1)
def Pow_1(X, Y, *, axis=None, broadcast=0):
    """Z = X ** Y, with Y broadcast to X's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Pow.html"""
    return Pow(X, _legacy_broadcast(X, Y, broadcast, axis))


@op("Mod", since=10)
def Mod(A, B, *, fmod=0):
    """C = A mod B: sign of B (fmod=0, floor), or sign of A (fmod=1, C fmod) — https://onnx.ai/onnx/operators/onnx__Mod.html"""
    with np.errstate(divide="ignore", invalid="ignore"):  # x mod 0: NaN for floats, 0 for ints
        if fmod:
            return np.asarray(np.fmod(A, B))
        return np.asarray(np.mod(A, B))


@op("Neg", since=6)
def Neg(X):
    """Y = -X — https://onnx.ai/onnx/operators/onnx__Neg.html"""
    return np.asarray(np.negative(X))


@op("Abs", since=6)
def Abs(X):
    """Y = |X| — https://onnx.ai/onnx/operators/onnx__Abs.html"""
    return np.asarray(np.abs(X))


@op("Reciprocal", since=6)
def Reciprocal(X):
    """Y = 1 / X — https://onnx.ai/onnx/operators/onnx__Reciprocal.html"""
    with np.errstate(divide="ignore"):
        return np.asarray(np.reciprocal(X))


@op("Sqrt", since=6)
def Sqrt(X):
    """Y = sqrt(X) (NaN for X < 0) — https://onnx.ai/onnx/operators/onnx__Sqrt.html"""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.sqrt(X))


@op("Exp", since=6)
def Exp(input):
    """output = e ** input — https://onnx.ai/onnx/operators/onnx__Exp.html"""
    with np.errstate(over="ignore"):
        return np.asarray(np.exp(input))


@op("Log", since=6)
def Log(input):
    """output = ln(input) (-inf at 0, NaN below) — https://onnx.ai/onnx/operators/onnx__Log.html"""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(input))


@op("Ceil", since=6)
def Ceil(X):
    """Y = ceil(X) — https://onnx.ai/onnx/operators/onnx__Ceil.html"""
    return np.asarray(np.ceil(X))


@op("Floor", since=6)
def Floor(X):
    """Y = floor(X) — https://onnx.ai/onnx/operators/onnx__Floor.html"""
    return np.asarray(np.floor(X))


Neg_1 = _with_consumed_inputs(Neg)
Abs_1 = _with_consumed_inputs(Abs)
Reciprocal_1 = _with_consumed_inputs(Reciprocal)
Sqrt_1 = _with_consumed_inputs(Sqrt)
Exp_1 = _with_consumed_inputs(Exp)
Log_1 = _with_consumed_inputs(Log)
Ceil_1 = _with_consumed_inputs(Ceil)
Floor_1 = _with_consumed_inputs(Floor)


@op("Sign", since=9)
def Sign(input):
    """output = -1, 0 or 1 as input is negative, zero or positive — https://onnx.ai/onnx/operators/onnx__Sign.html"""
    return np.asarray(np.sign(input))


@op("Round", since=11)
def Round(X):
    """Y = X rounded to the nearest integer, halves to even — https://onnx.ai/onnx/operators/onnx__Round.html"""
    return np.asarray(np.round(X))


def _erf_f64(x):
    """erf for float64 arrays, accurate to ~1e-15, in plain NumPy.

    |x| < 2.5: the Maclaurin series  erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1));
    |x| >= 2.5: the continued fraction  erfc(x) = exp(-x^2)/sqrt(pi) / (x + 1/2 / (x + 1 / (x + 3/2 / ...))),
    evaluated from the bottom up; erf = 1 - erfc.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    small = a < 2.5
    out = np.empty_like(x)

    # series: each term is the previous one times -x^2 / n, then divided by (2n+1)
    xs = x[small]
    x2 = xs * xs
    power = xs.copy()  # (-1)^n x^(2n+1) / n!
    total = xs.copy()
    for n in range(1, 60):  # 6.25^n / n! < 1e-17 well before n = 60
        power = power * (-x2 / n)
        total += power / (2 * n + 1)
    out[small] = total * (2.0 / np.sqrt(np.pi))

    # continued fraction for the tails
    xl = a[~small]
    t = xl.copy()
    for k in range(60, 0, -1):
        t = xl + (k / 2.0) / t
    erfc = np.exp(-xl * xl) / np.sqrt(np.pi) / t
    out[~small] = np.sign(x[~small]) * (1.0 - erfc)
    out[np.isnan(x)] = np.nan
    return out


@op("Erf", since=9)
def Erf(input):
    """output = erf(input) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt — https://onnx.ai/onnx/operators/onnx__Erf.html"""
    return _erf_f64(input).astype(input.dtype)


@op("Sin", since=7)
def Sin(input):
    """output = sin(input) — https://onnx.ai/onnx/operators/onnx__Sin.html"""
    return np.asarray(np.sin(input))


@op("Cos", since=7)
def Cos(input):
    """output = cos(input) — https://onnx.ai/onnx/operators/onnx__Cos.html"""
    return np.asarray(np.cos(input))


@op("Tan", since=7)
def Tan(input):
    """output = tan(input) — https://onnx.ai/onnx/operators/onnx__Tan.html"""
    return np.asarray(np.tan(input))


@op("Asin", since=7)
def Asin(input):
    """output = arcsin(input) (NaN outside [-1, 1]) — https://onnx.ai/onnx/operators/onnx__Asin.html"""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.arcsin(input))


@op("Acos", since=7)
def Acos(input):
    """output = arccos(input) (NaN outside [-1, 1]) — https://onnx.ai/onnx/operators/onnx__Acos.html"""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.arccos(input))


@op("Atan", since=7)
def Atan(input):
    """output = arctan(input) — https://onnx.ai/onnx/operators/onnx__Atan.html"""
    return np.asarray(np.arctan(input))


@op("Sinh", since=9)
def Sinh(input):
    """output = sinh(input) — https://onnx.ai/onnx/operators/onnx__Sinh.html"""
    with np.errstate(over="ignore"):
        return np.asarray(np.sinh(input))


@op("Cosh", since=9)
def Cosh(input):
    """output = cosh(input) — https://onnx.ai/onnx/operators/onnx__Cosh.html"""
    with np.errstate(over="ignore"):
        return np.asarray(np.cosh(input))


@op("Asinh", since=9)
def Asinh(input):
    """output = arcsinh(input) — https://onnx.ai/onnx/operators/onnx__Asinh.html"""
    return np.asarray(np.arcsinh(input))


@op("Acosh", since=9)
def Acosh(input):
    """output = arccosh(input) (NaN below 1) — https://onnx.ai/onnx/operators/onnx__Acosh.html"""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.arccosh(input))


@op("Atanh", since=9)
def Atanh(input):
    """output = arctanh(input) (+-inf at +-1, NaN outside) — https://onnx.ai/onnx/operators/onnx__Atanh.html"""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.arctanh(input))


# ---------------------------------------------------------------------------------------------
# variadic: Sum, Mean, Max, Min
# ---------------------------------------------------------------------------------------------


@op("Sum", since=8)
def Sum(*data_0):
    """sum = data_0 + data_1 + ... (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Sum.html"""
    return np.asarray(functools.reduce(np.add, data_0))


@op("Mean", since=8)
def Mean(*data_0):
    """mean = (data_0 + data_1 + ...) / n (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Mean.html"""
    total = functools.reduce(np.add, data_0)
    return _same_dtype(total / len(data_0), data_0[0])


@op("Max", since=8)
def Max(*data_0):
    """max = elementwise max of all inputs (NaN wins) — https://onnx.ai/onnx/operators/onnx__Max.html"""
    return np.asarray(functools.reduce(np.maximum, data_0))


@op("Min", since=8)
def Min(*data_0):
    """min = elementwise min of all inputs (NaN wins) — https://onnx.ai/onnx/operators/onnx__Min.html"""
    return np.asarray(functools.reduce(np.minimum, data_0))


@op("Sum", since=1)
def Sum_1(*data_0, consumed_inputs=None):
    """Sum before opset 8: same shapes only (a special case of broadcasting) — https://onnx.ai/onnx/operators/onnx__Sum.html"""
    return Sum(*data_0)


@op("Mean", since=1)
def Mean_1(*data_0, consumed_inputs=None):
    """Mean before opset 8: same shapes only — https://onnx.ai/onnx/operators/onnx__Mean.html"""
    return Mean(*data_0)


@op("Max", since=1)
def Max_1(*data_0, consumed_inputs=None):
    """Max before opset 8: same shapes only — https://onnx.ai/onnx/operators/onnx__Max.html"""
    return Max(*data_0)


@op("Min", since=1)
def Min_1(*data_0, consumed_inputs=None):
    """Min before opset 8: same shapes only — https://onnx.ai/onnx/operators/onnx__Min.html"""
    return Min(*data_0)


# ---------------------------------------------------------------------------------------------
# comparisons and logic (outputs are bool)
# ---------------------------------------------------------------------------------------------


@op("Equal", since=7)
def Equal(A, B):
    """C = (A == B), bool — https://onnx.ai/onnx/operators/onnx__Equal.html"""
    return np.asarray(np.equal(A, B)).astype(bool, copy=False)  # object (string) inputs give object


@op("Greater", since=7)
def Greater(A, B):
    """C = (A > B), bool — https://onnx.ai/onnx/operators/onnx__Greater.html"""
    return np.asarray(np.greater(A, B))


@op("Less", since=7)
def Less(A, B):
    """C = (A < B), bool — https://onnx.ai/onnx/operators/onnx__Less.html"""
    return np.asarray(np.less(A, B))


@op("GreaterOrEqual", since=12)
def GreaterOrEqual(A, B):
    """C = (A >= B), bool — https://onnx.ai/onnx/operators/onnx__GreaterOrEqual.html"""
    return np.asarray(np.greater_equal(A, B))


@op("LessOrEqual", since=12)
def LessOrEqual(A, B):
    """C = (A <= B), bool — https://onnx.ai/onnx/operators/onnx__LessOrEqual.html"""
    return np.asarray(np.less_equal(A, B))


@op("And", since=7)
def And(A, B):
    """C = A and B — https://onnx.ai/onnx/operators/onnx__And.html"""
    return np.asarray(np.logical_and(A, B))


@op("Or", since=7)
def Or(A, B):
    """C = A or B — https://onnx.ai/onnx/operators/onnx__Or.html"""
    return np.asarray(np.logical_or(A, B))


@op("Xor", since=7)
def Xor(A, B):
    """C = A xor B — https://onnx.ai/onnx/operators/onnx__Xor.html"""
    return np.asarray(np.logical_xor(A, B))


@op("Not", since=1)
def Not(X):
    """Y = not X — https://onnx.ai/onnx/operators/onnx__Not.html"""
    return np.asarray(np.logical_not(X))


@op("Equal", since=1)
def Equal_1(A, B, *, axis=None, broadcast=0):
    """C = (A == B), with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Equal.html"""
    return Equal(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Greater", since=1)
def Greater_1(A, B, *, axis=None, broadcast=0):
    """C = (A > B), with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Greater.html"""
    return Greater(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Less", since=1)
def Less_1(A, B, *, axis=None, broadcast=0):
    """C = (A < B), with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Less.html"""
    return Less(A, _legacy_broadcast(A, B, broadcast, axis))


@op("And", since=1)
def And_1(A, B, *, axis=None, broadcast=0):
    """C = A and B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__And.html"""
    return And(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Or", since=1)
def Or_1(A, B, *, axis=None, broadcast=0):
    """C = A or B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Or.html"""
    return Or(A, _legacy_broadcast(A, B, broadcast, axis))


@op("Xor", since=1)
def Xor_1(A, B, *, axis=None, broadcast=0):
    """C = A xor B, with B broadcast to A's shape from `axis` — https://onnx.ai/onnx/operators/onnx__Xor.html"""
    return Xor(A, _legacy_broadcast(A, B, broadcast, axis))


@op("IsNaN", since=9)
def IsNaN(X):
    """Y = (X is NaN), bool — https://onnx.ai/onnx/operators/onnx__IsNaN.html"""
    return np.asarray(np.isnan(X))


@op("IsInf", since=10)
def IsInf(X, *, detect_negative=1, detect_positive=1):
    """Y = (X is +inf and detect_positive) or (X is -inf and detect_negative) — https://onnx.ai/onnx/operators/onnx__IsInf.html"""
    positive = np.isposinf(X) & bool(detect_positive)
    negative = np.isneginf(X) & bool(detect_negative)
    return np.asarray(positive | negative)


@op("Where", since=9)
def Where(condition, X, Y):
    """output = X where condition else Y (NumPy broadcasting) — https://onnx.ai/onnx/operators/onnx__Where.html"""
    return np.where(condition, X, Y)


# ---------------------------------------------------------------------------------------------
# bit ops (integer inputs)
# ---------------------------------------------------------------------------------------------


@op("BitShift", since=11)
def BitShift(X, Y, *, direction):
    """Z = X << Y or X >> Y (arithmetic for signed X); shifts outside [0, bits) give the sign fill — https://onnx.ai/onnx/operators/onnx__BitShift.html"""
    bits = X.dtype.itemsize * 8
    in_range = (Y >= 0) & (Y < bits)
    amount = np.where(in_range, Y, 0).astype(X.dtype)  # NumPy's shift is undefined out of range
    if direction == "LEFT":
        return np.asarray(np.where(in_range, np.left_shift(X, amount), 0).astype(X.dtype))
    if direction == "RIGHT":
        sign_fill = np.where(X < 0, -1, 0) if X.dtype.kind == "i" else 0
        return np.asarray(np.where(in_range, np.right_shift(X, amount), sign_fill).astype(X.dtype))
    raise ValueError(f"BitShift: direction must be 'LEFT' or 'RIGHT', got {direction!r}")


@op("BitwiseAnd", since=18)
def BitwiseAnd(A, B):
    """C = A & B — https://onnx.ai/onnx/operators/onnx__BitwiseAnd.html"""
    return np.asarray(np.bitwise_and(A, B))


@op("BitwiseOr", since=18)
def BitwiseOr(A, B):
    """C = A | B — https://onnx.ai/onnx/operators/onnx__BitwiseOr.html"""
    return np.asarray(np.bitwise_or(A, B))


@op("BitwiseXor", since=18)
def BitwiseXor(A, B):
    """C = A ^ B — https://onnx.ai/onnx/operators/onnx__BitwiseXor.html"""
    return np.asarray(np.bitwise_xor(A, B))


@op("BitwiseNot", since=18)
def BitwiseNot(X):
    """Y = ~X — https://onnx.ai/onnx/operators/onnx__BitwiseNot.html"""
    return np.asarray(np.invert(X))


# ---------------------------------------------------------------------------------------------
# Clip
# ---------------------------------------------------------------------------------------------


@op("Clip", since=11)
def Clip(input, min=None, max=None):
    """output = Min(max, Max(input, min)); a missing bound is no bound — https://onnx.ai/onnx/operators/onnx__Clip.html"""
    output = input
    if min is not None:
        output = np.maximum(output, np.asarray(min).reshape(()))
    if max is not None:
        output = np.minimum(output, np.asarray(max).reshape(()))  # min > max gives max everywhere
    return np.asarray(output)


@op("Clip", since=6)
def Clip_6(input, *, max=3.4028234663852886e38, min=-3.4028234663852886e38):
    """output = Min(max, Max(input, min)), bounds as attributes — https://onnx.ai/onnx/operators/onnx__Clip.html"""
    with np.errstate(over="ignore"):  # the float32 defaults overflow to +-inf in float16: fine
        lo = np.array(min).astype(input.dtype)
        hi = np.array(max).astype(input.dtype)
    return Clip(input, lo, hi)


@op("Clip", since=1)
def Clip_1(input, *, max=3.4028234663852886e38, min=-3.4028234663852886e38, consumed_inputs=None):
    """Clip_6 plus the legacy `consumed_inputs` attribute (ignored) — https://onnx.ai/onnx/operators/onnx__Clip.html"""
    return Clip_6(input, max=max, min=min)


# ---------------------------------------------------------------------------------------------
# casts
# ---------------------------------------------------------------------------------------------

_FLOAT8 = {
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e4m3fnuz),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e5m2fnuz),
}
_FLOAT8_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


def _to_e8m0(x, saturate, round_mode):
    """float -> float8e8m0, a bare power of two: keep float32's exponent byte, rounded as asked."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)  # biased exponent = the e8m0 byte
    mantissa = bits & 0x7FFFFF
    finite = exponent != 0xFF
    if round_mode == "up":  # any fraction rounds away from zero
        exponent += (finite & (mantissa != 0)).astype(np.uint16)
    elif round_mode == "nearest":  # a fraction of 1/2 or more rounds up ...
        half_or_more = (mantissa > 0x400000) | ((mantissa == 0x400000) & (exponent > 0))
        exponent += (finite & half_or_more).astype(np.uint16)  # ... but subnormal 2^-127 is exact
    elif round_mode != "down":
        raise ValueError(f"Cast: round_mode must be 'up', 'down' or 'nearest', got {round_mode!r}")
    if saturate:  # overflow (and inf) stop at the largest power of two, 2^127; NaN stays NaN
        exponent = np.where(np.isnan(x), 0xFF, np.minimum(exponent, 0xFE))
    exponent = np.minimum(exponent, 0xFF)  # without saturation, overflow is NaN (0xFF)
    return exponent.astype(np.uint8).view(_FLOAT8_E8M0)


def _number_to_text(v):
    """One number as ONNX Runtime prints it: 8 significant digits, INF/-INF/NaN, bools as 1/0."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "INF" if v > 0 else "-INF"
    return f"{v:.8g}"


def _text_to_number(text, integer):
    """Parse "3", " 2.5", "1e-5", "INF", "-inf", "NaN" (case-insensitive) as a Python number."""
    text = str(text).strip()
    if integer:
        try:
            return int(text)
        except ValueError:
            return int(float(text))  # "2.7" -> 2: undefined by the spec, truncated here
    return float(text)


_WIDE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # hold every integer (rounded), never overflow


def _cast(x, dtype, saturate=1, round_mode="up"):
    """Convert ``x`` to ``dtype`` the ONNX way (strings, float8 saturation, e8m0 rounding)."""
    dtype = np.dtype(dtype)
    if x.dtype.kind in "biu" and (dtype.kind in "biu" or dtype in _WIDE_FLOATS):
        return np.asarray(x).astype(dtype)  # nothing to saturate or warn about: no np.errstate (0.9 us)
    if dtype == object:  # numbers -> text
        if x.dtype.kind not in "biuf":  # bfloat16, float8 ...: print their float32 value
            x = x.astype(np.float32)
        text = [_number_to_text(v) for v in x.reshape(-1).tolist()]
        return np.array(text, dtype=object).reshape(x.shape)
    if x.dtype == object or x.dtype.kind in "US":  # text -> numbers
        if dtype.kind in "iu":
            values = [_text_to_number(t, integer=True) for t in x.reshape(-1).tolist()]
            low_bits = [v & 0xFFFFFFFFFFFFFFFF for v in values]  # two's complement, 64 bits
            # then a C-style narrowing cast: out-of-range values wrap around
            return np.array(low_bits, dtype=np.uint64).reshape(x.shape).astype(dtype)
        values = [_text_to_number(t, integer=False) for t in x.reshape(-1).tolist()]
        return _cast(np.array(values, dtype=np.float64).reshape(x.shape), dtype, saturate, round_mode)
    if dtype == _FLOAT8_E8M0:
        return _to_e8m0(x, saturate, round_mode)
    if dtype in _FLOAT8 and saturate and x.dtype.kind == "f":
        # out-of-range (and inf) values clamp to the largest finite float8; NaN stays NaN
        finfo = ml_dtypes.finfo(dtype)
        x = np.clip(x.astype(np.float32), float(finfo.min), float(finfo.max))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/out-of-range -> int is undefined
        return np.asarray(x).astype(dtype)


@op("Cast", since=1)
def Cast(input, *, to, saturate=1, round_mode="up"):
    """output = input converted to element type `to` — https://onnx.ai/onnx/operators/onnx__Cast.html"""
    return _cast(input, np_dtype(to), saturate, round_mode)


@op("CastLike", since=15)
def CastLike(input, target_type, *, saturate=1, round_mode="up"):
    """output = input converted to target_type's element type — https://onnx.ai/onnx/operators/onnx__CastLike.html"""
    return _cast(input, target_type.dtype, saturate, round_mode)


@op("BitCast", since=26)
def BitCast(input, *, to):
    """output = the bits of input reinterpreted as element type `to` (same width) — https://onnx.ai/onnx/operators/onnx__BitCast.html"""
    dtype = np_dtype(to)
    if dtype.itemsize != input.dtype.itemsize:
        raise ValueError(f"BitCast: {input.dtype} and {dtype} have different bit widths")
    return input.view(dtype)  # same item size: a view works for any strides


@op("Identity", since=1)
def Identity(input):
    """output = input (tensors, sequences and optionals alike) — https://onnx.ai/onnx/operators/onnx__Identity.html"""
    return input

