"""int8 kernels on the shapes the models run (batch 1 and batch 64, the loop and the BLAS
paths), bit-exact against the reference ops; the fast min/max of DynamicQuantizeLinear on
non-finite and signed-zero inputs; fuse_qdq's bias absorption."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.kernels import quant as kquant
from minirt.ops import quant as rquant

SETTINGS = settings(deadline=None, max_examples=25)


def _q(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False  # as minirt's initializers are: the kernels cache their preparations
    return a


SHAPES = [(1, 10, 32), (1, 256, 10), (4, 300, 70), (5, 16, 1), (64, 10, 32), (64, 256, 10),
          (128, 64, 192), (130, 1100, 9)]  # loop kernel, widen + BLAS, K over one exact chunk


@SETTINGS
@given(st.sampled_from(SHAPES), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(),
       st.booleans(), st.integers(0, 2**31))
def test_matmul_integer_to_float_rows(shape, ta, per_column, bias, batched, seed):
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = _q(rng, (2, M, K) if batched else (M, K), ta)
    B = _readonly(_q(rng, (K, N), np.int8))
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    fb = _readonly(rng.normal(size=N).astype(np.float32)) if bias else None
    for _ in range(2):  # a run-time a_scale / a_zero_point, as DynamicQuantizeLinear gives them
        args = (A, B, np.asarray(rng.uniform(1e-3, 1), np.float32), b_scale, _q(rng, (), ta), b_zp, fb)
        got, want = kquant.MatMulIntegerToFloat(*args), rquant.MatMulIntegerToFloat(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.sampled_from(SHAPES), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(),
       st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_qgemm_rows(shape, ta, transA, per_column, bias, float_out, seed):
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = _q(rng, (K, M) if transA else (M, K), ta)
    B = _readonly(_q(rng, (N, K), np.int8))  # transB=1, as exporters write Gemm weights
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    C = _readonly(rng.integers(-2**31, 2**31, N).astype(np.int32)) if bias else None
    y = (None, None) if float_out else (_readonly(np.float32(rng.uniform(0.01, 2))), _readonly(_q(rng, (), ta)))
    args = (A, _readonly(np.float32(0.03)), _readonly(_q(rng, (), ta)), B, b_scale, b_zp, C, *y)
    attrs = dict(alpha=1.0, transA=int(transA), transB=1)
    for _ in range(2):  # the second call runs on the cached preparation
        got, want = kquant.QGemm(*args, **attrs), rquant.QGemm(*args, **attrs)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan, -np.nan, -0.0, 0.0, 1e-45, -1e-45,
                                     3.4e38, -3.4e38])
@pytest.mark.parametrize("sign", [-1, 0, 1])
def test_dynamic_quantize_linear_edges(special, sign):
    """The integer min/max pass: non-finite values go to the reference, extremes and signed
    zeros give the reference's scale and zero point."""
    rng = np.random.default_rng(3)
    x = (np.abs(rng.normal(size=(3, 50))) * sign).astype(np.float32)
    x[1, 7] = special
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for got, want in zip(kquant.DynamicQuantizeLinear(x), rquant.DynamicQuantizeLinear(x)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
       st.floats(0.0001220703125, 10, width=32), st.sampled_from([np.uint8, np.int8]), st.integers(0, 2**31))
def test_quantize_linear_float32_zero_point_add(values, scale, dtype, seed):
    """The zero point added in float32 saturates as the reference's float64 add, huge values included."""
    rng = np.random.default_rng(seed)
    x = np.asarray(values, np.float32)
    zp = _readonly(_q(rng, (), dtype))
    s = _readonly(np.float32(scale))
    with np.errstate(over="ignore"):
        want = rquant.QuantizeLinear(x, s, zp)
        np.testing.assert_array_equal(kquant.QuantizeLinear(x, s, zp), want)
