"""Fast 2-D Conv: im2col in a Numba loop + one BLAS matmul, a direct depthwise loop kernel.

The reference ``minirt.ops.conv.Conv`` is the spec. This kernel picks, per call:

- **1x1, stride 1, no padding**: the image already *is* the column matrix,
  ``Y[n] = W[M, C] @ X[n][C, H*W]`` — one GEMM, no copy at all;
- **few output channels** (group 1, stride 1, no dilation, k x k, at most half as many output
  channels as input channels — DenseNet's 3x3 128->32): ``shifted_gemm``, no im2col at all. One GEMM
  multiplies every tap's weights by the zero-padded image, ``R[t*M + m, p] = W[m, :, t] . x[:, p]``,
  and the output is the sum of the kh*kw tap blocks of R, each shifted by its tap's offset in the
  flattened padded image (an output row is computed over the padded width; the extra columns are
  dropped). It writes kh*kw*M values per pixel where im2col writes kh*kw*C: 2x-4x less memory
  traffic when M is small. (Known as "kn2row".)
- **depthwise** (``group == C``, one input channel per group): ``_depthwise_loops``, a direct
  loop (each output channel reads one input channel, so a GEMM would be a waste), run serially on
  blocks of channels shared between threads by :func:`minirt.kernels.gemm.run_pieces`;
- **everything else 2-D** (k x k, strides, padding, dilations, groups): ``_im2col`` writes one
  batch item's windows into a contiguous ``[C*kh*kw, oh*ow]`` buffer (row by row), then one
  ``matmul`` (:mod:`minirt.kernels.gemm`: BLAS on both cores) multiplies every group at once ``[G, M/G, C/G*K] @ [G, C/G*K, L]`` (BLAS, float32);
- 1-D convs run as 2-D ones with a height of 1; 3-D convs, float16 and mixed dtypes fall back to
  the reference.

``_conv_loops`` is the teaching kernel: the convolution sum written as seven plain loops. It is
tested against the reference but not used by default (it is ~100x slower than BLAS on big convs).
"""

from __future__ import annotations

import numba
import numpy as np

from minirt.kernels.gemm import matmul, run_pieces
from minirt.ops.conv import Conv as Conv_reference
from minirt.ops.conv import _window_pads
from minirt.registry import kernel

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------- loop kernels


def _conv_loops(x, w, b, y, sh, sw, ph, pw, dh, dw, group):
    """The convolution sum as plain loops (the teaching kernel).

    y[n, m, oy, ox] = b[m] + sum_{c, ky, kx} x[n, g*Cg + c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] * w[m, c, ky, kx]
    x [N, C, H, W], w [M, C/G, kh, kw], b [M], y [N, M, oh, ow] (written); taps outside x read 0.
    """
    N, C, H, W = x.shape
    M, Cg, kh, kw = w.shape
    _, _, oh, ow = y.shape
    Mg = M // group
    for nm in numba.prange(N * M):  # one (batch item, output channel) per task
        n = nm // M
        m = nm % M
        g = m // Mg  # the group of this output channel
        for oy in range(oh):
            for ox in range(ow):
                acc = b[m]
                for c in range(Cg):
                    for ky in range(kh):
                        iy = oy * sh - ph + ky * dh
                        if iy < 0 or iy >= H:
                            continue
                        for kx in range(kw):
                            ix = ox * sw - pw + kx * dw
                            if ix >= 0 and ix < W:
                                acc += x[n, g * Cg + c, iy, ix] * w[m, c, ky, kx]
                y[n, m, oy, ox] = acc


def _valid_range(out_len, stride, offset, size):
    """The outputs o in [lo, hi) whose tap o*stride + offset falls inside [0, size)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride  # ceil(-offset / stride)
    hi = 0
    if size - 1 - offset >= 0:
        hi = (size - 1 - offset) // stride + 1
    return lo, max(lo, min(out_len, hi))


def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Copy the windows of one image into columns: x [C, H, W] -> cols [C*kh*kw, oh*ow].

    Row r = (c, ky, kx) holds, for every output position, the input pixel that tap sees
    (0 outside the image). Rows are independent and could be filled in parallel, but the copy is
    memory-bound (~0.5 ms for ResNet's 3x3 64-channel layer) and a Numba thread pool waking right
    next to OpenBLAS's threads costs more than it saves: it runs on one thread, BLAS uses both.
    """
    C, H, W = x.shape
    for r in range(C * kh * kw):
        c = r // (kh * kw)
        ky = (r // kw) % kh
        kx = r % kw
        off = kx * dw - pw  # output column ox reads input column ox*sw + off
        lo, hi = _valid_range(ow, sw, off, W)  # the columns inside the image: no test per pixel
        for oy in range(oh):
            row = oy * ow
            iy = oy * sh - ph + ky * dh
            if iy < 0 or iy >= H:
                cols[r, row:row + ow] = 0  # the whole output row reads padding
                continue
            cols[r, row:row + lo] = 0
            if sw == 1:  # a contiguous run: a vectorized copy
                cols[r, row + lo:row + hi] = x[c, iy, lo + off:hi + off]
            elif hi > lo:  # every sw-th pixel: a strided slice copy (20-27% faster than a loop)
                cols[r, row + lo:row + hi] = x[c, iy, lo * sw + off:(hi - 1) * sw + off + 1:sw]
            cols[r, row + hi:row + ow] = 0


def _depthwise_loops(x, w, b, y, sh, sw, ph, pw, dh, dw):
    """Depthwise conv (group == C): output channel m reads only input channel m // (M/C).

    x [N, C, H, W], w [M, 1, kh, kw], b [M], y [N, M, oh, ow] (written).
    """
    N, C, H, W = x.shape
    M, _, kh, kw = w.shape
    _, _, oh, ow = y.shape
    mult = M // C
    for nm in numba.prange(N * M):
        n = nm // M
        m = nm % M
        c = m // mult
        for oy in range(oh):
            for ox in range(ow):
                y[n, m, oy, ox] = b[m]
        for ky in range(kh):  # accumulate tap by tap: the inner loop runs along a row
            for kx in range(kw):
                wv = w[m, 0, ky, kx]
                ox_lo, ox_hi = _valid_range(ow, sw, kx * dw - pw, W)
                for oy in range(oh):
                    iy = oy * sh - ph + ky * dh
                    if iy < 0 or iy >= H:
                        continue
                    for ox in range(ox_lo, ox_hi):
                        y[n, m, oy, ox] += wv * x[n, c, iy, ox * sw - pw + kx * dw]


# wrapped once: plain Python again under NUMBA_DISABLE_JIT=1
_valid_range = numba.njit(cache=True, inline="always")(_valid_range)
conv_loops = numba.njit(parallel=True, cache=True)(_conv_loops)
im2col = numba.njit(cache=True)(_im2col)  # serial: see the docstring
depthwise_loops = numba.njit(parallel=True, cache=True)(_depthwise_loops)
# serial, and releasing the GIL: conv2d runs it on blocks of channels with run_pieces (a thread
# that is not running on a busy machine takes fewer blocks, where Numba's pool would wait for it)
depthwise_loops_nogil = numba.njit(cache=True, nogil=True)(_depthwise_loops)


# ----------------------------------------------------------------------------- the op


def shifted_gemm(x, W, pt, pl, out_shape):
    """One image, stride 1, no dilation, group 1: x [C, H, W] -> [M, oh, ow] without im2col.

    Each tap t = (ky, kx) reads the zero-padded image shifted by ky rows and kx columns. With the
    padded image flattened row by row (width Wp), that shift is an offset ``ky*Wp + kx`` in one
    flat array, so all taps share ONE matrix product and differ only by where they read it.
    """
    C, H, Wd = x.shape
    M, _, kh, kw = W.shape
    oh, ow = out_shape
    Hp, Wp = oh + kh - 1, ow + kw - 1  # the padded image (stride 1): pt/pl before, the rest after
    xp = np.zeros((C, Hp + 1, Wp), dtype=x.dtype)  # one spare row: the last taps read past the end
    xp[:, pt:pt + H, pl:pl + Wd] = x
    w = W.transpose(2, 3, 0, 1).reshape(kh * kw * M, C)  # [M, C, kh, kw] -> [kh*kw*M, C] (small copy)
    R = matmul(w, xp.reshape(C, -1))  # [kh*kw*M, C] @ [C, (Hp+1)*Wp] -> [kh*kw*M, (Hp+1)*Wp]
    L = oh * Wp  # the outputs over the padded width
    y = R[0:M, 0:L].copy()  # tap (0, 0)
    for t in range(1, kh * kw):
        off = (t // kw) * Wp + t % kw  # tap (ky, kx): ky rows and kx columns further on
        y += R[t * M:(t + 1) * M, off:off + L]  # [M, oh*Wp]
    return y.reshape(M, oh, Wp)[:, :, :ow]  # drop the columns computed over the right padding


def conv2d(X, W, B, strides, pads, dilations, group, out_shape):
    """Y = Conv(X, W, B) for 2-D float32/float64 X [N, C, H, W] with explicit pads [pt, pl, pb, pr]."""
    N, C, H, Wd = X.shape
    M, Cg, kh, kw = W.shape
    oh, ow = out_shape
    sh, sw = strides
    dh, dw = dilations
    ph, pw = pads[0], pads[1]
    G, L = group, oh * ow
    X = np.ascontiguousarray(X)
    W = np.ascontiguousarray(W)
    y = np.empty((N, M, oh, ow), dtype=X.dtype)
    if G == C and Cg == 1 and G > 1:  # depthwise: a direct loop kernel, bias included
        b = np.zeros(M, X.dtype) if B is None else np.ascontiguousarray(B, dtype=X.dtype)
        mult, step = M // C, max(1, -(-C // (2 * numba.get_num_threads())))  # 2 blocks a thread

        def block(c0):  # input channels [c0, c0 + step) -> output channels [c0*mult, (c0 + step)*mult)
            m = slice(c0 * mult, (c0 + step) * mult)
            depthwise_loops_nogil(X[:, c0:c0 + step], W[m], b[m], y[:, m], sh, sw, ph, pw, dh, dw)

        small = X.size < 1 << 14  # a small image: one call, no threads
        run_pieces([lambda c0=c0: block(c0) for c0 in range(0, C, step)], 1 if small else numba.get_num_threads())
        return y
    if G == 1 and sh == sw == dh == dw == 1 and kh * kw > 1 and 2 * M <= C:  # few output channels
        for n in range(N):
            y[n] = shifted_gemm(X[n], W, ph, pw, out_shape)  # [C, H, W] -> [M, oh, ow]
        if B is not None:
            y += B.reshape(1, M, 1, 1).astype(X.dtype, copy=False)
        return y
    w = W.reshape(G, M // G, Cg * kh * kw)  # [M, C/G, kh, kw] -> [G, M/G, C/G*K] (a view)
    pointwise = kh == kw == 1 and sh == sw == 1 and not any(pads)
    cols = None if pointwise else np.empty((C * kh * kw, L), dtype=X.dtype)
    for n in range(N):
        if pointwise:
            cols = X[n].reshape(C, L)  # [C, H, W] -> [C, H*W]: already the column matrix
        else:
            im2col(X[n], cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)  # [C, H, W] -> [C*K, L]
        # [G, M/G, C/G*K] @ [G, C/G*K, L] -> [G, M/G, L], written straight into y[n]
        matmul(w, cols.reshape(G, Cg * kh * kw, L), out=y[n].reshape(G, M // G, L))  # BLAS: kernels/gemm.py
    if B is not None:
        y += B.reshape(1, M, 1, 1).astype(X.dtype, copy=False)  # in place: no second output array
    return y


@kernel("Conv", since=1)
def Conv(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """Fast Conv: 1-D and 2-D float32/float64; other cases run the reference ``minirt.ops.conv.Conv``."""
    args = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                pads=pads, strides=strides)
    if (X.ndim not in (3, 4) or X.dtype not in _FAST_DTYPES or W.dtype != X.dtype
            or (B is not None and B.dtype != X.dtype) or X.shape[1] != W.shape[1] * group):
        return Conv_reference(X, W, B, **args)
    one_d = X.ndim == 3
    if one_d:  # [N, C, L] -> [N, C, 1, L]: a 1-D conv is a 2-D conv of height 1
        X, W = X[:, :, None, :], W[:, :, None, :]
        strides = [1] + list(strides or [1])
        dilations = [1] + list(dilations or [1])
        pads = None if pads is None else [0, pads[0], 0, pads[1]]
    strides = list(strides or [1, 1])
    dilations = list(dilations or [1, 1])
    out_shape, begin, end, _ = _window_pads(X.shape[2:], W.shape[2:], strides, dilations, pads, auto_pad)
    if min(out_shape) <= 0 or X.shape[0] == 0:
        return Conv_reference(X[:, :, 0] if one_d else X, W[:, :, 0] if one_d else W, B, **args)
    y = conv2d(X, W, B, strides, begin, dilations, group, out_shape)
    return y[:, :, 0, :] if one_d else y  # [N, M, 1, L] -> [N, M, L]
