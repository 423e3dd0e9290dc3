"""MaxPool / AveragePool over 2-D windows.

Three ways to reduce a window, all here:

- **rows, then columns** (``_max_pool_rows`` / ``_avg_pool_rows``, the fast path for the Y-only
  ``minirt.MaxPool`` the graph passes make for a MaxPool whose Indices nobody reads, and for
  AveragePool): a window's max (sum) is the max over its kw columns of the max over its kh rows.
  Per (n, c) plane, one pass takes the kh rows of each output row into a padded row buffer, one
  pass takes the kw columns of that; every inner loop runs along a contiguous view, so LLVM
  vectorizes it. A short loop costs ~8 ns whatever it does, so for stride 1 the passes run over
  the whole (padded) plane at once, and 2x2 / 3x3 stride-2 windows take their columns in one
  loop (a runtime stride makes LLVM gather: ~3x slower). Parallel over chunks of planes, one a
  thread, from ``PARALLEL_MIN`` input elements (VGG's 3M-element maps); serial below (Numba's
  thread wake-up costs more: the loops are memory-bound).
  Measured serial on this 2-core Zen 4, float32: [1,64,112,112] 3x3 s2 p1 0.21-0.23 ms with the
  NaN scan (0.29-0.30 with NaN-aware comparisons; the tap-by-tap NumPy it replaces: ~0.9 ms,
  onnxruntime with 2 threads ~0.1-0.45 ms on the shared machine), [1,128,55,55] 3x3 s2 0.13 ms
  (0.16-0.17 before), [1,256,27,27] 3x3 s1 p1 0.11 ms (was 0.8 ms).
- **tap by tap** (``max_pool_taps``): for each of the kh*kw taps, one NumPy call over the strided
  view of the padded input that this tap reads for every output, ``y = max(y, x[:, :, ky::sh,
  kx::sw])``: kh*kw passes over [N, C, oh, ow]. The NumPy formulation, kept as a cross-check.
- **window by window** (``_maxpool_loops``/``_avgpool_loops``): one Numba loop nest, parallel over
  (n, c) planes — the loops a student reads. MaxPool's Indices output needs it (which tap won),
  so ``MaxPool`` runs it.

MaxPool pads with -inf (the dtype's minimum for integers): padding never wins; a NaN in a window
wins (the rows-then-columns loops compare plainly, which vectorizes: a float input holding a NaN,
found by one pass over its bits, runs tap by tap instead). AveragePool counts a window's
elements in the image, or in the explicitly padded image with count_include_pad=1 — never the
ceil_mode tail.

Handles the common configurations: 1-D or 2-D, no dilation, any strides, explicit or automatic
padding smaller than the kernel, ceil_mode. Everything else (dilations, 3-D, float16, padding >=
kernel) runs the reference.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from minirt.kernels._jit import renamed
from minirt.ops.conv import _window_pads
from minirt.ops.pool import AveragePool as AveragePool_reference
from minirt.ops.pool import GlobalAveragePool as GlobalAveragePool_reference
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


def _max_pool_rows(x, y, kh, kw, sh, sw, ph, pw, low, chunks):
    """y[n, c, oy, ox] = max of x[n, c] over the window at (oy*sh - ph, ox*sw - pw), in two passes.

    Rows first: ``v[oy, pw + j] = max over the window's rows iy of x[n, c, iy, j]``, ``low`` where
    the windows read padding (so padding never wins); then columns: ``y[n, c, oy, ox] = max over
    kx of v[oy, ox*sw + kx]``. Every inner loop runs over a contiguous view, one kernel row or
    column at a time, so LLVM vectorizes it. Short loops cost ~8 ns each, so with stride 1 a pass
    runs over the whole plane at once: the rows pass over the padded plane ``xp`` shifted by ky
    rows, the columns pass over v flattened and shifted by kx (``z``: a column of garbage at each
    row end, never copied out). 2x2 and 3x3 windows with stride 2 take their 2 or 3 columns in one
    loop — on rows of ``PAIRED_MIN_WIDTH`` outputs or more a 3x3 in two: each pair of columns
    (2t, 2t + 1) in one step, then the pairs' maxima against the next even column, both runs (the
    one loop read every other value). The comparisons are plain ``t > m``, which LLVM turns into
    vector max instructions; a NaN-aware one (``t > m or t != t``) made every loop scalar, 1.3-2x
    slower: a float x holding a NaN never comes here (``has_nan``, :func:`prepare_pool`). The
    (n, c) planes are split into ``chunks`` (one a thread).
    """
    N, C, H, W = x.shape
    _, _, oh, ow = y.shape
    Hp = (oh - 1) * sh + kh  # padded rows that the windows read
    Wr = -(-((ow - 1) * sw + kw) // sw) * sw  # padded columns that the windows read, a multiple of sw
    hi = min(H, Hp - ph)  # image rows that some window reads
    wj = min(W, Wr - pw)  # image columns that some window reads
    planes = N * C
    # each chunk's own buffers (made here: numba would hoist an allocation out of the prange body
    # and share it between the threads)
    vb = np.empty((chunks, oh, Wr), x.dtype)  # row maxima, padded
    vb[:] = low
    xpb = np.empty((chunks, Hp if sh == 1 else 0, Wr), x.dtype)  # the padded plane (stride 1 only)
    xpb[:] = low
    zb = np.empty((chunks, oh * Wr), x.dtype)  # stride 1: column maxima, flat, with a pitch of Wr
    half = Wr // 2
    pb = np.empty((chunks, 2, half if sw == 2 else 0), x.dtype)  # 3x3/2: a row's even columns, and pair maxima
    for chunk in numba.prange(chunks):
        v, xp, z = vb[chunk], xpb[chunk], zb[chunk]  # [oh, Wr], [Hp, Wr], [oh * Wr]
        even, pair = pb[chunk, 0], pb[chunk, 1]  # [Wr/2] each
        next_even = pb[chunk, 0, 1:]  # even[ox + 1]: column 2ox + 2
        vf, xpf = v.reshape(-1), xp.reshape(-1)
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            n = nc // C
            c = nc % C
            if sh == 1:  # rows pass over the whole padded plane: vf = max over ky of xpf shifted ky rows
                for iy in range(hi):
                    xrow, prow = x[n, c, iy], xp[ph + iy, pw:pw + wj]
                    for j in range(wj):
                        prow[j] = xrow[j]  # [wj] -> the padded plane
                for i in range(oh * Wr):
                    vf[i] = xpf[i]  # ky = 0
                for ky in range(1, kh):
                    tap = xpf[ky * Wr:(ky + oh) * Wr]  # [oh * Wr]: xp[oy + ky, :]
                    for i in range(oh * Wr):
                        t, m = tap[i], vf[i]
                        vf[i] = t if t > m else m  # max
            else:
                for oy in range(oh):
                    y0 = max(oy * sh - ph, 0)
                    y1 = min(oy * sh - ph + kh, H)
                    image, r0 = v[oy, pw:pw + wj], x[n, c, y0]  # [wj], [W]
                    r1, r2 = x[n, c, min(y0 + 1, y1 - 1)], x[n, c, min(y0 + 2, y1 - 1)]  # (r0 again past y1)
                    for j in range(wj):  # the window's first three rows in one loop
                        m, t = r0[j], r1[j]
                        m = t if t > m else m
                        t = r2[j]
                        image[j] = t if t > m else m
                    for iy in range(y0 + 3, y1):
                        xrow = x[n, c, iy]  # [W]
                        for j in range(wj):
                            t, m = xrow[j], image[j]
                            image[j] = t if t > m else m
            if sw == 1:  # columns pass over the whole plane: z = max over kx of vf shifted kx
                L = oh * Wr - (kw - 1)
                for i in range(L):
                    z[i] = vf[i]  # kx = 0
                for kx in range(1, kw):
                    tap = vf[kx:kx + L]  # [L]: vf[i + kx]
                    for i in range(L):
                        t, m = tap[i], z[i]
                        z[i] = t if t > m else m
                for oy in range(oh):
                    row, zrow = y[n, c, oy], z[oy * Wr:oy * Wr + ow]  # [ow]: drop the kw - 1 garbage
                    for ox in range(ow):
                        row[ox] = zrow[ox]
            elif sw == 2 and kw == 3 and ow >= PAIRED_MIN_WIDTH:  # the usual downsampling window, wide rows
                for oy in range(oh):
                    row, vr = y[n, c, oy], v[oy]  # [ow], [Wr]
                    for t in range(half):  # each pair of columns in one step: an interleaved load
                        m, u = vr[2 * t], vr[2 * t + 1]
                        even[t] = m  # column 2t
                        pair[t] = u if u > m else m  # columns 2t, 2t + 1
                    for ox in range(ow):  # ... and column 2ox + 2: a run, one on
                        m, u = pair[ox], next_even[ox]
                        row[ox] = u if u > m else m
            elif sw == 2 and (kw == 2 or kw == 3):  # ... and narrow ones: one loop a row
                for oy in range(oh):
                    row, vr = y[n, c, oy], v[oy]  # [ow], [Wr]
                    for ox in range(ow):
                        m, t = vr[2 * ox], vr[2 * ox + 1]
                        m = t if t > m else m
                        if kw == 3:
                            t = vr[2 * ox + 2]
                            m = t if t > m else m
                        row[ox] = m
            else:
                for oy in range(oh):
                    row, tap = y[n, c, oy], v[oy, 0:(ow - 1) * sw + 1:sw]  # [ow], [ow]: v[oy, ox*sw]
                    for ox in range(ow):
                        row[ox] = tap[ox]
                    for kx in range(1, kw):
                        tap = v[oy, kx:kx + (ow - 1) * sw + 1:sw]  # [ow]: v[oy, ox*sw + kx]
                        for ox in range(ow):
                            t, m = tap[ox], row[ox]
                            row[ox] = t if t > m else m


def _avg_pool_rows(x, y, kh, kw, sh, sw, ph, pw, pad_h_end, pad_w_end, count_include_pad, chunks):
    """y[n, c, oy, ox] = mean of x[n, c] over the window at (oy*sh - ph, ox*sw - pw), in two passes.

    As ``_max_pool_rows`` with sums (zeros in the padding): ``v[oy, pw + j] = sum over the window's
    rows of x[n, c, iy, j]``, ``y = (sum over kx of v[oy, ox*sw + kx]) / count[oy, ox]``. A window's
    count is the product of its height and width, each clipped to the image, or to the explicitly
    padded image [-ph, H + pad_h_end) when count_include_pad=1 (never the ceil_mode tail).
    """
    N, C, H, W = x.shape
    _, _, oh, ow = y.shape
    Hp = (oh - 1) * sh + kh
    Wr = -(-((ow - 1) * sw + kw) // sw) * sw
    hi = min(H, Hp - ph)
    wj = min(W, Wr - pw)
    lo_h, hi_h, lo_w, hi_w = (-ph, H + pad_h_end, -pw, W + pad_w_end) if count_include_pad else (0, H, 0, W)
    count = np.empty((oh, ow), y.dtype)  # [oh, ow]: how many elements each window averages
    for oy in range(oh):
        for ox in range(ow):
            count[oy, ox] = ((min(oy * sh - ph + kh, hi_h) - max(oy * sh - ph, lo_h))
                             * (min(ox * sw - pw + kw, hi_w) - max(ox * sw - pw, lo_w)))
    planes = N * C
    vb = np.zeros((chunks, oh, Wr), x.dtype)  # row sums, padded (each chunk its own)
    xpb = np.zeros((chunks, Hp if sh == 1 else 0, Wr), x.dtype)  # the padded plane (stride 1 only)
    zb = np.empty((chunks, oh * Wr), x.dtype)  # stride 1: column sums, flat, with a pitch of Wr
    for chunk in numba.prange(chunks):
        v, xp, z = vb[chunk], xpb[chunk], zb[chunk]  # [oh, Wr], [Hp, Wr], [oh * Wr]
        vf, xpf = v.reshape(-1), xp.reshape(-1)
        vs = v.reshape(oh, Wr // sw, sw)  # [oh, Wr / sw, sw]: vs[oy, i, s] = v[oy, i*sw + s]
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            n = nc // C
            c = nc % C
            if sh == 1:  # rows pass over the whole padded plane: vf = sum over ky of xpf shifted ky rows
                for iy in range(hi):
                    xrow, prow = x[n, c, iy], xp[ph + iy, pw:pw + wj]
                    for j in range(wj):
                        prow[j] = xrow[j]  # [wj] -> the padded plane
                for i in range(oh * Wr):
                    vf[i] = xpf[i]  # ky = 0
                for ky in range(1, kh):
                    tap = xpf[ky * Wr:(ky + oh) * Wr]  # [oh * Wr]: xp[oy + ky, :]
                    for i in range(oh * Wr):
                        vf[i] += tap[i]
            else:
                for oy in range(oh):
                    y0 = max(oy * sh - ph, 0)
                    y1 = min(oy * sh - ph + kh, H)
                    image, xrow = v[oy, pw:pw + wj], x[n, c, y0]  # [wj], [W]
                    for j in range(wj):
                        image[j] = xrow[j]
                    for iy in range(y0 + 1, y1):
                        xrow = x[n, c, iy]  # [W]
                        for j in range(wj):
                            image[j] += xrow[j]
            if sw == 1:  # columns pass over the whole plane: z = sum over kx of vf shifted kx
                L = oh * Wr - (kw - 1)
                for i in range(L):
                    z[i] = vf[i]  # kx = 0
                for kx in range(1, kw):
                    tap = vf[kx:kx + L]  # [L]: vf[i + kx]
                    for i in range(L):
                        z[i] += tap[i]
                for oy in range(oh):
                    row, zrow, crow = y[n, c, oy], z[oy * Wr:oy * Wr + ow], count[oy]  # [ow] each
                    for ox in range(ow):
                        row[ox] = zrow[ox] / crow[ox]
            elif sw == 2 and (kw == 2 or kw == 3):  # the usual downsampling windows: one loop a row
                for oy in range(oh):
                    row, crow = y[n, c, oy], count[oy]  # [ow], [ow]
                    for ox in range(ow):
                        total = vs[oy, ox, 0] + vs[oy, ox, 1]  # v[oy, 2*ox] + v[oy, 2*ox + 1]
                        if kw == 3:
                            total += vs[oy, ox + 1, 0]  # v[oy, 2*ox + 2]
                        row[ox] = total / crow[ox]
            else:
                for oy in range(oh):
                    row, crow = y[n, c, oy], count[oy]  # [ow], [ow]
                    tap = v[oy, 0:(ow - 1) * sw + 1:sw]  # [ow]: v[oy, ox*sw]
                    for ox in range(ow):
                        row[ox] = tap[ox]
                    for kx in range(1, kw):
                        tap = v[oy, kx:kx + (ow - 1) * sw + 1:sw]  # [ow]: v[oy, ox*sw + kx]
                        for ox in range(ow):
                            row[ox] += tap[ox]
                    for ox in range(ow):
                        row[ox] /= crow[ox]


def _top_bits(bits, mask):
    """max over i of bits[i] & mask: a float array seen as the integers of its width (bits), the
    sign masked off — its largest |x| as bits, above the bits of +inf only if it holds a NaN.
    Integer comparisons vectorize (float ones that must also catch a NaN do not)."""
    top = bits[0] & mask
    for i in range(1, bits.shape[0]):
        b = bits[i] & mask
        top = b if b > top else top
    return top


def _plane_means(x, y, count):
    """y[p] = (sum of x[p, :]) / count for each plane p of x [P, L] (y [P], count of x's dtype).
    Compiled with ``fastmath={"reassoc"}``: LLVM may reorder the sum, so it vectorizes (a sum
    in strict order runs one add at a time); the result differs from NumPy's pairwise sum by
    float rounding only (~1 ulp)."""
    P, L = x.shape
    for p in range(P):
        row = x[p]
        s = x.dtype.type(0)
        for i in range(L):
            s += row[i]
        y[p] = s / count


def _max_pool_3x3_same(x, y, v):
    """y = MaxPool 3x3, stride 1, one pixel of padding all round (Inception's pool branches), for
    the stack of planes x [P, H, W] at once (H, W >= 2): y [P, H, W], v [P*H*W] scratch.

    On small planes the per-plane loops of ``_max_pool_rows`` are a few pixels long and their
    fixed cost is the time. Here the planes are one flat array: v[i] = max(x[i - W], x[i],
    x[i + W]) and y[i] = max(v[i - 1], v[i], v[i + 1]) are each ONE long loop over all planes;
    the rows at a plane's top and bottom (which read the neighbouring plane) and the pixels at a
    row's ends (which read the neighbouring row) are then redone without the missing neighbour
    (the -inf padding never wins). Plain comparisons: a NaN would be dropped, so inputs holding
    one do not come here (``_nan_checked``)."""
    P, H, W = x.shape
    L = H * W
    n = P * L
    xf = x.reshape(n)
    yf = y.reshape(n)
    up, mid, down, vm = xf[0:], xf[W:], xf[2 * W:], v[W:]  # views from the shift: indexes >= 0
    for i in range(n - 2 * W):  # v[i + W] = max of x at i, i + W, i + 2W (rows above, at, below)
        a, b, c = up[i], mid[i], down[i]
        m = a if a > b else b
        vm[i] = m if m > c else c
    for p in range(P):  # each plane's first and last row: two rows, not three
        top, second = xf[p * L:], xf[p * L + W:]
        before, last = xf[p * L + L - 2 * W:], xf[p * L + L - W:]
        vt, vb = v[p * L:], v[p * L + L - W:]
        for j in range(W):
            vt[j] = top[j] if top[j] > second[j] else second[j]
            vb[j] = last[j] if last[j] > before[j] else before[j]
    left, here, right, ym = v[0:], v[1:], v[2:], yf[1:]
    for i in range(n - 2):  # y[i + 1] = max of v at i, i + 1, i + 2 (columns left, at, right)
        a, b, c = left[i], here[i], right[i]
        m = a if a > b else b
        ym[i] = m if m > c else c
    for r in range(P * H):  # each row's first and last pixel: two columns, not three
        f, e = r * W, r * W + W - 1
        yf[f] = v[f] if v[f] > v[f + 1] else v[f + 1]
        yf[e] = v[e] if v[e] > v[e - 1] else v[e - 1]


def _avg_pool_3x3_same(x, y, v, count):
    """y = AveragePool 3x3, stride 1, one pixel of padding all round, as :func:`_max_pool_3x3_same`
    with sums (a missing neighbour adds nothing), then y = sum / count: count [H*W] holds the
    window sizes of one plane (9 everywhere with count_include_pad=1; 4, 6 or 9 without)."""
    P, H, W = x.shape
    L = H * W
    n = P * L
    xf = x.reshape(n)
    yf = y.reshape(n)
    up, mid, down, vm = xf[0:], xf[W:], xf[2 * W:], v[W:]
    for i in range(n - 2 * W):
        vm[i] = up[i] + mid[i] + down[i]
    for p in range(P):
        top, second = xf[p * L:], xf[p * L + W:]
        before, last = xf[p * L + L - 2 * W:], xf[p * L + L - W:]
        vt, vb = v[p * L:], v[p * L + L - W:]
        for j in range(W):
            vt[j] = top[j] + second[j]
            vb[j] = before[j] + last[j]
    left, here, right, ym = v[0:], v[1:], v[2:], yf[1:]
    for i in range(n - 2):
        ym[i] = left[i] + here[i] + right[i]
    for r in range(P * H):
        f, e = r * W, r * W + W - 1
        yf[f] = v[f] + v[f + 1]
        yf[e] = v[e - 1] + v[e]
    for p in range(P):
        yp = yf[p * L:]
        for i in range(L):
            yp[i] = yp[i] / count[i]


plane_means = numba.njit(cache=True, fastmath={"reassoc"})(_plane_means)
max_pool_3x3_same = numba.njit(cache=True)(_max_pool_3x3_same)
avg_pool_3x3_same = numba.njit(cache=True, error_model="numpy")(_avg_pool_3x3_same)  # numpy: no zero check, the division vectorizes
top_bits = numba.njit(cache=True)(_top_bits)
maxpool_loops = numba.njit(parallel=True, cache=True)(_maxpool_loops)  # MaxPool with Indices
avgpool_loops = numba.njit(parallel=True, cache=True)(_avgpool_loops)  # the teaching loops (tests)
max_pool_rows = numba.njit(parallel=True, cache=True)(_max_pool_rows)
max_pool_rows_serial = numba.njit(cache=True)(renamed(_max_pool_rows, "serial"))  # small inputs: no thread wake-up
avg_pool_rows = numba.njit(parallel=True, cache=True)(_avg_pool_rows)
avg_pool_rows_serial = numba.njit(cache=True)(renamed(_avg_pool_rows, "serial"))  # (own Numba cache entry: _jit.py)
PAIRED_MIN_WIDTH = 20  # output columns from which a 3x3/2 max pool takes its columns a pair at a time (one
#                        loop a row: [1, 64, 112, 112] 177 -> 140 us, [1, 128, 55, 55] 106 -> 93; 13 wide 0.99-1.01x)
PARALLEL_MIN = 1 << 21  # input elements: below this, waking Numba's threads costs more than it saves
#                        (round-robin medians: [1,64,224,224] 2x2/2 parallel 0.90 ms, serial 1.12; [1,128,112,112]
#                        0.44 / 0.45; [1,512,28,28] 0.21 / 0.15; [1,576,14,14] 3x3/1 avg 0.23 / 0.18)


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


# per float dtype: the integers of its width, the mask that clears the sign bit, and +inf's bits
_NAN_BITS = {np.dtype(np.float32): (np.int32, np.int32(0x7FFF_FFFF), 0x7F80_0000),
             np.dtype(np.float64): (np.int64, np.int64(0x7FFF_FFFF_FFFF_FFFF), 0x7FF0_0000_0000_0000)}


def has_nan(x):
    """Whether the contiguous x holds a NaN (False for integer dtypes): one vectorized pass over
    its bits (~40 us for 3 MB; ``np.isnan(x).any()`` makes a bool array first)."""
    if x.dtype not in _NAN_BITS or x.size == 0:
        return False
    itype, mask, inf = _NAN_BITS[x.dtype]
    return int(top_bits(x.reshape(-1).view(itype), mask)) > inf


def all_finite(x):
    """Whether the contiguous float32/float64 x holds no inf and no NaN: the same pass over its
    bits as :func:`has_nan` (its largest |x| is finite)."""
    if x.size == 0:
        return True
    itype, mask, inf = _NAN_BITS[x.dtype]
    return int(top_bits(x.reshape(-1).view(itype), mask)) < inf


def _nan_checked(rows):
    """``rows`` (a ``_max_pool_rows`` kernel), except for an x that holds a NaN: the kernel's
    plain comparisons would drop it, so that x runs :func:`max_pool_taps`, whose np.maximum
    propagates it (a NaN in a window wins, as in the reference). The scan costs ~1 us on a small
    pool."""
    def run(x, y, kh, kw, sh, sw, ph, pw, low, chunks):
        if has_nan(x):
            y[...] = max_pool_taps(x, kh, kw, sh, sw, y.shape[2], y.shape[3], ph, pw)
        else:
            rows(x, y, kh, kw, sh, sw, ph, pw, low, chunks)
    return run


def _same_3x3_rows(x_shape, dtype, avg, count_include_pad):
    """:func:`_max_pool_3x3_same` / :func:`_avg_pool_3x3_same` for x of ``x_shape`` [N, C, H, W],
    called as the rows kernels are (their other arguments unused). Round-robin medians, us
    (``prepare_pool``'s node before -> after): MaxPool [1, 512, 13, 13] 101-110 -> 34-35,
    [1, 832, 6, 6] 69 -> 22; AveragePool [1, 576, 14, 14] 167-175 -> 61, [1, 256, 28, 28] 261 -> 83."""
    N, C, H, W = x_shape
    if avg:  # the window sizes of one plane: rows inside times columns inside (or 9 with the padding)
        inside = [(min(i + 2, n) - max(i - 1, 0)) for n in (H, W) for i in range(n)]
        rows_in, cols_in = np.array(inside[:H]), np.array(inside[H:])
        count = np.full(H * W, 9, dtype) if count_include_pad else np.outer(rows_in, cols_in).astype(dtype).reshape(-1)

    def rows(x, y, *_):
        v = np.empty(x.size, x.dtype)  # [N*C*H*W]: the row maxima / sums
        if avg:
            avg_pool_3x3_same(x.reshape(N * C, H, W), y.reshape(N * C, H, W), v, count)
        else:
            max_pool_3x3_same(x.reshape(N * C, H, W), y.reshape(N * C, H, W), v)

    return rows


def _rows_and_chunks(x, parallel, serial):
    """The row kernel for x [N, C, H, W] and how many chunks of planes it splits them into."""
    if x.size < PARALLEL_MIN:
        return serial, 1
    return parallel, min(x.shape[0] * x.shape[1], numba.get_num_threads())


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


def prepare_pool(op, **attrs):
    """The plan-time step of a rows-then-columns pool node, ``op`` :func:`AveragePool` or
    :func:`max_pool_values` with the node's ``attrs``: per input shape and dtype, what ``_plan``
    decides (geometry, padding, the serial or parallel kernel) is worked out on the first run and
    kept (a small pool's call was half geometry: [1, 16, 8, 8] 2x2/2 5.9 -> 2.9 us)."""
    avg = op is AveragePool
    dtypes = _AVG_DTYPES if avg else _MAX_DTYPES
    pool_attrs = (attrs.get("kernel_shape"), attrs.get("strides"), attrs.get("dilations"), attrs.get("pads"),
                  attrs.get("auto_pad", "NOTSET"), attrs.get("ceil_mode", 0))
    calls = {}  # (X.shape, X.dtype) -> (kernel, X as [N, C, H, W], Y's shape, its 4-D shape, kernel args); None: op

    def decide(X):
        plan = _plan(X, *pool_attrs) if X.dtype in dtypes else None
        if plan is None:
            return None
        x, (kh, kw), (sh, sw), (oh, ow), begin, end = plan
        if avg and (kh, kw) == x.shape[2:] and not any(begin) and not any(end):
            return None  # the whole plane: AveragePool runs GlobalAveragePool
        rows, chunks = _rows_and_chunks(x, *((avg_pool_rows, avg_pool_rows_serial) if avg
                                              else (max_pool_rows, max_pool_rows_serial)))
        if ((kh, kw, sh, sw) == (3, 3, 1, 1) and begin == [1, 1] and end == [1, 1] and min(x.shape[2:]) >= 2
                and chunks == 1):  # 3x3/1 "same" pools of small planes: the stack of planes at once
            rows = _same_3x3_rows(x.shape, X.dtype, avg, int(attrs.get("count_include_pad", 0)))
        if not avg and X.dtype.kind == "f":
            rows = _nan_checked(rows)
        y4 = (x.shape[0], x.shape[1], oh, ow)
        if avg:
            args = (kh, kw, sh, sw, begin[0], begin[1], end[0], end[1], int(attrs.get("count_include_pad", 0)), chunks)
        else:
            low = -math.inf if X.dtype.kind == "f" else int(np.iinfo(X.dtype).min)
            args = (kh, kw, sh, sw, begin[0], begin[1], low, chunks)
        return rows, x.shape, X.shape[:2] + y4[4 - (X.ndim - 2):], y4, args

    def pool(X):
        key = (X.shape, X.dtype)
        call = calls.get(key, False)
        if call is False:
            call = decide(X)
            if len(calls) >= 8:  # one entry per input shape: a few at most
                calls.clear()
            calls[key] = call
        if call is None:
            return op(X, **attrs)
        rows, x_shape, y_shape, y4, args = call
        y = np.empty(y4, dtype=X.dtype)
        rows(np.ascontiguousarray(X).reshape(x_shape), y, *args)  # [N, C, H, W] -> [N, C, oh, ow]
        return y.reshape(y_shape)

    return functools.update_wrapper(pool, op)


@kernel("AveragePool", since=1, prepare=lambda **attrs: prepare_pool(AveragePool, **attrs))
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
    if (kh, kw) == x.shape[2:] and not any(begin) and not any(end):  # one window, the whole plane
        return GlobalAveragePool(X)  # (GoogLeNet's last 7x7 pool: 0.2 -> 0.03 ms on [1, 1024, 7, 7])
    y = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=X.dtype)
    rows, chunks = _rows_and_chunks(x, avg_pool_rows, avg_pool_rows_serial)
    rows(x, y, kh, kw, sh, sw, begin[0], begin[1], end[0], end[1], int(count_include_pad), chunks)
    return y.reshape(X.shape[:2] + y.shape[4 - (X.ndim - 2):])


def max_pool_values(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
                    storage_order=0, strides=None):
    """MaxPool's Y alone, rows then columns (no Indices: see the module doc); other configurations
    run the reference and drop its Indices."""
    plan = None if X.dtype not in _MAX_DTYPES else _plan(X, kernel_shape, strides, dilations, pads,
                                                          auto_pad, ceil_mode)
    if plan is None:
        return MaxPool_reference(X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                                 kernel_shape=kernel_shape, pads=pads, storage_order=storage_order,
                                 strides=strides)[0]
    x, (kh, kw), (sh, sw), (oh, ow), begin, _ = plan
    y = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=X.dtype)
    low = -math.inf if X.dtype.kind == "f" else int(np.iinfo(X.dtype).min)
    rows, chunks = _rows_and_chunks(x, max_pool_rows, max_pool_rows_serial)
    if X.dtype.kind == "f":
        rows = _nan_checked(rows)
    rows(x, y, kh, kw, sh, sw, begin[0], begin[1], low, chunks)  # a Python number: NumPy scalars dispatch slowly
    return y.reshape(X.shape[:2] + y.shape[4 - (X.ndim - 2):])


@kernel("GlobalAveragePool", since=1)
def GlobalAveragePool(X):
    """Fast GlobalAveragePool for float32/float64: one Numba pass sums each (n, c) plane, then
    divides by its size (``_plane_means``: 3-7x faster than NumPy's reduction, which pays per
    plane: [1, 32, 8, 8] 3.6 -> 1.2 us, [1, 1000, 13, 13] 48 -> 10 us)."""
    if X.dtype not in _AVG_DTYPES or X.ndim < 3 or X.size == 0:
        return GlobalAveragePool_reference(X)
    N, C = X.shape[:2]
    y = np.empty((N, C) + (1,) * (X.ndim - 2), dtype=X.dtype)  # [N, C, 1, ...]
    planes = np.ascontiguousarray(X).reshape(N * C, -1)  # [N, C, *in] -> [N*C, L]
    plane_means(planes, y.reshape(N * C), X.dtype.type(planes.shape[1]))
    return y
