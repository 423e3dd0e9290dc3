"""MaxPool / AveragePool over 2-D windows.

Two ways to reduce a window, both here:

- **tap by tap** (the fast path): for each of the kh*kw taps of the kernel, one NumPy call over
  the strided view of the (padded) input that this tap reads for every output at once —
  ``y = max(y, x[:, :, ky::sh, kx::sw])`` — kh*kw vectorized passes over [N, C, oh, ow].
  AveragePool sums the taps of the zero-padded input and divides by each window's count, which
  is the same tap sum over an image of ones (so padding and the ceil_mode tail count exactly as
  the spec says). MaxPool pads with -inf (the dtype's minimum for integers): padding never wins.
- **window by window** (``_maxpool_loops``/``_avgpool_loops``): one Numba loop nest, parallel over
  (n, c) planes — the loops a student reads. MaxPool's Indices output needs it (which tap won),
  so ``MaxPool`` runs it; the Y-only ``minirt.MaxPool`` the graph passes make for a node that
  names no Indices (nearly all of them) runs ``max_pool_values``, tap by tap: 4x-7x faster
  (small images, below ``TAPS_MIN`` elements, run the serial window loops: less call overhead).

Handles the common configurations: 1-D or 2-D, no dilation, any strides, explicit or automatic
padding smaller than the kernel, ceil_mode. Windows are clipped to the image (padding never wins
a max, and is counted in an average only with count_include_pad=1 — never the ceil_mode tail).
Everything else (dilations, 3-D, float16, padding >= kernel) runs the reference.
"""

from __future__ import annotations

import numba
import numpy as np

from minirt.ops.conv import _window_pads
from minirt.ops.pool import AveragePool as AveragePool_reference
from minirt.ops.pool import MaxPool as MaxPool_reference
from minirt.registry import kernel

_MAX_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64))
_AVG_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _maxpool_loops(x, y, indices, kh, kw, sh, sw, ph, pw, storage_order):
    """y[n, c, oy, ox] = max of x[n, c] over the window at (oy*sh - ph, ox*sw - pw), clipped to x;
    indices = flat position of the first max in x (row-major, or column-major with storage_order=1).
    """
    N, C, H, W = x.shape
    _, _, oh, ow = y.shape
    for nc in numba.prange(N * C):
        n = nc // C
        c = nc % C
        for oy in range(oh):
            y0 = max(oy * sh - ph, 0)
            y1 = min(oy * sh - ph + kh, H)
            for ox in range(ow):
                x0 = max(ox * sw - pw, 0)
                x1 = min(ox * sw - pw + kw, W)
                best = x[n, c, y0, x0]
                by, bx = y0, x0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        v = x[n, c, iy, ix]
                        if v > best or (v != v and best == best):  # first max; a NaN wins (as argmax)
                            best, by, bx = v, iy, ix
                y[n, c, oy, ox] = best
                pos = by * W + bx if storage_order == 0 else bx * H + by
                indices[n, c, oy, ox] = nc * H * W + pos


def _avgpool_loops(x, y, kh, kw, sh, sw, ph, pw, pad_h_end, pad_w_end, count_include_pad):
    """y[n, c, oy, ox] = mean of x[n, c] over the window at (oy*sh - ph, ox*sw - pw).

    The sum runs over the window clipped to x; the count is that clipped size, or the window
    clipped to the explicitly padded image [-ph, H + pad_h_end) when count_include_pad=1.
    """
    N, C, H, W = x.shape
    _, _, oh, ow = y.shape
    for nc in numba.prange(N * C):
        n = nc // C
        c = nc % C
        for oy in range(oh):
            top = oy * sh - ph
            y0, y1 = max(top, 0), min(top + kh, H)
            for ox in range(ow):
                left = ox * sw - pw
                x0, x1 = max(left, 0), min(left + kw, W)
                total = 0.0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        total += x[n, c, iy, ix]
                if count_include_pad:
                    count = (min(top + kh, H + pad_h_end) - max(top, -ph)) * (
                        min(left + kw, W + pad_w_end) - max(left, -pw))
                else:
                    count = (y1 - y0) * (x1 - x0)
                y[n, c, oy, ox] = total / count


maxpool_loops = numba.njit(parallel=True, cache=True)(_maxpool_loops)
maxpool_loops_serial = numba.njit(cache=True)(_maxpool_loops)
# below this many input elements the tap-by-tap NumPy calls cost more in overhead (~2 us each,
# plus the padding copy) than the serial window loops take in all
TAPS_MIN = 1 << 14
avgpool_loops = numba.njit(parallel=True, cache=True)(_avgpool_loops)


def _plan(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """(x as [N, C, H, W], kernel, strides, out shape, begin pads, end pads), or None to fall back."""
    if X.ndim not in (3, 4) or kernel_shape is None or len(kernel_shape) != X.ndim - 2 or X.size == 0:
        return None
    if dilations is not None and any(d != 1 for d in dilations):
        return None
    n = X.ndim - 2
    kernel = list(kernel_shape)
    strides = list(strides or [1] * n)
    out, begin, end, _ = _window_pads(X.shape[2:], kernel, strides, [1] * n, pads, auto_pad, ceil_mode)
    if min(out) <= 0 or any(b >= k or e >= k for b, e, k in zip(begin, end, kernel)):
        return None  # a window could hold padding only: the reference knows what to do
    x = np.ascontiguousarray(X)
    if n == 1:  # [N, C, L] -> [N, C, 1, L]
        x, kernel, strides, out, begin, end = (x[:, :, None, :], [1] + kernel, [1] + strides,
                                                [1] + out, [0] + begin, [0] + end)
    return x, kernel, strides, out, begin, end


def _taps(xp, kh, kw, sh, sw, oh, ow):
    """The kh*kw strided views of padded xp [N, C, Hp, Wp]: tap (ky, kx) as seen by every output."""
    for ky in range(kh):
        for kx in range(kw):
            yield xp[:, :, ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw]  # [N, C, oh, ow]


def _pad_for_taps(x, kh, kw, sh, sw, oh, ow, ph, pw, value):
    """x [N, C, H, W] padded with ``value``: ph/pw before, and after as far as the last window reads."""
    H, W = x.shape[2:]
    after_h = max(0, (oh - 1) * sh - ph + kh - H)
    after_w = max(0, (ow - 1) * sw - pw + kw - W)
    if not (ph or pw or after_h or after_w):
        return x
    return np.pad(x, [(0, 0), (0, 0), (ph, after_h), (pw, after_w)], constant_values=value)


def max_pool_taps(x, kh, kw, sh, sw, oh, ow, ph, pw):
    """y [N, C, oh, ow] = max over each window of x [N, C, H, W], one np.maximum per tap."""
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    taps = _taps(_pad_for_taps(x, kh, kw, sh, sw, oh, ow, ph, pw, low), kh, kw, sh, sw, oh, ow)
    y = next(taps).copy()
    for tap in taps:
        np.maximum(y, tap, out=y)  # NaN propagates: a NaN in a window wins, as in the reference
    return y


def _sum_taps(x, kh, kw, sh, sw, oh, ow, ph, pw):
    taps = _taps(_pad_for_taps(x, kh, kw, sh, sw, oh, ow, ph, pw, 0), kh, kw, sh, sw, oh, ow)
    y = next(taps).copy()
    for tap in taps:
        y += tap
    return y


def avg_pool_taps(x, kh, kw, sh, sw, oh, ow, ph, pw, pad_h_end, pad_w_end, count_include_pad):
    """y [N, C, oh, ow] = mean over each window of x [N, C, H, W]: tap sums / window counts.

    The count of each window is the tap sum over ones: ones on the image, or on the image with its
    explicit padding when count_include_pad=1 (never the ceil_mode tail, which reads zeros).
    """
    H, W = x.shape[2:]
    if count_include_pad:
        ones = np.zeros((1, 1, H + ph + pad_h_end, W + pw + pad_w_end), dtype=x.dtype)
        ones[...] = 1  # the explicitly padded image
        count = _sum_taps(ones, kh, kw, sh, sw, oh, ow, 0, 0)  # [1, 1, oh, ow]
    else:
        count = _sum_taps(np.ones((1, 1, H, W), dtype=x.dtype), kh, kw, sh, sw, oh, ow, ph, pw)
    y = _sum_taps(x, kh, kw, sh, sw, oh, ow, ph, pw)
    y /= count
    return y


@kernel("MaxPool", since=1)
def MaxPool(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Fast MaxPool (Y and Indices); other configurations run the reference."""
    plan = None if X.dtype not in _MAX_DTYPES else _plan(X, kernel_shape, strides, dilations, pads,
                                                          auto_pad, ceil_mode)
    if plan is None:
        return MaxPool_reference(X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                                 kernel_shape=kernel_shape, pads=pads, storage_order=storage_order,
                                 strides=strides)
    x, (kh, kw), (sh, sw), (oh, ow), begin, _ = plan
    y = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=X.dtype)
    indices = np.empty(y.shape, dtype=np.int64)
    maxpool_loops(x, y, indices, kh, kw, sh, sw, begin[0], begin[1], int(storage_order))
    out_shape = X.shape[:2] + y.shape[4 - (X.ndim - 2):]  # drop the added height of a 1-D pool
    return y.reshape(out_shape), indices.reshape(out_shape)


@kernel("AveragePool", since=1)
def AveragePool(X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    """Fast AveragePool; other configurations run the reference."""
    plan = None if X.dtype not in _AVG_DTYPES else _plan(X, kernel_shape, strides, dilations, pads,
                                                          auto_pad, ceil_mode)
    if plan is None:
        return AveragePool_reference(X, auto_pad=auto_pad, ceil_mode=ceil_mode,
                                     count_include_pad=count_include_pad, dilations=dilations,
                                     kernel_shape=kernel_shape, pads=pads, strides=strides)
    x, (kh, kw), (sh, sw), (oh, ow), begin, end = plan
    y = avg_pool_taps(x, kh, kw, sh, sw, oh, ow, begin[0], begin[1], end[0], end[1], int(count_include_pad))
    return y.reshape(X.shape[:2] + y.shape[4 - (X.ndim - 2):])


def max_pool_values(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
                    storage_order=0, strides=None):
    """MaxPool's Y alone, tap by tap (no Indices: see the module doc); other configurations run
    the reference and drop its Indices."""
    plan = None if X.dtype not in _MAX_DTYPES else _plan(X, kernel_shape, strides, dilations, pads,
                                                          auto_pad, ceil_mode)
    if plan is None:
        return MaxPool_reference(X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                                 kernel_shape=kernel_shape, pads=pads, storage_order=storage_order,
                                 strides=strides)[0]
    x, (kh, kw), (sh, sw), (oh, ow), begin, _ = plan
    if x.size < TAPS_MIN:  # a small image: the serial window loops (their Indices are dropped)
        y = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=X.dtype)
        maxpool_loops_serial(x, y, np.empty(y.shape, np.int64), kh, kw, sh, sw, begin[0], begin[1], 0)
    else:
        y = max_pool_taps(x, kh, kw, sh, sw, oh, ow, begin[0], begin[1])
    return y.reshape(X.shape[:2] + y.shape[4 - (X.ndim - 2):])
