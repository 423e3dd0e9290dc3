"""Activation ops against onnxruntime: one-node models, random shapes and attributes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minirt import registry
from minirt.ops import activation as act
from minirt.testing import assert_same, ort_op

SETTINGS = settings(deadline=None, max_examples=25)
seeds = st.integers(0, 2**31 - 1)
any_shape = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


def ort_run(op_type, *args, opset=22, domain="", **attrs):
    """The output of one ONNX node, run by onnxruntime (None = absent optional input)."""
    return ort_op(op_type, args, attrs, opset=opset, domain=domain)[0]


def rand(seed, shape, dtype=np.float32, scale=4.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


alphas = st.floats(0.05, 3.0).map(lambda a: round(a, 3))

# op -> (function, opset, attribute strategies)
ACTIVATIONS = {
    "Relu": (act.Relu, 14, {}),
    "LeakyRelu": (act.LeakyRelu, 16, {"alpha": alphas}),
    "Elu": (act.Elu, 22, {"alpha": alphas}),
    "Selu": (act.Selu, 22, {"alpha": alphas, "gamma": alphas}),
    "Celu": (act.Celu, 12, {"alpha": alphas}),
    "Sigmoid": (act.Sigmoid, 13, {}),
    "HardSigmoid": (act.HardSigmoid, 22, {"alpha": alphas, "beta": st.floats(-1, 1).map(lambda b: round(b, 3))}),
    "HardSwish": (act.HardSwish, 22, {}),
    "Tanh": (act.Tanh, 13, {}),
    "Softplus": (act.Softplus, 22, {}),
    "Softsign": (act.Softsign, 22, {}),
    "ThresholdedRelu": (act.ThresholdedRelu, 22, {"alpha": alphas}),
    "Shrink": (act.Shrink, 9, {"bias": alphas, "lambd": alphas}),
    "Mish": (act.Mish, 22, {}),
    "Swish": (act.Swish, 24, {"alpha": alphas}),
    "Gelu": (act.Gelu, 20, {"approximate": st.sampled_from(["none", "tanh"])}),
}


@SETTINGS
@given(op=st.sampled_from(sorted(ACTIVATIONS)), shape=any_shape, seed=seeds, data=st.data())
def test_activation_float32_matches_ort(op, shape, seed, data):
    fn, opset, attr_strategies = ACTIVATIONS[op]
    attrs = {k: data.draw(s, label=k) for k, s in attr_strategies.items()}
    x = rand(seed, shape)
    # exp/tanh/erf: libm (and float64 erf) vs ORT's float32 vectorised approximations, a few ulp
    assert_same(fn(x, **attrs), ort_run(op, x, opset=opset, **attrs), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(op=st.sampled_from(["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "HardSigmoid", "Elu"]),
       shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), seed=seeds)
def test_activation_float16_keeps_dtype(op, shape, seed):
    fn, opset, _ = ACTIVATIONS[op]
    x = rand(seed, shape, np.float16)
    # float16 has a 10-bit mantissa: ORT computes some of these in float32, we in float16 (~2 ulp)
    assert_same(fn(x), ort_run(op, x, opset=opset), rtol=4e-3, atol=2e-3)


@SETTINGS
@given(shape=any_shape, seed=seeds, dtype=st.sampled_from([np.int8, np.int32]))
def test_relu_integers(shape, seed, dtype):
    x = rand(seed, shape, scale=50).astype(dtype)
    assert_same(act.Relu(x), ort_run("Relu", x, opset=14), rtol=0, atol=0)  # integers: exact


@SETTINGS
@given(data=st.data(), seed=seeds)
def test_prelu_slope_broadcasts(data, seed):
    x_shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), label="x")
    # unidirectional broadcasting: slope's shape is a suffix of x's, any dim possibly 1
    k = data.draw(st.integers(0, len(x_shape)), label="slope rank")
    slope_shape = tuple(d if data.draw(st.booleans()) else 1 for d in x_shape[len(x_shape) - k:])
    x = rand(seed, x_shape)
    slope = rand(seed + 1, slope_shape, scale=0.5)
    assert_same(act.PRelu(x, slope), ort_run("PRelu", x, slope, opset=16), rtol=0, atol=0)  # one product


def test_prelu_1_per_channel_slope():
    x = rand(0, (2, 3, 4, 5))
    slope = np.array([0.1, 0.2, 0.3], np.float32)  # [C]: opset-6 channel-wise slope
    got = registry.lookup("", "PRelu", 6).fn(x, slope)
    assert_same(got, np.where(x >= 0, x, x * slope[:, None, None]), rtol=0, atol=0)


def test_legacy_consumed_inputs_versions():
    x = rand(1, (3, 4))
    for name in ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "HardSigmoid"]:
        old = registry.lookup("", name, 1).fn
        new = registry.lookup("", name, 22).fn
        assert old is not new
        np.testing.assert_array_equal(old(x, consumed_inputs=[0]), new(x))


def test_sigmoid_and_softplus_do_not_overflow():
    x = np.array([-1000, -90, 0, 90, 1000], np.float32)
    with np.errstate(over="raise", invalid="raise"):  # underflow to 0 is the right answer
        s = act.Sigmoid(x)
        sp = act.Softplus(x)
    np.testing.assert_allclose(s, [0, 0, 0.5, 1, 1], atol=1e-30)  # exact limits
    np.testing.assert_allclose(sp, [0, 0, np.log(2), 90, 1000], rtol=1e-6, atol=1e-38)  # e^-90: subnormal


def test_zero_d_and_empty():
    for fn in (act.Relu, act.Sigmoid, act.Tanh, act.Gelu, act.Softsign, act.HardSwish, act.Mish):
        out = fn(np.array(0.5, np.float32))
        assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
        assert fn(np.zeros((0, 3), np.float16)).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# com.microsoft contrib activations
# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), seed=seeds, with_bias=st.booleans())
def test_contrib_gelus_match_ort(shape, seed, with_bias):
    x = rand(seed, shape)
    bias = rand(seed + 1, shape[-1:])  # a bias over the last axis
    ms = "com.microsoft"
    # float64 erf/tanh vs ORT's float32 approximations
    tol = dict(rtol=1e-5, atol=1e-6)
    assert_same(act.Gelu_ms(x), ort_run("Gelu", x, domain=ms), **tol)
    assert_same(act.BiasGelu(x, bias), ort_run("BiasGelu", x, bias, domain=ms), **tol)
    b = bias if with_bias else None
    assert_same(act.FastGelu(x, b), ort_run("FastGelu", x, b, domain=ms), **tol)
    assert_same(act.QuickGelu(x, alpha=1.5), ort_run("QuickGelu", x, domain=ms, alpha=1.5), **tol)
    assert_same(act.QuickGelu(x), ort_run("QuickGelu", x, domain=ms), **tol)


def test_contrib_ops_are_registered_in_their_domain():
    for name in ["Gelu", "FastGelu", "BiasGelu", "QuickGelu"]:
        assert registry.lookup("com.microsoft", name, 1) is not None
    assert registry.lookup("com.microsoft", "Gelu", 1).fn is act.Gelu_ms
    assert registry.lookup("", "Gelu", 20).fn is act.Gelu
