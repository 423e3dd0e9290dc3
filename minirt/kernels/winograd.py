"""Winograd's F(2x2, 3x3): a 3x3 stride-1 conv with 16 multiplies per 2x2 outputs instead of 36.

A 3x3 conv computes each 2x2 block of outputs from a 4x4 tile of its (padded) input. Lavin and
Gray ("Fast Algorithms for Convolutional Neural Networks", 2015, after Winograd's minimal
filtering algorithms) write that block as

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* : element by element)

for one input channel's 4x4 tile d and 3x3 filter g, with the constant matrices

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]   (input transform)
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]      (filter transform)
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                                 (output transform)

Summed over the input channels, the element-by-element product becomes 16 matrix products, one
per position (i, j) of the 4x4 transformed tile, over all channels and tiles at once:

    P[ij] = U[ij] @ V[ij]     U [16, M, C] = G g G^T of every filter (once, when the runner is made)
                              V [16, C, T] = B^T d B of every tile of every channel
                              P [16, M, T]  ->  Y = A^T P A, tile by tile

That is 16*M*C*T multiply-adds in BLAS, where im2col + GEMM does 9*M*C*4T: 2.25x fewer. The
transforms are additions only (B and A hold 0 and +-1; G's halves touch the filters alone), and
V is 4x the input where im2col's column matrix is 9x.

Two layouts of the transforms, by the width of the map:

- **planes** (wide maps, more than ``CHANNELS_LAST_MAX_WIDTH`` output columns): V [16, C, T] from
  the zero-padded planes (:func:`minirt.kernels.conv.padded_flat`), every loop along a tile
  row; the products ``U @ V``. The map is cut into bands of tile rows, one a BLAS thread, each
  transformed, multiplied and transformed back while its V and P are in the core's cache.
- **channels last** (narrow maps: 7x7 to 32x32): the padded input is copied with its channels
  last and its columns split by parity, [Ht, 2, Wt/2, C], and every loop runs over a whole tile
  row's channels and tiles (TW * C values) where a tile row is only 4-16 tiles (each short
  loop's fixed cost, ~10 ns, was most of the planes' time there: 256->256 on 14x14 spent 0.37 ms
  in each transform against 0.75 in the products); V [16, T, C], the products ``V @ U^T`` ->
  [16, T, M]. On such maps each product is small: the 16 of them are
  shared out between the BLAS threads, single-threaded each (28x28 and up: bands, as above).

Measured on this 2-core Zen 4 against the column paths (round-robin medians, ms): VGG-19's
64->64 on 224x224 24.7 -> 16.6, 256->256 on 56x56 22.8 -> 12.6, 512->512 on 28x28 21.9 -> 11.1;
ResNet-50's 64->64 on 56x56 1.86 -> 1.40, 256->256 on 14x14 1.5-1.7 -> 0.9-1.2, 512->512 on
7x7 2.0 -> 1.6; DenseNet-121's 128->32 on 28x28 0.55 -> 0.41 (the shifted GEMM before);
Inception's 192->320 on 7x7 0.46 -> 0.30. Whole models (same process, two sessions
alternating, one without Winograd): VGG-19 0.61x, Inception 0.84-0.88x, ZFNet 0.88x, ResNet-50
0.91x, DenseNet-121 0.92x, resnet_mini 0.89x, squeezenet 1.0x (its 3x3 convs have 16-64 input
channels).

Rounding: the transforms add and subtract up to 16 inputs (or products) where the direct sum
adds 9: float32 errors of the same order as im2col's (measured max |error| against float64,
2-3e-6 on outputs of size ~1 for C = 64..512, im2col 2-3e-6). An inf in the input, though, turns
into inf - inf = NaN in its tile's other outputs: an input holding a non-finite value runs the
column path instead (one pass over its bits, :func:`minirt.kernels.pool.all_finite`).

``conv2d_runner`` (:mod:`minirt.kernels.conv`) takes this path for group-1, 3x3, stride-1,
undilated convs with outputs of at least ``MIN_SIZE`` x ``MIN_SIZE`` (on smaller maps most of a
tile's outputs would be padding) and at least ``MIN_CHANNELS`` input channels, when the weights
cannot change (read-only, as minirt's initializers are: U is computed once, when the node's
runner is made).
"""

from __future__ import annotations

import numba
import numpy as np

from minirt.kernels.epilogue import activate

MIN_SIZE = 7  # output rows and columns at least (see the module's docstring) ...
MIN_CHANNELS = 32  # ... and input channels: the 16 products are C deep, where im2col's is 9*C
#                    (squeezenet's 16->64 on 55x55: 0.43 -> 0.49 ms; 32->128 on 27x27 0.39-0.45 -> 0.32-0.35)
CHANNELS_LAST_MAX_WIDTH = 32  # output columns up to which the channels-last transforms run (28x28:
#                               1.7 -> 1.04 ms for 128->128, where the planes took 1.15-1.47)

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])  # [4, 3]
_GG = np.kron(_G, _G)  # [16, 9]: _GG[4i + j, 3k + l] = G[i, k] * G[j, l]


def weight_transform(W):
    """U[4i + j, m, c] = (G W[m, c] G^T)[i, j]: W [M, C, 3, 3] -> U [16, M, C] of W's dtype.

    Each of U's 16 entries is a fixed combination of a filter's 9 taps, so all filters at once
    are one product (G kron G) [16, 9] @ taps [9, M*C], in float64 and rounded once (4x3
    matrix products per filter, ``G @ W @ G.T`` broadcast, took 0.12 s on a 512x512 conv)."""
    M, C = W.shape[:2]
    taps = W.reshape(M * C, 9).T.astype(np.float64)  # [M, C, 3, 3] -> [9, M*C]
    U = _GG @ taps  # [16, 9] @ [9, M*C] -> [16, M*C]
    return np.ascontiguousarray(U.reshape(16, M, C), dtype=W.dtype)


def _input_transform(xp, Wp, V, ty0, ty1, TW):
    """V[4i + j, c, (ty - ty0)*TW + tx] = (B^T d B)[i, j] for the tiles of tile rows [ty0, ty1):
    d = the 4x4 tile of channel c at padded rows 2ty..2ty+3, columns 2tx..2tx+3.

    xp [C, (Hp+1)*Wp] (:func:`minirt.kernels.conv.padded_flat`: each channel padded and flattened
    row by row, Wp >= 2*TW + 2), V [16, C, (ty1-ty0)*TW] (written). Per tile row, B^T's row
    combinations are taken first, as four long loops over the padded width (a0 - a2, a1 + a2,
    a2 - a1, a1 - a3 of its four rows); then the same combinations of each result's columns,
    2tx..2tx+3 (a stride of 2: LLVM vectorizes it as interleaved loads).
    """
    C = xp.shape[0]
    r = np.empty((4, Wp), xp.dtype)  # B^T d: the row combinations of one tile row
    for c in range(C):
        for ty in range(ty0, ty1):
            a0 = xp[c, (2 * ty) * Wp:]  # the tile row's four padded rows
            a1 = xp[c, (2 * ty + 1) * Wp:]
            a2 = xp[c, (2 * ty + 2) * Wp:]
            a3 = xp[c, (2 * ty + 3) * Wp:]
            for q in range(2 * TW + 2):
                r[0, q] = a0[q] - a2[q]
                r[1, q] = a1[q] + a2[q]
                r[2, q] = a2[q] - a1[q]
                r[3, q] = a1[q] - a3[q]
            t0 = (ty - ty0) * TW  # the first tile of this row in V
            for i in range(4):
                ri = r[i]
                v0 = V[4 * i, c, t0:]
                v1 = V[4 * i + 1, c, t0:]
                v2 = V[4 * i + 2, c, t0:]
                v3 = V[4 * i + 3, c, t0:]
                for tx in range(TW):
                    d0 = ri[2 * tx]
                    d1 = ri[2 * tx + 1]
                    d2 = ri[2 * tx + 2]
                    d3 = ri[2 * tx + 3]
                    v0[tx] = d0 - d2
                    v1[tx] = d1 + d2
                    v2[tx] = d2 - d1
                    v3[tx] = d1 - d3


def _output_transform(P, y, ty0, ty1, TW, bias, z, lo, hi, hard, alpha, beta):
    """y[m, 2ty + i, 2tx + j] = act((A^T p A)[i, j] + bias[m] + z[m, 2ty + i, 2tx + j]) for the
    tiles of tile rows [ty0, ty1), p[i', j'] = P[4i' + j', m, (ty - ty0)*TW + tx]; outputs past
    y's edge (an odd height or width) are not written.

    P [16, M, (ty1-ty0)*TW], y [M, oh, ow] (written), bias [M], z [M, oh, ow] or [0, 0, 0]
    (none), the activation's constants as in :func:`minirt.kernels.conv._epilogue_loops`.
    A^T's two row combinations (p0 + p1 + p2, p1 - p2 - p3) over each of the four columns, then
    the same of their columns: each loop runs along a tile row.
    """
    M, oh, ow = y.shape
    has_z = z.shape[0] > 0
    s = np.empty((8, TW), P.dtype)  # A^T p: s[4i + j] is row i, column j of each tile
    pairs = ow // 2  # tiles whose two output columns are both inside y
    for m in range(M):
        bm = bias[m]
        for ty in range(ty0, ty1):
            t0 = (ty - ty0) * TW
            for j in range(4):
                p0, p1, p2, p3 = P[j, m, t0:], P[4 + j, m, t0:], P[8 + j, m, t0:], P[12 + j, m, t0:]
                s0, s1 = s[j], s[4 + j]
                for tx in range(TW):
                    s0[tx] = p0[tx] + p1[tx] + p2[tx]
                    s1[tx] = p1[tx] - p2[tx] - p3[tx]
            for i in range(min(2, oh - 2 * ty)):  # the tile's output rows inside y
                q0, q1, q2, q3 = s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]
                d = y[m, 2 * ty + i]  # [ow]
                # (q0: a placeholder, never read without Z; not d, which is written: LLVM's overlap
                # check between the two then fails and the loop runs scalar, 1.4-2.3x slower)
                zr = z[m, 2 * ty + i] if has_z else q0
                for tx in range(pairs):
                    v0 = q0[tx] + q1[tx] + q2[tx] + bm
                    v1 = q1[tx] - q2[tx] - q3[tx] + bm
                    if has_z:
                        v0 = v0 + zr[2 * tx]
                        v1 = v1 + zr[2 * tx + 1]
                    d[2 * tx] = activate(v0, lo, hi, hard, alpha, beta)
                    d[2 * tx + 1] = activate(v1, lo, hi, hard, alpha, beta)
                if ow % 2:  # the last tile's left column only
                    v0 = q0[pairs] + q1[pairs] + q2[pairs] + bm
                    if has_z:
                        v0 = v0 + zr[2 * pairs]
                    d[2 * pairs] = activate(v0, lo, hi, hard, alpha, beta)


def _pad_channels_last(x, xs, pt, pl):
    """x [C, H, W] into its zero-padded image with the channels last and the columns split by
    parity, xs [Ht, 2, Wt/2, C] (zeros already): xs[iy + pt, q, p, c] = x[c, iy, ix] for column
    ix + pl = 2p + q; rows and columns past xs are left out. The transposing copy: each pixel's
    channels are gathered from C planes. (By parity: a tile's columns 2tx and 2tx + 2 are then
    C apart, so the column step of the transform runs over a whole tile row at once.)"""
    C, H, W = x.shape
    Ht, _, half, _ = xs.shape
    for iy in range(min(H, Ht - pt)):
        for ix in range(min(W, 2 * half - pl)):
            d = xs[iy + pt, (ix + pl) % 2, (ix + pl) // 2]  # [C]
            for c in range(C):
                d[c] = x[c, iy, ix]


def _input_transform_channels_last(xs, V, ty0, ty1, TW):
    """:func:`_input_transform` for small maps, the channels last: every loop runs over a whole
    tile row's pixels and channels (TW * C values) instead of along a tile row (4-16 tiles on a
    7x7-32x32 map, where each short loop's fixed cost, ~10 ns, was most of the time).

    xs [Ht, 2, TW + 1, C] (:func:`_pad_channels_last`), V [16, (ty1-ty0)*TW, C] (written):
    V[4i + j, (ty - ty0)*TW + tx, c] = (B^T d B)[i, j], d the 4x4 tile at (2ty, 2tx) of channel c.
    """
    C = xs.shape[3]
    n = (TW + 1) * C  # the values of a row's even (or odd) columns
    L = TW * C  # ... of one position (i, j) of a tile row's transformed tiles
    Vt = V.reshape(16, ty1 - ty0, L)  # [16, tiles, C] -> [16, tile rows, TW*C]
    r = np.empty((4, 2 * n), xs.dtype)  # B^T d of the tile row: r[i] = row i, its even columns then its odd ones
    r0 = r[0]
    r1 = r[1]
    r2 = r[2]
    r3 = r[3]
    for ty in range(ty0, ty1):
        a0 = xs[2 * ty].reshape(2 * n)  # [2, TW+1, C] -> [2*(TW+1)*C]: rows 2ty .. 2ty+3
        a1 = xs[2 * ty + 1].reshape(2 * n)
        a2 = xs[2 * ty + 2].reshape(2 * n)
        a3 = xs[2 * ty + 3].reshape(2 * n)
        for k in range(2 * n):  # B^T's combinations of the tile rows, every column
            r0[k] = a0[k] - a2[k]
            r1[k] = a1[k] + a2[k]
            r2[k] = a2[k] - a1[k]
            r3[k] = a1[k] - a3[k]
        for i in range(4):  # ... and of the columns 2tx + j of every tile: j = 0, 2 even, 1, 3 odd
            d0 = r[i, 0:L]  # columns 2tx
            d2 = r[i, C:C + L]  # columns 2tx + 2
            d1 = r[i, n:n + L]  # columns 2tx + 1
            d3 = r[i, n + C:n + C + L]  # columns 2tx + 3
            v0 = Vt[4 * i, ty - ty0]
            v1 = Vt[4 * i + 1, ty - ty0]
            v2 = Vt[4 * i + 2, ty - ty0]
            v3 = Vt[4 * i + 3, ty - ty0]
            for k in range(L):
                v0[k] = d0[k] - d2[k]
                v1[k] = d1[k] + d2[k]
                v2[k] = d2[k] - d1[k]
                v3[k] = d1[k] - d3[k]


def _output_transform_channels_last(P, y, ty0, ty1, TW, bias, z, lo, hi, hard, alpha, beta):
    """:func:`_output_transform` for small maps, the channels last: P [16, (ty1-ty0)*TW, M]
    (the products ``V @ U^T``), the transform's loops over a whole tile row's tiles and channels
    (TW * M values); y [M, oh, ow] is then written one output pixel at a time (its channels oh*ow
    apart), with the bias, Z and activation."""
    M, oh, ow = y.shape
    has_z = z.shape[0] > 0
    L = TW * M  # the values of one position of a tile row's tiles
    Pt = P.reshape(16, ty1 - ty0, L)  # [16, tiles, M] -> [16, tile rows, TW*M]
    s = np.empty((2, 4, L), P.dtype)  # A^T p: s[i, j] = row i, column j of every tile of the row
    o = np.empty((4, L), P.dtype)  # outputs (2ty + i, 2tx + jj) of every tile: o[2i + jj]
    for ty in range(ty0, ty1):
        for j in range(4):
            p0 = Pt[j, ty - ty0]
            p1 = Pt[4 + j, ty - ty0]
            p2 = Pt[8 + j, ty - ty0]
            p3 = Pt[12 + j, ty - ty0]
            s0 = s[0, j]
            s1 = s[1, j]
            for k in range(L):
                s0[k] = p0[k] + p1[k] + p2[k]
                s1[k] = p1[k] - p2[k] - p3[k]
        for i in range(2):
            q0 = s[i, 0]
            q1 = s[i, 1]
            q2 = s[i, 2]
            q3 = s[i, 3]
            oe = o[2 * i]
            oo = o[2 * i + 1]
            for k in range(L):
                oe[k] = q0[k] + q1[k] + q2[k]
                oo[k] = q1[k] - q2[k] - q3[k]
        for i in range(2):  # [TW, M] per output -> y[:, 2ty + i, 2tx + jj], if inside y
            oy = 2 * ty + i
            if oy < oh:
                for tx in range(TW):
                    for jj in range(2):
                        ox = 2 * tx + jj
                        if ox < ow:
                            ok = o[2 * i + jj, tx * M:tx * M + M]
                            for m in range(M):
                                v = ok[m] + bias[m]
                                if has_z:
                                    v = v + z[m, oy, ox]
                                y[m, oy, ox] = activate(v, lo, hi, hard, alpha, beta)


# wrapped once: plain Python again under NUMBA_DISABLE_JIT=1; nogil: the bands' threads run them at once
input_transform = numba.njit(cache=True, nogil=True)(_input_transform)
output_transform = numba.njit(cache=True, nogil=True)(_output_transform)
pad_channels_last = numba.njit(cache=True, nogil=True)(_pad_channels_last)
input_transform_channels_last = numba.njit(cache=True, nogil=True)(_input_transform_channels_last)
output_transform_channels_last = numba.njit(cache=True, nogil=True)(_output_transform_channels_last)
