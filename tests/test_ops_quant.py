"""Quantization ops against onnxruntime: one-node models, random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from minirt.ops import quant
from minirt.testing import ort_op

SETTINGS = settings(deadline=None, max_examples=25)


def ort_run(op_type, args, *, domain="", opset=21, n_out=1, **attrs):
    """Every output of one ONNX node, run by onnxruntime (None = absent optional input)."""
    return ort_op(op_type, args, attrs, domain=domain, opset=opset, n_outputs=n_out)


def qtensor(dtype):
    """Random quantized arrays of a given shape strategy."""
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    return lambda shape, seed: np.random.default_rng(seed).integers(lo, hi + 1, shape).astype(dtype)


seeds = st.integers(0, 2**31 - 1)
qtypes = st.sampled_from([np.uint8, np.int8])


def _scale(rng, n=None):
    return np.float32(rng.uniform(0.001, 0.1)) if n is None else rng.uniform(0.001, 0.1, n).astype(np.float32)


@SETTINGS
@given(seeds, qtypes, st.booleans())
def test_quantize_linear_matches_ort(seed, dtype, per_axis):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 3, 4)) * 5).astype(np.float32)
    x[0, 0, :2] = [0.25, 0.75]  # exact ties: round half to even must agree
    scale = _scale(rng, 3) if per_axis else np.array(0.5, np.float32)
    zp = rng.integers(0, 10, scale.shape).astype(dtype)
    got = quant.QuantizeLinear(x, scale, zp, axis=1)
    (want,) = ort_run("QuantizeLinear", [x, scale, zp], axis=1)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # quantization is exact: same rounding, same clip


@SETTINGS
@given(seeds, qtypes, st.booleans())
def test_dequantize_linear_matches_ort(seed, dtype, per_axis):
    rng = np.random.default_rng(seed)
    x = qtensor(dtype)((2, 3, 4), seed)
    scale = _scale(rng, 3) if per_axis else _scale(rng)
    zp = rng.integers(0, 10, np.shape(scale)).astype(dtype)
    got = quant.DequantizeLinear(x, scale, zp, axis=1)
    (want,) = ort_run("DequantizeLinear", [x, scale, zp], axis=1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)  # one float32 multiply: ulp-level


def test_quantize_blocked_int4_roundtrip():
    x = np.arange(-8, 8, dtype=np.float32).reshape(2, 8)
    scale = np.array([[1.0, 2.0], [0.25, 1.0]], np.float32)  # block_size 4 along axis 1
    q = quant.QuantizeLinear(x, scale, axis=1, block_size=4, output_dtype=TensorProto.INT4)
    assert str(q.dtype) == "int4"
    back = quant.DequantizeLinear(q, scale, axis=1, block_size=4)
    # block 0 of row 0 has scale 1: exact; row 1 block 0 = [0, 1, 2, 3] / 0.25 saturates at 7
    np.testing.assert_array_equal(back[0, :4], x[0, :4])
    np.testing.assert_array_equal(back[1, :4], [0.0, 1.0, 1.75, 1.75])
    # row 0 block 1 = [-4, -3, -2, -1] / 2 = [-2, -1.5, -1, -0.5]: ties round to even
    np.testing.assert_array_equal(q[0, 4:].astype(int), [-2, -2, -1, 0])


@SETTINGS
@given(seeds)
def test_dynamic_quantize_linear_matches_ort(seed):
    x = (np.random.default_rng(seed).standard_normal((3, 5)) * 3).astype(np.float32)
    got = quant.DynamicQuantizeLinear(x)
    want = ort_run("DynamicQuantizeLinear", [x], n_out=3)
    np.testing.assert_array_equal(got[0], want[0])  # same scale -> same integers
    np.testing.assert_allclose(got[1], want[1], rtol=1e-7)  # scale: one float32 division
    np.testing.assert_array_equal(got[2], want[2])


@SETTINGS
@given(seeds, qtypes, qtypes)
def test_matmul_integer_matches_ort_without_wrapping(seed, ta, tb):
    rng = np.random.default_rng(seed)
    a, b = qtensor(ta)((4, 64), seed), qtensor(tb)((64, 3), seed + 1)
    a_zp, b_zp = np.array(rng.integers(0, 5), ta), np.array(rng.integers(0, 5), tb)
    got = quant.MatMulInteger(a, b, a_zp, b_zp)
    (want,) = ort_run("MatMulInteger", [a, b, a_zp, b_zp], opset=13)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)  # integer arithmetic: exact
    # the naive int8 product wraps; ours must not
    exact = (a.astype(np.int64) - a_zp) @ (b.astype(np.int64) - b_zp)
    np.testing.assert_array_equal(got, exact)


@SETTINGS
@given(seeds, st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.booleans())
def test_conv_integer_matches_ort(seed, stride, group, pad):
    rng = np.random.default_rng(seed)
    x = qtensor(np.uint8)((1, 4, 7, 6), seed)
    w = qtensor(np.uint8)((4, 4 // group, 3, 3), seed + 1)
    x_zp = np.array(rng.integers(0, 255), np.uint8)
    attrs = dict(strides=[stride, stride], group=group, pads=[1, 1, 1, 1] if pad else [0, 0, 0, 0])
    got = quant.ConvInteger(x, w, x_zp, None, **attrs)
    (want,) = ort_run("ConvInteger", [x, w, x_zp, None], opset=13, **attrs)
    np.testing.assert_array_equal(got, want)  # integer arithmetic: exact


@SETTINGS
@given(seeds, st.booleans())
def test_qlinear_conv_matches_ort(seed, per_channel):
    rng = np.random.default_rng(seed)
    x = qtensor(np.uint8)((1, 3, 6, 6), seed)
    w = qtensor(np.int8)((4, 3, 3, 3), seed + 1)
    x_scale, y_scale = _scale(rng), np.float32(rng.uniform(1, 4))
    w_scale = _scale(rng, 4) if per_channel else _scale(rng)
    w_zp = np.zeros(np.shape(w_scale), np.int8)
    x_zp, y_zp = np.array(128, np.uint8), np.array(rng.integers(0, 255), np.uint8)
    bias = rng.integers(-1000, 1000, 4).astype(np.int32)
    args = [x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias]
    got = quant.QLinearConv(*args, pads=[1, 1, 1, 1])
    (want,) = ort_run("QLinearConv", args, opset=13, pads=[1, 1, 1, 1])
    # same float32 requantization; ORT's fixed-point rounding may differ by one step at ties
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got == want).mean() > 0.95


@SETTINGS
@given(seeds, qtypes)
def test_qlinear_matmul_matches_ort(seed, dtype):
    rng = np.random.default_rng(seed)
    a, b = qtensor(dtype)((2, 5, 16), seed), qtensor(dtype)((16, 3), seed + 1)
    zp = np.array(rng.integers(0, 10), dtype)
    args = [a, _scale(rng), zp, b, _scale(rng), zp, np.float32(rng.uniform(0.01, 0.1)), zp]
    got = quant.QLinearMatMul(*args)
    (want,) = ort_run("QLinearMatMul", args)
    assert got.dtype == dtype
    # float32 requantization, same formula: at most one step apart where ORT rounds a tie differently
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# ---------------------------------------------------------------------------- com.microsoft


def _close_q(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    # dequantize -> float op -> quantize: ORT's table / fixed-point paths may land one step off
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@SETTINGS
@given(seeds, qtypes, st.sampled_from(["QLinearAdd", "QLinearMul"]))
def test_qlinear_binary_matches_ort(seed, dtype, op_type):
    rng = np.random.default_rng(seed)
    a, b = qtensor(dtype)((2, 3, 4), seed), qtensor(dtype)((3, 4), seed + 1)
    zp = np.array(rng.integers(0, 10), dtype)
    c_scale = np.float32(rng.uniform(0.01, 0.05) if op_type == "QLinearAdd" else rng.uniform(0.01, 0.1))
    args = [a, _scale(rng), zp, b, _scale(rng), zp, c_scale, zp]
    got = getattr(quant, op_type)(*args)
    (want,) = ort_run(op_type, args, domain="com.microsoft")
    _close_q(got, want)


@SETTINGS
@given(seeds, qtypes)
def test_qlinear_sigmoid_and_leaky_relu_match_ort(seed, dtype):
    rng = np.random.default_rng(seed)
    x = qtensor(dtype)((3, 7), seed)
    zp = np.array(rng.integers(0, 10), dtype)
    args = [x, _scale(rng), zp, np.float32(1 / 255), zp]
    _close_q(quant.QLinearSigmoid(*args), ort_run("QLinearSigmoid", args, domain="com.microsoft")[0])
    args[3] = _scale(rng)
    _close_q(quant.QLinearLeakyRelu(*args, alpha=0.2),
             ort_run("QLinearLeakyRelu", args, domain="com.microsoft", alpha=0.2)[0])


@SETTINGS
@given(seeds, st.booleans())
def test_qlinear_pools_match_ort(seed, include_pad):
    rng = np.random.default_rng(seed)
    x = qtensor(np.uint8)((1, 3, 7, 7), seed)
    zp = np.array(rng.integers(0, 10), np.uint8)
    args = [x, _scale(rng), zp, _scale(rng), zp]
    _close_q(quant.QLinearGlobalAveragePool(*args),
             ort_run("QLinearGlobalAveragePool", args, domain="com.microsoft", channels_last=0)[0])
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=int(include_pad))
    _close_q(quant.QLinearAveragePool(*args, **attrs),
             ort_run("QLinearAveragePool", args, domain="com.microsoft", **attrs)[0])


@SETTINGS
@given(seeds)
def test_qlinear_concat_matches_ort(seed):
    rng = np.random.default_rng(seed)
    a, b = qtensor(np.uint8)((2, 3), seed), qtensor(np.uint8)((2, 5), seed + 1)
    zp = np.array(rng.integers(0, 10), np.uint8)
    args = [_scale(rng), zp, a, _scale(rng), zp, b, _scale(rng), zp]
    got = quant.QLinearConcat(*args, axis=1)
    _close_q(got, ort_run("QLinearConcat", args, domain="com.microsoft", axis=1)[0])


@SETTINGS
@given(seeds, st.booleans(), st.booleans())
def test_qgemm_matches_ort(seed, quantized_out, trans_b):
    rng = np.random.default_rng(seed)
    a, b = qtensor(np.uint8)((4, 8), seed), qtensor(np.int8)((5, 8) if trans_b else (8, 5), seed + 1)
    c = rng.integers(-500, 500, 5).astype(np.int32)
    a_zp, b_zp = np.array(rng.integers(0, 255), np.uint8), np.array(0, np.int8)
    y = [np.float32(rng.uniform(0.1, 1)), np.array(128, np.uint8)] if quantized_out else []
    args = [a, _scale(rng), a_zp, b, _scale(rng), b_zp, c, *y]
    got = quant.QGemm(*args, transB=int(trans_b), alpha=0.5)
    (want,) = ort_run("QGemm", args, domain="com.microsoft", transB=int(trans_b), alpha=0.5)
    if quantized_out:
        _close_q(got, want)
    else:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32 scaling of exact ints


@SETTINGS
@given(seeds)
def test_matmul_integer_to_float_and_dynamic_quantize_matmul_match_ort(seed):
    rng = np.random.default_rng(seed)
    a, b = qtensor(np.uint8)((3, 16), seed), qtensor(np.int8)((16, 4), seed + 1)
    bias = rng.standard_normal(4).astype(np.float32)
    args = [a, b, _scale(rng), _scale(rng, 4), np.array(3, np.uint8), np.zeros(4, np.int8), bias]
    got = quant.MatMulIntegerToFloat(*args)
    (want,) = ort_run("MatMulIntegerToFloat", args, domain="com.microsoft")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 scaling of exact ints
    x = rng.standard_normal((3, 16)).astype(np.float32)
    args = [x, b, _scale(rng, 4), np.zeros(4, np.int8), bias]
    got = quant.DynamicQuantizeMatMul(*args)
    (want,) = ort_run("DynamicQuantizeMatMul", args, domain="com.microsoft")
    # A is quantized on the fly; a tie rounded differently moves a value by one step of A's scale
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0.05)
    # and it approximates the float matmul: A's rounding error is at most half a step per element
    w = b * args[2]
    a_step = (max(x.max(), 0) - min(x.min(), 0)) / 255
    bound = 0.5 * a_step * np.abs(w).sum(axis=0) + 1e-4
    assert np.all(np.abs(got - (x @ w + bias)) <= bound)


def test_int8_matmul_would_wrap_in_plain_numpy():
    a = np.full((1, 4), 127, np.int8)
    assert (a @ a.T)[0, 0] != 4 * 127 * 127  # the bug these ops avoid
    assert quant.MatMulInteger(a, a.T)[0, 0] == 4 * 127 * 127


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
