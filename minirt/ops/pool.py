"""Pooling: MaxPool, AveragePool, LpPool, their Global forms, MaxUnpool, MaxRoiPool, RoiAlign.

A pool is a reduction over sliding windows: pad the input, view it as windows with
``sliding_window_view`` (shared with Conv, see ``conv._windows``), reduce over the kernel axes.
"""

from __future__ import annotations

import math

import numpy as np

from minirt.ops.conv import _pad_spatial, _window_pads, _windows
from minirt.registry import op


def _pool_windows(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, value):
    """Pad X with ``value`` (explicit pads + the ceil_mode tail) and view it as windows.

    Returns ``windows [N, C, *out, *kernel]``, ``(begin, end, extra)`` pads and the out shape.
    """
    n = len(kernel_shape)
    strides = list(strides or [1] * n)
    dilations = list(dilations or [1] * n)
    out, begin, end, extra = _window_pads(X.shape[2:], kernel_shape, strides, dilations, pads,
                                          auto_pad, ceil_mode)
    xp = _pad_spatial(X, begin, [e + x for e, x in zip(end, extra)], value)  # [N, C, *in] -> [N, C, *padded]
    win = _windows(xp, kernel_shape, strides, dilations, out)  # [N, C, *out, *kernel]
    return win, (begin, end, extra), out, strides, dilations


def _kernel_axes(n):
    return tuple(range(-n, 0))


@op("MaxPool", since=1)
def MaxPool(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Y = max over each (dilated) window, Indices = flat position of that max in X — https://onnx.ai/onnx/operators/onnx__MaxPool.html

    One function serves every version: opset 8 added Indices/storage_order, 10 ceil_mode/dilations.
    """
    n = len(kernel_shape)
    low = -np.inf if X.dtype.kind == "f" else np.iinfo(X.dtype).min  # padding never wins
    win, pads_, out, strides, dilations = _pool_windows(X, kernel_shape, strides, dilations, pads,
                                                        auto_pad, ceil_mode, low)
    N, C = X.shape[:2]
    flat = win.reshape(N, C, *out, -1)  # [N, C, *out, *kernel] -> [N, C, *out, K]
    arg = np.argmax(flat, axis=-1)[..., None]  # first max in window order, [N, C, *out, 1]
    Y = np.take_along_axis(flat, arg, axis=-1)[..., 0]  # [N, C, *out]

    # Indices: the same windows over a tensor holding each element's flat position in X
    spatial = X.shape[2:]
    order = "F" if storage_order == 1 else "C"
    pos = np.arange(math.prod(spatial), dtype=np.int64).reshape(spatial, order=order)  # [*in]
    pos = pos + (np.arange(N * C, dtype=np.int64) * math.prod(spatial)).reshape(N, C, *([1] * n))  # [N, C, *in]
    begin, end, extra = pads_
    pos_win = _windows(_pad_spatial(pos, begin, [e + x for e, x in zip(end, extra)], -1),
                       kernel_shape, strides, dilations, out)  # [N, C, *out, *kernel]
    Indices = np.take_along_axis(pos_win.reshape(N, C, *out, -1), arg, axis=-1)[..., 0]  # [N, C, *out]
    return Y, Indices


@op("AveragePool", since=1)
def AveragePool(X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    """Y = mean over each window; padding counts only when count_include_pad=1 (never the ceil_mode tail) — https://onnx.ai/onnx/operators/onnx__AveragePool.html"""
    n = len(kernel_shape)
    acc = np.promote_types(X.dtype, np.float32)  # float16 sums in float32
    win, (begin, end, extra), out, strides, dilations = _pool_windows(
        X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, 0)
    total = win.sum(axis=_kernel_axes(n), dtype=acc)  # [N, C, *out, *kernel] -> [N, C, *out]

    # how many elements each window averages: ones over what counts, zeros elsewhere
    ones = np.ones(X.shape[2:], dtype=acc)
    if count_include_pad:
        ones = _pad_spatial(ones, begin, end, 1)  # explicit padding counts
        mask = _pad_spatial(ones, [0] * n, extra, 0)  # the ceil_mode tail does not
    else:
        mask = _pad_spatial(ones, begin, [e + x for e, x in zip(end, extra)], 0)
    count = _windows(mask[None, None], kernel_shape, strides, dilations, out).sum(axis=_kernel_axes(n))  # [1, 1, *out]
    return (total / count).astype(X.dtype)


@op("LpPool", since=1)
def LpPool(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None,
           strides=None):
    """Y = (sum over each window of |x|^p)^(1/p), zero padding — https://onnx.ai/onnx/operators/onnx__LpPool.html"""
    n = len(kernel_shape)
    win, _, _, _, _ = _pool_windows(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, 0)
    acc = np.promote_types(X.dtype, np.float32)
    y = (np.abs(win.astype(acc)) ** p).sum(axis=_kernel_axes(n)) ** (1.0 / p)  # [N, C, *out, *kernel] -> [N, C, *out]
    return y.astype(X.dtype)


def _spatial_axes(X):
    return tuple(range(2, X.ndim))


@op("GlobalAveragePool", since=1)
def GlobalAveragePool(X):
    """Y[n, c] = mean of X[n, c] over all spatial axes — https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html"""
    acc = np.promote_types(X.dtype, np.float32)
    return X.mean(axis=_spatial_axes(X), dtype=acc, keepdims=True).astype(X.dtype)  # [N, C, *in] -> [N, C, 1, ...]


@op("GlobalMaxPool", since=1)
def GlobalMaxPool(X):
    """Y[n, c] = max of X[n, c] over all spatial axes — https://onnx.ai/onnx/operators/onnx__GlobalMaxPool.html"""
    return X.max(axis=_spatial_axes(X), keepdims=True)  # [N, C, *in] -> [N, C, 1, ...]


@op("GlobalLpPool", since=1)
def GlobalLpPool(X, *, p=2):
    """Y[n, c] = (sum over spatial axes of |X[n, c]|^p)^(1/p) — https://onnx.ai/onnx/operators/onnx__GlobalLpPool.html"""
    acc = np.promote_types(X.dtype, np.float32)
    y = (np.abs(X.astype(acc)) ** p).sum(axis=_spatial_axes(X), keepdims=True) ** (1.0 / p)  # [N, C, *in] -> [N, C, 1, ...]
    return y.astype(X.dtype)


@op("MaxUnpool", since=9)
def MaxUnpool(X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):
    """Scatter each pooled value back to the flat position MaxPool's Indices recorded, zeros elsewhere — https://onnx.ai/onnx/operators/onnx__MaxUnpool.html"""
    n = len(kernel_shape)
    strides = list(strides or [1] * n)
    pads = list(pads or [0] * (2 * n))
    # Indices are positions in the inferred unpooled shape; output_shape, when given, only
    # extends it with zeros at the end of each axis (as the ONNX reference and node tests do)
    shape = list(X.shape[:2]) + [(i - 1) * s - pads[a] - pads[a + n] + k for a, (i, s, k)
                                 in enumerate(zip(X.shape[2:], strides, kernel_shape))]
    Y = np.zeros(math.prod(shape), dtype=X.dtype)
    Y[I.reshape(-1)] = X.reshape(-1)  # [N, C, *pooled] -> flat positions of [N, C, *unpooled]
    Y = Y.reshape(shape)
    if output_shape is not None:
        grow = [int(o) - s for o, s in zip(output_shape, shape)]
        Y = np.pad(Y, [(0, g) for g in grow])  # [N, C, *unpooled] -> [N, C, *output_shape]
    return Y


@op("MaxRoiPool", since=1)
def MaxRoiPool(X, rois, *, pooled_shape=None, spatial_scale=1.0):
    """Y[r, c] = max of X[batch_r, c] over each cell of a pooled_shape grid laid on RoI r (rounded to pixels) — https://onnx.ai/onnx/operators/onnx__MaxRoiPool.html"""
    ph, pw = pooled_shape
    H, W = X.shape[2:]
    Y = np.zeros((rois.shape[0], X.shape[1], ph, pw), dtype=X.dtype)
    for r, (b, x1, y1, x2, y2) in enumerate(rois.astype(np.float64)):
        xs, ys = round(x1 * spatial_scale), round(y1 * spatial_scale)
        xe, ye = round(x2 * spatial_scale), round(y2 * spatial_scale)
        bin_h = max(ye - ys + 1, 1) / ph
        bin_w = max(xe - xs + 1, 1) / pw
        for i in range(ph):
            h0 = min(max(math.floor(i * bin_h) + ys, 0), H)
            h1 = min(max(math.ceil((i + 1) * bin_h) + ys, 0), H)
            for j in range(pw):
                w0 = min(max(math.floor(j * bin_w) + xs, 0), W)
                w1 = min(max(math.ceil((j + 1) * bin_w) + xs, 0), W)
                if h1 > h0 and w1 > w0:  # an empty cell stays 0
                    Y[r, :, i, j] = X[int(b), :, h0:h1, w0:w1].max(axis=(1, 2))  # [C, h, w] -> [C]
    return Y


def _roi_axis(start, bin_size, pooled, grid, size):
    """Bilinear taps of RoiAlign's sample points along one axis.

    Returns (low, high) indices and their weights, [pooled * grid] each; a sample point more
    than one pixel outside the image gets zero weights.
    """
    t = (np.arange(pooled)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid)
    c = (start + t).reshape(-1)  # [pooled * grid] sample coordinates
    outside = (c < -1.0) | (c > size)
    c = np.maximum(c, 0.0)
    low = np.floor(c).astype(np.intp)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    frac = np.where(at_edge, 0.0, c - low)
    keep = ~outside
    return low, high, (1 - frac) * keep, frac * keep


@op("RoiAlign", since=16)
def RoiAlign(X, rois, batch_indices, *, coordinate_transformation_mode="half_pixel", mode="avg",
             output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """Y[r, c, i, j] = avg (or max) of bilinear samples of X[batch_r, c] on a regular grid in bin (i, j) of RoI r — https://onnx.ai/onnx/operators/onnx__RoiAlign.html"""
    H, W = X.shape[2:]
    C = X.shape[1]
    offset = 0.5 if coordinate_transformation_mode == "half_pixel" else 0.0
    Y = np.zeros((rois.shape[0], C, output_height, output_width), dtype=np.float64)
    for r, (x1, y1, x2, y2) in enumerate(rois.astype(np.float64)):
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if offset == 0.0:  # the legacy mode forces RoIs to at least one pixel
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / output_height)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / output_width)
        if gh == 0 or gw == 0:
            continue
        ylo, yhi, wylo, wyhi = _roi_axis(sy, rh / output_height, output_height, gh, H)
        xlo, xhi, wxlo, wxhi = _roi_axis(sx, rw / output_width, output_width, gw, W)
        img = X[int(batch_indices[r])].astype(np.float64)  # [C, H, W]
        # the four weighted corner terms of every sample point: [C, oh*gh, ow*gw] each
        corners = [img[:, ys][:, :, xs] * wy[:, None] * wx[None, :]
                   for ys, wy in ((ylo, wylo), (yhi, wyhi)) for xs, wx in ((xlo, wxlo), (xhi, wxhi))]
        if mode == "avg":
            samples = sum(corners).reshape(C, output_height, gh, output_width, gw)
            Y[r] = samples.mean(axis=(2, 4))  # [C, oh, gh, ow, gw] -> [C, oh, ow]
        else:  # "max" takes the largest weighted corner, as onnxruntime does
            samples = np.maximum.reduce(corners).reshape(C, output_height, gh, output_width, gw)
            Y[r] = samples.max(axis=(2, 4))  # [C, oh, gh, ow, gw] -> [C, oh, ow]
    return Y.astype(X.dtype)


@op("RoiAlign", since=10)
def RoiAlign_10(X, rois, batch_indices, *, mode="avg", output_height=1, output_width=1,
                sampling_ratio=0, spatial_scale=1.0):
    """RoiAlign before opset 16: pixel corners without the half-pixel shift — https://onnx.ai/onnx/operators/onnx__RoiAlign.html"""
    return RoiAlign(X, rois, batch_indices, coordinate_transformation_mode="output_half_pixel",
                    mode=mode, output_height=output_height, output_width=output_width,
                    sampling_ratio=sampling_ratio, spatial_scale=spatial_scale)
