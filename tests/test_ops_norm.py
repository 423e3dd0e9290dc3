"""Property tests: minirt's softmax family, normalizations and losses against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops import norm as N
from minirt.testing import assert_same, ort_op


def _ort(op_type, attrs, inputs, n_out=1, opset=18, domain=""):
    """Every output of one ONNX node run by onnxruntime; outputs typed as the first input."""
    out_types = [inputs[0].dtype] * n_out
    if op_type == "LayerNormalization":
        out_types = [inputs[0].dtype, np.float32, np.float32]  # Mean, InvStdDev: stash_type
    return ort_op(op_type, inputs, attrs, opset=opset, domain=domain, n_outputs=n_out, output_dtypes=out_types)


def _close(got, want, dtype):
    if dtype == np.float16:
        tol = dict(rtol=5e-3, atol=5e-3)  # float16 ulp is ~1e-3 at 1; ORT rounds at other steps
    else:
        tol = dict(rtol=1e-5, atol=1e-5)  # float32: reduction order differs from ORT's
    assert_same(got, want, **tol)  # same dtype and shape too


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
float_dtypes = st.sampled_from([np.float32, np.float16])


def _data(seed, shape, dtype, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@settings(deadline=None, max_examples=40)
@given(st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]), shapes, float_dtypes,
       st.integers(0, 2**16), st.data())
def test_softmax_family_opset13(op_type, shape, dtype, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _data(seed, shape, dtype)
    (want,) = _ort(op_type, {"axis": axis}, [x], opset=13)
    got = getattr(N, op_type)(x, axis=axis)
    if op_type == "Hardmax":
        np.testing.assert_array_equal(got, want)  # exact: argmax then one-hot
    else:
        _close(got, want, dtype)


@settings(deadline=None, max_examples=30)
@given(st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]), shapes, st.integers(0, 2**16), st.data())
def test_softmax_family_opset11_coerces_to_2d(op_type, shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _data(seed, shape, np.float32)
    (want,) = _ort(op_type, {"axis": axis}, [x], opset=11)
    got = getattr(N, op_type + "_1")(x, axis=axis)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32 rounding only


def test_softmax_is_stable_and_does_not_modify_input():
    x = np.array([[1000.0, 1001.0, -np.inf]], dtype=np.float32)
    before = x.copy()
    np.testing.assert_allclose(N.Softmax(x), [[1 / (1 + np.e), np.e / (1 + np.e), 0]], rtol=1e-6)
    assert np.isfinite(N.LogSoftmax(x)[0, :2]).all()
    np.testing.assert_array_equal(x, before)


@settings(deadline=None, max_examples=30)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), float_dtypes,
       st.integers(0, 2**16), st.data(), st.booleans())
def test_layer_normalization(shape, dtype, seed, data, with_bias):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _data(seed, shape, dtype)
    norm_shape = shape[axis:] if axis >= 0 else shape[len(shape) + axis:]
    scale = _data(seed + 1, norm_shape, dtype, 1.0)
    bias = _data(seed + 2, norm_shape, dtype, 1.0) if with_bias else None
    want = _ort("LayerNormalization", {"axis": axis, "epsilon": 1e-5}, [x, scale, bias], n_out=3, opset=17)
    got = N.LayerNormalization(x, scale, bias, axis=axis, epsilon=1e-5)
    _close(got[0], want[0], dtype)
    for g, w in zip(got[1:], want[1:]):  # Mean, InvStdDev in float32 (stash_type=1)
        # 1/std blows up when a row is constant; relative tolerance covers that
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 3), st.integers(1, 6), st.lists(st.integers(1, 4), max_size=2),
       st.integers(0, 2**16), float_dtypes)
def test_batch_normalization_inference(n, c, spatial, seed, dtype):
    x = _data(seed, (n, c, *spatial), dtype)
    rng = np.random.default_rng(seed)
    scale, b, mean = (rng.standard_normal(c).astype(dtype) for _ in range(3))
    var = rng.uniform(0.5, 2, c).astype(dtype)
    (want,) = _ort("BatchNormalization", {"epsilon": 1e-3}, [x, scale, b, mean, var], opset=15)
    _close(N.BatchNormalization(x, scale, b, mean, var, epsilon=1e-3), want, dtype)


def test_batch_normalization_training_outputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    scale, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    y, rm, rv = N.BatchNormalization(x, scale, b, mean, var, momentum=0.9, training_mode=1)
    batch_mean, batch_var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(rm, 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * batch_var, rtol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-5)  # normalized with batch statistics


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 3), st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1, max_size=2),
       st.integers(0, 2**16))
def test_instance_normalization(n, c, spatial, seed):
    x = _data(seed, (n, c, *spatial), np.float32)
    rng = np.random.default_rng(seed)
    scale, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    (want,) = _ort("InstanceNormalization", {"epsilon": 1e-5}, [x, scale, b], opset=13)
    # ORT's float32 variance (E[x^2] - E[x]^2) loses ~1e-4 on tiny or near-constant planes
    np.testing.assert_allclose(N.InstanceNormalization(x, scale, b), want, rtol=1e-3, atol=1e-3)


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 2), st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2), (6, 3)]),
       st.lists(st.integers(1, 4), min_size=1, max_size=2), st.integers(0, 2**16))
def test_group_normalization(n, c_groups, spatial, seed):
    c, groups = c_groups
    x = _data(seed, (n, c, *spatial), np.float32)
    rng = np.random.default_rng(seed)
    scale, bias = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    (want,) = _ort("GroupNormalization", {"num_groups": groups, "epsilon": 1e-5}, [x, scale, bias], opset=21)
    got = N.GroupNormalization(x, scale, bias, num_groups=groups)
    # ORT's float32 variance loses ~1e-4 on small groups (checked against a float64 run)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


@settings(deadline=None, max_examples=20)
@given(st.integers(1, 2), st.integers(1, 6), st.sampled_from([1, 3, 5]), st.integers(0, 2**16))
def test_lrn(n, c, size, seed):  # ORT only takes odd sizes; the node tests cover the spec's even ones
    x = _data(seed, (n, c, 3, 2), np.float32)
    attrs = {"size": size, "alpha": 1e-2, "beta": 0.75, "bias": 1.0}
    (want,) = _ort("LRN", attrs, [x], opset=13)
    _close(N.LRN(x, **attrs), want, np.float32)


@settings(deadline=None, max_examples=20)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.sampled_from([1, 2]),
       st.integers(0, 2**16), st.data())
def test_lp_normalization(shape, p, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _data(seed, shape, np.float32)
    (want,) = _ort("LpNormalization", {"axis": axis, "p": p}, [x], opset=13)
    _close(N.LpNormalization(x, axis=axis, p=p), want, np.float32)


@settings(deadline=None, max_examples=15)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 4), st.integers(0, 2**16))
def test_mean_variance_normalization(n, c, h, seed):
    x = _data(seed, (n, c, h, 3), np.float32)
    (want,) = _ort("MeanVarianceNormalization", {}, [x], opset=13)
    np.testing.assert_allclose(N.MeanVarianceNormalization(x), want, rtol=1e-4, atol=1e-5)  # E[x^2]-E[x]^2 cancels


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 4), st.integers(2, 5), st.lists(st.integers(1, 3), max_size=2),
       st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_softmax_cross_entropy_and_nll(n, c, extra, reduction, weighted, ignore, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n, c, *extra)).astype(np.float32)
    labels = rng.integers(0, c, size=(n, *extra)).astype(np.int64)
    labels.flat[0] = 0  # at least one label is not ignored
    attrs = {"reduction": reduction}
    if ignore:
        attrs["ignore_index"] = c - 1
        labels.flat[0] = 0 if c > 1 else labels.flat[0]
    weights = rng.uniform(0.5, 2, c).astype(np.float32) if weighted else None
    want = _ort("SoftmaxCrossEntropyLoss", attrs, [scores, labels, weights], n_out=2, opset=13)
    loss, log_prob = N.SoftmaxCrossEntropyLoss(scores, labels, weights, **attrs)
    np.testing.assert_allclose(log_prob, want[1], rtol=1e-5, atol=1e-6)  # float32 rounding only
    np.testing.assert_allclose(loss, want[0], rtol=1e-5, atol=1e-6)
    assert loss.shape == want[0].shape and loss.dtype == np.float32
    (nll,) = _ort("NegativeLogLikelihoodLoss", attrs, [log_prob, labels, weights], opset=13)
    np.testing.assert_allclose(N.NegativeLogLikelihoodLoss(log_prob, labels, weights, **attrs), nll,
                               rtol=1e-5, atol=1e-6)  # float32 rounding only


@settings(deadline=None, max_examples=20)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 8), st.booleans(), st.integers(0, 2**16))
def test_skip_layer_normalization(b, s, h, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, skip = (rng.standard_normal((b, s, h)).astype(np.float32) for _ in range(2))
    gamma, beta = rng.standard_normal(h).astype(np.float32), rng.standard_normal(h).astype(np.float32)
    bias = rng.standard_normal(h).astype(np.float32) if with_bias else None
    want = _ort("SkipLayerNormalization", {"epsilon": 1e-5}, [x, skip, gamma, beta, bias],
                n_out=4, domain="com.microsoft")
    got = N.SkipLayerNormalization(x, skip, gamma, beta, bias, epsilon=1e-5)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)  # float32, different reduction order
    np.testing.assert_allclose(got[3], want[3], rtol=1e-6)  # the plain sum input + skip + bias


def test_rms_normalization_matches_definition():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float16)
    scale = np.array([1.0, 2.0], dtype=np.float16)
    y = N.RMSNormalization(x, scale)
    rms = np.sqrt((9 + 16) / 2)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y[0], [3 / rms, 8 / rms], rtol=1e-3)  # float16 output
    assert np.all(y[1] == 0)  # epsilon keeps an all-zero row finite


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_float16_softmax_keeps_dtype(op_type):
    x = np.linspace(-4, 4, 12, dtype=np.float16).reshape(3, 4)
    assert getattr(N, op_type)(x).dtype == np.float16
