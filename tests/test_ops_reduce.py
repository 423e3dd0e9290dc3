"""Property tests: minirt's Reduce* ops against onnxruntime on random shapes, axes and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops import reduce as R
from minirt.testing import ort_op

ALL_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
           "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
# ops whose math is defined for integers too (ORT runs them on int32/int64)
INT_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"]


def _ort(op_type, x, keepdims, opset, axes=None, noop=None):
    """onnxruntime's output of one Reduce node: ``axes`` is an input array (opset 18 form) or,
    when ``noop`` is None, an attribute list (left out when empty)."""
    attrs = {"keepdims": keepdims}
    if noop is not None:
        inputs = [x, axes]
        attrs["noop_with_empty_axes"] = noop
    else:
        inputs = [x]
        if axes:
            attrs["axes"] = list(axes)
    (y,) = ort_op(op_type, inputs, attrs, opset=opset, output_dtypes=[x.dtype])
    return y


def _tolerance(op_type, dtype):
    if dtype == np.float16:
        return dict(rtol=1e-2, atol=1e-2)  # float16 has ~3 decimal digits; sums of up to 4**4 terms
    if np.dtype(dtype).kind == "f":
        return dict(rtol=1e-5, atol=1e-6)  # float32: summation order differs from ORT's
    return dict(rtol=0, atol=0)  # integers: exact


@st.composite
def _case(draw, ops=ALL_OPS, allow_int=True):
    op_type = draw(st.sampled_from(ops))
    dtypes = [np.float32, np.float16]
    if allow_int and op_type in INT_OPS:
        dtypes += [np.int32, np.int64]
    dtype = draw(st.sampled_from(dtypes))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    rank = len(shape)
    axes = draw(st.lists(st.integers(-rank, rank - 1), unique_by=lambda a: a % rank, max_size=rank))
    keepdims = draw(st.sampled_from([0, 1]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        low = 0.1 if op_type in ("ReduceLogSum",) else -2.0  # log of a sum needs a positive sum
        x = rng.uniform(low, 2.0, size=shape).astype(dtype)
    else:
        x = rng.integers(-3, 4, size=shape).astype(dtype)
    return op_type, x, axes, keepdims


@settings(deadline=None, max_examples=60)
@given(_case(), st.sampled_from([0, 1]))
def test_axes_input_form_matches_ort(case, noop):
    op_type, x, axes, keepdims = case
    opset = 13 if op_type == "ReduceSum" else 18
    axes_arr = np.array(axes, dtype=np.int64)
    want = _ort(op_type, x, keepdims, opset, axes=axes_arr, noop=noop if not axes else 0)
    got = getattr(R, op_type)(x, axes_arr, keepdims=keepdims, noop_with_empty_axes=noop if not axes else 0)
    assert isinstance(got, np.ndarray) and got.dtype == x.dtype
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **_tolerance(op_type, x.dtype))


@settings(deadline=None, max_examples=40)
@given(_case())
def test_axes_attribute_form_matches_ort(case):
    op_type, x, axes, keepdims = case
    want = _ort(op_type, x, keepdims, 11, axes=axes)
    got = getattr(R, op_type + "_1")(x, axes=axes or None, keepdims=keepdims)
    assert got.dtype == x.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **_tolerance(op_type, x.dtype))


@settings(deadline=None, max_examples=20)
@given(_case(ops=["ReduceSum", "ReduceMax", "ReduceMean", "ReduceLogSumExp"], allow_int=False))
def test_non_contiguous_input(case):
    op_type, x, axes, keepdims = case
    view = np.repeat(x, 2, axis=-1)[..., ::2]  # same values, strided view
    assert not view.flags.c_contiguous or view.size <= 1
    fn = getattr(R, op_type)
    axes_arr = np.array(axes, dtype=np.int64)
    np.testing.assert_array_equal(fn(view, axes_arr, keepdims=keepdims), fn(x, axes_arr, keepdims=keepdims))


def test_empty_set_gives_identity():
    x = np.zeros((2, 0, 3), dtype=np.float32)
    axes = np.array([1], dtype=np.int64)
    assert np.all(R.ReduceSum(x, axes) == 0) and R.ReduceSum(x, axes).shape == (2, 1, 3)
    assert np.all(R.ReduceProd(x, axes) == 1)
    assert np.all(R.ReduceMax(x, axes) == -np.inf)
    assert np.all(R.ReduceMin(x, axes) == np.inf)
    assert np.all(R.ReduceLogSum(x, axes) == -np.inf)
    assert np.all(R.ReduceLogSumExp(x, axes) == -np.inf)
    xi = np.zeros((2, 0), dtype=np.int32)
    assert np.all(R.ReduceMax(xi, np.array([1])) == np.iinfo(np.int32).min)
    assert R.ReduceMax(xi, np.array([1])).dtype == np.int32


def test_noop_with_empty_axes_returns_input_values():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    empty = np.array([], dtype=np.int64)
    np.testing.assert_array_equal(R.ReduceSum(x, empty, noop_with_empty_axes=1), x)
    np.testing.assert_array_equal(R.ReduceMax(x, None, noop_with_empty_axes=1), x)
    np.testing.assert_array_equal(R.ReduceSumSquare(x, empty, noop_with_empty_axes=1), x * x)
    # without noop, empty axes reduce everything
    assert R.ReduceSum(x, empty, keepdims=0).shape == ()
    assert R.ReduceSum(x, empty, keepdims=0) == x.sum()


def test_log_sum_exp_is_stable_for_large_values():
    x = np.array([[1000.0, 1000.0], [-1000.0, -np.inf]], dtype=np.float32)
    got = R.ReduceLogSumExp(x, np.array([1]), keepdims=0)
    np.testing.assert_allclose(got, [1000 + np.log(2), -1000], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64])
def test_sum_keeps_dtype_without_scalar_results(dtype):
    x = np.ones((3, 4), dtype=dtype)
    y = R.ReduceSum(x, None, keepdims=0)
    assert isinstance(y, np.ndarray) and y.dtype == dtype and y == 12


def test_float16_sum_accumulates_in_float32():
    x = np.full(4096, 1.0, dtype=np.float16)  # float16 can't count past 2048 by ones
    assert R.ReduceSum(x, None, keepdims=0) == 4096
