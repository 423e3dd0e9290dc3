"""The row-pass pool kernels (minirt/kernels/pool.py) against the reference ops, both the serial
and the parallel (chunked) kernels, on random shapes, strides, pads, ceil_mode and input views."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.kernels import pool as kpool
from minirt.ops import pool as rpool

SETTINGS = settings(deadline=None, max_examples=40)


@st.composite
def configs(draw):
    nd = draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    spatial = [draw(st.integers(k, k + 9)) for k in kernel]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs = dict(kernel_shape=kernel, strides=strides, auto_pad=auto_pad)
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel for _ in range(1)] + \
                        [draw(st.integers(0, k - 1)) for k in kernel]
        attrs["ceil_mode"] = draw(st.integers(0, 1))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    return N, C, spatial, attrs, draw(st.booleans()), draw(st.integers(0, 2**31))


def _input(rng, N, C, spatial, view, dtype=np.float32):
    x = rng.uniform(-1, 1, (N, C + 1, *spatial)).astype(dtype) if dtype == np.float32 else \
        rng.integers(1, 6, (N, C + 1, *spatial)).astype(dtype)
    return x[:, 1:] if view else np.ascontiguousarray(x[:, 1:])  # a non-contiguous view, or not


def _plan(x, attrs):
    return kpool._plan(x, attrs["kernel_shape"], attrs["strides"], None, attrs.get("pads"),
                       attrs["auto_pad"], attrs.get("ceil_mode", 0))


@SETTINGS
@given(configs(), st.sampled_from([np.float32, np.int8, np.uint8, np.int64]), st.integers(1, 3))
def test_max_pool_rows_match_reference(cfg, dtype, chunks):
    N, C, spatial, attrs, view, seed = cfg
    x = _input(np.random.default_rng(seed), N, C, spatial, view, dtype)
    want = rpool.MaxPool(x, **attrs)[0]
    got = kpool.max_pool_values(x, **attrs)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    xx, (kh, kw), (sh, sw), (oh, ow), begin, _ = _plan(x, attrs)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    for rows in (kpool.max_pool_rows, kpool.max_pool_rows_serial):  # both size regimes, any chunking
        y = np.empty((xx.shape[0], xx.shape[1], oh, ow), x.dtype)
        rows(xx, y, kh, kw, sh, sw, begin[0], begin[1], x.dtype.type(low), min(chunks, N * C))
        np.testing.assert_array_equal(y.reshape(want.shape), want)


@SETTINGS
@given(st.integers(41, 64), st.integers(3, 12), st.lists(st.integers(0, 2), min_size=4, max_size=4),
       st.integers(0, 1), st.sampled_from([np.float32, np.int8, np.int64]), st.integers(1, 3), st.booleans(),
       st.integers(0, 2**31))
def test_wide_3x3_stride_2_max_pools_match_reference(W, H, pads, ceil_mode, dtype, chunks, view, seed):
    """3x3/2 windows on rows of PAIRED_MIN_WIDTH outputs or more, whose columns are taken a pair at
    a time (the random shapes above are narrower): odd and even widths, asymmetric pads, ceil_mode,
    integer dtypes, a view, any chunking, both kernels."""
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=pads, auto_pad="NOTSET", ceil_mode=ceil_mode)
    x = _input(np.random.default_rng(seed), 1, 2, [H, W], view, dtype)
    want = rpool.MaxPool(x, **attrs)[0]
    xx, (kh, kw), (sh, sw), (oh, ow), begin, _ = _plan(x, attrs)
    assert ow >= kpool.PAIRED_MIN_WIDTH
    np.testing.assert_array_equal(kpool.max_pool_values(x, **attrs), want)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    for rows in (kpool.max_pool_rows, kpool.max_pool_rows_serial):
        y = np.empty((xx.shape[0], xx.shape[1], oh, ow), x.dtype)
        rows(xx, y, kh, kw, sh, sw, begin[0], begin[1], x.dtype.type(low), chunks)
        np.testing.assert_array_equal(y.reshape(want.shape), want)


@SETTINGS
@given(configs(), st.integers(0, 1), st.sampled_from([np.float32, np.float64]), st.integers(1, 3))
def test_avg_pool_rows_match_reference(cfg, count_include_pad, dtype, chunks):
    N, C, spatial, attrs, view, seed = cfg
    x = _input(np.random.default_rng(seed), N, C, spatial, view).astype(dtype)
    want = rpool.AveragePool(x, count_include_pad=count_include_pad, **attrs)
    got = kpool.AveragePool(x, count_include_pad=count_include_pad, **attrs)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    xx, (kh, kw), (sh, sw), (oh, ow), begin, end = _plan(x, attrs)
    for rows in (kpool.avg_pool_rows, kpool.avg_pool_rows_serial):
        y = np.empty((xx.shape[0], xx.shape[1], oh, ow), dtype)
        rows(xx, y, kh, kw, sh, sw, begin[0], begin[1], end[0], end[1], count_include_pad, min(chunks, N * C))
        np.testing.assert_allclose(y.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


CNN_POOLS = [  # the CNN shapes (channels cut down), big enough for the parallel kernels
    ((1, 8, 111, 111), dict(kernel_shape=[3, 3], strides=[2, 2])),
    ((1, 8, 112, 112), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ((1, 24, 56, 56), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    ((1, 48, 27, 27), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ((1, 64, 28, 28), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ((2, 400, 7, 7), dict(kernel_shape=[7, 7])),
    ((1, 40, 30, 30), dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1)),
]


def test_cnn_shapes_parallel_match_reference(monkeypatch):
    monkeypatch.setattr(kpool, "PARALLEL_MIN", 1 << 15)  # the parallel kernels on these smaller maps
    rng = np.random.default_rng(0)
    for shape, attrs in CNN_POOLS:
        x = rng.standard_normal(shape).astype(np.float32)
        assert x.size >= kpool.PARALLEL_MIN
        np.testing.assert_array_equal(kpool.max_pool_values(x, **attrs), rpool.MaxPool(x, **attrs)[0])
        for cip in (0, 1):
            np.testing.assert_allclose(kpool.AveragePool(x, count_include_pad=cip, **attrs),
                                       rpool.AveragePool(x, count_include_pad=cip, **attrs), rtol=1e-5, atol=1e-6)


def test_nan_wins_and_infinities():
    rng = np.random.default_rng(1)
    for shape, attrs in CNN_POOLS[:4] + [((1, 2, 9, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))]:
        x = rng.standard_normal(shape).astype(np.float32)
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 50)] = np.nan
        flat[rng.integers(0, flat.size, 20)] = -np.inf
        flat[rng.integers(0, flat.size, 20)] = np.inf
        np.testing.assert_array_equal(kpool.max_pool_values(x, **attrs), rpool.MaxPool(x, **attrs)[0])


def test_has_nan_reads_the_bits_of_every_nan():
    """The NaN scan behind the plain comparisons: any NaN bit pattern (quiet, signalling, with the
    sign bit set) counts, the infinities and the largest finite values do not."""
    for dtype, itype, nans in ((np.float32, np.uint32, [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF]),
                               (np.float64, np.uint64, [0x7FF8000000000000, 0xFFF8000000000000,
                                                        0x7FF0000000000001, 0xFFFFFFFFFFFFFFFF])):
        x = np.array([0.0, -1.5, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
        assert not kpool.has_nan(x)
        for bits in nans:
            y = np.concatenate([x, np.array([bits], itype).view(dtype), x])
            assert kpool.has_nan(y), hex(bits)
    assert not kpool.has_nan(np.array([3, 4], np.uint8)) and not kpool.has_nan(np.zeros(0, np.float32))


def test_prepared_pool_node_lets_a_nan_win():
    """A prepared MaxPool node whose input holds a NaN, on the run after a NaN-free one: the NaN
    wins its windows (the plain loops would drop it), the other windows are unchanged."""
    x = np.random.default_rng(3).standard_normal((1, 3, 11, 11)).astype(np.float32)
    node = kpool.prepare_pool(kpool.max_pool_values, kernel_shape=[3, 3], strides=[2, 2])
    np.testing.assert_array_equal(node(x), rpool.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2])[0])
    x[0, 1, 4, 4] = np.nan
    got, want = node(x), rpool.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2])[0]
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 4  # the four windows that hold (4, 4)


def test_size_one_dims():
    x = np.random.default_rng(2).standard_normal((1, 1, 1, 5)).astype(np.float32)
    for attrs in (dict(kernel_shape=[1, 3], strides=[1, 2]), dict(kernel_shape=[1, 1]),
                  dict(kernel_shape=[1, 2], pads=[0, 1, 0, 1], ceil_mode=1)):
        np.testing.assert_array_equal(kpool.max_pool_values(x, **attrs), rpool.MaxPool(x, **attrs)[0])
        np.testing.assert_allclose(kpool.AveragePool(x, **attrs), rpool.AveragePool(x, **attrs), rtol=1e-6)


@SETTINGS
@given(st.integers(0, 2), st.integers(1, 5), st.lists(st.integers(1, 6), min_size=1, max_size=3),
       st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**31))
def test_global_average_pool_kernel_matches_reference(N, C, spatial, dtype, strided, seed):
    """Any number of spatial axes, empty batches, non-contiguous views; same dtype and shape.
    Tolerance: one sum of at most 216 values in another order than the reference's."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (N, C, *spatial[:-1], spatial[-1] * 2)).astype(dtype)
    x = x[..., ::2] if strided else x[..., :spatial[-1]]
    got, want = kpool.GlobalAveragePool(x), rpool.GlobalAveragePool(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@SETTINGS
@given(configs(), st.sampled_from(["max", "avg"]), st.sampled_from([np.float32, np.uint8]))
def test_prepared_pool_node_matches_the_kernel(case, kind, dtype):
    """A pool node's plan-time step (prepare_pool) keeps the geometry per input shape: the same
    results as the kernel for that shape, for another shape after it, and on the fallbacks
    (integer AveragePool, dilations) the kernel itself."""
    N, C, spatial, attrs, view, seed = case
    rng = np.random.default_rng(seed)
    op = kpool.AveragePool if kind == "avg" else kpool.max_pool_values
    node = kpool.prepare_pool(op, **attrs)
    x = _input(rng, N, C, spatial, view, dtype)
    other = _input(rng, N + 1, C, [s + 1 for s in spatial], not view, dtype)
    for _ in range(2):  # built, then kept
        for inp in (x, other):
            if kind == "avg" and dtype == np.uint8:  # not the kernel's: the reference's error, both ways
                continue
            np.testing.assert_array_equal(node(inp), op(inp, **attrs))
    dilated = dict(attrs, dilations=[2] * len(attrs["kernel_shape"]))
    if kind == "max" and "pads" in attrs and all(s >= 2 * k for s, k in zip(spatial, attrs["kernel_shape"])):
        node = kpool.prepare_pool(op, **dilated)
        np.testing.assert_array_equal(node(x), op(x, **dilated))


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 6), st.integers(2, 9), st.integers(2, 9), st.sampled_from(["max", "avg0", "avg1"]),
       st.sampled_from([np.float32, np.float64, np.int8]), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_same_3x3_pools_over_stacked_planes(N, C, H, W, kind, dtype, view, nan, seed):
    """3x3 stride-1 pools padded by one all round (Inception's pool branches) run over the stack
    of planes at once (``_same_3x3_rows``): against the reference — MaxPool exactly (a NaN wins
    its windows), AveragePool with and without the padding counted — on planes of two rows or
    columns, batch 2 and input views."""
    if kind != "max" and dtype == np.int8:
        dtype = np.float32  # AveragePool is float only
    rng = np.random.default_rng(seed)
    x = _input(rng, N, C, [H, W], view, np.float32 if dtype == np.float64 else dtype)
    if dtype == np.float64:
        x = x.astype(np.float64)  # (a contiguous copy: the views are float32 and int8 ones)
    if nan and x.dtype.kind == "f":
        x[0, 0, rng.integers(H), rng.integers(W)] = np.nan
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        for name in ("max_pool_3x3_same", "avg_pool_3x3_same"):
            fn = getattr(kpool, name)
            mp.setattr(kpool, name, lambda *a, fn=fn: calls.append(1) or fn(*a))
        if kind == "max":
            got, want = kpool.prepare_pool(kpool.max_pool_values, **attrs)(x), rpool.MaxPool(x, **attrs)[0]
        else:
            include = int(kind == "avg1")
            got = kpool.prepare_pool(kpool.AveragePool, **attrs, count_include_pad=include)(x)
            want = rpool.AveragePool(x, **attrs, count_include_pad=include)
    assert got.dtype == want.dtype and got.shape == want.shape
    if kind == "max":
        np.testing.assert_array_equal(got, want)
    else:  # sums of at most 9 values in [-1, 1], rows then columns where the reference sums window by window
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert calls or (nan and kind == "max" and x.dtype.kind == "f")  # (a NaN max pool: the taps)
