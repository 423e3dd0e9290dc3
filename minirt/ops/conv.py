"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im.

Conv is im2col + one batched matmul: the padded input is viewed (no copy) as sliding windows
with ``sliding_window_view``, the windows are copied once into columns, and every group is
multiplied at once by ``np.matmul`` over a leading ``[N, G]`` batch. ConvTranspose and Col2Im
share ``_col2im``, the scatter-add that undoes im2col.

The window helpers (``_window_pads``, ``_windows``) are shared with ``pool.py``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minirt.registry import op


# ----------------------------------------------------------------------------- window helpers


def _window_pads(in_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode=0):
    """Output spatial shape and the (begin, end) padding of a windowed op (Conv, pools).

    Returns ``out_shape, pads_begin, pads_end, extra_end`` where ``extra_end`` is the padding a
    ceil_mode window needs past ``pads_end`` (it is not part of the explicit padding: the pools
    never count it). A ceil_mode window never starts inside the right padding (spec rule).
    """
    n = len(in_shape)
    pads = list(pads) if pads is not None else [0] * (2 * n)
    out, begin, end, extra = [], [], [], []
    for i in range(n):
        ek = (kernel[i] - 1) * dilations[i] + 1  # effective (dilated) kernel extent
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-in_shape[i] // strides[i])  # ceil(in / stride)
            total = max(0, (o - 1) * strides[i] + ek - in_shape[i])
            small, large = total // 2, total - total // 2
            b, e = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads[i], pads[i + n])
            span = in_shape[i] + b + e - ek
            if ceil_mode:
                o = -(-span // strides[i]) + 1
                if (o - 1) * strides[i] >= in_shape[i] + b:  # last window would start in the pad
                    o -= 1
            else:
                o = span // strides[i] + 1
        out.append(max(o, 0))
        begin.append(b)
        end.append(e)
        extra.append(max(0, (o - 1) * strides[i] + ek - (in_shape[i] + b + e)))
    return out, begin, end, extra


def _windows(xp, kernel, strides, dilations, out_shape):
    """Sliding windows over the trailing spatial axes of an already padded array (a view).

    [N, C, *padded] -> [N, C, *out_shape, *kernel]
    """
    n = len(kernel)
    if 0 in out_shape:  # no window fits: an empty result of the right shape
        return np.zeros((*xp.shape[:-n], *out_shape, *kernel), dtype=xp.dtype)
    axes = tuple(range(xp.ndim - n, xp.ndim))
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    v = sliding_window_view(xp, extents, axis=axes)  # [N, C, *positions, *extents]
    starts = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_shape, strides))
    taps = tuple(slice(None, None, d) for d in dilations)
    return v[(Ellipsis,) + starts + taps]  # [N, C, *out_shape, *kernel]


def _pad_spatial(x, begin, end, value=0):
    """Pad the trailing len(begin) axes of x with a constant."""
    if not any(begin) and not any(end):
        return x  # no copy when there is nothing to pad
    lead = [(0, 0)] * (x.ndim - len(begin))
    return np.pad(x, lead + list(zip(begin, end)), constant_values=value)


def _defaults(x, kernel, strides, dilations):
    n = x.ndim - 2
    return list(strides or [1] * n), list(dilations or [1] * n)


# ----------------------------------------------------------------------------- Conv


@op("Conv", since=1)
def Conv(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """Y[n, m] = sum_{c, k} X[n, c, s*o + d*k - pad] * W[m, c, k] + B[m] — https://onnx.ai/onnx/operators/onnx__Conv.html"""
    N, C = X.shape[:2]
    M = W.shape[0]
    kernel = list(W.shape[2:])  # kernel_shape, when given, must agree with W
    strides, dilations = _defaults(X, kernel, strides, dilations)
    out_shape, begin, end, _ = _window_pads(X.shape[2:], kernel, strides, dilations, pads, auto_pad)
    G, K = group, math.prod(kernel)
    L = math.prod(out_shape)

    xp = _pad_spatial(X, begin, end)  # [N, C, *in] -> [N, C, *padded]
    win = _windows(xp, kernel, strides, dilations, out_shape)  # [N, C, *out, *kernel] (a view)
    n = len(kernel)
    # move the kernel axes next to the channels: [N, C, *out, *kernel] -> [N, C, *kernel, *out]
    win = win.transpose([0, 1] + list(range(2 + n, 2 + 2 * n)) + list(range(2, 2 + n)))
    cols = win.reshape(N, G, (C // G) * K, L)  # [N, G, C/G*K, L]  (the im2col copy)
    w = W.reshape(1, G, M // G, (C // G) * K)  # [M, C/G, *kernel] -> [1, G, M/G, C/G*K]
    if X.dtype == np.float16:  # NumPy has no float16 BLAS: multiply (and accumulate) in float32
        w, cols = w.astype(np.float32), cols.astype(np.float32)
    y = np.matmul(w, cols)  # [1, G, M/G, C/G*K] @ [N, G, C/G*K, L] -> [N, G, M/G, L]
    y = y.reshape(N, M, *out_shape).astype(X.dtype, copy=False)  # [N, G, M/G, L] -> [N, M, *out]
    if B is not None:
        y = y + B.reshape((1, M) + (1,) * n)  # [M] -> [1, M, 1, ...]
    return y


# ----------------------------------------------------------------------------- col2im


def _col2im(cols, out_shape, kernel, strides, dilations, in_shape):
    """Scatter-add columns back into an image: the adjoint of im2col.

    [N, C, *kernel, *in_shape] -> [N, C, *out_shape] where tap k of position i lands at
    ``i * stride + k * dilation`` (coordinates of the padded output).
    """
    N, C = cols.shape[:2]
    y = np.zeros((N, C, *out_shape), dtype=cols.dtype)
    for k in itertools.product(*[range(kk) for kk in kernel]):  # one pass per kernel tap
        dst = tuple(slice(kk * d, kk * d + (i - 1) * s + 1, s)
                    for kk, d, s, i in zip(k, dilations, strides, in_shape))
        y[(Ellipsis,) + dst] += cols[(slice(None), slice(None)) + k]  # [N, C, *in] -> strided slots
    return y


@op("ConvTranspose", since=1)
def ConvTranspose(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  output_padding=None, output_shape=None, pads=None, strides=None):
    """Gradient of Conv w.r.t. its input: Y[n, m, s*i + d*k - pad] += X[n, c, i] * W[c, m, k] — https://onnx.ai/onnx/operators/onnx__ConvTranspose.html"""
    N, C = X.shape[:2]
    in_shape = list(X.shape[2:])
    n = len(in_shape)
    kernel = list(W.shape[2:])
    strides, dilations = _defaults(X, kernel, strides, dilations)
    output_padding = list(output_padding or [0] * n)
    G, Mg, K = group, W.shape[1], math.prod(kernel)

    # full (un-cropped) output extent along each axis
    full = [s * (i - 1) + op_ + (k - 1) * d + 1
            for s, i, op_, k, d in zip(strides, in_shape, output_padding, kernel, dilations)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = list(output_shape)[-n:] if output_shape is not None else [i * s for i, s in zip(in_shape, strides)]
        total = [f - t for f, t in zip(full, target)]
        if output_shape is None:  # SAME never pads negatively (as onnxruntime: the output stays `full`)
            total = [max(0, t) for t in total]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:  # SAME_LOWER and NOTSET put the larger half first
            begin = [t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    else:
        pads = list(pads or [0] * (2 * n))
        begin, end = pads[:n], pads[n:]

    x = X.reshape(N, G, C // G, math.prod(in_shape))  # [N, C, *in] -> [N, G, C/G, L]
    w = W.reshape(1, G, C // G, Mg * K).transpose(0, 1, 3, 2)  # [C, M/G, *k] -> [1, G, M/G*K, C/G]
    cols = np.matmul(w, x)  # [1, G, M/G*K, C/G] @ [N, G, C/G, L] -> [N, G, M/G*K, L]
    cols = cols.reshape(N, G * Mg, *kernel, *in_shape)  # -> [N, M, *kernel, *in]
    y = _col2im(cols, full, kernel, strides, dilations, in_shape)  # -> [N, M, *full]
    # a negative pad (output_shape larger than the full extent) grows the output with zeros
    y = _pad_spatial(y, [max(0, -b) for b in begin], [max(0, -e) for e in end])
    crop = tuple(slice(max(b, 0), y.shape[2 + i] - max(e, 0)) for i, (b, e) in enumerate(zip(begin, end)))
    y = y[(Ellipsis,) + crop]  # [N, M, *full] -> [N, M, *out]
    if B is not None:
        y = y + B.reshape((1, -1) + (1,) * n)  # [M] -> [1, M, 1, ...]
    return np.ascontiguousarray(y)


@op("Col2Im", since=18)
def Col2Im(input, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Rearrange column blocks [N, C*prod(block), L] back into an image, summing overlaps — https://onnx.ai/onnx/operators/onnx__Col2Im.html"""
    image = [int(v) for v in image_shape]
    kernel = [int(v) for v in block_shape]
    n = len(image)
    strides = list(strides or [1] * n)
    dilations = list(dilations or [1] * n)
    pads = list(pads or [0] * (2 * n))
    N, CK, _ = input.shape
    C = CK // math.prod(kernel)
    padded = [i + pads[a] + pads[a + n] for a, i in enumerate(image)]
    blocks = [(p - ((k - 1) * d + 1)) // s + 1 for p, k, d, s in zip(padded, kernel, dilations, strides)]
    cols = input.reshape(N, C, *kernel, *blocks)  # [N, C*K, L] -> [N, C, *kernel, *blocks]
    y = _col2im(cols, padded, kernel, strides, dilations, blocks)  # -> [N, C, *padded]
    crop = tuple(slice(pads[a], pads[a] + image[a]) for a in range(n))
    return np.ascontiguousarray(y[(Ellipsis,) + crop])  # [N, C, *padded] -> [N, C, *image]


# ----------------------------------------------------------------------------- DeformConv


def _sample_zero_padded(x, coords):
    """Multilinear samples of x at fractional pixel coordinates; outside pixels read as 0.

    x [N, G, Cg, *spatial], coords: one [N, G, P] array per spatial axis -> [N, G, Cg, P]
    """
    spatial = x.shape[3:]
    flat = x.reshape(*x.shape[:3], -1)  # [N, G, Cg, *spatial] -> [N, G, Cg, S]
    lows = [np.floor(c) for c in coords]
    out = np.zeros(flat.shape[:3] + coords[0].shape[-1:], dtype=np.float64)
    for corner in itertools.product((0, 1), repeat=len(spatial)):  # the 2^nd surrounding pixels
        weight = np.ones(coords[0].shape)
        index = np.zeros(coords[0].shape, dtype=np.intp)
        inside = np.ones(coords[0].shape, dtype=bool)
        for c, lo, up, size in zip(coords, lows, corner, spatial):
            p = lo + up
            weight = weight * (1 - np.abs(c - p))
            inside &= (p >= 0) & (p <= size - 1)
            index = index * size + np.clip(p, 0, size - 1).astype(np.intp)
        vals = np.take_along_axis(flat, index[:, :, None, :], axis=3)  # [N, G, Cg, P]
        out += vals * (weight * inside)[:, :, None, :]
    return out


@op("DeformConv", since=19)
def DeformConv(X, W, offset, B=None, mask=None, *, dilations=None, group=1, kernel_shape=None,
               offset_group=1, pads=None, strides=None):
    """Conv whose tap k at output o reads X at o*s - pad + k*d + offset[o, k] (bilinear), times mask[o, k] — https://onnx.ai/onnx/operators/onnx__DeformConv.html"""
    N, C = X.shape[:2]
    M = W.shape[0]
    kernel = list(W.shape[2:])
    n = len(kernel)
    strides, dilations = _defaults(X, kernel, strides, dilations)
    pads = list(pads or [0] * (2 * n))
    out_shape = list(offset.shape[2:])
    G, OG, K, L = group, offset_group, math.prod(kernel), math.prod(out_shape)

    off = offset.reshape(N, OG, K, n, L).astype(np.float64)  # [N, OG*K*n, *out] -> [N, OG, K, n, L]
    grids = np.meshgrid(*[np.arange(k) for k in kernel], *[np.arange(o) for o in out_shape],
                        indexing="ij")  # 2n arrays of [*kernel, *out]
    coords = []
    for a in range(n):  # regular conv sampling position plus the learned offset, per axis
        base = grids[n + a] * strides[a] - pads[a] + grids[a] * dilations[a]  # [*kernel, *out]
        coords.append((base.reshape(1, 1, K, L) + off[:, :, :, a]).reshape(N, OG, K * L))
    xg = X.reshape(N, OG, C // OG, *X.shape[2:])  # [N, C, *in] -> [N, OG, C/OG, *in]
    cols = _sample_zero_padded(xg, coords).reshape(N, OG, C // OG, K, L)  # [N, OG, C/OG, K, L]
    if mask is not None:
        cols = cols * mask.reshape(N, OG, 1, K, L)  # [N, OG*K, *out] -> [N, OG, 1, K, L]
    cols = cols.reshape(N, G, (C // G) * K, L)  # [N, OG, C/OG, K, L] -> [N, G, C/G*K, L]
    w = W.reshape(1, G, M // G, (C // G) * K).astype(np.float64)  # [M, C/G, *k] -> [1, G, M/G, C/G*K]
    y = np.matmul(w, cols).reshape(N, M, *out_shape)  # [N, G, M/G, L] -> [N, M, *out]
    if B is not None:
        y = y + B.reshape((1, M) + (1,) * n)  # [M] -> [1, M, 1, ...]
    return y.astype(X.dtype)


# ----------------------------------------------------------------------------- CausalConvWithState


@op("CausalConvWithState", since=27)
def CausalConvWithState(input, weight, bias=None, past_state=None, *, activation="none"):
    """y = act(depthwise_conv1d([past_state, input], weight) + bias), present_state = last k-1 steps — https://onnx.ai/onnx/operators/onnx__CausalConvWithState.html"""
    N, C, _ = input.shape
    k = weight.shape[2]
    if past_state is None:
        past_state = np.zeros((N, C, k - 1), dtype=input.dtype)
    padded = np.concatenate([past_state, input], axis=2)  # [N, C, k-1 + L]
    y = Conv(padded, weight, bias, group=C)  # depthwise, no padding: [N, C, k-1 + L] -> [N, C, L]
    if activation in ("silu", "swish"):
        y32 = y.astype(np.float32)
        y = (y32 / (1 + np.exp(-y32))).astype(input.dtype)  # x * sigmoid(x)
    elif activation != "none":
        raise ValueError(f"CausalConvWithState: activation must be none, silu or swish, not {activation!r}")
    present_state = padded[:, :, padded.shape[2] - (k - 1):]  # [N, C, k-1]
    return y, np.ascontiguousarray(present_state)
