"""Fast kernels (minirt/kernels) against their NumPy reference ops: the reference is the spec.

Float kernels must agree to float32 rounding; the int8 kernels must be bit-exact.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import minirt
from minirt.kernels import elementwise as kact
from minirt.kernels import conv as kconv
from minirt.kernels import gemm as kgemm
from minirt.kernels import matmul as kmatmul
from minirt.kernels import norm as knorm
from minirt.kernels import pool as kpool
from minirt.kernels import quant as kquant
from minirt.kernels import softmax as ksoftmax
from minirt.ops import activation as ract
from minirt.ops import conv as rconv
from minirt.ops import elementwise as relem
from minirt.ops import linalg as rlinalg
from minirt.ops import norm as rnorm
from minirt.ops import pool as rpool
from minirt.ops import quant as rquant

SETTINGS = settings(deadline=None, max_examples=20)


def _rand(rng, shape, dtype=np.float32):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _close(got, want, tol=1e-4):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- Conv


@st.composite
def conv_configs(draw):
    nd = draw(st.integers(1, 2))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    dilations = [draw(st.integers(1, 2)) for _ in range(nd)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    spatial = [draw(st.integers(e, e + 6)) for e in extent]
    pads = [draw(st.integers(0, e - 1)) for e in extent] * 2
    group = draw(st.sampled_from([1, 2, "depthwise"]))
    cg = draw(st.integers(1, 3))
    C = cg * (2 if group == 2 else 1) if group != "depthwise" else draw(st.integers(2, 4))
    G = C if group == "depthwise" else group
    M = G * draw(st.integers(1, 3))
    N = draw(st.integers(1, 2))
    attrs = dict(auto_pad=auto_pad, strides=strides, dilations=dilations, group=G)
    if auto_pad == "NOTSET":
        attrs["pads"] = pads
    return N, C, spatial, M, G, kernel, draw(st.booleans()), attrs, draw(st.integers(0, 2**31))


@SETTINGS
@given(conv_configs())
def test_conv_kernel_matches_reference(cfg):
    N, C, spatial, M, G, kernel, bias, attrs, seed = cfg
    rng = np.random.default_rng(seed)
    X, W = _rand(rng, (N, C, *spatial)), _rand(rng, (M, C // G, *kernel))
    B = _rand(rng, (M,)) if bias else None
    _close(kconv.Conv(X, W, B, **attrs), rconv.Conv(X, W, B, **attrs))


@SETTINGS
@given(conv_configs())
def test_conv_loops_matches_reference(cfg):
    """The teaching kernel, 2-D with explicit pads."""
    N, C, spatial, M, G, kernel, _, attrs, seed = cfg
    if len(spatial) == 1:
        spatial, kernel = [1] + spatial, [1] + kernel
        attrs = dict(attrs, strides=[1] + attrs["strides"], dilations=[1] + attrs["dilations"])
    attrs = dict(attrs, auto_pad="NOTSET", pads=attrs.get("pads", [0] * 4)[:1] * 4)
    rng = np.random.default_rng(seed)
    X, W, B = _rand(rng, (N, C, *spatial)), _rand(rng, (M, C // G, *kernel)), _rand(rng, (M,))
    want = rconv.Conv(X, W, B, **attrs)
    got = np.empty_like(want)
    (sh, sw), (dh, dw), p = attrs["strides"], attrs["dilations"], attrs["pads"][0]
    kconv.conv_loops(X, W, B, got, sh, sw, p, p, dh, dw, G)
    _close(got, want)


@SETTINGS
@given(st.integers(1, 2), st.integers(2, 12), st.integers(1, 3), st.integers(1, 3), st.integers(1, 8),
       st.integers(1, 8), st.lists(st.integers(0, 2), min_size=4, max_size=4), st.booleans(),
       st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER"]), st.integers(0, 2**31))
def test_conv_shifted_gemm_matches_reference(N, C, kh, kw, H, W, pads, bias, auto_pad, seed):
    """Stride 1, group 1, M <= C/2: the shifted-GEMM (kn2row) path."""
    M = max(1, C // 2 - seed % 2)
    pads = [min(p, k - 1) for p, k in zip(pads, [kh, kw, kh, kw])]
    H, W = H + kh, W + kw
    rng = np.random.default_rng(seed)
    X, Wt = _rand(rng, (N, C, H, W)), _rand(rng, (M, C, kh, kw))
    B = _rand(rng, (M,)) if bias else None
    attrs = dict(pads=pads) if auto_pad == "NOTSET" else dict(auto_pad=auto_pad)
    _close(kconv.Conv(X, Wt, B, **attrs), rconv.Conv(X, Wt, B, **attrs))


def test_conv_big_shapes_and_fallbacks():
    rng = np.random.default_rng(0)
    X, W, B = _rand(rng, (1, 64, 28, 28)), _rand(rng, (128, 64, 1, 1)), _rand(rng, (128,))
    _close(kconv.Conv(X, W, B), rconv.Conv(X, W, B), 1e-3)  # 1x1: the direct GEMM path
    W3 = _rand(rng, (32, 64, 3, 3))
    _close(kconv.Conv(X, W3, pads=[1, 1, 1, 1], strides=[2, 2]), rconv.Conv(X, W3, pads=[1, 1, 1, 1], strides=[2, 2]), 1e-3)
    X3, W3d = _rand(rng, (1, 2, 4, 5, 6)), _rand(rng, (3, 2, 2, 2, 2))  # 3-D: the reference
    _close(kconv.Conv(X3, W3d), rconv.Conv(X3, W3d))
    X16, W16 = X.astype(np.float16), W.astype(np.float16)  # float16: the reference
    _close(kconv.Conv(X16, W16), rconv.Conv(X16, W16), 1e-2)
    W32 = _rand(rng, (32, 128, 3, 3))  # DenseNet's 3x3 128->32: the shifted-GEMM path
    X128 = _rand(rng, (1, 128, 14, 14))
    _close(kconv.Conv(X128, W32, pads=[1, 1, 1, 1]), rconv.Conv(X128, W32, pads=[1, 1, 1, 1]), 1e-3)
    X64, W64 = X.astype(np.float64), W3.astype(np.float64)
    _close(kconv.Conv(X64, W64, pads=[1, 1, 1, 1]), rconv.Conv(X64, W64, pads=[1, 1, 1, 1]), 1e-10)


# ----------------------------------------------------------------------------- MatMul / Gemm


@SETTINGS
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 70), st.sampled_from([4, 16, 64]),
       st.integers(0, 2**31))
def test_matmul_blocked_matches_numpy(M, K, N, tile, seed):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, (M, K)), _rand(rng, (K, N))
    _close(kmatmul.matmul_blocked(a, b, tile), np.matmul(a, b))


@SETTINGS
@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 20), st.booleans(), st.booleans(),
       st.sampled_from([None, "scalar", "row", "full"]), st.sampled_from([1.0, 0.5]),
       st.sampled_from([1.0, 2.0, 0.0]), st.sampled_from([np.float32, np.float64, np.float16]),
       st.integers(0, 2**31))
def test_gemm_and_matmul_match_reference(M, K, N, transA, transB, c_kind, alpha, beta, dtype, seed):
    rng = np.random.default_rng(seed)
    A = _rand(rng, (K, M) if transA else (M, K), dtype)
    B = _rand(rng, (N, K) if transB else (K, N), dtype)
    C = {None: None, "scalar": _rand(rng, (1,), dtype), "row": _rand(rng, (N,), dtype),
         "full": _rand(rng, (M, N), dtype)}[c_kind]
    attrs = dict(alpha=alpha, beta=beta, transA=int(transA), transB=int(transB))
    tol = 1e-2 if dtype == np.float16 else 1e-5
    _close(kmatmul.Gemm(A, B, C, **attrs), rlinalg.Gemm(A, B, C, **attrs), tol)
    a3 = _rand(rng, (2, M, K), dtype)
    b2 = _rand(rng, (K, N), dtype)
    _close(kmatmul.MatMul(a3, b2), rlinalg.MatMul(a3, b2), tol)


@pytest.mark.parametrize("c_shape", [(3, 4), (2, 1, 4), (5,)])
def test_gemm_c_not_broadcasting_to_the_product_runs_the_reference(c_shape):
    """The in-place ``y += C`` fails for a C that does not broadcast to [M, N]: the kernel then
    gives what the reference gives (a bigger broadcast result, or its error)."""
    rng = np.random.default_rng(0)
    A, B, C = _rand(rng, (1, 3)), _rand(rng, (3, 4)), _rand(rng, c_shape)
    try:
        want = rlinalg.Gemm(A, B, C, beta=0.5)
    except ValueError as e:
        with pytest.raises(ValueError, match="broadcast"):
            kmatmul.Gemm(A, B, C, beta=0.5)
        assert "broadcast" in str(e)
        return
    _close(kmatmul.Gemm(A, B, C, beta=0.5), want)


@SETTINGS
@given(st.integers(1, 90), st.integers(1, 40), st.integers(1, 90), st.sampled_from([(), (3,)]),
       st.booleans(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_gemm_pieces_match_numpy(M, K, N, batch, with_out, dtype, seed):
    """kernels/gemm.matmul cut into pieces (forced: no size minimum) is np.matmul."""
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, batch + (M, K), dtype), _rand(rng, (K, N), dtype)
    names = ("OPENBLAS_SERIAL_FLOPS", "SPLIT_MIN_FLOPS", "PIECES_MIN_FLOPS", "MIN_PIECE", "MIN_OTHER", "_own_after",
             "USE_HELPER")
    old = [getattr(kgemm, n) for n in names]
    # no size minimum, no spinning helper, and OpenBLAS's own threads "starved" for ever: always the pieces
    for name, value in zip(names, (0, 0, 0, 1, 1, float("inf"), False)):
        setattr(kgemm, name, value)
    try:
        out = np.full(batch + (M, N), np.nan, dtype) if with_out else None
        got = kgemm.matmul(a, b, out)
    finally:
        for name, value in zip(names, old):
            setattr(kgemm, name, value)
    assert got.dtype == dtype and (out is None or got is out)
    _close(got, np.matmul(a, b), 1e-5)


def test_gemm_stack_of_tiny_products_makes_no_thread_calls(monkeypatch):
    """Winograd's 16 products on a small map (each far below what OpenBLAS ever threads) are one
    plain np.matmul: no thread-count calls (they were half the overhead: 6 us of a 20 us stack);
    a stack big enough in all still reaches the threading policy."""
    calls = []
    monkeypatch.setattr(kgemm, "_openblas", lambda: calls.append(1) or False)
    rng = np.random.default_rng(0)
    V, U = _rand(rng, (16, 64, 32), np.float32), _rand(rng, (16, 32, 32), np.float32)
    assert 2 * 64 * 32 * 32 < kgemm.OPENBLAS_SERIAL_FLOPS <= 2 * 64 * 32 * 32 * 16
    _close(kgemm.matmul(V, U), np.matmul(V, U), 1e-5)
    assert calls == []
    big = _rand(rng, (1024, 64, 32), np.float32)  # 1024 tiny products: 134 MFLOP in all
    _close(kgemm.matmul(big, U[:1]), np.matmul(big, U[:1]), 1e-5)
    assert calls


def test_gemm_own_threads_back_off_when_starved(monkeypatch):
    """A big product runs on OpenBLAS's own threads until, in one call, the calling thread gets
    less CPU time than 0.8 x the wall time (faked here: its CPU clock stands still); then the
    pieces for the back-off."""
    blas = kgemm._openblas()
    if not blas or blas.get_num_threads() < 2:
        pytest.skip("needs OpenBLAS with 2 threads or more")
    rng = np.random.default_rng(0)
    a, b = _rand(rng, (64, 128), np.float32), _rand(rng, (128, 4096), np.float32)  # 67 MFLOP
    assert 2 * 64 * 128 * 4096 >= kgemm.OWN_MIN_FLOPS
    monkeypatch.setattr(kgemm, "USE_HELPER", False)  # (with it, OpenBLAS's own threads never run)
    monkeypatch.setattr(kgemm, "_own_after", 0.0)
    monkeypatch.setattr(kgemm, "_backoff", kgemm.BACKOFF_S[0])
    monkeypatch.setattr(kgemm.time, "thread_time", lambda: 0.0)  # no CPU: a starved call
    monkeypatch.setattr(kgemm, "others_running", lambda threads: False)  # ... but nobody else wants the cores
    _close(kgemm.matmul(a, b), np.matmul(a, b), 1e-5)
    assert kgemm._own_after == 0.0  # the machine paused: no back-off
    monkeypatch.setattr(kgemm, "others_running", lambda threads: True)  # another process is runnable
    monkeypatch.setattr(kgemm, "_last_starved", -1e9)
    _close(kgemm.matmul(a, b), np.matmul(a, b), 1e-5)
    assert kgemm._own_after == 0.0  # one starved call alone: a pause, no back-off yet
    _close(kgemm.matmul(a, b), np.matmul(a, b), 1e-5)  # ... the second within STRIKE_S
    assert kgemm._own_after > kgemm.time.perf_counter()  # the pieces from now on, for a while
    assert kgemm._backoff == 2 * kgemm.BACKOFF_S[0]
    _close(kgemm.matmul(a, b), np.matmul(a, b), 1e-5)  # the pieces
    assert blas.get_num_threads() >= 2
    # a call much slower than the fastest of its shape (faked: 1 ns) backs off too
    monkeypatch.undo()
    monkeypatch.setattr(kgemm, "USE_HELPER", False)
    monkeypatch.setattr(kgemm, "_own_after", 0.0)
    monkeypatch.setattr(kgemm, "_backoff", kgemm.BACKOFF_S[0])
    monkeypatch.setattr(kgemm, "_fastest", {(a.shape, b.shape): 1e-9})
    monkeypatch.setattr(kgemm, "others_running", lambda threads: True)
    monkeypatch.setattr(kgemm, "_last_starved", kgemm.time.perf_counter())  # one came just before
    _close(kgemm.matmul(a, b), np.matmul(a, b), 1e-5)
    assert kgemm._own_after > kgemm.time.perf_counter() and kgemm._fastest[(a.shape, b.shape)] == 1e-9


def test_others_running_reads_the_runnable_threads():
    """On Linux it counts runnable threads (this one at least); where it cannot tell, every slow
    call counts as contention (True)."""
    assert kgemm.others_running(0) is True  # the caller itself is running
    assert isinstance(kgemm.others_running(10_000), bool)
    if not os.path.exists("/proc/stat"):
        assert kgemm.others_running(10_000) is True
    else:
        assert kgemm.others_running(10_000) is False


def test_gemm_restores_blas_threads_and_raises_piece_errors():
    blas = kgemm._openblas()
    if not blas:
        pytest.skip("BLAS is not OpenBLAS: kernels/gemm.matmul is plain np.matmul")
    assert "numpy" in blas.filepath  # NumPy's OpenBLAS, even when SciPy has loaded its own
    before = blas.get_num_threads()
    a = np.ones((64, 64), np.float32)
    kgemm.matmul(a, np.ones((64, 4096), np.float32))
    assert blas.get_num_threads() == before
    job = kgemm.Pieces([lambda: None, lambda: 1 / 0, lambda: None])
    job.work()
    with pytest.raises(ZeroDivisionError):
        job.wait(spin=False)


# ----------------------------------------------------------------------------- Softmax / LayerNorm


@SETTINGS
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(-4, 3), st.sampled_from([1.0, 30.0]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_softmax_family_matches_reference(shape, axis, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (_rand(rng, shape) * scale).astype(dtype)
    axis = axis % len(shape)
    for fast, ref in ((ksoftmax.Softmax, rnorm.Softmax), (ksoftmax.LogSoftmax, rnorm.LogSoftmax),
                      (ksoftmax.Softmax_1, rnorm.Softmax_1), (ksoftmax.LogSoftmax_1, rnorm.LogSoftmax_1)):
        _close(fast(x, axis=axis), ref(x, axis=axis), 1e-5)
        _close(fast(x), ref(x), 1e-5)


@pytest.mark.parametrize("width", [3, 1500])  # the plain loops; the float32 rows32 loops
def test_softmax_extremes(width):
    """-inf, NaN (its row NaN), huge values, a row of -inf (NaN), an all-equal row; the rest of a
    long row random."""
    rows = [[0.0, -np.inf, 1.0], [np.nan, 1.0, 2.0], [1e30, 1e30, -1e30], [-np.inf] * 3, [7.0] * 3]
    x = np.full((len(rows), width), -np.inf, np.float32)
    x[:, :3] = rows
    if width > 3:
        x[[0, 1, 2, 4], 3:] = _rand(np.random.default_rng(1), (4, width - 3)) * 50
        x[4, 3:] = 7.0
    assert (x.size >= ksoftmax.ROWS32_MIN) == (width > 3)
    with np.errstate(invalid="ignore"):
        _close(ksoftmax.Softmax(x), rnorm.Softmax(x), 1e-6)
        _close(ksoftmax.LogSoftmax(x), rnorm.LogSoftmax(x), 1e-5)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 300), st.sampled_from([1.0, 30.0, 100.0]), st.integers(0, 2**31))
def test_softmax_rows32_match_reference(R, D, scale, seed):
    """The float32 rows with the vectorized exp, any row length (16-lane max: tails of 0-15),
    spreads up to 200 (exps down to the underflow cut). Tolerance: exp within 1.2 ulp, a float64
    sum; LogSoftmax's 1e-5 covers log(sum) next to values up to |200|."""
    rng = np.random.default_rng(seed)
    x = (_rand(rng, (R, D)) * scale).astype(np.float32)
    y = np.empty_like(x)
    ksoftmax.softmax_rows32(x, y)
    _close(y, rnorm.Softmax(x), 1e-6)
    ksoftmax.log_softmax_rows32(x, y)
    _close(y, rnorm.LogSoftmax(x), 1e-5)


@SETTINGS
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.integers(-4, 3), st.booleans(),
       st.booleans(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_layer_norm_matches_reference(shape, axis, bias, broadcast_scale, dtype, seed):
    rng = np.random.default_rng(seed)
    axis = axis % len(shape)
    x = (_rand(rng, shape) * 3 + 1).astype(dtype)
    inner = tuple(shape[axis:])
    scale = _rand(rng, (1,) * (len(inner) - 1) + inner[-1:] if broadcast_scale else inner, dtype)
    B = _rand(rng, inner, dtype) if bias else None
    stash = 1 if dtype == np.float32 else 11
    got = knorm.LayerNormalization(x, scale, B, axis=axis, epsilon=1e-3, stash_type=stash)
    want = rnorm.LayerNormalization(x, scale, B, axis=axis, epsilon=1e-3, stash_type=stash)
    for g, w in zip(got, want):
        _close(g, w, 1e-4)


# ----------------------------------------------------------------------------- pools


@st.composite
def pool_configs(draw):
    nd = draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    spatial = [draw(st.integers(k, k + 6)) for k in kernel]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs = dict(kernel_shape=kernel, strides=strides, auto_pad=auto_pad)
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel] * 2
        attrs["ceil_mode"] = draw(st.integers(0, 1))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), spatial, attrs, draw(st.integers(0, 2**31)))


@SETTINGS
@given(pool_configs(), st.sampled_from([np.float32, np.uint8]), st.integers(0, 1))
def test_maxpool_matches_reference(cfg, dtype, storage_order):
    N, C, spatial, attrs, seed = cfg
    rng = np.random.default_rng(seed)
    # ties: the first max must win (1..5: a real uint8 0 would tie with the reference's padding,
    # which its argmax then reports as index -1; the kernel never lets padding win)
    x = rng.integers(1, 6, (N, C, *spatial)).astype(dtype)
    got = kpool.MaxPool(x, storage_order=storage_order, **attrs)
    want = rpool.MaxPool(x, storage_order=storage_order, **attrs)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    values = kpool.max_pool_values(x, storage_order=storage_order, **attrs)  # Y only
    assert values.dtype == want[0].dtype
    np.testing.assert_array_equal(values, want[0])
    plan = kpool._plan(x, attrs["kernel_shape"], attrs["strides"], None, attrs.get("pads"),
                       attrs["auto_pad"], attrs.get("ceil_mode", 0))
    xx, (kh, kw), (sh, sw), (oh, ow), begin, _ = plan  # tap by tap (big images take this path)
    np.testing.assert_array_equal(kpool.max_pool_taps(xx, kh, kw, sh, sw, oh, ow, begin[0], begin[1]).reshape(
        want[0].shape), want[0])


@SETTINGS
@given(pool_configs(), st.integers(0, 1))
def test_averagepool_matches_reference(cfg, count_include_pad):
    N, C, spatial, attrs, seed = cfg
    x = _rand(np.random.default_rng(seed), (N, C, *spatial))
    want = rpool.AveragePool(x, count_include_pad=count_include_pad, **attrs)
    _close(kpool.AveragePool(x, count_include_pad=count_include_pad, **attrs), want, 1e-5)
    plan = kpool._plan(x, attrs["kernel_shape"], attrs["strides"], None, attrs.get("pads"),
                       attrs["auto_pad"], attrs.get("ceil_mode", 0))
    xx, (kh, kw), (sh, sw), (oh, ow), begin, end = plan  # the window-by-window teaching loops
    y = np.empty((xx.shape[0], xx.shape[1], oh, ow), np.float32)
    kpool.avgpool_loops(xx, y, kh, kw, sh, sw, begin[0], begin[1], end[0], end[1], count_include_pad)
    _close(y.reshape(want.shape), want, 1e-5)


def test_maxpool_values_nan_wins():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    np.testing.assert_array_equal(kpool.max_pool_values(x, kernel_shape=[2, 2], strides=[2, 2]),
                                  rpool.MaxPool(x, kernel_shape=[2, 2], strides=[2, 2])[0])


def test_pool_fallbacks():
    x = _rand(np.random.default_rng(1), (1, 2, 7, 7))
    for kw in (dict(kernel_shape=[3, 3], dilations=[2, 2]), dict(kernel_shape=[2, 2], pads=[2, 2, 2, 2])):
        for g, w in zip(kpool.MaxPool(x, **kw), rpool.MaxPool(x, **kw)):
            np.testing.assert_array_equal(g, w)
        _close(kpool.AveragePool(x, **kw), rpool.AveragePool(x, **kw))


# ----------------------------------------------------------------------------- BN / LRN / Erf / Gelu


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 5), st.lists(st.integers(1, 5), min_size=0, max_size=2),
       st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**31))
def test_batchnorm_matches_reference(N, C, spatial, dtype, old, seed):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (N, C, *spatial), dtype)
    scale, B, mean = _rand(rng, (C,), dtype), _rand(rng, (C,), dtype), _rand(rng, (C,), dtype)
    var = rng.uniform(0.1, 2, C).astype(dtype)
    fast, ref = (knorm.BatchNormalization_1, rnorm.BatchNormalization_1) if old else (
        knorm.BatchNormalization, rnorm.BatchNormalization)
    _close(fast(x, scale, B, mean, var, epsilon=1e-3), ref(x, scale, B, mean, var, epsilon=1e-3), 1e-5)
    # training mode: the reference, with the running statistics
    for g, w in zip(knorm.BatchNormalization(x, scale, B, mean, var, training_mode=1),
                    rnorm.BatchNormalization(x, scale, B, mean, var, training_mode=1)):
        _close(g, w, 1e-5)


@SETTINGS
@given(st.integers(1, 6), st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**31))
def test_batchnorm_scale_shift_made_once_per_read_only_weights(C, dtype, read_only, seed):
    """channel_scale_shift (cached for read-only weights) is bitwise the float64 math, for each
    epsilon and dtype asked; a writeable weight changed in place gives its new values."""
    rng = np.random.default_rng(seed)
    scale, B, mean = _rand(rng, (C,), dtype), _rand(rng, (C,), dtype), _rand(rng, (C,), dtype)
    var = rng.uniform(0.1, 2, C).astype(dtype)
    for p in (scale, B, mean, var):
        p.flags.writeable = not read_only

    def want(eps, out_dtype):
        s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        return s.astype(out_dtype), (B.astype(np.float64) - mean.astype(np.float64) * s).astype(out_dtype)

    for eps, out_dtype in [(1e-5, np.float32), (1e-5, np.float32), (1e-3, np.float32), (1e-5, np.float64)]:
        for got, w in zip(knorm.channel_scale_shift(scale, B, mean, var, eps, out_dtype), want(eps, out_dtype)):
            assert got.dtype == w.dtype
            np.testing.assert_array_equal(got, w)
    if not read_only:
        var *= 2  # a weight computed at run time may change: never a stale cached value
        np.testing.assert_array_equal(knorm.channel_scale_shift(scale, B, mean, var, 1e-5, dtype)[0],
                                      want(1e-5, dtype)[0])


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 9), st.lists(st.integers(1, 6), min_size=1, max_size=2),
       st.integers(1, 12), st.sampled_from([1e-4, 0.5]), st.sampled_from([0.75, 1.0]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_lrn_matches_reference(N, C, spatial, size, alpha, beta, dtype, seed):
    x = _rand(np.random.default_rng(seed), (N, C, *spatial), dtype) * 3
    attrs = dict(size=size, alpha=alpha, beta=beta, bias=2.0)
    _close(knorm.LRN(x, **attrs), rnorm.LRN(x, **attrs), 1e-5)


@SETTINGS
@given(st.lists(st.integers(1, 9), min_size=0, max_size=3), st.sampled_from([1.0, 5.0]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_erf_and_gelu_match_reference(shape, scale, dtype, seed):
    x = (_rand(np.random.default_rng(seed), shape) * scale).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    _close(kact.Erf(x), relem.Erf(x), tol)
    _close(kact.Gelu(x), ract.Gelu(x), tol)
    _close(kact.Gelu_ms(x), ract.Gelu_ms(x), tol)
    _close(kact.Gelu(x, approximate="tanh"), ract.Gelu(x, approximate="tanh"), tol)


@SETTINGS
@given(st.lists(st.integers(1, 5), min_size=0, max_size=3), st.sampled_from([2.0, 3.0, 0.5, -1.0]),
       st.integers(0, 2), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_pow_matches_reference(shape, e, y_rank, dtype, seed):
    x = (_rand(np.random.default_rng(seed), shape) * 4).astype(dtype)
    y = np.full((1,) * y_rank, e, dtype)
    want = relem.Pow(x, y)
    got = kact.Pow(x, y)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_big_inputs_take_the_parallel_loops():
    rng = np.random.default_rng(5)
    x = _rand(rng, (128, 2048)) * 4  # above PARALLEL_MIN: the prange versions run (Softmax: NumPy's)
    assert x.size >= ksoftmax.KERNEL_MAX and x.size >= knorm.PARALLEL_MIN and x.size >= kact.PARALLEL_MIN
    _close(ksoftmax.Softmax(x), rnorm.Softmax(x), 1e-6)
    _close(ksoftmax.LogSoftmax(x), rnorm.LogSoftmax(x), 1e-5)
    y = np.empty_like(x)  # the loops themselves on a big input
    ksoftmax.softmax_rows(x, y)
    _close(y, rnorm.Softmax(x), 1e-6)
    _close(kact.Erf(x), relem.Erf(x), 1e-6)
    _close(kact.Gelu(x), ract.Gelu(x), 1e-6)
    scale, B = _rand(rng, (2048,)), _rand(rng, (2048,))
    for g, w in zip(knorm.LayerNormalization(x, scale, B), rnorm.LayerNormalization(x, scale, B)):
        _close(g, w, 1e-4)


def test_bn_affine_folding_and_maxpool_values_in_a_session():
    """BN -> Mul -> Add (per channel) -> Relu -> MaxPool: level 2 folds the Mul/Add into the BN,
    fuses BN + Relu into minirt.FusedBatchNormalization and runs the MaxPool as Y-only
    minirt.MaxPool; the result is the reference's."""
    C = 4
    rng = np.random.default_rng(2)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, shape, v.ravel()) for n, shape, v in [
        ("s", [C], rng.uniform(0.5, 1.5, C)), ("b", [C], rng.uniform(-1, 1, C)), ("m", [C], rng.uniform(-1, 1, C)),
        ("v", [C], rng.uniform(0.5, 2, C)), ("k", [1, C, 1, 1], rng.uniform(-2, 2, C)),
        ("t", [C, 1, 1], rng.uniform(-1, 1, C))]]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Mul", ["bn", "k"], ["mul"]), helper.make_node("Add", ["t", "mul"], ["add"]),
             helper.make_node("Relu", ["add"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fast, ref = minirt.InferenceSession(model), minirt.InferenceSession(model, optimize=0, kernels=False)
    ops = [(n.domain, n.op_type) for n in fast.graph.nodes]
    assert ops == [("minirt", "FusedBatchNormalization"), ("minirt", "MaxPool")], ops
    x = _rand(rng, (1, C, 9, 9)) * 3
    _close(fast.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], 1e-5)


# ----------------------------------------------------------------------------- int8


def _q(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _zp(rng, dtype, size=None):
    return _q(rng, () if size is None else (size,), dtype)


@SETTINGS
@given(st.integers(1, 9), st.sampled_from([1, 7, 300, 1100, 2500]), st.integers(1, 9),
       st.sampled_from([np.uint8, np.int8]), st.sampled_from([np.uint8, np.int8]),
       st.sampled_from(["none", "scalar", "per_row"]), st.integers(0, 2**31))
def test_matmul_integer_is_exact(M, K, N, ta, tb, zp_kind, seed):
    rng = np.random.default_rng(seed)
    A, B = _q(rng, (2, M, K), ta), _q(rng, (K, N), tb)
    a_zp = {"none": None, "scalar": _zp(rng, ta), "per_row": _zp(rng, ta, M)}[zp_kind]
    b_zp = None if zp_kind == "none" else _zp(rng, tb, N if zp_kind == "per_row" else None)
    want = rquant.MatMulInteger(A[0] if zp_kind == "per_row" else A, B, a_zp, b_zp)
    got = kquant.MatMulInteger(A[0] if zp_kind == "per_row" else A, B, a_zp, b_zp)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(conv_configs(), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.integers(1, 200))
def test_conv_integer_and_qlinear_conv_are_exact(cfg, xt, per_channel, channel_scale):
    _check_conv_integer_and_qlinear_conv(cfg, xt, per_channel, channel_scale)


def _check_conv_integer_and_qlinear_conv(cfg, xt, per_channel, channel_scale):
    N, C, spatial, M, G, kernel, bias, attrs, seed = cfg
    rng = np.random.default_rng(seed)
    if G == 1:
        C *= channel_scale  # long dot products too: the chunked exact GEMM
    x, w = _q(rng, (N, C, *spatial), xt), _q(rng, (M, C // G, *kernel), np.int8)
    x_zp, w_zp = _zp(rng, xt), _zp(rng, np.int8, M if per_channel else None)
    np.testing.assert_array_equal(kquant.ConvInteger(x, w, x_zp, w_zp, **attrs),
                                  rquant.ConvInteger(x, w, x_zp, w_zp, **attrs))
    w_scale = rng.uniform(1e-3, 1e-2, M if per_channel else ()).astype(np.float32)
    B = rng.integers(-5000, 5000, M).astype(np.int32) if bias else None
    args = (x, np.float32(0.02), x_zp, w, w_scale, w_zp, np.float32(0.7), _zp(rng, xt), B)
    np.testing.assert_array_equal(kquant.QLinearConv(*args, **attrs), rquant.QLinearConv(*args, **attrs))


@SETTINGS
@given(conv_configs(), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.integers(1, 200))
def test_conv_integer_gemm_path_is_exact(cfg, xt, per_channel, channel_scale):
    """The same, with the direct loops switched off (``DIRECT_MACS = 0``): every conv goes the
    widen + im2col + exact float32 BLAS way (K in exact chunks for the long dot products)."""
    old = kquant.DIRECT_MACS
    kquant.DIRECT_MACS = 0
    try:
        _check_conv_integer_and_qlinear_conv(cfg, xt, per_channel, channel_scale)
    finally:
        kquant.DIRECT_MACS = old


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 1500), st.integers(1, 9), st.sampled_from([np.uint8, np.int8]),
       st.integers(0, 2**31))
def test_qlinear_matmul_is_exact(M, K, N, dtype, seed):
    rng = np.random.default_rng(seed)
    args = (_q(rng, (M, K), dtype), np.float32(0.01), _zp(rng, dtype), _q(rng, (K, N), dtype),
            np.float32(0.02), _zp(rng, dtype), np.float32(3.0), _zp(rng, dtype))
    np.testing.assert_array_equal(kquant.QLinearMatMul(*args), rquant.QLinearMatMul(*args))


def test_int32_blocked_kernel_is_exact():
    rng = np.random.default_rng(3)
    a, b = rng.integers(-255, 256, (33, 700)), rng.integers(-255, 256, (700, 17))
    np.testing.assert_array_equal(kquant.matmul_int32_blocked(a, b, 16), a @ b)


# ----------------------------------------------------------------------------- wiring


def test_session_uses_kernels_unless_told_not_to():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, np.float32))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fast, ref = minirt.InferenceSession(model), minirt.InferenceSession(model, kernels=False)
    # the kernel's plan-time step (registry.kernel(prepare=...)) wraps the kernel for this node
    assert inspect.unwrap(fast._plan.steps[0].fn) is kconv.Conv and ref._plan.steps[0].fn is rconv.Conv
    x = _rand(np.random.default_rng(0), (1, 3, 8, 8))
    _close(fast.run(None, {"x": x})[0], ref.run(None, {"x": x})[0])


_PLAIN_PYTHON = """
import numpy as np
from minirt.kernels import conv, elementwise as activation, matmul, norm, pool, softmax
rng = np.random.default_rng(0)
x, w, b = rng.random((1, 2, 5, 5), np.float32), rng.random((2, 1, 3, 3), np.float32), np.zeros(2, np.float32)
assert not hasattr(conv.im2col, "py_func")  # the JIT is off: these are the plain functions
assert np.allclose(conv.Conv(x, w, b, group=2, pads=[1, 1, 1, 1]), conv.Conv_reference(x, w, b, group=2, pads=[1, 1, 1, 1]), atol=1e-5)
assert np.allclose(conv.Conv(x, w[:, :1].repeat(2, 1)), conv.Conv_reference(x, w[:, :1].repeat(2, 1)), atol=1e-5)
y = np.empty((1, 2, 3, 3), np.float32); conv.conv_loops(x, w, b, y, 1, 1, 0, 0, 1, 1, 2)
assert np.allclose(y, conv.Conv_reference(x, w, b, group=2), atol=1e-5)
xw, ww = rng.random((1, 64, 9, 8), np.float32), rng.random((3, 64, 3, 3), np.float32)
ww.flags.writeable = False  # read-only weights: the Winograd path
assert np.allclose(conv.PreparedConv(pads=[1, 1, 1, 1])(xw, ww), conv.Conv_reference(xw, ww, pads=[1, 1, 1, 1]), atol=1e-4)
assert np.allclose(matmul.matmul_blocked(x[0, 0], x[0, 1], 2), x[0, 0] @ x[0, 1], atol=1e-5)
assert np.allclose(softmax.LogSoftmax(x), softmax.LogSoftmax_reference(x), atol=1e-6)
xs = rng.random((3, 400), np.float32) * 20  # float32 from ROWS32_MIN elements: the vectorized exp
assert np.allclose(softmax.Softmax(xs), softmax.Softmax_reference(xs), atol=1e-6)
assert np.allclose(norm.LayerNormalization(x, b[:1].repeat(5) + 1)[0], norm.LayerNormalization_reference(x, b[:1].repeat(5) + 1)[0], atol=1e-5)
assert np.array_equal(pool.MaxPool(x, kernel_shape=[2, 2])[1], pool.MaxPool_reference(x, kernel_shape=[2, 2])[1])
same = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])  # the 3x3/1 pools over the stack of planes
assert np.array_equal(pool.prepare_pool(pool.max_pool_values, **same)(x), pool.MaxPool_reference(x, **same)[0])
assert np.allclose(pool.prepare_pool(pool.AveragePool, **same)(x), pool.AveragePool_reference(x, **same), atol=1e-6)
assert np.allclose(activation.Erf(x), activation.Erf_reference(x), atol=1e-6)
assert np.allclose(activation.Gelu(x), activation.Gelu_reference(x), atol=1e-6)
from minirt.kernels import quant
from minirt.ops import quant as rquant
xq, wq, z = rng.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8), rng.integers(-128, 128, (4, 1, 3, 3)).astype(np.int8), np.uint8(7)
assert np.array_equal(quant.ConvInteger(xq, wq, z, pads=[1, 0, 1, 2], group=2), rquant.ConvInteger(xq, wq, z, pads=[1, 0, 1, 2], group=2))  # the direct loops
step = quant.prepare_qlinear_conv(pads=[1, 1, 1, 1])
args = (xq, np.float32(0.1), z, wq[:, :1].repeat(2, 1), np.float32(0.01), np.int8(0), np.float32(0.2), np.uint8(3))
assert np.array_equal(step(*args), rquant.QLinearConv(*args, pads=[1, 1, 1, 1]))
xf, wq8 = rng.standard_normal((40, 64)).astype(np.float32), rng.integers(-128, 128, (64, 48)).astype(np.int8)
wq8.flags.writeable = False  # a BLAS-sized product: its epilogue runs in place on the output
qargs = (xf, np.float32(0.05), np.uint8(128), wq8, np.float32(0.01), None, rng.standard_normal(48).astype(np.float32))
assert np.array_equal(quant.QuantizeMatMul(*qargs), rquant.QuantizeMatMul(*qargs))
print("ok")
"""


def test_kernels_run_as_plain_python_without_the_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", _PLAIN_PYTHON], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# ----------------------------------------------------------------------------- int8: cached
# weights, fused requantization, QuantizeLinear / DynamicQuantizeLinear / QGemm /
# MatMulIntegerToFloat kernels (bit-exact against the reference ops)


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False  # as minirt's initializers are: the kernels cache their preparations
    return a


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 1200), st.integers(1, 9), st.sampled_from([np.uint8, np.int8]),
       st.sampled_from(["scalar", "per_column", "none"]), st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), st.integers(0, 2**31))
def test_qgemm_is_exact(M, K, N, ta, b_zp_kind, transA, transB, bias, float_out, seed):
    rng = np.random.default_rng(seed)
    A = _q(rng, (K, M) if transA else (M, K), ta)
    B = _readonly(_q(rng, (N, K) if transB else (K, N), np.int8))
    b_zp = {"scalar": _zp(rng, np.int8), "per_column": _zp(rng, np.int8, N), "none": None}[b_zp_kind]
    b_scale = rng.uniform(1e-3, 1e-1, N if b_zp_kind == "per_column" else ()).astype(np.float32)
    if b_zp is None:
        b_zp = np.int8(0)
    C = rng.integers(-2**31, 2**31, N).astype(np.int32) if bias else None  # overflow wraps as int32
    y = (None, None) if float_out else (np.float32(rng.uniform(0.01, 2)), _zp(rng, ta))
    args = (A, np.float32(0.03), _zp(rng, ta), B, b_scale, b_zp, C, *y)
    attrs = dict(alpha=float(rng.uniform(0.5, 2)), transA=int(transA), transB=int(transB))
    for _ in range(2):  # the second call runs on the cached preparation
        got, want = kquant.QGemm(*args, **attrs), rquant.QGemm(*args, **attrs)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 1200), st.integers(1, 9), st.sampled_from([np.uint8, np.int8]),
       st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_matmul_integer_to_float_is_exact(M, K, N, ta, per_column, bias, seed):
    rng = np.random.default_rng(seed)
    A, B = _q(rng, (2, M, K), ta), _readonly(_q(rng, (K, N), np.int8))
    b_scale = rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32)
    b_zp = _zp(rng, np.int8, N if per_column else None)
    args = (A, B, np.float32(0.02), b_scale, _zp(rng, ta), b_zp,
            rng.normal(size=N).astype(np.float32) if bias else None)
    for _ in range(2):
        got, want = kquant.MatMulIntegerToFloat(*args), rquant.MatMulIntegerToFloat(*args)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=300),
       st.floats(0.0001220703125, 10, width=32), st.sampled_from([np.uint8, np.int8]), st.integers(0, 2**31))
def test_quantize_linear_is_exact(values, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    x = np.asarray(values, np.float32).reshape(-1, 1)
    x = np.concatenate([x, np.float32(scale) * (np.arange(x.size, dtype=np.float32)[:, None] - 100.5)], 1)  # ties
    args = (x, np.float32(scale), _zp(rng, dtype))
    got, want = kquant.QuantizeLinear(*args), rquant.QuantizeLinear(*args)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    cached = (x, _readonly(np.float32(scale)), _readonly(args[2]))  # as initializers: prepared once
    for _ in range(2):
        np.testing.assert_array_equal(kquant.QuantizeLinear(*cached), want)


@SETTINGS
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=300), st.booleans())
def test_dynamic_quantize_linear_is_exact(values, positive):
    x = np.asarray(values, np.float32).reshape(1, -1)
    if positive:
        x = np.abs(x)
    for got, want in zip(kquant.DynamicQuantizeLinear(x), rquant.DynamicQuantizeLinear(x)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    x[0, 0] = np.nan  # non-finite input: the reference's rules
    with np.errstate(invalid="ignore"):
        for got, want in zip(kquant.DynamicQuantizeLinear(x), rquant.DynamicQuantizeLinear(x)):
            np.testing.assert_array_equal(got, want)


@SETTINGS
@given(conv_configs(), st.sampled_from([np.uint8, np.int8]), st.booleans())
def test_qlinear_conv_cached_weight_is_exact(cfg, xt, per_channel):
    N, C, spatial, M, G, kernel, bias, attrs, seed = cfg
    rng = np.random.default_rng(seed)
    w = _readonly(_q(rng, (M, C // G, *kernel), np.int8))
    w_zp = _readonly(_zp(rng, np.int8, M if per_channel else None))
    w_scale = _readonly(rng.uniform(1e-3, 1e-2, M if per_channel else ()).astype(np.float32))
    B = _readonly(rng.integers(-2**31, 2**31, M).astype(np.int32)) if bias else None
    for _ in range(2):  # first call prepares w, the second reuses it; a new x each time
        x = _q(rng, (N, C, *spatial), xt)
        args = (x, np.float32(0.02), _zp(rng, xt), w, w_scale, w_zp, np.float32(0.7), _zp(rng, xt), B)
        np.testing.assert_array_equal(kquant.QLinearConv(*args, **attrs), rquant.QLinearConv(*args, **attrs))


def test_weight_cache_is_safe():
    """Only read-only arrays are cached; an entry dies with its array; a writeable weight
    changed between calls gives the new result."""
    rng = np.random.default_rng(0)
    A = _q(rng, (3, 5), np.uint8)
    B = _q(rng, (5, 4), np.int8)
    np.testing.assert_array_equal(kquant.MatMulInteger(A, B), rquant.MatMulInteger(A, B))
    B[0] += 1  # writeable: never cached
    np.testing.assert_array_equal(kquant.MatMulInteger(A, B), rquant.MatMulInteger(A, B))
    view = B.view()
    view.flags.writeable = False  # read-only view of a writeable array: not cached either
    kquant.MatMulInteger(A, view)
    B[1] += 1
    np.testing.assert_array_equal(kquant.MatMulInteger(A, view), rquant.MatMulInteger(A, view))
    R = _readonly(B)
    kquant.MatMulInteger(A, R)
    assert id(R) in kquant._CACHE
    key = id(R)
    del R
    assert key not in kquant._CACHE  # freed with the weight


# ----------------------------------------------------------------------------- LSTM / GRU
# Not bit-exact (see minirt/kernels/recurrent.py): h @ R^T is summed in another order than
# BLAS, the biases are added in another order, Numba's exp/tanh may differ by an ulp. The gates
# squash (|sigmoid'| <= 1/4, |tanh'| <= 1) and |h| <= 1, so a float32 rounding difference stays
# ~1e-7 per step and does not grow: 1e-5 absolute over up to 30 steps is a wide margin.

from minirt.kernels import recurrent as krec  # noqa: E402
from minirt.ops import recurrent as rrec  # noqa: E402


@st.composite
def recurrent_configs(draw):
    seq, batch, n_in, H = draw(st.integers(1, 30)), draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 9))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    layout = draw(st.integers(0, 1))
    lens = draw(st.sampled_from(["none", "full", "ragged"]))
    flags = dict(bias=draw(st.booleans()), init=draw(st.booleans()), clip=draw(st.sampled_from([None, 0.5, 3.0])))
    return seq, batch, n_in, H, direction, layout, lens, flags, draw(st.integers(0, 2**31))


def _recurrent_inputs(cfg, gates, cell_state=False):
    seq, batch, n_in, H, direction, layout, lens, flags, seed = cfg
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    X = _rand(rng, (seq, batch, n_in) if layout == 0 else (batch, seq, n_in))
    W, R = _rand(rng, (D, gates * H, n_in)), _rand(rng, (D, gates * H, H))
    B = _rand(rng, (D, 2 * gates * H)) if flags["bias"] else None
    sl = {"none": None, "full": np.full(batch, seq, np.int32),
          "ragged": rng.integers(0, seq + 1, batch).astype(np.int32)}[lens]
    state_shape = (D, batch, H) if layout == 0 else (batch, D, H)
    states = [_rand(rng, state_shape) if flags["init"] else None for _ in range(2 if cell_state else 1)]
    attrs = dict(direction=direction, layout=layout, hidden_size=H, clip=flags["clip"])
    return rng, D, H, (X, W, R, B, sl, *states), attrs


def _close_all(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _close(g, w, tol=1e-5)


@SETTINGS
@given(recurrent_configs(), st.booleans(), st.booleans())
def test_lstm_kernel_matches_reference(cfg, peepholes, input_forget):
    rng, D, H, args, attrs = _recurrent_inputs(cfg, 4, cell_state=True)
    P = _rand(rng, (D, 3 * H)) if peepholes else None
    attrs["input_forget"] = int(input_forget)
    want = rrec.LSTM(*args, P, **attrs)
    _close_all(krec.LSTM(*args, P, **attrs), want)
    X, W, R, B, *rest = args  # read-only weights, as initializers are: prepared once, then cached
    ro = (X, _readonly(W), _readonly(R), None if B is None else _readonly(B), *rest)
    for _ in range(2):
        _close_all(krec.LSTM(*ro, None if P is None else _readonly(P), **attrs), want)


@SETTINGS
@given(recurrent_configs(), st.integers(0, 1))
def test_gru_kernel_matches_reference(cfg, linear_before_reset):
    _, _, _, args, attrs = _recurrent_inputs(cfg, 3)
    attrs["linear_before_reset"] = linear_before_reset
    want = rrec.GRU(*args, **attrs)
    _close_all(krec.GRU(*args, **attrs), want)
    X, W, R, B, *rest = args
    ro = (X, _readonly(W), _readonly(R), None if B is None else _readonly(B), *rest)
    for _ in range(2):
        _close_all(krec.GRU(*ro, **attrs), want)


def test_recurrent_kernels_fall_back_for_other_activations():
    rng = np.random.default_rng(1)
    X, W, R = _rand(rng, (5, 2, 3)), _rand(rng, (1, 16, 3)), _rand(rng, (1, 16, 4))
    attrs = dict(activations=["Sigmoid", "Relu", "Tanh"], hidden_size=4)
    _close_all(krec.LSTM(X, W, R, **attrs), rrec.LSTM(X, W, R, **attrs))
    Wg, Rg = _rand(rng, (1, 12, 3)), _rand(rng, (1, 12, 4))
    attrs = dict(activations=["HardSigmoid", "Tanh"], hidden_size=4)
    _close_all(krec.GRU(X, Wg, Rg, **attrs), rrec.GRU(X, Wg, Rg, **attrs))
    assert minirt.registry.lookup("", "LSTM", 17, kernels=True).fn is krec.LSTM
    assert minirt.registry.lookup("", "GRU", 7, kernels=True).fn is krec.GRU


# ----------------------------------------------------------------------------- OpenBLAS's workers


def test_others_running_stops_at_the_first_quiet_read(monkeypatch):
    """A read of /proc/stat with no more runnable threads than ours settles it (no 1 ms of
    re-reads after every slow call); a busy machine needs every read to say so."""
    import io

    for counts, want, reads in (([1, 9, 9], False, 1), ([5, 1, 9], False, 2), ([5, 5, 5], True, 3)):
        seen = []

        def fake_open(path, mode="r", counts=counts, seen=seen):
            seen.append(path)
            return io.BytesIO(b"cpu 1 2 3\nprocs_running %d\nprocs_blocked 0\n" % counts[len(seen) - 1])

        monkeypatch.setattr(kgemm, "open", fake_open, raising=False)
        assert kgemm.others_running(2) is want
        assert len(seen) == reads


def test_blas_workers_are_the_threads_that_wake_for_threaded_products(monkeypatch):
    """_blas_workers keeps the threads that wake for products on OpenBLAS's threads and not for
    the same products on one thread: not a thread that wakes either way (another runtime's
    pool), not an idle one."""

    class FakeBlas:
        n = 2

        def get_num_threads(self):
            return self.n

        def set_num_threads(self, n):
            self.n = n

    blas = FakeBlas()
    counts = {101: 0, 102: 0, 103: 0}

    def fake_wakes(tid):
        value = counts[tid]
        counts[tid] += {101: 6 if blas.n > 1 else 0, 102: 6, 103: 0}[tid]
        return value

    monkeypatch.setattr(kgemm, "_wakes", fake_wakes)
    monkeypatch.setattr(kgemm.os, "listdir", lambda path: ["101", "102", "103"])
    assert kgemm._blas_workers(blas) == [101]
    assert blas.n == 2  # its thread count restored


_PINNING = """
import os, threading
import minirt  # before NumPy: OpenBLAS's workers sleep after a short spin
import numpy as np
from minirt.kernels import gemm
blas = gemm._openblas()
if not blas or blas.get_num_threads() < 2 or len(os.sched_getaffinity(0)) < 2:
    print("skip"); raise SystemExit
a = np.ones((128, 2048), np.float32)
gemm.matmul(a.T.copy(), a)  # a big product on OpenBLAS's threads: its workers are pinned first
cpus = sorted(os.sched_getaffinity(0))
assert gemm._pinned, "no OpenBLAS worker found"
python_threads = {t.native_id for t in threading.enumerate()}
for i, tid in enumerate(gemm._pinned):
    assert tid not in python_threads
    assert os.sched_getaffinity(tid) == {cpus[(i + 1) % len(cpus)]}
assert os.sched_getaffinity(0) == set(cpus)  # the calling thread is never pinned
print("pinned" if os.environ.get("MINIRT_PIN_BLAS") != "0" else "?")
"""


@pytest.mark.parametrize("pin", ["1", "0"])
def test_openblas_workers_are_pinned_once_per_process(pin):
    """With minirt's short OpenBLAS spin, the first product on OpenBLAS's threads pins each of
    its workers to a CPU of its own (a product after a pause otherwise waited ~12 ms for a
    worker queued behind the caller, here); MINIRT_PIN_BLAS=0 leaves them alone."""
    if not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/self/task"):
        pytest.skip("needs Linux's thread affinity and /proc")
    env = dict(os.environ, MINIRT_PIN_BLAS=pin, MINIRT_SPIN="0")  # (the spinning helper never wakes them)
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)  # minirt's own short spin
    out = subprocess.run([sys.executable, "-c", _PINNING], env=env, capture_output=True, text=True, timeout=120)
    if out.stdout.strip() == "skip":
        pytest.skip("needs OpenBLAS with 2 threads and 2 CPUs")
    if pin == "1":
        assert out.returncode == 0 and out.stdout.strip() == "pinned", out.stderr[-3000:]
    else:
        assert "no OpenBLAS worker found" in out.stderr  # nothing pinned


def test_forked_child_pins_its_own_workers():
    """After a fork the child's OpenBLAS starts workers of its own (new thread ids): the child
    looks for them again rather than trusting the parent's list."""
    if not hasattr(os, "fork") or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs fork and thread affinity")
    code = _PINNING.replace('print("pinned" if', 'parent = list(gemm._pinned)\npid = os.fork()\nif pid == 0:\n    gemm.matmul(a.T.copy(), a)\n    os._exit(0 if gemm._pin_tries == 1 and set(gemm._pinned).isdisjoint(parent) and gemm._pinned else 3)\n_, status = os.waitpid(pid, 0)\nassert os.waitstatus_to_exitcode(status) == 0, "the child did not pin its own workers"\nprint("pinned" if')
    env = dict(os.environ, MINIRT_PIN_BLAS="1", MINIRT_SPIN="0")
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if out.stdout.strip() == "skip":
        pytest.skip("needs OpenBLAS with 2 threads and 2 CPUs")
    assert out.returncode == 0 and out.stdout.strip() == "pinned", out.stderr[-3000:]


def _ulps(a, b):
    """Distance in float32 ulps, element by element (finite a and b of one sign convention)."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def test_float32_erf_is_within_one_ulp_and_keeps_the_special_values():
    """The float32 Erf (a fitted rational function, scripts/fit_erf.py) against the correctly
    rounded erf on a dense grid and at its edges; NaN, the infinities and signed zeros as the
    C library's erf has them."""
    import math

    x = np.concatenate([np.linspace(-6, 6, 400_001, dtype=np.float32),
                        np.array([0.0, -0.0, 1e-30, -1e-38, 1e-45, 3.9199998, 3.92, 3.9200001, -3.92, 1e30],
                                 np.float32)])
    want = np.array([math.erf(v) for v in x.astype(np.float64)]).astype(np.float32)
    got = kact.Erf(x)
    assert got.dtype == np.float32 and _ulps(got, want).max() <= 1
    special = np.array([np.inf, -np.inf, np.nan, -0.0], np.float32)
    got = kact.Erf(special)
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2]) and got[3] == 0 and np.signbit(got[3])


def test_float32_gelu_matches_the_float64_reference():
    """Gelu on float32 computes 1 + erf in float64 from the fitted erf: within 1.5e-6 relative of
    the float64 reference where Gelu is not tiny, 1e-7 absolute where it is (1 + erf cancels for
    x < -3, where float32 arithmetic, onnxruntime's, would lose every digit: 2e-5 relative at
    x = -3); +-inf and NaN as the reference."""
    x = np.linspace(-8, 8, 200_001, dtype=np.float32)
    got, want = kact.Gelu(x), ract.Gelu(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1.5e-6, atol=1e-7)
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(kact.Gelu(special), ract.Gelu(special))


def test_erf_fit_script_checks_the_kernels_coefficients():
    """The coefficients in the kernel are the fit script's, and its float32 check passes on them."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    try:
        import fit_erf
    finally:
        sys.path.pop(0)
    p = [getattr(kact, f"_P{i}") for i in range(7)]
    q = [1.0] + [getattr(kact, f"_Q{i}") for i in range(1, 7)]
    assert fit_erf.X_MAX == kact.ERF_X_MAX
    assert fit_erf.check(np.array(p), np.array(q)) <= 1
