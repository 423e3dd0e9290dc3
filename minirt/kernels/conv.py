"""Fast 2-D Conv: columns + one BLAS matmul, and a direct depthwise loop kernel.

The reference ``minirt.ops.conv.Conv`` is the spec. This kernel picks, per call:

- **depthwise** (``group == C``, one input channel per group): ``_depthwise_loops``, a direct
  loop (each output channel reads one input channel, so a GEMM would be a waste); each plane is
  copied into a zero-padded buffer first, so every tap is a long contiguous loop that LLVM
  vectorizes (see its docstring); FusedConv's Z and activation are applied as it writes y. The
  common 3x3, stride-1, pad-1 case runs ``_depthwise_3x3_same_loops`` instead, straight from the
  unpadded planes (no per-row copies: 272 planes of 14x14 97 -> 67 us, 112 of 56x56 363 -> 156).
  Numba's parallel build from ``DEPTHWISE_PARALLEL_MIN`` multiply-adds, the serial build below
  (a thread-pool wake-up costs ~50 us);
- **1x1, stride 1, no padding**: the image already *is* the column matrix,
  ``Y[n] = W[M, C] @ X[n][C, H*W]`` — one GEMM, no copy at all (batch 1, group 1: on 2-D views);
- **3x3, stride 1, group 1, read-only weights** (every 3x3 conv of VGG, ResNet, DenseNet and
  Inception with at least 32 input channels and a 7x7 map): Winograd's F(2x2, 3x3)
  (:mod:`minirt.kernels.winograd`), 2.25x fewer multiplies than the columns' GEMM;
- **few output channels** (group 1, stride 1, no dilation, k x k, at most half as many output
  channels as input channels — DenseNet's 3x3 128->32 took it before Winograd; now 3x3 convs
  on maps under 7x7, other kernels, and writeable weights): ``shifted_gemm``, no im2col at all. One GEMM
  multiplies every tap's weights by the zero-padded image, ``R[t*M + m, p] = W[m, :, t] . x[:, p]``,
  and the output is the sum of the kh*kw tap blocks of R, each shifted by its tap's offset in the
  flattened padded image (an output row is computed over the padded width; the extra columns are
  dropped). It writes kh*kw*M values per pixel where im2col writes kh*kw*C: 2x-4x less memory
  traffic when M is small. (Known as "kn2row".)
- **small group-1 convs** (up to ``DIRECT_MACS`` multiply-adds an image, with passes of at
  least ``DIRECT_MIN_LENGTH`` outputs: resnet_mini's 3x3 convs of 16 channels on 32x32 maps):
  ``_direct_conv_loops``, no column matrix. It reads the stride phases of the padded image as
  the runs below do, but multiplies each tap's run in place: four output channels and three taps
  a pass, single-threaded. For these convs the column copy and BLAS's start cost more than the
  arithmetic (16->16 3x3 on 32x32: 106-126 -> 63 us); on bigger ones BLAS on both cores wins;
- **everything else 2-D** (strides, dilations, groups): a column matrix, then one ``matmul``
  (:mod:`minirt.kernels.gemm`: BLAS on both cores) multiplies every group at once
  ``[G, M/G, C/G*K] @ [G, C/G*K, L]``. The columns are **runs** (``_run_columns``): the image is
  copied once into a zero-padded buffer split by stride phase (``padded_phases``; at stride 1
  the one phase is the padded image), and output rows are computed over a phase's width, so
  that each row of the column matrix is ONE contiguous run of one phase (tap (ky, kx) of channel
  c reads phase ((ky*dh) % sh, (kx*dw) % sw) from row (ky*dh) // sh, column (kx*dw) // sw); the
  extra columns are dropped in the epilogue's pass. That is taken while they are at most
  ``WIDE_MAX_EXTRA`` of the outputs at stride 1 (a 3x3 conv on a 14x14 map: 14%; on 7x7: 29%,
  no), ``STRIDED_MAX_EXTRA`` with strides. Otherwise ``window_columns``: ONE NumPy copy of a
  strided 5-D view of the padded image ``[C, kh, kw, oh, ow]`` (no bounds test, no index per
  pixel; a 1x1/2 conv reads the image itself);
- 1-D convs run as 2-D ones with a height of 1; 3-D convs, float16 and mixed dtypes fall back to
  the reference.

``_conv_loops`` is the teaching kernel: the convolution sum written as seven plain loops. It is
tested against the reference but not used by default (it is ~100x slower than BLAS on big convs).
``_im2col`` is the column copy as plain loops (bounds tests instead of a padded buffer); the float
path uses the runs or ``window_columns`` (1.5-3x faster), ConvInteger's integer path uses it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from minirt.kernels import winograd
from minirt.kernels._const import immutable
from minirt.kernels._jit import renamed
from minirt.kernels.epilogue import activate as _activate
from minirt.kernels.gemm import blas_threads, matmul, run_blas_pieces
from minirt.kernels.pool import all_finite
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
    (0 outside the image). Used by ConvInteger (float convs copy a strided view of the padded
    image instead: :func:`window_columns`). The loops index views that start where the run starts (``src[j]``,
    not ``x[c, iy, j + off]``): Numba then knows the index is >= 0, skips its negative-index
    check, and LLVM vectorizes the copy. Serial: the copy is memory-bound, and a Numba thread
    pool waking next to OpenBLAS's threads costs more than it saves.
    """
    C, H, W = x.shape
    for r in range(C * kh * kw):
        c = r // (kh * kw)
        ky = (r // kw) % kh
        kx = r % kw
        off = kx * dw - pw  # output column ox reads input column ox*sw + off
        lo, hi = _valid_range(ow, sw, off, W)  # the columns inside the image: no test per pixel
        for oy in range(oh):
            dst = cols[r, oy * ow:(oy + 1) * ow]  # [ow]: this output row's slot
            iy = oy * sh - ph + ky * dh
            if iy < 0 or iy >= H:  # the whole output row reads padding
                for j in range(ow):
                    dst[j] = 0
                continue
            for j in range(lo):
                dst[j] = 0
            src = x[c, iy, lo * sw + off:]  # the input row from the first pixel inside
            inside = dst[lo:hi]
            for j in range(hi - lo):
                inside[j] = src[j * sw]
            for j in range(hi, ow):
                dst[j] = 0


def _depthwise_loops(x, w, b, y, sh, sw, ph, pw, dh, dw, chunks, z, lo, hi, hard, alpha, beta):
    """Depthwise conv (group == C): output channel m reads only input channel c = m // (M/C).

    y[n, m, oy, ox] = act(b[m] + sum_{ky, kx} w[m, 0, ky, kx] * xpad[n, c, oy*sh + ky*dh, ox*sw + kx*dw]
    + z[n, m, oy, ox]): x [N, C, H, W], w [M, 1, kh, kw], b [M], y [N, M, oh, ow] (written); xpad
    is x with ph rows and pw columns of zeros before it (and enough after). FusedConv's epilogue
    comes in the pass that writes y: z [N, M, oh, ow] or [0, 0, 0, 0] (none), act
    :func:`_activate` with lo / hi / hard / alpha / beta (none: lo = -inf, hi = inf, hard = 0).

    Each plane is first copied into a zero-padded buffer, its rows split by row phase (the
    padded rows q, q + sh, q + 2*sh, ... in phase q; one phase at stride 1), each phase flattened
    row by row (width Wp). The sums are taken at every column of the output rows: output row oy,
    column j, sits at oy*Wp + j, and tap (ky, kx) reads padded row oy*sh + ky*dh: row
    oy + (ky*dh) // sh of phase (ky*dh) % sh, shifted by kx*dw — for all the output rows at once
    ONE long loop ``acc[i] += w * src[i]`` over one phase; the outputs are then picked from acc
    at (oy, ox*sw). A column stride does sw times the multiply-adds, in loops as long as the plane,
    and that is 1.5-2.5x faster than splitting the columns by phase too (the "space to depth"
    this kernel did before, whose loops were as short as an output row: 3x3/2 on [1, 24, 16, 16]
    18 -> 8 us, [1, 144, 56, 56] 684 -> 343, 3x3/3 on [1, 64, 56, 56] 225 -> 120); the rows'
    phases cut a row stride's work without shortening a loop (one thread, same process: 3x3/2 on
    [1, 112, 56, 56] 251 -> 182 us, [1, 144, 56, 56] 346 -> 237, [1, 136, 28, 28] 91 -> 78; 3x3/3
    on [1, 64, 56, 56] 126 -> 77; on 14x14 planes, where the per-row loops are the time, no
    change). Loops index views that start at the shift (``src[i]``, never ``part[i + shift]``):
    Numba then knows the index is >= 0, and LLVM vectorizes the loop (5-8x faster).

    The planes are split into ``chunks`` runs of consecutive planes, one a thread (1: serial); each
    chunk allocates its two buffers once, not once a plane.
    """
    N, C, H, W = x.shape
    M, _, kh, kw = w.shape
    _, _, oh, ow = y.shape
    Hp = max(ph + H, (oh - 1) * sh + (kh - 1) * dh + 1)  # the padded rows the windows reach
    Wp = max(pw + W, (ow - 1) * sw + (kw - 1) * dw + 1)  # ... and columns
    Hq = -(-Hp // sh)  # ... the rows of each row phase
    planes = N * M
    per_chunk = (planes + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        # the padded plane by row phase, each flattened row by row with one spare row (the last
        # taps read past its end): [sh, Hq + 1, Wp] flat (the padding stays 0: only image pixels are written)
        part = np.zeros(sh * (Hq + 1) * Wp, x.dtype)
        acc = np.empty(oh * Wp, x.dtype)  # the sums: every column of the output rows
        for nm in range(chunk * per_chunk, min(planes, (chunk + 1) * per_chunk)):  # one (batch item, output channel) plane
            _depthwise_plane(x, w, b, y, sh, sw, ph, pw, dh, dw, nm // M, nm % M, part, acc, Wp,
                             z, lo, hi, hard, alpha, beta)


def _depthwise_3x3_same_loops(x, w, b, y, chunks, z, lo, hi, hard, alpha, beta):
    """Depthwise 3x3 conv, stride 1, one pixel of zero padding all round (MobileNet's and
    ShuffleNet's), straight from the unpadded planes: x [N, C, H, W] (H, W >= 2), w [M, 1, 3, 3],
    b [M], y [N, M, H, W] (written), the epilogue's z / lo / hi / hard / alpha / beta as in
    :func:`_depthwise_loops`.

    On small planes :func:`_depthwise_loops` spends its time in per-row loops (the copy into a
    padded plane and the pick of the outputs: 28 of its 31 loops on a 14x14 plane, ~10 ns each).
    Here each plane is flat: pixel i = r*W + c reads x at i + (ky-1)*W + (kx-1), so the nine taps
    are ONE loop over the pixels with a whole row above and below (rows 1..H-2), written straight
    into y. Its first and last pixel of each row read the neighbouring row's edge instead of the
    zero padding: those, and the first and last rows, are then computed again from the taps that
    fall inside the plane (two row loops and two pixels a row)."""
    N, C, H, W = x.shape
    M = w.shape[0]
    mult = M // C
    L = H * W
    has_z = z.shape[0] > 0
    planes = N * M
    per_chunk = (planes + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        for nm in range(chunk * per_chunk, min(planes, (chunk + 1) * per_chunk)):
            n, m = nm // M, nm % M
            xs = x[n, m // mult].reshape(L)  # [H, W] -> [L]
            ys = y[n, m].reshape(L)
            # (xs: a placeholder, never read without Z; not ys: a view that may alias the stores
            # fails LLVM's overlap check, and the loops run scalar, 3x slower)
            zs = z[n, m].reshape(L) if has_z else xs
            w00, w01, w02 = w[m, 0, 0, 0], w[m, 0, 0, 1], w[m, 0, 0, 2]
            w10, w11, w12 = w[m, 0, 1, 0], w[m, 0, 1, 1], w[m, 0, 1, 2]
            w20, w21, w22 = w[m, 0, 2, 0], w[m, 0, 2, 1], w[m, 0, 2, 2]
            bm = b[m]
            # rows 1..H-2, every pixel (its row's two end pixels wrong for now): one view per tap,
            # from the tap's shift, so that every index is a plain j >= 0 (LLVM vectorizes the loop)
            a0, a1, a2, c0, c1, c2 = xs[0:], xs[1:], xs[2:], xs[W:], xs[W + 1:], xs[W + 2:]
            e0, e1, e2, yo, zo = xs[2 * W:], xs[2 * W + 1:], xs[2 * W + 2:], ys[W + 1:], zs[W + 1:]
            for j in range(L - 2 * W - 2):  # pixel i = j + W + 1
                s = (bm + w00 * a0[j] + w01 * a1[j] + w02 * a2[j] + w10 * c0[j] + w11 * c1[j] + w12 * c2[j]
                     + w20 * e0[j] + w21 * e1[j] + w22 * e2[j])
                if has_z:
                    s = s + zo[j]
                yo[j] = _activate(s, lo, hi, hard, alpha, beta)
            # the first and last row, columns 1..W-2: no row above / below
            t0, t1, t2, u0, u1, u2 = xs[0:], xs[1:], xs[2:], xs[W:], xs[W + 1:], xs[W + 2:]  # rows 0 and 1
            p0, p1, p2 = xs[L - 2 * W:], xs[L - 2 * W + 1:], xs[L - 2 * W + 2:]  # rows H-2 ...
            q0, q1, q2 = xs[L - W:], xs[L - W + 1:], xs[L - W + 2:]  # ... and H-1
            yt, yb, zt, zb = ys[1:], ys[L - W + 1:], zs[1:], zs[L - W + 1:]
            for j in range(W - 2):  # column j + 1
                s = bm + w10 * t0[j] + w11 * t1[j] + w12 * t2[j] + w20 * u0[j] + w21 * u1[j] + w22 * u2[j]
                t = bm + w00 * p0[j] + w01 * p1[j] + w02 * p2[j] + w10 * q0[j] + w11 * q1[j] + w12 * q2[j]
                if has_z:
                    s = s + zt[j]
                    t = t + zb[j]
                yt[j] = _activate(s, lo, hi, hard, alpha, beta)
                yb[j] = _activate(t, lo, hi, hard, alpha, beta)
            # each row's first and last pixel, rows 1..H-2: no column left / right. Views down the
            # columns (a stride of W): column 0 and 1 from rows r-1, r, r+1, and W-2 and W-1
            l0, l1, m0, m1, d0, d1 = xs[0::W], xs[1::W], xs[W::W], xs[W + 1::W], xs[2 * W::W], xs[2 * W + 1::W]
            r0, r1, n0, n1, f0, f1 = (xs[W - 2::W], xs[W - 1::W], xs[2 * W - 2::W], xs[2 * W - 1::W],
                                      xs[3 * W - 2::W], xs[3 * W - 1::W])
            yl, yr, zl, zr = ys[W::W], ys[2 * W - 1::W], zs[W::W], zs[2 * W - 1::W]
            for j in range(H - 2):  # row j + 1
                s = bm + w01 * l0[j] + w02 * l1[j] + w11 * m0[j] + w12 * m1[j] + w21 * d0[j] + w22 * d1[j]
                t = bm + w00 * r0[j] + w01 * r1[j] + w10 * n0[j] + w11 * n1[j] + w20 * f0[j] + w21 * f1[j]
                if has_z:
                    s = s + zl[j]
                    t = t + zr[j]
                yl[j] = _activate(s, lo, hi, hard, alpha, beta)
                yr[j] = _activate(t, lo, hi, hard, alpha, beta)
            # the four corners: two rows and two columns
            i, k = L - W, W - 1  # the last row's first pixel; the first row's last pixel
            s00 = bm + w11 * xs[0] + w12 * xs[1] + w21 * xs[W] + w22 * xs[W + 1]
            s01 = bm + w10 * xs[k - 1] + w11 * xs[k] + w20 * xs[k + W - 1] + w21 * xs[k + W]
            s10 = bm + w01 * xs[i - W] + w02 * xs[i - W + 1] + w11 * xs[i] + w12 * xs[i + 1]
            s11 = bm + w00 * xs[L - W - 2] + w01 * xs[L - W - 1] + w10 * xs[L - 2] + w11 * xs[L - 1]
            if has_z:
                s00, s01, s10, s11 = s00 + zs[0], s01 + zs[k], s10 + zs[i], s11 + zs[L - 1]
            ys[0] = _activate(s00, lo, hi, hard, alpha, beta)
            ys[k] = _activate(s01, lo, hi, hard, alpha, beta)
            ys[i] = _activate(s10, lo, hi, hard, alpha, beta)
            ys[L - 1] = _activate(s11, lo, hi, hard, alpha, beta)


def _depthwise_channels_last(x, w, b, y, sh, sw, ph, pw, dh, dw, z, lo, hi, hard, alpha, beta):
    """Depthwise conv (group == C == M) of small outputs, the channels last: each output pixel is
    a few loops over the C channels instead of C tiny planes (x, w, b, y, z and the epilogue as
    in :func:`_depthwise_loops`).

    On a 7x7 map each of the plane kernels' loops is a few pixels long and their fixed cost is
    the time. Here the image is copied once, zero-padded, to xt [Hp, Wp, C] (a transposing copy,
    each pixel's channels gathered from C planes), the weights to wt [kh*kw, C], and output (oy, ox) is
    acc = b + the taps' wt[t] * xt[oy*sh + ky*dh, ox*sw + kx*dw], each a loop over the channels
    (the taps in the same order as the plane kernels: a stride-1 3x3's result is theirs bit for
    bit), then written with its epilogue into y[n, :, oy, ox]. One thread, same process, us
    (plane kernels -> this): [1, 544, 7, 7] 3x3/1 84 -> 58, [1, 272, 14, 14] 3x3/2 66 -> 47,
    [1, 48, 4, 4] 7 -> 4, [1, 64, 14, 14] 3x3/2 17 -> 13; from 8x8 outputs on, the copies in and
    out cost more than they save ([1, 24, 16, 16] 3x3/2 8 -> 10, 14x14 outputs 1.2-2x slower)."""
    N, C, H, W = x.shape
    _, _, kh, kw = w.shape
    _, _, oh, ow = y.shape
    Hp = max(ph + H, (oh - 1) * sh + (kh - 1) * dh + 1)  # the padded rows the windows reach
    Wp = max(pw + W, (ow - 1) * sw + (kw - 1) * dw + 1)  # ... and columns
    xt = np.zeros((Hp, Wp, C), x.dtype)  # (the padding stays 0: only image pixels are written)
    T = kh * kw
    wt = np.empty((T, C), w.dtype)  # [C, 1, kh, kw] -> [kh*kw, C]
    for c in range(C):
        for t in range(T):
            wt[t, c] = w[c, 0, t // kw, t % kw]
    acc = np.empty(C, x.dtype)  # one output pixel, every channel
    has_z = z.shape[0] > 0
    for n in range(N):
        for iy in range(H):  # x[n] [C, H, W] -> xt [Hp, Wp, C]
            for ix in range(W):
                d = xt[iy + ph, ix + pw]
                for c in range(C):
                    d[c] = x[n, c, iy, ix]
        for oy in range(oh):
            for ox in range(ow):
                for c in range(C):
                    acc[c] = b[c]
                for t in range(T):
                    src = xt[oy * sh + (t // kw) * dh, ox * sw + (t % kw) * dw]  # [C]
                    wr = wt[t]
                    for c in range(C):
                        acc[c] += wr[c] * src[c]
                for c in range(C):  # -> y[n, :, oy, ox], with the epilogue
                    v = acc[c]
                    if has_z:
                        v = v + z[n, c, oy, ox]
                    y[n, c, oy, ox] = _activate(v, lo, hi, hard, alpha, beta)


def _depthwise_plane(x, w, b, y, sh, sw, ph, pw, dh, dw, n, m, part, acc, Wp, z, lo, hi, hard, alpha, beta):
    """Plane (n, m) of :func:`_depthwise_loops` in the buffers it is given: ``part``, the padded
    plane (rows of Wp; zeros outside the image), and ``acc``, the sums."""
    C, H, W = x.shape[1:]
    M, _, kh, kw = w.shape
    oh, ow = y.shape[2:]
    mult = M // C
    L = acc.size
    phase = part.size // sh  # the elements of one row phase
    bm = b[m]
    for i in range(L):
        acc[i] = bm
    for iy in range(H):
        r = iy + ph  # the padded row: row r // sh of phase r % sh
        src = x[n, m // mult, iy]  # [W]
        dst = part[(r % sh) * phase + (r // sh) * Wp + pw:]
        for ix in range(W):
            dst[ix] = src[ix]
    for ky in range(kh):
        ry = ky * dh  # output row oy reads padded row oy*sh + ry: row oy + ry // sh of phase ry % sh
        row = part[(ry % sh) * phase + (ry // sh) * Wp:]  # the phase shifted to kernel row ky
        if kw == 3:  # the row's three taps in one pass: 1/3 of acc's loads and stores
            s0, s1, s2 = row, row[dw:], row[2 * dw:]
            w0, w1, w2 = w[m, 0, ky, 0], w[m, 0, ky, 1], w[m, 0, ky, 2]
            for i in range(L):
                acc[i] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
        else:
            for kx in range(kw):
                wv = w[m, 0, ky, kx]
                src = row[kx * dw:]  # ... and to tap (ky, kx)
                for i in range(L):
                    acc[i] += wv * src[i]
    has_z = z.shape[0] > 0
    for oy in range(oh):
        row = acc[oy * Wp:]  # the sums of output row oy
        dst = y[n, m, oy]
        zr = z[n, m, oy] if has_z else dst  # (dst: a placeholder, never read without Z)
        for ox in range(ow):  # the positions the outputs sit on (columns past them dropped)
            v = row[ox * sw]
            if has_z:
                v = v + zr[ox]
            dst[ox] = _activate(v, lo, hi, hard, alpha, beta)


def _epilogue_loops(y, r0, r1, bias, z, lo, hi, hard, alpha, beta):
    """y[m, r, c] = act(y[m, r, c] + bias[m] + z[m, r, c]) for rows r0 <= r < r1, in place: a
    conv's bias, residual Add and activation in ONE pass over its output (NumPy would make one
    pass for each).

    act: :func:`_activate` (none / Relu / Clip: a clip to [lo, hi]; HardSigmoid, HardSwish).
    y [M, R, C] (read and written), bias [M] (zeros: none), z [M, R, C] or [0, 0, 0] (none),
    lo / hi / alpha / beta scalars of y's dtype. The arithmetic is the unfused ops' own, in their
    order ((y + bias) + z, then alpha*v + beta): the result is bit-identical. NaN passes the clips
    (comparisons with NaN are false), as np.maximum / np.clip keep it. Three details keep the
    inner loop vectorized (5-10x faster, measured on [256, 56, 56]): y is ONE argument (a separate
    source that aliases it makes LLVM's runtime overlap check fail, and the loop runs scalar); y
    and z are whole C-contiguous images and a band is the rows [r0, r1) (a view of a band,
    y[:, r0:r1], is not contiguous: Numba then types its rows as strided and the loop runs scalar,
    7x slower); and the scalars have y's dtype (float64 bounds against float32 values convert
    every element; for the same reason the clip bounds of HardSigmoid come in as lo / hi, not as
    literals). For the whole image (r0 = 0, r1 = R: every path but the column bands) each
    channel's plane is ONE run instead of R runs of one row: on a 14x14 or 7x7 map a row is
    shorter than a loop's fixed cost ([1024, 14, 14] with Z 75 -> 24 us, [2048, 7, 7] 57 -> 19,
    [256, 56, 56] 101 -> 95). (Its index must be a plain ``range(n)``: an offset range, or a slice
    of the plane, made Numba check for negative indices or type the run as strided, and the loop
    ran scalar.)
    """
    M, R, C = y.shape
    has_z = z.shape[0] > 0
    if r0 == 0 and r1 == R:  # [M, R, C] -> [M, R*C]: a plane per channel
        yf = y.reshape(M, R * C)
        zf = z.reshape(z.shape[0], R * C) if has_z else yf  # (yf: a placeholder, never read without Z)
        for m in range(M):
            _epilogue_run(yf[m], zf[m], R * C, bias[m], has_z, lo, hi, hard, alpha, beta)
        return
    for m in range(M):
        for r in range(r0, r1):
            _epilogue_run(y[m, r], z[m, r] if has_z else y[m, r], C, bias[m], has_z, lo, hi, hard, alpha, beta)


def _epilogue_run(d, zr, n, bm, has_z, lo, hi, hard, alpha, beta):
    """d[i] = act(d[i] + bm + zr[i]) for i < n (zr read only with Z): one run of
    :func:`_epilogue_loops`, inlined into it."""
    for i in range(n):
        v = d[i] + bm
        if has_z:
            v = v + zr[i]
        d[i] = _activate(v, lo, hi, hard, alpha, beta)


def _crop_epilogue_loops(src, y, r0, bias, z, lo, hi, hard, alpha, beta):
    """y[m, r0 + r, c] = act(src[m, r, c] + bias[m] + z[m, r0 + r, c]) for c < y's width: the
    same pass as :func:`_epilogue_loops`, reading the product of a band of rows computed over the
    padded width (the stride-1 runs; src [M, R, Wp], y and z whole images [M, oh, C], C <= Wp),
    so the extra columns are dropped in it instead of by a copy before it. src and y never
    overlap, and both are C-contiguous: the inner loop vectorizes (a band of y passed as a view,
    y[:, r0:r1], ran scalar: [64, 28, 111] 86 -> 24 us)."""
    M, R, _ = src.shape
    C = y.shape[2]
    has_z = z.shape[0] > 0
    for m in range(M):
        bm = bias[m]
        for r in range(R):
            s = src[m, r]
            d = y[m, r0 + r]
            zr = z[m, r0 + r] if has_z else d  # (d: a placeholder, never read without Z)
            for c in range(C):
                v = s[c] + bm
                if has_z:
                    v = v + zr[c]
                d[c] = _activate(v, lo, hi, hard, alpha, beta)


def _pad_into(x, xp, pt, pl, sh, sw):
    """x [C, H, W] into its zero-padded image split by stride phase, xp [C, sh*sw, Hq+1, Wq]
    (zeros already; see :func:`padded_phases`): padded pixel (r, j) = (iy + pt, ix + pl) goes to
    phase (r % sh, j % sw), row r // sh, column j // sw. At stride 1 the one phase is the padded
    image itself. Rows and columns that fall past it (no window reads them) are left out."""
    C, H, W = x.shape
    Hq, Wq = xp.shape[2] - 1, xp.shape[3]
    rows = min(H, sh * Hq - pt)
    if sh == 1 and sw == 1:  # one phase, the padded image: rows into a flat view (2.5-5x fewer steps a row)
        flat = xp.reshape(C, (Hq + 1) * Wq)
        cols = min(W, Wq - pl)
        for c in range(C):
            for iy in range(rows):
                src = x[c, iy]
                dst = flat[c, (iy + pt) * Wq + pl:]  # a view from the row's start: vectorized copy
                for ix in range(cols):
                    dst[ix] = src[ix]
        return
    if sw == 2:  # both column phases in one loop: half the loops (per-loop costs ruled: 341 -> 127 us on [128, 56, 56])
        e0, e1 = pl // 2, (pl + 1) // 2  # image column 2t goes to column t + e0 of phase pl % 2, 2t + 1 to t + e1 of the other
        n0, n1 = min((W + 1) // 2, Wq - e0), min(W // 2, Wq - e1)  # the even / odd image columns that fit
        for c in range(C):
            for iy in range(rows):
                r = iy + pt
                src = x[c, iy]
                even = xp[c, (r % sh) * 2 + pl % 2, r // sh, e0:]  # views from the runs' start
                odd = xp[c, (r % sh) * 2 + (pl + 1) % 2, r // sh, e1:]
                for t in range(min(n0, n1)):  # deinterleaved (vectorized as interleaved loads)
                    even[t] = src[2 * t]
                    odd[t] = src[2 * t + 1]
                for t in range(n1, n0):
                    even[t] = src[2 * t]
                for t in range(n0, n1):
                    odd[t] = src[2 * t + 1]
        return
    for c in range(C):
        for iy in range(rows):
            r = iy + pt
            src = x[c, iy]
            for qx in range(sw):  # the image columns of phase qx: ix0, ix0 + sw, ...
                ix0 = (qx - pl) % sw
                j0 = (ix0 + pl) // sw
                dst = xp[c, (r % sh) * sw + qx, r // sh, j0:]  # a view from the run's start
                n = min((W - ix0 + sw - 1) // sw, Wq - j0)
                if sw == 1:
                    for t in range(n):  # contiguous: vectorized
                        dst[t] = src[t]
                else:
                    for t in range(n):
                        dst[t] = src[ix0 + t * sw]


def _run_columns(xp, cols, kh, kw, sh, sw, dh, dw, oy0, rows, Wq):
    """The column matrix as runs: cols[(c, ky, kx), :] = rows*Wq values of one stride phase of
    the padded image, xp [C, sh*sw, (Hq+1)*Wq] flattened by phase (:func:`padded_phases`).

    Output (oy, ox) reads padded pixel (oy*sh + ky*dh, ox*sw + kx*dw), which sits in phase
    ((ky*dh) % sh, (kx*dw) % sw) at row oy + (ky*dh) // sh, column ox + (kx*dw) // sw: for a
    fixed tap, a stride-1 walk of one phase. Computed over the phase's width Wq (the Wq - ow
    extra columns per output row are dropped after the GEMM), the tap's row of the column matrix
    is ONE contiguous run of the flat phase from (oy0 + (ky*dh)//sh)*Wq + (kx*dw)//sw on. At
    stride 1 (one phase: the padded image) the pad and this copy are 1.1-3.5x faster than NumPy's
    padded copy and copy of a strided view (:func:`window_columns`); with strides, where the
    split by phase costs what the strided view's copy did, the gain grows with the kernel (CPU
    time of pad + columns: 3x3/2 stems 139 -> 112 us, the 7x7/2 stem 622 -> 258, 11x11/4 424 -> 197)."""
    C = xp.shape[0]
    L = rows * Wq
    for c in range(C):
        for ky in range(kh):
            ry = ky * dh
            for kx in range(kw):
                rx = kx * dw
                src = xp[c, (ry % sh) * sw + rx % sw, (oy0 + ry // sh) * Wq + rx // sw:]  # a view from the run's start
                dst = cols[(c * kh + ky) * kw + kx]
                for j in range(L):
                    dst[j] = src[j]


def _direct_conv_loops(xp, w, sh, sw, dh, dw, Wq, out):
    """out[m, oy, q] = sum over c, ky, kx of w[m, c, ky, kx] * padded x[c, oy*sh + ky*dh, q*sw + kx*dw]:
    a small group-1 conv straight from the stride phases of its padded image, no column matrix.

    xp [C, sh*sw, (Hq+1)*Wq] (:func:`padded_phases`), w [M, C, kh, kw], out [M, oh, Wq] (output
    rows over a phase's width, as the runs compute them; the epilogue drops the extra columns).
    Tap (ky, kx) of channel c is one contiguous run of one phase, as in :func:`_run_columns`;
    instead of copying it into a column matrix, the loop multiplies it in: four output channels
    and three taps of a kernel row a pass, so each loaded pixel feeds twelve multiply-adds and each
    sum is loaded and stored once per three taps (LLVM vectorizes the pass; one channel and one
    tap a pass ran 3x slower). A block past M repeats channel M - 1 and is not stored; a row of
    fewer than three taps multiplies the missing ones by 0.
    """
    M, C, kh, kw = w.shape
    L = out.shape[1] * Wq  # the outputs of a channel, over the phase's width
    acc = np.empty((4, L), out.dtype)  # the sums of four output channels
    for m in range(0, M, 4):
        m1, m2, m3 = min(m + 1, M - 1), min(m + 2, M - 1), min(m + 3, M - 1)
        acc[:] = 0
        for c in range(C):
            for ky in range(kh):
                ry = ky * dh
                for kx in range(0, kw, 3):  # taps kx, t1, t2 (t1, t2 repeat the last tap past kw, weighted 0)
                    t1, t2 = min(kx + 1, kw - 1), min(kx + 2, kw - 1)
                    on1, on2 = kx + 1 < kw, kx + 2 < kw
                    r0, r1, r2 = kx * dw, t1 * dw, t2 * dw
                    s0 = xp[c, (ry % sh) * sw + r0 % sw, (ry // sh) * Wq + r0 // sw:]  # runs from their start
                    s1 = xp[c, (ry % sh) * sw + r1 % sw, (ry // sh) * Wq + r1 // sw:]
                    s2 = xp[c, (ry % sh) * sw + r2 % sw, (ry // sh) * Wq + r2 // sw:]
                    a0, a1, a2 = w[m, c, ky, kx], w[m, c, ky, t1] * on1, w[m, c, ky, t2] * on2
                    b0, b1, b2 = w[m1, c, ky, kx], w[m1, c, ky, t1] * on1, w[m1, c, ky, t2] * on2
                    c0, c1, c2 = w[m2, c, ky, kx], w[m2, c, ky, t1] * on1, w[m2, c, ky, t2] * on2
                    d0, d1, d2 = w[m3, c, ky, kx], w[m3, c, ky, t1] * on1, w[m3, c, ky, t2] * on2
                    for q in range(L):
                        p0, p1, p2 = s0[q], s1[q], s2[q]
                        acc[0, q] += a0 * p0 + a1 * p1 + a2 * p2
                        acc[1, q] += b0 * p0 + b1 * p1 + b2 * p2
                        acc[2, q] += c0 * p0 + c1 * p1 + c2 * p2
                        acc[3, q] += d0 * p0 + d1 * p1 + d2 * p2
        for i in range(min(4, M - m)):  # [4, L] -> out[m:m+4]
            dst = out[m + i].reshape(L)
            for q in range(L):
                dst[q] = acc[i, q]


# wrapped once: plain Python again under NUMBA_DISABLE_JIT=1
_valid_range = numba.njit(cache=True, inline="always")(_valid_range)
conv_loops = numba.njit(parallel=True, cache=True)(_conv_loops)
im2col = numba.njit(cache=True)(_im2col)  # serial: see the docstring
_epilogue_run = numba.njit(cache=True, inline="always")(_epilogue_run)
epilogue_loops = numba.njit(cache=True, nogil=True)(_epilogue_loops)  # nogil: the bands' threads run it at once
crop_epilogue_loops = numba.njit(cache=True, nogil=True)(_crop_epilogue_loops)
pad_into = numba.njit(cache=True, nogil=True)(_pad_into)
run_columns = numba.njit(cache=True, nogil=True)(_run_columns)
direct_conv_loops = numba.njit(cache=True)(_direct_conv_loops)
_depthwise_plane = numba.njit(cache=True, inline="always")(_depthwise_plane)
depthwise_loops = numba.njit(parallel=True, cache=True)(_depthwise_loops)
depthwise_channels_last = numba.njit(cache=True)(_depthwise_channels_last)
# small convs: no thread-pool wake-up (~50 us); its own name, so its own Numba cache entry (_jit.py)
depthwise_loops_serial = numba.njit(cache=True)(renamed(_depthwise_loops, "serial"))
depthwise_3x3_same_loops = numba.njit(parallel=True, cache=True)(_depthwise_3x3_same_loops)
depthwise_3x3_same_loops_serial = numba.njit(cache=True)(renamed(_depthwise_3x3_same_loops, "serial"))
DEPTHWISE_CHANNELS_LAST_MAX = 49  # output pixels up to which a depthwise conv (no channel multiplier) loops over
#                                  the channels (7x7 maps and smaller: _depthwise_channels_last)
DEPTHWISE_PARALLEL_MIN = 600_000  # multiply-adds: below this, one thread is faster (272x14x14 3x3: equal)
DEPTHWISE_3X3_PARALLEL_MIN = 4_000_000  # ... for the 3x3 "same" loops, twice as fast a plane (round-robin, us,
#                                         serial / two threads: 136@28x28 69 / 77, 112@56x56 160 / 159, 32@112x112
#                                         169 / 137, 96@112x112 478 / 337; in a model the threads' wake-up costs more)


# ----------------------------------------------------------------------------- the op


def padded_phases(x, pt, pl, sh, sw, Hq, Wq):
    """x [C, H, W] -> [C, sh*sw, (Hq+1)*Wq]: the zero-padded image (pt rows and pl columns before
    it) split by stride phase — phase (qy, qx) holds padded pixels (r*sh + qy, j*sw + qx) — each
    phase Hq x Wq plus one spare row of zeros, flattened row by row (:func:`_pad_into`)."""
    xp = np.zeros((x.shape[0], sh * sw, Hq + 1, Wq), dtype=x.dtype)
    pad_into(x, xp, pt, pl, sh, sw)  # [C, H, W] -> [C, sh*sw, Hq+1, Wq]
    return xp.reshape(x.shape[0], sh * sw, (Hq + 1) * Wq)


def padded_flat(x, pt, pl, Hp, Wp):
    """x [C, H, W] -> [C, (Hp+1)*Wp]: each channel zero-padded to Hp x Wp (pt rows and pl columns
    before it; rows and columns past Hp x Wp, which no window reads, left out) plus one spare row
    of zeros, then flattened row by row: :func:`padded_phases` at stride 1."""
    return padded_phases(x, pt, pl, 1, 1, Hp, Wp).reshape(x.shape[0], (Hp + 1) * Wp)


def window_columns(xp, Wp, kh, kw, sh, sw, dh, dw, oy0, rows, width, cols):
    """im2col as ONE NumPy copy of a strided view of the padded image.

    xp [C, (Hp+1)*Wp] (:func:`padded_flat`), or for a conv without padding the image itself
    [C, H*W] with Wp = W (a 1x1/2 conv then copies no more than it reads); writes
    cols [C*kh*kw, rows*width]:
    cols[(c, ky, kx), (oy, ox)] = xp[c, (oy0 + oy)*sh + ky*dh, ox*sw + kx*dw]. Every tap reads
    inside the padded image, so there is no bounds test at all; NumPy walks the 5-D view
    [C, kh, kw, rows, width] in C loops, 1.5-3x faster than a Numba loop over short output rows
    (:func:`_im2col`: 256x14x14 3x3 0.46 -> 0.19 ms, the 7x7/2 stem 0.95 -> 0.63), and releases
    the GIL, so the threads' bands copy at once.

    With stride 1 and ``width = Wp`` (the output rows computed over the padded width), row
    (c, ky, kx) is one contiguous run of the flat image, ``rows*Wp`` long: NumPy copies it as
    such (the last run reads into the spare row; the Wp - ow extra columns per output row cost
    some GEMM work and are dropped afterwards).
    """
    C = xp.shape[0]
    e, c_step = xp.itemsize, xp.strides[0]
    windows = np.ndarray((C, kh, kw, rows, width), xp.dtype, xp, oy0 * sh * Wp * e,  # [C, kh, kw, rows, width]
                         (c_step, dh * Wp * e, dw * e, sh * Wp * e, sw * e))
    np.copyto(cols.reshape(C, kh, kw, rows, width), windows)  # -> [C*kh*kw, rows*width]
    return cols


def shifted_gemm(x, W, pt, pl, out_shape):
    """One image, stride 1, no dilation, group 1: x [C, H, W] -> [M, oh, ow] without im2col.

    Each tap t = (ky, kx) reads the zero-padded image shifted by ky rows and kx columns. With the
    padded image flattened row by row (width Wp), that shift is an offset ``ky*Wp + kx`` in one
    flat array, so all taps share ONE matrix product and differ only by where they read it.
    """
    C = x.shape[0]
    M, _, kh, kw = W.shape
    oh, ow = out_shape
    Hp, Wp = oh + kh - 1, ow + kw - 1  # the padded image (stride 1): pt/pl before, the rest after
    xp = padded_flat(x, pt, pl, Hp, Wp)  # [C, (Hp+1)*Wp]
    w = W.transpose(2, 3, 0, 1).reshape(kh * kw * M, C)  # [M, C, kh, kw] -> [kh*kw*M, C] (small copy)
    R = matmul(w, xp)  # [kh*kw*M, C] @ [C, (Hp+1)*Wp] -> [kh*kw*M, (Hp+1)*Wp]
    L = oh * Wp  # the outputs over the padded width
    y = R[0:M, 0:L].copy()  # tap (0, 0)
    for t in range(1, kh * kw):
        off = (t // kw) * Wp + t % kw  # tap (ky, kx): ky rows and kx columns further on
        y += R[t * M:(t + 1) * M, off:off + L]  # [M, oh*Wp]
    return y.reshape(M, oh, Wp)[:, :, :ow]  # drop the columns computed over the right padding


WIDE_MAX_EXTRA = 0.25  # stride-1 convs take the run copy while it adds at most 25% GEMM columns
STRIDED_MAX_EXTRA = 0.15  # ... strided ones at most 15%: the phase split costs about what the strided view's
#                           copy did (0.5 ns a pixel), so the gain is the runs' (7x7/2 stem 622 -> 258 us,
#                           11x11/4 424 -> 197, 3x3/2 0.95-1.25x) against the extra GEMM columns. 15%, not 5
#                           (stop 13): a 3x3/2 conv to a 14x14 or 7x7 map (one extra column a row: 7%, 14%)
#                           copied its strided view in runs of 7-14 values, ~10 ns each (256->256 28->14: 0.24 ms
#                           of columns); with the runs 256->256 28->14 2.08 -> 1.92 ms, 96->96 0.51 -> 0.44,
#                           256->256 14->7 0.74 -> 0.66, 512->512 14->7 1.0x; Inception-v2 0.94-0.97x,
#                           Inception-v1 0.98x, ResNet-50 0.98-1.02x (same process, two sessions alternating)
DIRECT_MACS = 1 << 22  # multiply-adds an image up to which a group-1 conv runs the direct loops ...
DIRECT_MIN_LENGTH = 256  # ... if their passes are this long at least (oh * Wq): single-threaded they
#                          beat columns + BLAS on both cores where the copies and BLAS's start cost more
#                          than the arithmetic (medians, us, columns -> direct: 16->16 3x3 on 32x32 112 -> 64,
#                          32->32 on 16x16 95 -> 75, 16->32 3x3/2 on 32x32 74 -> 57; 48->48 on 8x8, length
#                          80, 61 -> 69; 16->64 on 55x55, 28 M, 458 -> 881)
BAND_BYTES = 2 << 20  # one band of output rows: its columns and its product, about one core's L2 (1 MiB) x 2
BAND_MIN_COLUMNS = 256  # ... but never fewer output columns a band: BLAS is slow on thin products
WINOGRAD_SHARED_MIN_MACS = 1 << 21  # ... and share out their products between the threads from this many
#                                      (one thread / shared, us: 64->64 on 8x8, 1 M, 70 / 117; DenseNet's
#                                      128->32 on 14x14, 3.2 M, 307 / 217)
WINOGRAD_BAND_MIN_TILES = 96  # Winograd convs run in bands from this many tiles a thread (28x28: 98)


# depthwise_loops' epilogue arguments for none, float32: (z, lo, hi, hard, alpha, beta)
NO_EPILOGUE = (np.empty((0, 0, 0, 0), np.float32), np.float32(-np.inf), np.float32(np.inf), 0, np.float32(0),
               np.float32(0))
# per dtype: the epilogue's "no Z" and its "no bound" values, made once
_NO_Z_AND_BOUNDS = {np.dtype(t): (np.empty((0, 0, 0), t), t(-np.inf), t(np.inf)) for t in (np.float32, np.float64)}


def conv2d(X, W, B, strides, pads, dilations, group, out_shape, Z=None, lo=None, hi=None, hard=0,
           alpha=0.0, beta=0.0):
    """Y = Conv(X, W, B) for 2-D float32/float64 X [N, C, H, W] with explicit pads [pt, pl, pb, pr].

    With an epilogue (FusedConv's): Y = min(max(Conv(X, W, B) + Z, lo), hi), Z [N, M, oh, ow] of
    X's dtype or None, lo / hi None for no bound (Relu: lo = 0); ``hard`` 1 / 2 with alpha, beta:
    HardSigmoid / HardSwish of Conv(X, W, B) + Z instead (see ``_epilogue_loops``). The bias, Z and the clip are
    added in ONE pass over the output (``_epilogue_loops``): band by band right after each band's
    product for the stride-1 runs, image by image at the end for the other paths."""
    run = conv2d_runner(X.shape, X.dtype, W, B, strides, pads, dilations, group, out_shape, lo, hi, hard,
                        alpha, beta)
    return run(X, Z)


def conv2d_runner(x_shape, dtype, W, B, strides, pads, dilations, group, out_shape, lo=None, hi=None,
                  hard=0, alpha=0.0, beta=0.0, keep_weights=False):
    """:func:`conv2d` in two steps: everything that depends on the input's shape and dtype, the
    weights, the bias and the attributes is decided here, once (the path, the weights reshaped for
    the GEMM, the bias and the epilogue's constants, the bands); the returned ``run(X, Z)`` does
    only the per-image work. :class:`PreparedConv` keeps the runner of a node for its next runs:
    for a small conv the decisions cost as much as the arithmetic (mobilenet_mini's 1x1 convs).

    The runner holds views of W and B only (never copies), so it computes with their values at
    run time — except with ``keep_weights`` (W is read-only: :class:`PreparedConv` checks), where a
    3x3 stride-1 conv may keep W's Winograd transform (:mod:`minirt.kernels.winograd`)."""
    N, C, H, Wd = x_shape
    M, Cg, kh, kw = W.shape
    oh, ow = out_shape
    sh, sw = strides
    dh, dw = dilations
    ph, pw = pads[0], pads[1]
    G, K = group, Cg * kh * kw
    W = np.ascontiguousarray(W)
    y_shape = (N, M, oh, ow)
    depthwise = G == C and Cg == 1 and G > 1  # its loops add the bias themselves
    # the epilogue's operands, all of X's dtype: bias [M], Z [N, M, oh, ow] or [0, 0, 0], bounds
    has_bias = B is not None and not depthwise
    epilogue = has_bias or lo is not None or hi is not None or bool(hard)  # (and any Z: see finish)
    b = np.ascontiguousarray(B, dtype=dtype) if has_bias else np.zeros(M, dtype)
    lo_arg, hi_arg = lo, hi  # (as given: a runner made again from the same arguments)
    no_z, low, high = _NO_Z_AND_BOUNDS[dtype]
    if hard:  # HardSigmoid's clip to [0, 1]
        lo, hi = dtype.type(0), dtype.type(1)
    lo = low if lo is None else dtype.type(lo)  # of X's dtype: see _epilogue_loops
    hi = high if hi is None else dtype.type(hi)
    alpha, beta = dtype.type(alpha), dtype.type(beta)

    def finish(y, z_all, n, oy0, oy1):
        """Bias, Z and the clip in one pass over output rows [oy0, oy1) of image n."""
        if epilogue or z_all is not None:
            epilogue_loops(y[n], oy0, oy1, b, no_z if z_all is None else z_all[n], lo, hi, hard, alpha, beta)

    def z_of(Z):  # Z as the epilogue reads it
        return None if Z is None else np.ascontiguousarray(Z, dtype=dtype)

    if depthwise:  # a direct loop kernel, bias included
        bd = np.zeros(M, dtype) if B is None else np.ascontiguousarray(B, dtype=dtype)
        work = N * M * oh * ow * kh * kw  # multiply-adds
        parallel = work >= DEPTHWISE_PARALLEL_MIN and numba.get_num_threads() > 1
        loops, chunks = (depthwise_loops, min(N * M, numba.get_num_threads())) if parallel else (depthwise_loops_serial, 1)

        no_z4 = np.empty((0, 0, 0, 0), dtype)

        if oh * ow <= DEPTHWISE_CHANNELS_LAST_MAX and M == C and not parallel:  # (one thread: a big batch keeps both)
            def run_depthwise_channels_last(X, Z=None):  # small outputs: loops over the channels
                y = np.empty(y_shape, dtype=dtype)
                depthwise_channels_last(np.ascontiguousarray(X), W, bd, y, sh, sw, ph, pw, dh, dw,
                                        no_z4 if Z is None else z_of(Z), lo, hi, hard, alpha, beta)
                return y

            return run_depthwise_channels_last

        if (kh, kw, sh, sw, dh, dw, ph, pw) == (3, 3, 1, 1, 1, 1, 1, 1) and (oh, ow) == (H, Wd) and min(H, Wd) >= 2:
            parallel = work >= DEPTHWISE_3X3_PARALLEL_MIN and numba.get_num_threads() > 1
            chunks = min(N * M, numba.get_num_threads()) if parallel else 1
            same = depthwise_3x3_same_loops if parallel else depthwise_3x3_same_loops_serial

            def run_depthwise_3x3(X, Z=None):  # MobileNet's and ShuffleNet's: from the unpadded planes
                y = np.empty(y_shape, dtype=dtype)
                same(np.ascontiguousarray(X), W, bd, y, chunks, no_z4 if Z is None else z_of(Z), lo, hi, hard, alpha, beta)
                return y

            return run_depthwise_3x3

        def run_depthwise(X, Z=None):  # Z and the activation in the loops' last pass
            y = np.empty(y_shape, dtype=dtype)
            loops(np.ascontiguousarray(X), W, bd, y, sh, sw, ph, pw, dh, dw, chunks,
                  no_z4 if Z is None else z_of(Z), lo, hi, hard, alpha, beta)
            return y

        return run_depthwise

    Hp, Wp = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1  # the padded image the windows read
    Hq, Wq = -(-Hp // sh), -(-Wp // sw)  # ... and each of its stride phases
    direct = G == 1 and kh * kw > 1 and M * K * oh * ow <= DIRECT_MACS and oh * Wq >= DIRECT_MIN_LENGTH
    if (keep_weights and G == 1 and kh == kw == 3 and sh == sw == dh == dw == 1
            and min(oh, ow) >= winograd.MIN_SIZE and C >= winograd.MIN_CHANNELS):
        U = winograd.weight_transform(W)  # [M, C, 3, 3] -> [16, M, C], once
        channels_last = ow <= winograd.CHANNELS_LAST_MAX_WIDTH  # small maps: loops over the channels
        if channels_last:
            U = np.ascontiguousarray(U.transpose(0, 2, 1))  # [16, M, C] -> [16, C, M]
        TH, TW = -(-oh // 2), -(-ow // 2)  # the 2x2 output tiles: rows, columns
        Ht, Wt = 2 * TH + 2, 2 * TW + 2  # the padded input their 4x4 tiles read
        per_band = max(BAND_MIN_COLUMNS, BAND_BYTES // (16 * (C + M) * dtype.itemsize))  # tiles a band: V and P in L2
        tile_rows = -(-per_band // TW)
        fallback = []  # the runner without Winograd, made for the first input that is not finite
        small = 16 * TH * TW * C * M < WINOGRAD_SHARED_MIN_MACS  # products for one thread

        def tile_band(y, z_all, n, xp, t0, t1, gemm):
            """Tile rows [t0, t1) of image n (xp: its padded image): transform, 16 GEMMs, transform back
            (into rows [2*t0, 2*t1) of y[n], with the epilogue)."""
            z = no_z if z_all is None else z_all[n]
            if channels_last:
                V = np.empty((16, (t1 - t0) * TW, C), dtype=dtype)
                winograd.input_transform_channels_last(xp, V, t0, t1, TW)  # [Ht, 2, Wt/2, C] -> [16, tiles, C]
                P = gemm(V, U)  # [16, tiles, C] @ [16, C, M] -> [16, tiles, M]
                winograd.output_transform_channels_last(P, y[n], t0, t1, TW, b, z, lo, hi, hard, alpha, beta)
            else:
                V = np.empty((16, C, (t1 - t0) * TW), dtype=dtype)
                winograd.input_transform(xp, Wt, V, t0, t1, TW)  # [C, (Ht+1)*Wt] -> [16, C, tiles]
                P = gemm(U, V)  # [16, M, C] @ [16, C, tiles] -> [16, M, tiles]
                winograd.output_transform(P, y[n], t0, t1, TW, b, z, lo, hi, hard, alpha, beta)

        def shared_products(a, c):
            """a @ c for [16, ...] stacks, the 16 products shared out between the BLAS threads (each
            single-threaded): on a small map each product is too small to split well."""
            out = np.empty((16, a.shape[1], c.shape[2]), dtype=dtype)
            step = -(-16 // blas_threads())
            run_blas_pieces([lambda k=k: np.matmul(a[k:k + step], c[k:k + step], out=out[k:k + step])
                             for k in range(0, 16, step)])
            return out

        def run_winograd(X, Z=None):
            X, z_all = np.ascontiguousarray(X), z_of(Z)
            if not all_finite(X):  # an inf would spread as NaN through its tiles: the columns path
                if not fallback:
                    fallback.append(conv2d_runner(x_shape, dtype, W, B, strides, pads, dilations, group, out_shape,
                                                  lo_arg, hi_arg, hard, alpha, beta))
                return fallback[0](X, Z)
            y = np.empty(y_shape, dtype=dtype)
            threads = blas_threads()
            for n in range(N):
                if channels_last:
                    xp = np.zeros((Ht, 2, Wt // 2, C), dtype=dtype)
                    winograd.pad_channels_last(X[n], xp, ph, pw)  # [C, H, W] -> [Ht, 2, Wt/2, C] (columns by parity)
                else:
                    xp = padded_flat(X[n], ph, pw, Ht, Wt)  # [C, H, W] -> [C, (Ht+1)*Wt]
                if threads > 1 and TH * TW >= WINOGRAD_BAND_MIN_TILES * threads:  # bands of tile rows, one a thread
                    bands = -(-max(threads, -(-TH // tile_rows)) // threads) * threads  # a multiple of the threads
                    height = -(-TH // bands)
                    run_blas_pieces([lambda t=t: tile_band(y, z_all, n, xp, t, min(TH, t + height), np.matmul)
                                     for t in range(0, TH, height)])
                else:  # one band; the threads share out its 16 products, unless they are small
                    tile_band(y, z_all, n, xp, 0, TH, shared_products if threads > 1 and not small else matmul)
            return y

        return run_winograd

    if G == 1 and sh == sw == dh == dw == 1 and kh * kw > 1 and 2 * M <= C:  # few output channels
        def run_shifted(X, Z=None):
            X, z_all = np.ascontiguousarray(X), z_of(Z)
            y = np.empty(y_shape, dtype=dtype)
            for n in range(N):
                y[n] = shifted_gemm(X[n], W, ph, pw, out_shape)  # [C, H, W] -> [M, oh, ow]
                finish(y, z_all, n, 0, oh)
            return y

        return run_shifted

    w = W.reshape(G, M // G, K)  # [M, C/G, kh, kw] -> [G, M/G, C/G*K] (a view)
    if kh == kw == 1 and sh == sw == 1 and not any(pads) and N == 1 and G == 1:
        w2 = W.reshape(M, C)  # [M, C, 1, 1] -> [M, C] (a view)

        def run_pointwise_one(X, Z=None):
            """One image, group 1 (the common case at batch 1): 2-D views and no loop. On tiny
            maps the bookkeeping is the cost (mobilenet_mini's [8, 32] @ [32, 1]: 3.8 -> 3.2 us)."""
            y = np.empty(y_shape, dtype=dtype)
            matmul(w2, X.reshape(C, oh * ow), out=y.reshape(M, oh * ow))  # [M, C] @ [C, H*W] -> [M, H*W]
            if epilogue or Z is not None:
                epilogue_loops(y[0], 0, oh, b, no_z if Z is None else z_of(Z)[0], lo, hi, hard, alpha, beta)
            return y

        return run_pointwise_one
    if kh == kw == 1 and sh == sw == 1 and not any(pads):  # pointwise: the image IS the columns
        def run_pointwise(X, Z=None):
            X, z_all = np.ascontiguousarray(X), z_of(Z)
            y = np.empty(y_shape, dtype=dtype)
            for n in range(N):  # [G, M/G, C/G] @ [G, C/G, H*W] -> [G, M/G, H*W], straight into y[n]
                matmul(w, X[n].reshape(G, Cg, oh * ow), out=y[n].reshape(G, M // G, oh * ow))
                finish(y, z_all, n, 0, oh)
            return y

        return run_pointwise

    if direct:
        def run_direct(X, Z=None):
            X, z_all = np.ascontiguousarray(X), z_of(Z)
            y = np.empty(y_shape, dtype=dtype)
            out = np.empty((M, oh, Wq), dtype=dtype)  # the sums over the phase's width
            for n in range(N):
                xp = padded_phases(X[n], ph, pw, sh, sw, Hq, Wq)  # [C, H, W] -> [C, sh*sw, (Hq+1)*Wq]
                direct_conv_loops(xp, W, sh, sw, dh, dw, Wq, out)  # -> [M, oh, Wq]
                if epilogue or z_all is not None:  # [M, oh, Wq] -> [M, oh, ow] (+ bias, Z, clip)
                    crop_epilogue_loops(out, y[n], 0, b, no_z if z_all is None else z_all[n],
                                        lo, hi, hard, alpha, beta)
                else:
                    np.copyto(y[n], out[:, :, :ow])  # [M, oh, Wq] -> [M, oh, ow]
            return y

        return run_direct

    # runs of the stride phases of the padded image (not for a 1x1/2: it reads a quarter of them)
    runs = (kh * kw > 1 or sh == sw == 1) and Wq - ow <= (WIDE_MAX_EXTRA if sh == sw == 1 else STRIDED_MAX_EXTRA) * ow
    width = Wq if runs else ow  # columns per output row (over the phases' width for the runs)

    def band(y, z_all, n, xp, row, oy0, oy1, gemm):
        """Output rows [oy0, oy1) of image n (xp: its padded image, rows ``row`` apart): their
        columns, one GEMM, and the epilogue while the rows are still in cache."""
        L = (oy1 - oy0) * width
        cols = np.empty((C * kh * kw, L), dtype=dtype)
        if runs:
            run_columns(xp, cols, kh, kw, sh, sw, dh, dw, oy0, oy1 - oy0, Wq)  # [C*K, rows*Wq]
        else:
            window_columns(xp, row, kh, kw, sh, sw, dh, dw, oy0, oy1 - oy0, width, cols)  # [C*K, L]
        out = np.empty((M, oy1 - oy0, Wq), dtype=dtype) if runs else y[n, :, oy0:oy1, :]  # (BLAS takes the view)
        # [G, M/G, C/G*K] @ [G, C/G*K, L] -> [G, M/G, L]
        gemm(w, cols.reshape(G, K, L), out=out.reshape(G, M // G, L))
        if not runs:
            finish(y, z_all, n, oy0, oy1)
        elif epilogue or z_all is not None:  # drop the columns computed over the right padding, in the epilogue's pass
            crop_epilogue_loops(out, y[n], oy0, b, no_z if z_all is None else z_all[n],
                                lo, hi, hard, alpha, beta)  # [M, rows, Wq] -> rows [oy0, oy1) of [M, oh, ow]
        else:
            np.copyto(y[n, :, oy0:oy1], out[:, :, :ow])  # [M, rows, Wq] -> [M, rows, ow]

    # Big images are cut into bands of output rows whose columns fit one core's cache
    # (BAND_BYTES); each thread takes bands, copies their columns and multiplies them with
    # single-threaded BLAS: the copy runs on every core too, and the GEMM reads columns that are
    # still in cache instead of a matrix of up to 100 MB (VGG's 224x224x64 3x3 layer).
    # A band's bytes count its product too: a shallow conv's output is bigger than its columns
    # (VGG's 3->64 3x3 on 224x224: 27 rows of columns, 64 of product). Measured, round-robin
    # medians: 3->64 3x3 on 224x224 9.6 -> 3.3 ms, the 3->64 7x7/2 stem 2.6 -> 2.0, 32->64 3x3 on
    # 112x112 5.5 -> 4.0, 64->64 on 224x224 42.9 -> 27.0 (the copies release the GIL, so the
    # threads copy at once; with the Numba im2col that held it, shallow convs lost).
    # A conv that two bands would cover runs whole, on OpenBLAS's own threads: its columns and
    # product (< 2 x BAND_BYTES) stay in the shared cache, and two single-threaded products at
    # once ran slower than one on both threads (squeezenet's 16->64 3x3 on 55x55: 1.65 -> 0.51 ms
    # alone; light geomean 1.55 -> 1.51 over three alternating pairs of runs, stop 10).
    rows = max(1, BAND_BYTES // ((C * kh * kw + M) * width * dtype.itemsize), -(-BAND_MIN_COLUMNS // width))
    banded = 2 * rows < oh  # three bands or more (the thread count is read at run time: threads=N caps it)
    # no padding before, and the windows end inside the image (SAME_UPPER may pad after only):
    # the windows read the image itself (a 1x1/2 conv), no padded copy
    unpadded = not runs and not any(pads) and Hp <= H and Wp <= Wd

    def run_gemm(X, Z=None):
        X, z_all = np.ascontiguousarray(X), z_of(Z)
        y = np.empty(y_shape, dtype=dtype)
        threads = blas_threads() if banded else 1
        starts, height = range(0, oh, oh), oh
        if threads > 1:  # as many bands as a multiple of the threads, of even heights (28 rows: 7+7+7+7, not 13+13+2)
            bands = -(-oh // rows)
            bands = -(-bands // threads) * threads
            height = -(-oh // bands)
            starts = range(0, oh, height)
        for n in range(N):  # one image at a time: one padded copy alive, whatever the batch
            if unpadded:
                xp, row = X[n].reshape(C, H * Wd), Wd  # [C, H, W] -> [C, H*W]
            elif runs:
                xp, row = padded_phases(X[n], ph, pw, sh, sw, Hq, Wq), Wq  # [C, H, W] -> [C, sh*sw, (Hq+1)*Wq]
            else:
                xp, row = padded_flat(X[n], ph, pw, Hp, Wp), Wp  # [C, H, W] -> [C, (Hp+1)*Wp]
            if threads > 1:
                run_blas_pieces([lambda r=r: band(y, z_all, n, xp, row, r, min(oh, r + height), np.matmul)
                                 for r in starts])
            else:  # the whole image in one GEMM, BLAS on every core (kernels/gemm.py)
                band(y, z_all, n, xp, row, 0, oh, matmul)
        return y

    return run_gemm


@functools.lru_cache(maxsize=1024)
def _geometry(x_shape, w_shape, auto_pad, strides, dilations, pads):
    """(strides, dilations, out_shape, begin pads) of a 2-D conv (1-D as height 1), worked out once
    per input shape and attributes: the same node sees the same shapes run after run."""
    if len(x_shape) == 3:  # [N, C, L] -> [N, C, 1, L]: a 1-D conv is a 2-D conv of height 1
        x_shape, w_shape = x_shape[:2] + (1,) + x_shape[2:], w_shape[:2] + (1,) + w_shape[2:]
        strides, dilations = (1,) + (strides or (1,)), (1,) + (dilations or (1,))
        pads = None if pads is None else (0, pads[0], 0, pads[1])
    strides, dilations = tuple(strides or (1, 1)), tuple(dilations or (1, 1))
    out_shape, begin, _, _ = _window_pads(x_shape[2:], w_shape[2:], strides, dilations, pads, auto_pad)
    return strides, dilations, tuple(out_shape), tuple(begin)  # tuples: the cache hands them out again


def _tuple(v):
    return None if v is None else tuple(v)


class PreparedConv:
    """The fast path of one Conv / FusedConv node, prepared (the plan's ``prepare`` step,
    :func:`minirt.registry.kernel`): the attributes are read once, when the plan is made, and the
    runner of :func:`conv2d_runner` is built on the first run with an input shape and kept, with
    the weight and bias arrays it was built for, for the next runs — the same node sees the same
    shapes and the same initializers run after run (checked with ``is`` on every call; other
    arrays build a new runner). It holds views of W and B, never copies: it is kept only when
    they are contiguous — except that of a Winograd conv, which keeps the transform of a
    read-only W (one that cannot change: ``keep_weights`` of :func:`conv2d_runner`). A call the
    fast path does not take returns None (the caller runs the general one)."""

    MAX_SHAPES = 8  # runners kept per node: one per input shape

    def __init__(self, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                 strides=None, lo=None, hi=None, hard=0, alpha=0.0, beta=0.0):
        self.attrs = (auto_pad, _tuple(strides), _tuple(dilations), _tuple(pads))
        self.group = group
        self.epilogue = (lo, hi, hard, alpha, beta)
        self.runners = {}  # X.shape -> (X.dtype, W, B, Y's shape, runner); runner None: not taken

    def __call__(self, X, W, B=None, Z=None):
        entry = self.runners.get(X.shape)
        if entry is None or entry[1] is not W or entry[2] is not B or entry[0] != X.dtype:
            entry = self._prepare(X, W, B)
        run = entry[4]
        if run is None or (Z is not None and (Z.shape != entry[3] or Z.dtype != X.dtype)):
            return None  # (a Z that broadcasts: the separate Add)
        return run(X, Z)

    def _prepare(self, X, W, B):
        run = y_shape = None
        if (X.ndim == 4 and W.ndim == 4 and X.dtype in _FAST_DTYPES and W.dtype == X.dtype
                and (B is None or B.dtype == X.dtype) and X.shape[1] == W.shape[1] * self.group):
            strides, dilations, out_shape, begin = _geometry(X.shape, W.shape, *self.attrs)
            if min(out_shape) > 0 and X.shape[0] > 0:
                y_shape = (X.shape[0], W.shape[0]) + out_shape
                run = conv2d_runner(X.shape, X.dtype, W, B, strides, begin, dilations, self.group, out_shape,
                                    *self.epilogue, keep_weights=immutable(W) and W.flags.c_contiguous)
        entry = (X.dtype, W, B, y_shape, run)
        if W.flags.c_contiguous and (B is None or B.flags.c_contiguous):  # the runner holds views of them
            if len(self.runners) >= self.MAX_SHAPES:
                self.runners.clear()
            self.runners[X.shape] = entry
        return entry


def prepare_conv(**attrs):
    """Conv's plan-time step: the node's :class:`PreparedConv`, else the general :func:`Conv`."""
    prepared = PreparedConv(**attrs)

    @functools.wraps(Conv)  # named as the kernel, and inspect.unwrap(conv) is Conv
    def conv(X, W, B=None):
        y = prepared(X, W, B)
        return Conv(X, W, B, **attrs) if y is None else y

    return conv


@kernel("Conv", since=1, prepare=prepare_conv)
def Conv(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """Fast Conv: 1-D and 2-D float32/float64; other cases run the reference ``minirt.ops.conv.Conv``."""
    if (X.ndim not in (3, 4) or X.dtype not in _FAST_DTYPES or W.dtype != X.dtype
            or (B is not None and B.dtype != X.dtype) or X.shape[1] != W.shape[1] * group
            or W.ndim != X.ndim):
        return Conv_reference(X, W, B, auto_pad=auto_pad, dilations=dilations, group=group,
                              kernel_shape=kernel_shape, pads=pads, strides=strides)
    strides2, dilations2, out_shape, begin = _geometry(X.shape, W.shape, auto_pad, _tuple(strides),
                                                       _tuple(dilations), _tuple(pads))
    if min(out_shape) <= 0 or X.shape[0] == 0:
        return Conv_reference(X, W, B, auto_pad=auto_pad, dilations=dilations, group=group,
                              kernel_shape=kernel_shape, pads=pads, strides=strides)
    if X.ndim == 3:  # [N, C, L] -> [N, C, 1, L] (a view)
        y = conv2d(X[:, :, None, :], W[:, :, None, :], B, strides2, begin, dilations2, group, out_shape)
        return y[:, :, 0, :]  # [N, M, 1, L] -> [N, M, L]
    return conv2d(X, W, B, strides2, begin, dilations2, group, out_shape)


def fused_conv(X, W, B, Z, lo, hi, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
               pads=None, strides=None, hard=0, alpha=0.0, beta=0.0):
    """FusedConv's fast path: min(max(Conv(X, W, B) + Z, lo), hi) — or with ``hard`` 1 / 2 its
    HardSigmoid / HardSwish(alpha, beta) — with the epilogue done in the conv's own pass over its
    output (:func:`conv2d`). None when this kernel does not take the case (the caller then runs
    the Conv and the epilogue one after the other)."""
    if (X.ndim != 4 or W.ndim != 4 or X.dtype not in _FAST_DTYPES or W.dtype != X.dtype
            or (B is not None and B.dtype != X.dtype) or X.shape[1] != W.shape[1] * group):
        return None
    strides2, dilations2, out_shape, begin = _geometry(X.shape, W.shape, auto_pad, _tuple(strides),
                                                       _tuple(dilations), _tuple(pads))
    if min(out_shape) <= 0 or X.shape[0] == 0:
        return None
    if Z is not None and (Z.dtype != X.dtype or Z.shape != (X.shape[0], W.shape[0]) + out_shape):
        return None  # a Z that broadcasts: the separate Add
    return conv2d(X, W, B, strides2, begin, dilations2, group, out_shape, Z, lo, hi, hard, alpha, beta)
