"""Pooling ops against onnxruntime: one-node models, random configurations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops.pool import (AveragePool, GlobalAveragePool, GlobalLpPool, GlobalMaxPool, LpPool,
                             MaxPool, MaxRoiPool, MaxUnpool, RoiAlign)
from minirt.testing import ort_op

SETTINGS = settings(deadline=None, max_examples=25)


def ort_run(op_type, args, *, opset=22, n_out=1, **attrs):
    """Every output of one ONNX node, run by onnxruntime (None = absent optional input)."""
    return ort_op(op_type, args, attrs, opset=opset, n_outputs=n_out)


@st.composite
def pool_configs(draw, dilations=True):
    nd = draw(st.integers(1, 3))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    # ORT's SAME padding goes negative (an error) when the stride exceeds the kernel
    strides = [draw(st.integers(1, k if auto_pad.startswith("SAME") else 3)) for k in kernel]
    max_d = 2 if dilations and auto_pad == "NOTSET" else 1
    dil = [draw(st.integers(1, max_d)) for _ in range(nd)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    spatial = [draw(st.integers(e, e + 5)) for e in extent]
    pads = [draw(st.integers(0, k - 1)) for k in kernel] * 2  # ORT wants pads below the kernel
    attrs = dict(kernel_shape=kernel, strides=strides, auto_pad=auto_pad)
    if max_d > 1:
        attrs["dilations"] = dil
    if auto_pad == "NOTSET":
        attrs["pads"] = pads
        attrs["ceil_mode"] = int(draw(st.booleans()))
    shape = [draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial]
    return shape, attrs, draw(st.integers(0, 2**31 - 1))


@SETTINGS
@given(pool_configs(), st.integers(0, 1))
def test_maxpool_and_indices_match_onnxruntime(cfg, storage_order):
    shape, attrs, seed = cfg
    # a permutation: no ties, so the Indices output is unambiguous
    X = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    if len(shape) == 4:
        attrs = dict(attrs, storage_order=storage_order)  # ORT only honours it for 2-D
    Y, I = MaxPool(X, **attrs)
    want_y, want_i = ort_run("MaxPool", [X], n_out=2, **attrs)
    assert Y.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_array_equal(Y, want_y)  # max is exact
    np.testing.assert_array_equal(I, want_i)


@SETTINGS
@given(pool_configs(), st.sampled_from([np.uint8, np.int8, np.float16]))
def test_maxpool_other_dtypes(cfg, dtype):
    shape, attrs, seed = cfg
    X = np.random.default_rng(seed).integers(-100, 100, shape).astype(dtype)
    (want,) = ort_run("MaxPool", [X], **attrs)
    got, _ = MaxPool(X, **attrs)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)  # max is exact; padding must never win


@SETTINGS
@given(pool_configs(), st.integers(0, 1))
def test_averagepool_matches_onnxruntime(cfg, count_include_pad):
    shape, attrs, seed = cfg
    X = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    attrs = dict(attrs, count_include_pad=count_include_pad)
    got = AveragePool(X, **attrs)
    (want,) = ort_run("AveragePool", [X], **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # means of at most 27 float32 values, summed in another order
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(pool_configs(dilations=False), st.sampled_from([1, 2, 3]))
def test_lppool_matches_onnxruntime(cfg, p):
    shape, attrs, seed = cfg
    attrs = {k: v for k, v in attrs.items() if k != "ceil_mode"}  # ORT's LpPool lacks ceil_mode
    X = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    got = LpPool(X, p=p, **attrs)
    (want,) = ort_run("LpPool", [X], opset=18, p=p, **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # p-th powers and roots of float32 sums: a few ulps
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=3, max_size=5), st.integers(0, 2**31 - 1))
def test_global_pools_match_onnxruntime(shape, seed):
    X = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    for fn, name in ((GlobalAveragePool, "GlobalAveragePool"), (GlobalMaxPool, "GlobalMaxPool"),
                     (GlobalLpPool, "GlobalLpPool")):
        got = fn(X)
        (want,) = ort_run(name, [X], opset=2 if name == "GlobalLpPool" else 22)
        assert got.shape == tuple(shape[:2]) + (1,) * (len(shape) - 2) and got.dtype == np.float32
        # reductions over at most 64 float32 values, in another order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_global_average_pool_float16_keeps_dtype():
    X = np.full((1, 2, 16, 16), 0.1, dtype=np.float16)
    got = GlobalAveragePool(X)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.full((1, 2, 1, 1), 0.1, dtype=np.float16))


def test_ceil_mode_window_never_starts_in_padding():
    X = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    # kernel 2, stride 2, right pad 1: floor gives 2, ceil gives 3 windows, but the third would
    # start in the padding, so there are 2
    Y, _ = MaxPool(X, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1)
    assert Y.shape == (1, 1, 2, 2)
    Y = AveragePool(X, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)  # partial last windows
    np.testing.assert_array_equal(Y, [[[[2.0, 3.5], [6.5, 8.0]]]])


@SETTINGS
@given(st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_maxunpool_puts_maxima_back(k, seed):
    X = np.random.default_rng(seed).permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6).astype(np.float32)
    Y, I = MaxPool(X, kernel_shape=[k, k], strides=[k, k])
    got = MaxUnpool(Y, I, kernel_shape=[k, k], strides=[k, k])
    (want,) = ort_run("MaxUnpool", [Y, I], kernel_shape=[k, k], strides=[k, k])
    np.testing.assert_array_equal(got, want)  # a pure scatter: exact
    assert np.array_equal(got[got != 0], X[got != 0])  # every kept value sits where it came from


@settings(deadline=None, max_examples=15)
@given(st.sampled_from(["avg", "max"]), st.sampled_from(["half_pixel", "output_half_pixel"]),
       st.integers(0, 2), st.integers(0, 2**31 - 1))
def test_roialign_matches_onnxruntime(mode, ctm, sampling_ratio, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (2, 3, 8, 9)).astype(np.float32)
    xy = rng.uniform(-2, 10, (4, 2, 2)).astype(np.float32)
    rois = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)  # [4, (x1, y1, x2, y2)]
    batch = rng.integers(0, 2, 4).astype(np.int64)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, output_height=3, output_width=2,
                 sampling_ratio=sampling_ratio, spatial_scale=0.9)
    got = RoiAlign(X, rois, batch, **attrs)
    (want,) = ort_run("RoiAlign", [X, rois, batch], opset=16, **attrs)
    assert got.shape == (4, 3, 3, 2) and got.dtype == np.float32
    # bilinear samples averaged in float64 here and float32 in ORT
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_maxroipool_matches_onnxruntime():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2, 3, 10, 12)).astype(np.float32)
    rois = np.array([[0, 1, 1, 6, 8], [1, 0, 0, 11, 9], [1, 3.4, 2.6, 5.1, 4.2]], dtype=np.float32)
    got = MaxRoiPool(X, rois, pooled_shape=[3, 2], spatial_scale=1.0)
    (want,) = ort_run("MaxRoiPool", [X, rois], opset=1, pooled_shape=[3, 2], spatial_scale=1.0)
    np.testing.assert_array_equal(got, want)  # max is exact
