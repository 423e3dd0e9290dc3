"""Integer MatMul / Conv (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv) on float32 BLAS,
exactly.

The trick, and why it is exact: float32 holds every integer of magnitude <= 2**24 exactly. The
operands are 8-bit values minus their zero points, so |a| <= amax and |b| <= bmax with amax, bmax
<= 255 known from the dtypes and zero points. A dot product of k such terms has every product
and every partial sum — in *whatever order* BLAS adds them — bounded by k * amax * bmax. While
that is <= 2**24 every float32 operation is exact, so one float32 GEMM gives the exact int32
result. For longer dot products, ``_gemm_exact`` splits K into chunks of at most
2**24 // (amax * bmax) terms (>= 258 for any 8-bit operands; 1040 for int8 x int8 with zero
points 0) and adds the exact chunk results in int32.

``_matmul_blocked`` from ``minirt.kernels.matmul`` on int32 arrays is the plain integer loop
kernel (the oracle a student can read): ``matmul_int32_blocked``.

Requantization (QLinear*) reuses the reference's ``_requantize``, so the outputs are bit-exact.
"""

from __future__ import annotations

import numpy as np

from minirt.kernels.conv import depthwise_loops, im2col
from minirt.kernels.gemm import matmul
from minirt.kernels.matmul import matmul_blocked_loops
from minirt.ops.conv import _window_pads
from minirt.ops.quant import ConvInteger as ConvInteger_reference
from minirt.ops.quant import MatMulInteger as MatMulInteger_reference
from minirt.ops.quant import QLinearConv as QLinearConv_reference
from minirt.ops.quant import QLinearMatMul as QLinearMatMul_reference
from minirt.ops.quant import _channel_zero_point, _requantize, _row_zero_point
from minirt.registry import kernel

_EXACT = 2**24  # float32 represents every integer in [-2**24, 2**24]
_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))


def matmul_int32_blocked(a, b, tile=64):
    """int32 a [M, K] @ b [K, N] with the blocked loop kernel (exact, slow: the teaching kernel)."""
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    matmul_blocked_loops(np.ascontiguousarray(a, np.int32), np.ascontiguousarray(b, np.int32), c, tile)
    return c


def _bound(q_dtype, zero_point):
    """The largest |q - zero_point| a q_dtype value can have (zero_point: scalar or per channel)."""
    lo, hi = _LIMITS.get(np.dtype(q_dtype)) or (int(np.iinfo(q_dtype).min), int(np.iinfo(q_dtype).max))
    if zero_point is None:
        zmin = zmax = 0
    elif np.size(zero_point) == 1:  # the usual scalar: plain Python ints (no array reductions)
        zmin = zmax = int(np.asarray(zero_point).reshape(-1)[0])
    else:
        zp = np.asarray(zero_point, dtype=np.int64)
        zmin, zmax = int(zp.min()), int(zp.max())
    return max(hi - zmin, zmax - lo)


_LIMITS = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _widen_f32(q, zero_point):
    """q - zero_point as float32 (exact: 8-bit values and zero points)."""
    x = q.astype(np.float32)
    if zero_point is not None:
        x -= np.asarray(zero_point, dtype=np.float32)
    return x


def _chunk(amax, bmax):
    """How many products a float32 dot product may sum and stay exact."""
    return _EXACT // max(amax * bmax, 1)


def _gemm_exact(a, b, chunk, out=None):
    """Exact int32 a [.., M, K] @ b [.., K, N] of integer-valued float32 arrays, K in exact chunks."""
    K = a.shape[-1]
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, dtype=np.int32)
    if K <= chunk:
        np.copyto(out, matmul(a, b), casting="unsafe")  # [.., M, K] @ [.., K, N] -> [.., M, N], exact
        return out
    out[...] = 0
    for k0 in range(0, K, chunk):  # every chunk is exact; the int32 sum of chunks is exact
        part = matmul(a[..., k0:k0 + chunk], b[..., k0:k0 + chunk, :])
        np.add(out, part, out=out, casting="unsafe")  # (added in float64: exact for int32)
    return out


@kernel("MatMulInteger", since=10)
def MatMulInteger(A, B, a_zero_point=None, b_zero_point=None):
    """Fast MatMulInteger: exact float32 BLAS in chunks (see the module docstring)."""
    if A.dtype not in _INT8 or B.dtype not in _INT8 or A.ndim < 2 or B.ndim < 2:
        return MatMulInteger_reference(A, B, a_zero_point, b_zero_point)
    a_zp = None if a_zero_point is None else _row_zero_point(a_zero_point)
    a = _widen_f32(A, a_zp)  # [.., M, K] int8 -> float32
    b = _widen_f32(B, b_zero_point)  # [.., K, N]
    chunk = _chunk(_bound(A.dtype, a_zero_point), _bound(B.dtype, b_zero_point))
    return _gemm_exact(a, b, chunk)  # int32 [.., M, N]


@kernel("ConvInteger", since=10)
def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET",
                dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Fast ConvInteger for 2-D (and 1-D) convs: im2col of x - x_zero_point, exact float32 GEMM."""
    args = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                pads=pads, strides=strides)
    x_zp_scalar = x_zero_point is None or np.asarray(x_zero_point).size == 1
    if (x.ndim not in (3, 4) or x.dtype not in _INT8 or w.dtype not in _INT8 or x.shape[0] == 0
            or x.shape[1] != w.shape[1] * group or not x_zp_scalar):
        return ConvInteger_reference(x, w, x_zero_point, w_zero_point, **args)
    one_d = x.ndim == 3
    xs, ws = (x[:, :, None, :], w[:, :, None, :]) if one_d else (x, w)
    st = ([1] if one_d else []) + list(strides or [1] * (x.ndim - 2))
    dl = ([1] if one_d else []) + list(dilations or [1] * (x.ndim - 2))
    pd = None if pads is None else ([0, pads[0], 0, pads[1]] if one_d else list(pads))
    out_shape, begin, _, _ = _window_pads(xs.shape[2:], ws.shape[2:], st, dl, pd, auto_pad)
    if min(out_shape) <= 0:
        return ConvInteger_reference(x, w, x_zero_point, w_zero_point, **args)
    w_zp = None if w_zero_point is None else _channel_zero_point(w_zero_point, ws.ndim)
    xf = _widen_f32(xs, x_zero_point)  # x - x_zp: zero padding now means "pad with x_zero_point"
    wf = _widen_f32(ws, w_zp)
    chunk = _chunk(_bound(x.dtype, x_zero_point), _bound(w.dtype, w_zero_point))
    y = _conv_exact(np.ascontiguousarray(xf), np.ascontiguousarray(wf), st, begin, dl, group,
                    out_shape, chunk)
    return y[:, :, 0, :] if one_d else y


def _conv_exact(x, w, strides, pads, dilations, group, out_shape, chunk):
    """int32 conv of integer-valued float32 x [N, C, H, W] and w [M, C/G, kh, kw]."""
    N, C, H, W = x.shape
    M, Cg, kh, kw = w.shape
    (oh, ow), (sh, sw), (dh, dw), (ph, pw) = out_shape, strides, dilations, pads[:2]
    G, L, K = group, oh * ow, Cg * kh * kw
    y = np.empty((N, M, oh, ow), dtype=np.int32)
    if G == C and Cg == 1 and G > 1 and K <= chunk:  # depthwise: float32 loops, exact (K <= chunk)
        yf = np.empty((N, M, oh, ow), dtype=np.float32)
        depthwise_loops(x, w, np.zeros(M, np.float32), yf, sh, sw, ph, pw, dh, dw)
        np.copyto(y, yf, casting="unsafe")
        return y
    wg = w.reshape(G, M // G, K)  # [M, C/G, kh, kw] -> [G, M/G, C/G*K]
    pointwise = kh == kw == 1 and sh == sw == 1 and not any(pads)
    cols = None if pointwise else np.empty((C * kh * kw, L), dtype=np.float32)
    for n in range(N):
        if pointwise:
            cols = x[n].reshape(C, L)  # [C, H, W] -> [C, H*W]
        else:
            im2col(x[n], cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)  # [C, H, W] -> [C*K, L]
        # [G, M/G, C/G*K] @ [G, C/G*K, L] -> [G, M/G, L], exact, into y[n]
        _gemm_exact(wg, cols.reshape(G, K, L), chunk, out=y[n].reshape(G, M // G, L))
    return y


@kernel("QLinearConv", since=10)
def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                pads=None, strides=None):
    """Fast QLinearConv: the fast ConvInteger, then the reference's requantization (bit-exact)."""
    if x.ndim not in (3, 4):
        return QLinearConv_reference(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
                                     y_zero_point, B, auto_pad=auto_pad, dilations=dilations,
                                     group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    acc = ConvInteger(x, w, x_zero_point, w_zero_point, auto_pad=auto_pad, dilations=dilations,
                      group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    spatial = (1,) * (x.ndim - 2)
    if B is not None:
        acc += B.astype(np.int32).reshape(-1, *spatial)  # bias per output channel, in place
    w_scale = np.asarray(w_scale, dtype=np.float32)
    if w_scale.size > 1:
        w_scale = w_scale.reshape(-1, *spatial)  # per output channel [M] -> [M, 1, 1]
    multiplier = np.float32(x_scale) * w_scale / np.float32(y_scale)
    dtype = x.dtype if y_zero_point is None else np.asarray(y_zero_point).dtype
    return _requantize(acc, multiplier, y_zero_point, dtype)


@kernel("QLinearMatMul", since=10)
@kernel("QLinearMatMul", since=21)
def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Fast QLinearMatMul: the fast MatMulInteger, then the reference's requantization (bit-exact)."""
    if a.ndim < 2 or b.ndim < 2:
        return QLinearMatMul_reference(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
                                       y_zero_point)
    acc = MatMulInteger(a, b, a_zero_point, b_zero_point)  # int32 [.., M, N]
    a_scale = np.asarray(a_scale, dtype=np.float32)
    if a_scale.size > 1:
        a_scale = a_scale.reshape(-1, 1)  # per row of a
    multiplier = a_scale * np.asarray(b_scale, dtype=np.float32) / np.asarray(y_scale, dtype=np.float32)
    return _requantize(acc, multiplier, y_zero_point, np.asarray(y_zero_point).dtype)
