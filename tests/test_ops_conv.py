"""Conv, ConvTranspose, DeformConv, Col2Im against onnxruntime: one-node models, random configurations."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minirt.ops.conv import CausalConvWithState, Col2Im, Conv, ConvTranspose, DeformConv
from minirt.testing import ort_op

SETTINGS = settings(deadline=None, max_examples=25)


def ort_run(op_type, args, *, opset=22, n_out=1, **attrs):
    """Every output of one ONNX node, run by onnxruntime (None = absent optional input)."""
    return ort_op(op_type, args, attrs, opset=opset, n_outputs=n_out)


def _rand(rng, shape, dtype=np.float32):
    return rng.uniform(-1, 1, shape).astype(dtype)


@st.composite
def conv_configs(draw):
    nd = draw(st.integers(1, 3))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    max_d = 1 if auto_pad.startswith("SAME") else 2  # ORT refuses dilations with SAME_*
    dilations = [draw(st.integers(1, max_d)) for _ in range(nd)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    spatial = [draw(st.integers(e, e + 5)) for e in extent]
    pads = [draw(st.integers(0, e - 1)) for e in extent] * 2
    group = draw(st.sampled_from([1, 2, "depthwise"]))
    cg = draw(st.integers(1, 3))
    C = cg * (2 if group == 2 else 1) if group != "depthwise" else draw(st.integers(1, 4))
    G = C if group == "depthwise" else group
    M = G * draw(st.integers(1, 3))
    return dict(nd=nd, kernel=kernel, strides=strides, dilations=dilations, spatial=spatial,
                pads=pads, auto_pad=auto_pad, G=G, C=C, M=M, N=draw(st.integers(1, 2)),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@SETTINGS
@given(conv_configs())
def test_conv_matches_onnxruntime(cfg):
    rng = np.random.default_rng(cfg["seed"])
    X = _rand(rng, [cfg["N"], cfg["C"], *cfg["spatial"]])
    W = _rand(rng, [cfg["M"], cfg["C"] // cfg["G"], *cfg["kernel"]])
    B = _rand(rng, [cfg["M"]]) if cfg["bias"] else None
    attrs = dict(strides=cfg["strides"], dilations=cfg["dilations"], group=cfg["G"], auto_pad=cfg["auto_pad"])
    if cfg["auto_pad"] == "NOTSET":
        attrs["pads"] = cfg["pads"]
    X0, W0 = X.copy(), W.copy()
    got = Conv(X, W, B, **attrs)
    (want,) = ort_run("Conv", [X, W, B], **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # float32 sums of at most 3*27 products in [-1, 1], added in a different order than ORT's
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.array_equal(X, X0) and np.array_equal(W, W0)  # inputs untouched


def test_conv_kernel_shape_attribute_and_float16():
    rng = np.random.default_rng(0)
    X = _rand(rng, [1, 3, 9, 9], np.float16)
    W = _rand(rng, [4, 3, 3, 3], np.float16)
    got = Conv(X, W, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    (want,) = ort_run("Conv", [X, W], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    assert got.dtype == np.float16 and got.shape == (1, 4, 9, 9)
    # float16 output: 27-term sums of magnitude up to ~10 carry a few float16 ulps (1e-3 relative)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=5e-3, atol=5e-3)


def test_conv_size_one_everything():
    X = np.array([[[[2.0]]]], dtype=np.float32)
    W = np.array([[[[3.0]]]], dtype=np.float32)
    B = np.array([1.0], dtype=np.float32)
    np.testing.assert_array_equal(Conv(X, W, B), np.array([[[[7.0]]]], dtype=np.float32))


@st.composite
def conv_transpose_configs(draw):
    nd = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    dilations = [draw(st.integers(1, 2)) for _ in range(nd)]
    spatial = [draw(st.integers(1, 4)) for _ in range(nd)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = [draw(st.integers(0, e - 1)) for e in extent] * 2
    output_padding = [draw(st.integers(0, s - 1)) for s in strides]  # ORT wants it below the stride
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "SAME_UPPER", "SAME_LOWER"]))
    G = draw(st.sampled_from([1, 2]))
    return dict(nd=nd, kernel=kernel, strides=strides, dilations=dilations, spatial=spatial,
                pads=pads, output_padding=output_padding, mode=mode, G=G,
                C=G * draw(st.integers(1, 3)), Mg=draw(st.integers(1, 3)), N=draw(st.integers(1, 2)),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)),
                grow=[draw(st.integers(0, 2)) for _ in range(nd)])


@SETTINGS
@given(conv_transpose_configs())
def test_conv_transpose_matches_onnxruntime(cfg):
    rng = np.random.default_rng(cfg["seed"])
    X = _rand(rng, [cfg["N"], cfg["C"], *cfg["spatial"]])
    W = _rand(rng, [cfg["C"], cfg["Mg"], *cfg["kernel"]])
    B = _rand(rng, [cfg["Mg"] * cfg["G"]]) if cfg["bias"] else None
    attrs = dict(strides=cfg["strides"], dilations=cfg["dilations"], group=cfg["G"])
    if cfg["mode"] == "pads":
        n = cfg["nd"]
        out = [s * (i - 1) + (k - 1) * d + 1 + op - cfg["pads"][a] - cfg["pads"][a + n]
               for a, (s, i, k, d, op) in enumerate(zip(cfg["strides"], cfg["spatial"], cfg["kernel"],
                                                        cfg["dilations"], cfg["output_padding"]))]
        assume(min(out) >= 1)  # pads that crop everything away are invalid
        attrs.update(pads=cfg["pads"], output_padding=cfg["output_padding"])
    elif cfg["mode"] == "output_shape":  # the plain output size, a little bigger or smaller
        full = [s * (i - 1) + e for s, i, e in zip(cfg["strides"], cfg["spatial"],
                                                   [(k - 1) * d + 1 for k, d in zip(cfg["kernel"], cfg["dilations"])])]
        attrs["output_shape"] = [max(1, f - g) for f, g in zip(full, cfg["grow"])]
    else:
        attrs["auto_pad"] = cfg["mode"]
    got = ConvTranspose(X, W, B, **attrs)
    (want,) = ort_run("ConvTranspose", [X, W, B], **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # float32 sums of at most 3*27 products in [-1, 1], added in a different order than ORT's
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.integers(1, 2), st.integers(0, 2**31 - 1))
def test_col2im_undoes_unfold_of_ones(kh, stride, pad, dilation, seed):
    """Col2Im of an image's im2col counts, at every pixel, how many blocks cover it (times the value)."""
    rng = np.random.default_rng(seed)
    H, W = 5, 6
    x = _rand(rng, [1, 2, H, W])
    w_eye = np.eye(2 * kh * kh, dtype=np.float32).reshape(2 * kh * kh, 2, kh, kh)
    attrs = dict(strides=[stride] * 2, pads=[pad] * 4, dilations=[dilation] * 2)
    cols = Conv(x, w_eye, **attrs)  # im2col as a convolution with identity filters
    cols = cols.reshape(1, 2 * kh * kh, -1)
    img = np.array([H, W], dtype=np.int64)
    block = np.array([kh, kh], dtype=np.int64)
    got = Col2Im(cols, img, block, **attrs)
    (want,) = ort_run("Col2Im", [cols, img, block], opset=18, **attrs)
    assert got.shape == (1, 2, H, W)
    # float32 sums of at most 9 terms
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    ones = Col2Im(Conv(np.ones_like(x), w_eye, **attrs).reshape(1, 2 * kh * kh, -1), img, block, **attrs)
    np.testing.assert_allclose(got, x * ones, rtol=1e-5, atol=1e-6)  # same bound as above


@settings(deadline=None, max_examples=15)
@given(st.integers(1, 2), st.integers(1, 2), st.booleans(), st.integers(0, 2**31 - 1))
def test_deform_conv_matches_onnxruntime(offset_group, group, with_mask, seed):
    rng = np.random.default_rng(seed)
    C, M, k = 4, 2 * group, 2
    X = _rand(rng, [1, C, 5, 4])
    W = _rand(rng, [M, C // group, k, k])
    offset = rng.uniform(-2, 2, [1, offset_group * 2 * k * k, 5, 4]).astype(np.float32)
    mask = rng.uniform(0, 1, [1, offset_group * k * k, 5, 4]).astype(np.float32) if with_mask else None
    B = _rand(rng, [M])
    attrs = dict(group=group, offset_group=offset_group, pads=[1, 0, 0, 1])
    got = DeformConv(X, W, offset, B, mask, **attrs)
    (want,) = ort_run("DeformConv", [X, W, offset, B, mask], opset=22, **attrs)
    assert got.shape == want.shape == (1, M, 5, 4)
    # float32 bilinear samples summed over 16 taps in a different order than ORT's
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_deform_conv_with_zero_offsets_is_conv():
    rng = np.random.default_rng(1)
    X = _rand(rng, [2, 3, 6, 6])
    W = _rand(rng, [4, 3, 3, 3])
    offset = np.zeros([2, 2 * 9, 6, 6], dtype=np.float32)
    got = DeformConv(X, W, offset, pads=[1, 1, 1, 1])
    # DeformConv samples in float64: only float32 rounding of the plain Conv differs
    np.testing.assert_allclose(got, Conv(X, W, pads=[1, 1, 1, 1]), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 6), st.sampled_from(["none", "silu"]),
       st.integers(0, 2**31 - 1))
def test_causal_conv_streams_in_chunks(k, first, second, activation, seed):
    """Running two chunks with the carried state equals running the whole sequence at once."""
    rng = np.random.default_rng(seed)
    x = _rand(rng, [2, 3, first + second])
    w, b = _rand(rng, [3, 1, k]), _rand(rng, [3])
    whole, state = CausalConvWithState(x, w, b, activation=activation)
    y1, s1 = CausalConvWithState(x[:, :, :first], w, b, activation=activation)
    y2, s2 = CausalConvWithState(x[:, :, first:], w, b, s1, activation=activation)
    assert whole.shape == (2, 3, first + second) and state.shape == (2, 3, k - 1)
    # the same k-term float32 sums, but BLAS may order them differently for other lengths: a few
    # float32 ulps (eps 1.2e-7) of values of order 1, so atol 1e-7 (below one ulp) was too tight
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=2), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(s2, state)
    if activation == "none":  # and it is a left-zero-padded depthwise Conv
        want = Conv(x, w, b, group=3, pads=[k - 1, 0])
        np.testing.assert_allclose(whole, want, rtol=1e-5, atol=1e-6)  # the same sums up to a few float32 ulps
