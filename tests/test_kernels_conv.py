"""The fast Conv's paths (minirt/kernels/conv.py) against the reference op, each path forced.

Paths: depthwise loops (serial and parallel builds; stride 1 runs the flat-plane loop, other
strides the phase-split rows), the stride-1 run copy (``wide_columns``), the strided im2col, the
pointwise GEMM, the shifted GEMM and the direct loops of small group-1 convs. Tolerance: float32 sums of up to ~600 products of values in
[-1, 1], in another order than the reference's: 1e-4 relative / absolute.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.kernels import conv as kconv
from minirt.ops import conv as rconv
from test_kernels import _close, _rand  # tests/ is on sys.path (conftest.py)

SETTINGS = settings(deadline=None, max_examples=25)


def _windows(draw):
    """A 2-D window geometry: kernel 1-5, strides 1-3, dilations 1-2, pads below the dilated
    kernel, an image 0-9 pixels larger than it -> (kernel, attrs, image size)."""
    k = [draw(st.integers(1, 5)), draw(st.integers(1, 5))]
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    extent = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    pads = [draw(st.integers(0, e - 1)) for e in extent] + [draw(st.integers(0, e - 1)) for e in extent]
    HW = [draw(st.integers(e, e + 9)) for e in extent]
    return k, dict(strides=s, dilations=d, pads=pads), HW


@st.composite
def depthwise_cases(draw):
    k, attrs, HW = _windows(draw)
    C, mult, N = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    return N, C, mult, HW, k, dict(attrs, group=C), draw(st.integers(0, 2**31))


@SETTINGS
@given(depthwise_cases(), st.sampled_from(["serial", "parallel"]))
def test_depthwise_loops_match_reference(case, build):
    """Both builds, any stride / dilation / asymmetric pads / channel multiplier (M = mult * C)."""
    N, C, mult, HW, k, attrs, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = _rand(rng, (N, C, *HW)), _rand(rng, (C * mult, 1, *k)), _rand(rng, (C * mult,))
    want = rconv.Conv(x, w, b, **attrs)
    got = np.empty_like(want)
    loops, chunks = (kconv.depthwise_loops, 2) if build == "parallel" else (kconv.depthwise_loops_serial, 1)
    (sh, sw), (dh, dw), p = attrs["strides"], attrs["dilations"], attrs["pads"]
    loops(x, w, b, got, sh, sw, p[0], p[1], dh, dw, chunks, *kconv.NO_EPILOGUE)
    _close(got, want)
    if C > 1 and mult == 1:  # the op picks the depthwise path itself
        _close(kconv.Conv(x, w, b, **attrs), want)


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 5), st.integers(1, 3), st.integers(2, 12), st.integers(2, 12),
       st.sampled_from(["serial", "parallel"]), st.booleans(), st.integers(0, 2**31))
def test_depthwise_3x3_same_loops_match_reference(N, C, mult, H, W, build, with_z, seed):
    """The 3x3 stride-1 pad-1 depthwise loops over unpadded planes (rows and columns of two up,
    a channel multiplier, batch 2, both builds), with a residual Z and a Clip in their pass."""
    rng = np.random.default_rng(seed)
    x, w, b = _rand(rng, (N, C, H, W)), _rand(rng, (C * mult, 1, 3, 3)), _rand(rng, (C * mult,))
    want = rconv.Conv(x, w, b, pads=[1, 1, 1, 1], group=C)
    z = _rand(rng, want.shape) if with_z else np.empty((0, 0, 0, 0), np.float32)
    if with_z:
        want = want + z
    want = np.clip(want, np.float32(-0.5), np.float32(0.75))
    got = np.empty_like(want)
    loops, chunks = ((kconv.depthwise_3x3_same_loops, 2) if build == "parallel"
                     else (kconv.depthwise_3x3_same_loops_serial, 1))
    loops(x, w, b, got, chunks, z, np.float32(-0.5), np.float32(0.75), 0, np.float32(0), np.float32(0))
    _close(got, want)
    run = kconv.conv2d_runner(x.shape, x.dtype, w, b, (1, 1), (1, 1, 1, 1), (1, 1), C, (H, W))
    small = H * W <= kconv.DEPTHWISE_CHANNELS_LAST_MAX and mult == 1  # (the channels-last loops instead)
    assert run.__name__ == ("run_depthwise_channels_last" if small else "run_depthwise_3x3") or C == 1
    # (one channel, one group: a group-1 conv)


@SETTINGS
@given(depthwise_cases(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_depthwise_channels_last_matches_reference(case, with_z, dtype):
    """The channels-last loops of small outputs, any stride / dilation / asymmetric pads, batch
    2, float32 and float64, with a residual Z and a Clip in their pass; and the op picks them for
    outputs of up to DEPTHWISE_CHANNELS_LAST_MAX pixels."""
    N, C, _, HW, k, attrs, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (_rand(rng, (N, C, *HW)).astype(dtype), _rand(rng, (C, 1, *k)).astype(dtype),
               _rand(rng, (C,)).astype(dtype))
    want = rconv.Conv(x, w, b, **attrs)
    z = _rand(rng, want.shape).astype(dtype) if with_z else np.empty((0, 0, 0, 0), dtype)
    if with_z:
        want = want + z
    lo, hi = dtype(-0.5), dtype(0.75)
    want = np.clip(want, lo, hi)
    got = np.empty_like(want)
    (sh, sw), (dh, dw), p = attrs["strides"], attrs["dilations"], attrs["pads"]
    kconv.depthwise_channels_last(x, w, b, got, sh, sw, p[0], p[1], dh, dw, z, lo, hi, 0, dtype(0), dtype(0))
    _close(got, want)
    assert got.dtype == dtype
    if C > 1:  # the runner picks this path for small outputs
        run = kconv.conv2d_runner(x.shape, x.dtype, w, b, tuple(attrs["strides"]), tuple(p), tuple(attrs["dilations"]),
                                  C, want.shape[2:])
        assert (run.__name__ == "run_depthwise_channels_last") == (want.shape[2] * want.shape[3]
                                                                   <= kconv.DEPTHWISE_CHANNELS_LAST_MAX)


def test_depthwise_big_enough_for_threads_and_non_contiguous_input():
    rng = np.random.default_rng(1)
    x = _rand(rng, (1, 96, 48, 96))[:, :, :, ::2]  # a strided view: [1, 96, 48, 48]
    w, b = _rand(rng, (96, 1, 3, 3)), _rand(rng, (96,))
    assert 96 * 48 * 48 * 9 >= kconv.DEPTHWISE_PARALLEL_MIN  # stride 1 runs the parallel build
    for s in (1, 2):
        attrs = dict(group=96, pads=[1, 1, 1, 1], strides=[s, s])
        _close(kconv.Conv(x, w, b, **attrs), rconv.Conv(x, w, b, **attrs))
    assert x.base is not None and not x.flags.c_contiguous  # the caller's view is left as it was


@st.composite
def stride1_cases(draw):
    k = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    extent = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    pads = [draw(st.integers(0, e - 1)) for e in extent] + [draw(st.integers(0, e - 1)) for e in extent]
    HW = [draw(st.integers(e, e + 12)) for e in extent]
    G = draw(st.sampled_from([1, 1, 2]))
    C, M = G * draw(st.integers(1, 4)), G * draw(st.integers(1, 4))
    return draw(st.integers(1, 2)), C, M, G, HW, k, dict(dilations=d, pads=pads, group=G), draw(st.integers(0, 2**31))


@SETTINGS
@given(stride1_cases(), st.booleans())
def test_stride1_paths_match_reference(case, bias):
    """Stride 1 takes the runs over the padded width when the padding adds few columns, ow columns
    per row when it adds many; the shifted GEMM when M <= C/2 — every one of them must match."""
    N, C, M, G, HW, k, attrs, seed = case
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (N, C, *HW)), _rand(rng, (M, C // G, *k))
    b = _rand(rng, (M,)) if bias else None
    _close(kconv.Conv(x, w, b, **attrs), rconv.Conv(x, w, b, **attrs))


@st.composite
def direct_cases(draw):
    k, attrs, HW = _windows(draw)
    C, M, N = draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 2))
    return N, C, M, HW, k, attrs, draw(st.integers(0, 2**31))


@SETTINGS
@given(direct_cases(), st.booleans())
def test_direct_loops_match_reference(case, bias):
    """The direct loops of small group-1 convs, forced at any size: kernels of 1-5 taps a row
    (passes of three taps and the rest), strides and dilations (stride phases), any pads, output
    channels that are not a multiple of four, batch 2."""
    N, C, M, HW, k, attrs, seed = case
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (N, C, *HW)), _rand(rng, (M, C, *k))
    b = _rand(rng, (M,)) if bias else None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kconv, "DIRECT_MIN_LENGTH", 1)  # every group-1 conv of more than one tap
        got = kconv.Conv(x, w, b, **attrs)
    _close(got, rconv.Conv(x, w, b, **attrs))


def test_direct_path_is_taken_for_small_convs_only():
    """The size rule: resnet_mini's 16->16 3x3 on 32x32 runs direct, a 16->64 3x3 on 55x55 (28 M
    multiply-adds) and an 8x8 map (passes of 80) do not."""
    w = np.zeros((16, 16, 3, 3), np.float32)
    run = kconv.conv2d_runner((1, 16, 32, 32), np.dtype(np.float32), w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, (32, 32))
    assert run.__name__ == "run_direct"
    big = kconv.conv2d_runner((1, 16, 55, 55), np.dtype(np.float32), np.zeros((64, 16, 3, 3), np.float32), None,
                              (1, 1), (1, 1, 1, 1), (1, 1), 1, (55, 55))
    small_map = kconv.conv2d_runner((1, 48, 8, 8), np.dtype(np.float32), np.zeros((48, 48, 3, 3), np.float32), None,
                                    (1, 1), (1, 1, 1, 1), (1, 1), 1, (8, 8))
    assert big.__name__ != "run_direct" and small_map.__name__ != "run_direct"


@pytest.mark.parametrize("contiguous", [True, False])
def test_pointwise_one_image_matches_reference(contiguous):
    """The batch-1 group-1 pointwise runner (2-D views, no loop): with bias, a residual Z and Relu,
    on a contiguous image and on a strided view of one."""
    from minirt.passes import fused_ops

    rng = np.random.default_rng(8)
    x = _rand(rng, (1, 10, 6, 7))
    x = x[:, ::2] if not contiguous else x[:, :5]
    w, b, z = _rand(rng, (7, 5, 1, 1)), _rand(rng, (7,)), _rand(rng, (1, 7, 6, 7))
    run = kconv.conv2d_runner(x.shape, x.dtype, w, b, (1, 1), (0, 0, 0, 0), (1, 1), 1, (6, 7))
    assert run.__name__ == "run_pointwise_one"
    _close(fused_ops.FusedConv_fast(x, w, b, z, activation="Relu"), np.maximum(rconv.Conv(x, w, b) + z, 0))
    _close(kconv.Conv(x, w), rconv.Conv(x, w))


@pytest.mark.parametrize("extra", [0.0, 1.0])
def test_runs_and_windows_agree(monkeypatch, extra):
    """The same stride-1 conv down both column layouts (WIDE_MAX_EXTRA forces one or the other)."""
    monkeypatch.setattr(kconv, "WIDE_MAX_EXTRA", extra)
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, (2, 6, 9, 11)), _rand(rng, (8, 6, 3, 2)), _rand(rng, (8,))
    attrs = dict(pads=[1, 0, 2, 1], dilations=[2, 1])
    _close(kconv.Conv(x, w, b, **attrs), rconv.Conv(x, w, b, **attrs))


def test_window_columns_copies_runs_of_the_padded_image():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # C=2, H=3, W=4
    kh = kw = 3
    oh, ow = 3, 4  # pads 1 all round
    Hp, Wp = oh + kh - 1, ow + kw - 1
    xp = kconv.padded_flat(x, 1, 1, Hp, Wp)  # [2, (Hp+1)*Wp]
    assert xp.shape == (2, (Hp + 1) * Wp) and xp.sum() == x.sum()
    cols = np.empty((2 * 9, oh * Wp), np.float32)
    kconv.window_columns(xp, Wp, kh, kw, 1, 1, 1, 1, 0, oh, Wp, cols)
    # row (c=1, ky=1, kx=1) is channel 1 itself: output (oy, ox) over the padded width reads x[1, oy, ox]
    centre = cols[9 + 4].reshape(oh, Wp)[:, :ow]
    np.testing.assert_array_equal(centre, x[1])
    # a run is the flat padded image itself, from its tap's offset: row (c=0, ky=2, kx=1)
    np.testing.assert_array_equal(cols[7], xp[0, 2 * Wp + 1:2 * Wp + 1 + oh * Wp])


@pytest.mark.parametrize("jit", [True, False])
def test_window_columns_match_im2col_loops(jit):
    """The strided-view copy and the plain-loop im2col write the same columns (strides,
    dilations, asymmetric pads, a band of rows further down)."""
    rng = np.random.default_rng(5)
    x = _rand(rng, (3, 11, 9))
    kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = 3, 2, 2, 3, 1, 2, 1, 2, 2, 0
    oh = (11 + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    ow = (9 + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    Hp, Wp = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1
    loops = kconv.im2col if jit else kconv._im2col
    want = np.empty((3 * kh * kw, oh * ow), np.float32)
    loops(x, want, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    xp = kconv.padded_flat(x, pt, pl, Hp, Wp)
    got = kconv.window_columns(xp, Wp, kh, kw, sh, sw, dh, dw, 0, oh, ow, np.empty_like(want))
    np.testing.assert_array_equal(got, want)
    band = kconv.window_columns(xp, Wp, kh, kw, sh, sw, dh, dw, 2, oh - 2, ow,
                                np.empty((3 * kh * kw, (oh - 2) * ow), np.float32))
    np.testing.assert_array_equal(band, want.reshape(-1, oh, ow)[:, 2:].reshape(3 * kh * kw, -1))


@SETTINGS
@given(C=st.integers(1, 4), H=st.integers(1, 12), W=st.integers(1, 12), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), jit=st.booleans(), band=st.integers(0, 3))
def test_run_columns_match_the_strided_view(C, H, W, kh, kw, sh, sw, dh, dw, pads, jit, band):
    """The Numba pad (split by stride phase) + run copy write, for every output, the pixels that
    NumPy's padded copy and strided view write (strides, dilations, asymmetric pads, a band of
    rows further down), as Numba builds and as plain Python; the padded image of stride 1 is the
    plain padded image."""
    pt, pl, pb, pr = pads
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    oh, ow = (H + pt + pb - eh) // sh + 1, (W + pl + pr - ew) // sw + 1
    if oh <= band or ow <= 0 or H + pt + pb < eh or W + pl + pr < ew:
        return
    Hp, Wp = (oh - 1) * sh + eh, (ow - 1) * sw + ew
    Hq, Wq = -(-Hp // sh), -(-Wp // sw)
    x = _rand(np.random.default_rng(C * H * W), (C, H, W))
    pad_into, run_columns = (kconv.pad_into, kconv.run_columns) if jit else (kconv._pad_into, kconv._run_columns)
    xph = np.zeros((C, sh * sw, Hq + 1, Wq), np.float32)
    pad_into(x, xph, pt, pl, sh, sw)
    xp = kconv.padded_flat(x, pt, pl, Hp, Wp)
    want_xp = np.zeros((C, Hp + 1, Wp), np.float32)
    h, w = min(H, Hp - pt), min(W, Wp - pl)
    want_xp[:, pt:pt + h, pl:pl + w] = x[:, :h, :w]
    np.testing.assert_array_equal(xp, want_xp.reshape(C, -1))
    if sh == sw == 1:
        np.testing.assert_array_equal(xph.reshape(C, -1), xp)
    rows, K = oh - band, C * kh * kw
    want = kconv.window_columns(xp, Wp, kh, kw, sh, sw, dh, dw, band, rows, ow, np.empty((K, rows * ow), np.float32))
    got = np.empty((K, rows * Wq), np.float32)
    run_columns(xph.reshape(C, sh * sw, -1), got, kh, kw, sh, sw, dh, dw, band, rows, Wq)
    # computed over the phases' width Wq: the first ow columns of each output row are the outputs
    np.testing.assert_array_equal(got.reshape(K, rows, Wq)[:, :, :ow], want.reshape(K, rows, ow))


@pytest.mark.parametrize("H, W, k, s", [(4, 4, 3, 2), (8, 7, 2, 2), (7, 8, 2, 2), (9, 9, 2, 2), (6, 5, 1, 2)])
def test_padding_after_only_reads_a_padded_copy(H, W, k, s):
    """SAME_UPPER pads at the end only (no padding before): the windows then reach past the image,
    so they must read a padded copy, not the image itself (which sits next to the next channel)."""
    rng = np.random.default_rng(6)
    x, w = _rand(rng, (2, 3, H, W)), _rand(rng, (4, 3, k, k))
    attrs = dict(auto_pad="SAME_UPPER", strides=[s, s], kernel_shape=[k, k])
    _close(kconv.Conv(x, w, **attrs), rconv.Conv(x, w, **attrs))


def test_strided_im2col_matches_reference_windows():
    rng = np.random.default_rng(3)
    for s, p in ((2, 3), (3, 0), (2, 1)):
        x, w = _rand(rng, (1, 3, 17, 15)), _rand(rng, (4, 3, 7, 7))
        attrs = dict(strides=[s, s], pads=[p, p, p, p])
        _close(kconv.Conv(x, w, **attrs), rconv.Conv(x, w, **attrs))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_bands_of_output_rows_match_reference(monkeypatch, stride, group, bias):
    """Big images are cut into bands of output rows shared by the threads: force a band per
    row (and a few rows per band) on a small image, both column builders, groups, batch 2."""
    rng = np.random.default_rng(4)
    x, w = _rand(rng, (2, 4, 11, 13)), _rand(rng, (6, 4 // group, 3, 3))
    b = _rand(rng, (6,)) if bias else None
    attrs = dict(pads=[1, 2, 0, 1], strides=[stride, stride], group=group)
    want = rconv.Conv(x, w, b, **attrs)
    monkeypatch.setattr(kconv, "BAND_MIN_COLUMNS", 1)
    monkeypatch.setattr(kconv, "blas_threads", lambda: 2)  # the banded path even on one core
    for band_bytes in (1, 4 * 36 * 2 * 15):  # one output row a band; two rows a band
        monkeypatch.setattr(kconv, "BAND_BYTES", band_bytes)
        _close(kconv.Conv(x, w, b, **attrs), want)


_PATHS = {  # name: (C, M, group, kernel, strides, image) picking one path of conv2d each (3x3: pads 1)
    "depthwise": (6, 6, 6, 3, 1, 9), "depthwise 3x3/2": (6, 6, 6, 3, 2, 9), "shifted": (8, 3, 1, 3, 1, 9), "pointwise": (5, 7, 1, 1, 1, 9),
    "runs": (4, 6, 1, 3, 1, 12), "im2col": (4, 6, 1, 3, 2, 11), "im2col 7x7": (3, 5, 1, 3, 1, 5),
    "grouped runs": (4, 6, 2, 3, 1, 12), "unpadded 1x1/2": (5, 7, 1, 1, 2, 9),
    "strided runs": (3, 5, 1, 3, 2, 41),  # 3x3/2 on 41x41: the stride phases' runs (1 extra column in 21)
    "strided runs 14x14": (3, 5, 1, 3, 2, 14),  # 3x3/2 to 7x7: 1 extra column in 8, 14% (runs since stop 13)
    "direct": (4, 6, 1, 3, 1, 12), "strided direct": (3, 5, 1, 3, 2, 41),  # the direct loops (M % 4 = 2, 1)
}


def _take_path(monkeypatch, path):
    """The direct loops for the "direct" paths (whatever their size), never for the others (they
    would take small convs from the column paths these tests are about)."""
    if "direct" in path:
        monkeypatch.setattr(kconv, "DIRECT_MIN_LENGTH", 1)
    else:
        monkeypatch.setattr(kconv, "DIRECT_MACS", 0)


@pytest.mark.parametrize("path", sorted(_PATHS))
@pytest.mark.parametrize("activation", ["", "Relu", "Clip", "HardSigmoid", "HardSwish"])
@pytest.mark.parametrize("with_z", [False, True])
@pytest.mark.parametrize("banded", [False, True])
def test_fused_epilogue_is_the_unfused_sequence(monkeypatch, path, activation, with_z, banded):
    """FusedConv's kernel folds bias, Z and Relu/Clip/HardSigmoid/HardSwish into the conv's last
    pass: bit-identical to Conv, then Add, then the activation (NaN passes through), on every path
    of conv2d."""
    from minirt.passes import fused_ops

    if banded:
        for name, value in (("BAND_BYTES", 1), ("BAND_MIN_COLUMNS", 1)):
            monkeypatch.setattr(kconv, name, value)
    _take_path(monkeypatch, path)
    C, M, G, k, s, hw = _PATHS[path]
    rng = np.random.default_rng(5)
    x, w, b = _rand(rng, (2, C, hw, hw)), _rand(rng, (M, C // G, k, k)), _rand(rng, (M,))
    x[0, 0, 0, 0] = np.nan
    attrs = dict(pads=[1, 1, 1, 1] if k == 3 else [0] * 4, strides=[s, s], group=G, kernel_shape=[k, k])
    plain = kconv.Conv(x, w, b, **attrs)
    z = _rand(rng, plain.shape) if with_z else None
    params = {"Clip": [-0.25, 0.5], "HardSigmoid": [0.3, 0.4]}.get(activation)
    want = fused_ops._epilogue_in_place(plain.copy(), z, activation, params)
    got = fused_ops.FusedConv_fast(x, w, b, z, activation=activation, activation_params=params, **attrs)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any()  # the NaN came through the epilogue
    ref = fused_ops.FusedConv(x, w, b, z, activation=activation, activation_params=params, **attrs)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- the prepared node


def _fused(activation="Relu", params=None, **attrs):
    """The callable a plan runs for one FusedConv node (its kernel's plan-time step)."""
    from minirt.passes import fused_ops

    return fused_ops.prepare_fused_conv(activation=activation, activation_params=params, **attrs)


@pytest.mark.parametrize("path", sorted(_PATHS))
def test_prepared_node_follows_shapes_and_weights(monkeypatch, path):
    """A prepared node keeps a runner per input shape with the arrays it was built for: other
    shapes, other weight arrays, or the same writeable weights changed in place between runs
    must all give what the unprepared kernel gives (it holds views, never copies)."""
    from minirt.passes import fused_ops

    _take_path(monkeypatch, path)
    C, M, G, k, s, hw = _PATHS[path]
    rng = np.random.default_rng(7)
    attrs = dict(pads=[1, 1, 1, 1] if k == 3 else [0] * 4, strides=[s, s], group=G, kernel_shape=[k, k])
    node = _fused(**attrs)
    w, b = _rand(rng, (M, C // G, k, k)), _rand(rng, (M,))

    def check(x, w, b, z=None):
        want = fused_ops.FusedConv_fast(x, w, b, z, activation="Relu", **attrs)
        np.testing.assert_array_equal(node(x, w, b, z), want)

    x1, x3 = _rand(rng, (1, C, hw, hw)), _rand(rng, (3, C, hw + 1, hw + 1))
    for _ in range(2):  # built, then reused
        check(x1, w, b)
        check(x3, w, b)
    w[0] += 1.0  # the same (writeable) arrays, changed in place
    b[:] = -b
    check(x1, w, b)
    check(x1, w.copy(), None)  # other arrays: a runner of their own
    y = node(x1, w, b)
    check(x1, w, b, _rand(rng, y.shape))  # a residual Z
    check(x1, w, b, _rand(rng, (1, M, 1, 1)))  # a Z that broadcasts: the separate Add
    check(x1, np.asfortranarray(w), b)  # non-contiguous weights: not kept, still right


def test_prepared_node_keeps_a_few_shapes_and_falls_back():
    node = kconv.PreparedConv(pads=[1, 1, 1, 1])
    rng = np.random.default_rng(3)
    w = _rand(rng, (2, 3, 3, 3))
    for hw in range(3, 3 + kconv.PreparedConv.MAX_SHAPES + 2):
        x = _rand(rng, (1, 3, hw, hw))
        _close(node(x, w), rconv.Conv(x, w, pads=[1, 1, 1, 1]))
    assert 1 <= len(node.runners) <= kconv.PreparedConv.MAX_SHAPES
    # cases the fast path does not take: None, and the plan's Conv then runs the reference
    assert node(x.astype(np.float16), w.astype(np.float16)) is None
    conv = kconv.prepare_conv(pads=[1, 1, 1, 1])
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    np.testing.assert_array_equal(conv(x16, w16), rconv.Conv(x16, w16, pads=[1, 1, 1, 1]))
    x1d, w1d = _rand(rng, (2, 3, 9)), _rand(rng, (4, 3, 3))  # a 1-D conv: the unprepared kernel
    _close(conv(x1d, w1d), rconv.Conv(x1d, w1d, pads=[1, 1]))


def test_two_bands_run_whole(monkeypatch):
    """A conv whose columns and product two bands would cover runs whole, on OpenBLAS's own
    threads; from three bands the threads share the bands (run_blas_pieces)."""
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (1, 4, 12, 12)), _rand(rng, (6, 4, 3, 3))
    want = rconv.Conv(x, w, pads=[1, 1, 1, 1])
    per_row = (4 * 9 + 6) * 14 * 4  # bytes of columns and product of one output row (runs: 14 wide)
    calls = []
    real = kconv.run_blas_pieces
    monkeypatch.setattr(kconv, "run_blas_pieces", lambda pieces: (calls.append(len(pieces)), real(pieces))[1])
    monkeypatch.setattr(kconv, "BAND_MIN_COLUMNS", 1)
    monkeypatch.setattr(kconv, "blas_threads", lambda: 2)
    for rows, banded in ((6, False), (7, False), (5, True), (2, True)):  # 12 output rows
        calls.clear()
        monkeypatch.setattr(kconv, "BAND_BYTES", rows * per_row)
        _close(kconv.Conv(x, w, pads=[1, 1, 1, 1]), want)
        assert bool(calls) == banded, (rows, calls)
