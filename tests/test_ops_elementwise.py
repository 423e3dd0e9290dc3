"""Elementwise ops against onnxruntime: one-node models, random shapes with broadcasting."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto

from minirt import registry
from minirt.dtypes import onnx_type
from minirt.ops import elementwise as ew
from minirt.testing import assert_same, broadcastable_shapes, one_node_model, ort_op, run_reference

SETTINGS = settings(deadline=None, max_examples=25)
seeds = st.integers(0, 2**31 - 1)


def ort_run(op_type, *args, opset=21, **attrs):
    """Run ``op_type`` on ``args`` (None = absent optional input) in onnxruntime."""
    return ort_op(op_type, args, attrs, opset=opset)[0]


def rand(rng, shape, dtype, lo=-10, hi=10):
    """Random array: uniform floats, or integers in [lo, hi]."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(lo, hi + 1, shape).astype(dtype)
    return rng.uniform(lo, hi, shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# binary arithmetic
# ---------------------------------------------------------------------------------------------

ARITH = {"Add": ew.Add, "Sub": ew.Sub, "Mul": ew.Mul, "Div": ew.Div}


@SETTINGS
@given(op=st.sampled_from(sorted(ARITH)), dtype=st.sampled_from([np.float32, np.float16, np.int32, np.int64]),
       shp=broadcastable_shapes(2, min_side=0), seed=seeds)
def test_arithmetic_matches_ort(op, dtype, shp, seed):
    rng = np.random.default_rng(seed)
    a, b = (rand(rng, s, dtype) for s in shp)
    if op == "Div" and np.dtype(dtype).kind == "i":
        b = np.where(b == 0, 3, b).astype(dtype)  # integer x / 0 is undefined
    got = ARITH[op](a, b)
    # float16 Div: ORT and NumPy may round the float32 quotient differently by one float16 ulp
    assert_same(got, ort_run(op, a, b), rtol=1e-3 if dtype == np.float16 and op == "Div" else 0.0)


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 6, -6], np.int32)
    b = np.array([2, 2, -2, -2, 3, 3], np.int32)
    assert_same(ew.Div(a, b), np.array([3, -3, -3, 3, 2, -2], np.int32))


@SETTINGS
@given(shp=broadcastable_shapes(2), seed=seeds, dtype=st.sampled_from([np.float32, np.float64]))
def test_pow_float(shp, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rand(rng, shp[0], dtype, 0.1, 5)
    y = rand(rng, shp[1], dtype, -3, 3)
    # exp/log-based pow implementations differ by a few ulp
    assert_same(ew.Pow(x, y), ort_run("Pow", x, y), rtol=1e-5)


@SETTINGS
@given(shp=broadcastable_shapes(2), seed=seeds)
def test_pow_keeps_base_dtype(shp, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, shp[0], np.int64, -5, 5)
    y = rand(rng, shp[1], np.int64, 0, 5)
    assert_same(ew.Pow(x, y), ort_run("Pow", x, y))  # exact integer powers
    xf = rand(rng, shp[0], np.float32, 0.5, 3)
    # float base, integer exponent: still float32; rounding of float64 pow vs ORT's float pow
    assert_same(ew.Pow(xf, y), ort_run("Pow", xf, y), rtol=1e-6)


@SETTINGS
@given(shp=broadcastable_shapes(2), seed=seeds, dtype=st.sampled_from([np.int32, np.int64, np.int8]), fmod=st.sampled_from([0, 1]))
def test_mod_integers(shp, seed, dtype, fmod):
    rng = np.random.default_rng(seed)
    a = rand(rng, shp[0], dtype, -50, 50)
    b = rand(rng, shp[1], dtype, -9, 9)
    b = np.where(b == 0, 4, b).astype(dtype)  # x mod 0 is undefined for integers
    assert_same(ew.Mod(a, b, fmod=fmod), ort_run("Mod", a, b, fmod=fmod))


@SETTINGS
@given(shp=broadcastable_shapes(2), seed=seeds)
def test_mod_float_fmod(shp, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, shp[0], np.float32, -50, 50)
    b = rand(rng, shp[1], np.float32, 0.5, 9) * rng.choice([-1, 1], shp[1])
    assert_same(ew.Mod(a, b.astype(np.float32), fmod=1), ort_run("Mod", a, b.astype(np.float32), fmod=1))


def test_mod_sign_follows_divisor_or_dividend():
    a = np.array([-7, 7, -7, 7], np.int32)
    b = np.array([3, -3, -3, 3], np.int32)
    assert_same(ew.Mod(a, b), np.array([2, -2, -1, 1], np.int32))
    assert_same(ew.Mod(a, b, fmod=1), np.array([-1, 1, -1, 1], np.int32))


# ---------------------------------------------------------------------------------------------
# unary math
# ---------------------------------------------------------------------------------------------

# op -> (function, input range); ranges stay inside each function's domain
UNARY = {
    "Neg": (ew.Neg, (-10, 10)), "Abs": (ew.Abs, (-10, 10)), "Sign": (ew.Sign, (-3, 3)),
    "Reciprocal": (ew.Reciprocal, (0.1, 10)), "Sqrt": (ew.Sqrt, (0, 100)), "Exp": (ew.Exp, (-20, 20)),
    "Log": (ew.Log, (0.01, 100)), "Ceil": (ew.Ceil, (-10, 10)), "Floor": (ew.Floor, (-10, 10)),
    "Round": (ew.Round, (-10, 10)), "Erf": (ew.Erf, (-4, 4)), "Sin": (ew.Sin, (-6, 6)),
    "Cos": (ew.Cos, (-6, 6)), "Tan": (ew.Tan, (-1.4, 1.4)), "Asin": (ew.Asin, (-1, 1)),
    "Acos": (ew.Acos, (-1, 1)), "Atan": (ew.Atan, (-10, 10)), "Sinh": (ew.Sinh, (-5, 5)),
    "Cosh": (ew.Cosh, (-5, 5)), "Asinh": (ew.Asinh, (-10, 10)), "Acosh": (ew.Acosh, (1, 10)),
    "Atanh": (ew.Atanh, (-0.99, 0.99)),
}


@SETTINGS
@given(op=st.sampled_from(sorted(UNARY)), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
       seed=seeds)
def test_unary_float32_matches_ort(op, shape, seed):
    fn, (lo, hi) = UNARY[op]
    x = rand(np.random.default_rng(seed), shape, np.float32, lo, hi)
    if op == "Round" and x.size:
        x.flat[0] = np.float32(2.5)  # a tie: must go to even
    # libm vs ORT's vectorised (MLAS/Eigen) transcendental functions: a few float32 ulp
    assert_same(fn(x), ort_run(op, x, opset=13 if op in ("Neg", "Abs") else 22), rtol=2e-6, atol=1e-7)


@SETTINGS
@given(op=st.sampled_from(["Exp", "Log", "Sqrt", "Abs", "Neg", "Erf", "Ceil", "Round", "Sin"]), seed=seeds,
       shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
def test_unary_float16_keeps_dtype(op, shape, seed):
    fn, (lo, hi) = UNARY[op]
    x = rand(np.random.default_rng(seed), shape, np.float16, lo, max(lo + 0.1, min(hi, 8)))
    # float16 has a 10-bit mantissa: one ulp is ~1e-3 relative
    assert_same(fn(x), ort_run(op, x, opset=22), rtol=2e-3, atol=1e-3)


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 2.5, -2.5, np.inf, -np.inf]])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(ew.Erf(x), want, rtol=0, atol=1e-14)  # float64 series/fraction: ~1e-15
    assert np.isnan(ew.Erf(np.array([np.nan]))[0])


def test_round_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6], np.float32)
    assert_same(ew.Round(x), np.array([0, 2, 2, -0, -2, 2, 3], np.float32))


# ---------------------------------------------------------------------------------------------
# variadic ops
# ---------------------------------------------------------------------------------------------

VARIADIC = {"Sum": ew.Sum, "Mean": ew.Mean, "Max": ew.Max, "Min": ew.Min}


@SETTINGS
@given(op=st.sampled_from(sorted(VARIADIC)), n=st.integers(1, 3), data=st.data(), seed=seeds,
       dtype=st.sampled_from([np.float32, np.float16]))
def test_variadic_matches_ort(op, n, data, seed, dtype):
    shp = data.draw(broadcastable_shapes(n))
    rng = np.random.default_rng(seed)
    args = [rand(rng, s, dtype) for s in shp]
    # float16 Sum/Mean: ORT adds in another order, and each float16 add rounds at the size of its
    # partial sum (2**-11 of it): up to one such rounding per add, at the largest partial sum
    tol = 2e-3 if dtype == np.float16 else 1e-6
    atol = tol
    if dtype == np.float16 and op in ("Sum", "Mean"):
        partial = np.abs(np.broadcast_arrays(*args)).astype(np.float32).sum(axis=0).max()
        atol = max(tol, float(partial) * 2.0**-11 * n)
    assert_same(VARIADIC[op](*args), ort_run(op, *args, opset=13), rtol=tol, atol=atol)


@SETTINGS
@given(op=st.sampled_from(["Max", "Min"]), data=st.data(), seed=seeds)
def test_variadic_integers(op, data, seed):  # Sum and Mean are float-only in the spec
    shp = data.draw(broadcastable_shapes(3))
    rng = np.random.default_rng(seed)
    args = [rand(rng, s, np.int32, -100, 100) for s in shp]
    assert_same(VARIADIC[op](*args), ort_run(op, *args, opset=13))


# ---------------------------------------------------------------------------------------------
# comparisons, logic, bits
# ---------------------------------------------------------------------------------------------

COMPARE = {"Equal": ew.Equal, "Greater": ew.Greater, "Less": ew.Less,
           "GreaterOrEqual": ew.GreaterOrEqual, "LessOrEqual": ew.LessOrEqual}


@SETTINGS
@given(op=st.sampled_from(sorted(COMPARE)), dtype=st.sampled_from([np.float32, np.int64, np.int32]),
       shp=broadcastable_shapes(2, min_side=0), seed=seeds)
def test_comparisons_return_bool(op, dtype, shp, seed):
    rng = np.random.default_rng(seed)
    a, b = (rand(rng, s, dtype, -3, 3).round().astype(dtype) for s in shp)  # many ties
    got = COMPARE[op](a, b)
    assert got.dtype == np.bool_
    assert_same(got, ort_run(op, a, b, opset=19))


def test_equal_on_strings():
    a = np.array(["a", "bc", ""], dtype=object)
    b = np.array(["a"], dtype=object)
    assert_same(ew.Equal(a, b), ort_run("Equal", a, b, opset=19))


LOGIC = {"And": ew.And, "Or": ew.Or, "Xor": ew.Xor}


@SETTINGS
@given(op=st.sampled_from(sorted(LOGIC)), shp=broadcastable_shapes(2, min_side=0), seed=seeds)
def test_logic(op, shp, seed):
    rng = np.random.default_rng(seed)
    a, b = (rand(rng, s, np.bool_) for s in shp)
    assert_same(LOGIC[op](a, b), ort_run(op, a, b))
    assert_same(ew.Not(a), ort_run("Not", a))


BITWISE = {"BitwiseAnd": ew.BitwiseAnd, "BitwiseOr": ew.BitwiseOr, "BitwiseXor": ew.BitwiseXor}


@SETTINGS
@given(op=st.sampled_from(sorted(BITWISE)), dtype=st.sampled_from([np.int8, np.int32, np.uint16, np.uint64]),
       shp=broadcastable_shapes(2), seed=seeds)
def test_bitwise(op, dtype, shp, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a, b = (rng.integers(info.min, info.max, s, dtype=dtype, endpoint=True) for s in shp)
    assert_same(BITWISE[op](a, b), ort_run(op, a, b, opset=18))
    assert_same(ew.BitwiseNot(a), ort_run("BitwiseNot", a, opset=18))


@SETTINGS
@given(direction=st.sampled_from(["LEFT", "RIGHT"]), dtype=st.sampled_from([np.uint8, np.uint32, np.uint64]),
       shp=broadcastable_shapes(2), seed=seeds)
def test_bitshift_matches_ort(direction, dtype, shp, seed):
    rng = np.random.default_rng(seed)
    bits = np.dtype(dtype).itemsize * 8
    x = rng.integers(0, np.iinfo(dtype).max, shp[0], dtype=dtype, endpoint=True)
    y = rng.integers(0, bits - 1, shp[1], endpoint=True).astype(dtype)  # ORT: in-range shifts
    assert_same(ew.BitShift(x, y, direction=direction), ort_run("BitShift", x, y, direction=direction))


def test_bitshift_out_of_range_and_signed():
    x = np.array([-8, 8, -1, 5], np.int8)
    assert_same(ew.BitShift(x, np.array([1, 1, 9, -1], np.int8), direction="RIGHT"),
                np.array([-4, 4, -1, 0], np.int8))  # arithmetic shift; out of range = sign fill
    assert_same(ew.BitShift(x, np.array([1, 4, 8, 3], np.int8), direction="LEFT"),
                np.array([-16, -128, 0, 40], np.int8))  # bits past the sign bit are dropped


@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float16, np.float64]), seed=seeds,
       shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
       neg=st.sampled_from([0, 1]), pos=st.sampled_from([0, 1]))
def test_isnan_isinf(dtype, seed, shape, neg, pos):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([1.0, -2.0, np.inf, -np.inf, np.nan, 0.0]), shape).astype(dtype)
    assert_same(ew.IsNaN(x), ort_run("IsNaN", x, opset=20))
    assert_same(ew.IsInf(x, detect_negative=neg, detect_positive=pos),
                ort_run("IsInf", x, opset=20, detect_negative=neg, detect_positive=pos))


@SETTINGS
@given(shp=broadcastable_shapes(3, min_side=0), seed=seeds, dtype=st.sampled_from([np.float32, np.int64, np.uint8]))
def test_where(shp, seed, dtype):
    rng = np.random.default_rng(seed)
    c = rand(rng, shp[0], np.bool_)
    x, y = (rand(rng, s, dtype, 0, 50) for s in shp[1:])
    assert_same(ew.Where(c, x, y), ort_run("Where", c, x, y, opset=16))


# ---------------------------------------------------------------------------------------------
# Clip
# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5), seed=seeds,
       dtype=st.sampled_from([np.float32, np.int32, np.int8]), has_min=st.booleans(), has_max=st.booleans())
def test_clip_matches_ort(shape, seed, dtype, has_min, has_max):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype, -20, 20)
    lo = np.array(rng.integers(-10, 10), dtype) if has_min else None
    hi = np.array(rng.integers(-10, 10), dtype) if has_max else None  # lo > hi happens: all become hi
    assert_same(ew.Clip(x, lo, hi), ort_run("Clip", x, lo, hi, opset=13))


def test_clip_6_attributes():
    x = np.array([-5, -1, 0, 1, 5], np.float32)
    got = registry.lookup("", "Clip", 6).fn(x, min=-1.5, max=2.0)
    assert_same(got, ort_run("Clip", x, opset=6, min=-1.5, max=2.0))
    x16 = x.astype(np.float16)  # the float32 default bounds do not overflow into NaN
    assert_same(ew.Clip_6(x16), x16)


# ---------------------------------------------------------------------------------------------
# Cast, CastLike, BitCast, Identity
# ---------------------------------------------------------------------------------------------

NUMERIC = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32, np.int64, np.bool_]


@SETTINGS
@given(src=st.sampled_from(NUMERIC), dst=st.sampled_from(NUMERIC), seed=seeds,
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
def test_cast_numeric_matches_ort(src, dst, seed, shape):
    x = rand(np.random.default_rng(seed), shape, src, -100, 100)  # in range of every target
    to = onnx_type(dst)
    assert_same(ew.Cast(x, to=to), ort_run("Cast", x, opset=21, to=to))
    assert_same(ew.CastLike(x, np.zeros(1, dst)), ort_run("Cast", x, opset=21, to=to))


@SETTINGS
@given(src=st.sampled_from([np.int8, np.uint8, np.int32, np.int64, np.uint64, np.bool_]),
       dst=st.sampled_from([np.int8, np.uint16, np.int32, np.int64, np.bool_, np.float32, np.float64]),
       seed=seeds)
def test_cast_integers_over_their_whole_range(src, dst, seed):
    """The integer fast path (no np.errstate): C-style wrap-around to narrower integers, rounding
    to float32/float64, no warning, whatever the values."""
    info = np.iinfo(src) if src is not np.bool_ else None
    rng = np.random.default_rng(seed)
    if info is None:
        x = rng.integers(0, 2, 7).astype(np.bool_)
    else:
        x = np.concatenate([rng.integers(info.min, info.max, 5, dtype=src, endpoint=True),
                            np.array([info.min, info.max], src)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ew.Cast(x, to=onnx_type(dst))
    assert_same(got, x.astype(dst))


NARROW = [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
          TensorProto.FLOAT8E5M2FNUZ, TensorProto.BFLOAT16]


@SETTINGS
@given(to=st.sampled_from(NARROW), saturate=st.sampled_from([0, 1]), seed=seeds,
       shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=6))
def test_cast_narrow_floats_match_onnx_reference(to, saturate, seed, shape):
    # onnxruntime's Python API cannot return float8/bfloat16 arrays: onnx's reference is the oracle
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 6, shape)).astype(np.float32)
    x.flat[0] = rng.choice([np.inf, -np.inf, np.nan, 1e6])  # saturate: clamp; otherwise NaN/inf
    cast = one_node_model("Cast", [x], {"to": to, "saturate": saturate})  # bfloat16 ignores saturate
    want = run_reference(cast, [x])[0]
    got = ew.Cast(x, to=to, saturate=saturate)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


@SETTINGS
@given(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_]), seed=seeds,
       shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5))
def test_cast_to_and_from_string(dtype, seed, shape):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype, -1000, 1000)
    if np.dtype(dtype).kind == "f" and x.size:
        x = (x * 10.0 ** rng.integers(-8, 8, shape)).astype(dtype)
        x.flat[0] = rng.choice([np.inf, -np.inf, np.nan, 0.1])
    text = ew.Cast(x, to=TensorProto.STRING)
    assert_same(text, ort_run("Cast", x, opset=21, to=TensorProto.STRING))
    if dtype != np.bool_:
        to = onnx_type(dtype)
        # 8 significant digits survive the round trip through text (float64 loses the rest)
        assert_same(ew.Cast(text, to=to), ort_run("Cast", text, opset=21, to=to), rtol=1e-7)


def test_cast_string_special_values():
    text = np.array(["1e-5", "INF", "+inf", "-INF", "NaN", " 2.5"], dtype=object)
    got = ew.Cast(text, to=TensorProto.FLOAT)
    assert_same(got, np.array([1e-5, np.inf, np.inf, -np.inf, np.nan, 2.5], np.float32))
    assert_same(ew.Cast(np.array(["300", "-7"], dtype=object), to=TensorProto.INT8),
                np.array([44, -7], np.int8))  # out of range wraps, as a C narrowing cast


def test_bitcast_and_identity():
    x = np.array([1.0, -2.0], np.float32)
    got = ew.BitCast(x, to=TensorProto.INT32)
    assert_same(got, np.array([0x3F800000, -0x40000000], np.int32))
    assert ew.BitCast(np.array(1.0, np.float32), to=TensorProto.INT32).shape == ()
    with pytest.raises(ValueError):
        ew.BitCast(x, to=TensorProto.INT64)
    seq = [x, x]
    assert ew.Identity(x) is x and ew.Identity(seq) is seq


# ---------------------------------------------------------------------------------------------
# legacy forms, dtypes, no in-place writes
# ---------------------------------------------------------------------------------------------


def test_legacy_broadcast_axis_and_suffix():
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    add_1 = registry.lookup("", "Add", 6).fn
    b = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    assert_same(add_1(a, b, broadcast=1, axis=1), a + b[None, :, :, None])
    c = np.arange(5, dtype=np.float32)
    assert_same(add_1(a, c, broadcast=1), a + c)  # suffix matching
    assert_same(registry.lookup("", "Mul", 1).fn(a, np.array([2.0], np.float32), broadcast=1,
                                                  consumed_inputs=[0, 0]), a * 2)
    d = np.arange(2, dtype=np.float32)
    assert_same(registry.lookup("", "Sub", 5).fn(a, d, broadcast=1, axis=0), a - d[:, None, None, None])
    with pytest.raises(ValueError, match="broadcast"):
        add_1(a, c)  # broadcast=0 needs equal shapes
    assert_same(registry.lookup("", "Equal", 1).fn(a, a, broadcast=0), np.ones(a.shape, bool))


def test_legacy_consumed_inputs_versions():
    x = np.array([-1.0, 4.0], np.float32)
    for name, want in [("Neg", -x), ("Abs", np.abs(x)), ("Sqrt", np.sqrt(np.abs(x))), ("Floor", x)]:
        fn = registry.lookup("", name, 1).fn
        arg = np.abs(x) if name == "Sqrt" else x
        assert_same(fn(arg, consumed_inputs=[0]), want)
    assert registry.lookup("", "Neg", 1).fn is not registry.lookup("", "Neg", 13).fn
    assert registry.lookup("", "Sum", 6).fn(x, x, consumed_inputs=[0, 0]).tolist() == [-2.0, 8.0]


def test_dtypes_are_exact():
    h = np.array([1.5, 2.5], np.float16)
    assert ew.Sum(h, h, h).dtype == np.float16
    assert ew.Mean(h, h).dtype == np.float16
    assert ew.Mean(np.array([1, 2], np.int32), np.array([2, 5], np.int32)).tolist() == [1, 3]
    s = np.array(3.0, np.float32)  # 0-d inputs give 0-d arrays, not NumPy scalars
    for fn in (ew.Neg, ew.Exp, ew.Sqrt, ew.Round, ew.Erf, ew.IsNaN):
        assert isinstance(fn(s), np.ndarray) and fn(s).shape == ()
    assert isinstance(ew.Add(s, s), np.ndarray) and isinstance(ew.Clip(s, s, s), np.ndarray)


def test_inputs_not_modified():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    for fn in (ew.Add, ew.Sub, ew.Mul, ew.Div, ew.Pow, ew.Max, ew.Mean):
        fn(a, b)
    ew.Where(a > 0, a, b)
    ew.Clip(a, np.float32(-0.1), np.float32(0.1))
    ew.Cast(a, to=TensorProto.FLOAT8E4M3FN)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
