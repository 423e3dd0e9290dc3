"""Image resampling: Resize (and the older Upsample), GridSample, AffineGrid.

Resize is separable: it resizes one axis at a time. Along an axis, every output position
``o`` maps back to a source coordinate ``x(o)`` (the coordinate_transformation_mode), and the
output is a weighted sum of input samples around ``x(o)``: one sample (nearest), two (linear)
or four (cubic), more when antialiasing stretches the filter. The weights of one axis form a
small ``[out, in]`` matrix that is applied with ``tensordot``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from minirt.registry import op


# ----------------------------------------------------------------------------- Resize helpers


def _source_coords(mode, out_len, in_len, scale, roi_start, roi_end):
    """Source coordinate of every output index along one axis (float64 [out_len]).

    Like the spec's formulas, the modes that divide by the output length use the exact
    (fractional) length ``scale * in_len``, not the rounded ``out_len``.
    """
    y = np.arange(out_len, dtype=np.float64)
    exact_len = scale * in_len
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / (scale * in_len))  # centre the ROI on the canvas
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if exact_len != 1 else np.zeros(out_len)  # spec and ORT: 0
    if mode == "align_corners":
        return y * (in_len - 1) / (exact_len - 1) if exact_len != 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        if exact_len != 1:
            x = y * (roi_end - roi_start) * (in_len - 1) / (exact_len - 1)
        else:
            x = np.full(out_len, (roi_end - roi_start) * (in_len - 1) / 2)
        return x + roi_start * (in_len - 1)
    raise ValueError(f"Resize: unknown coordinate_transformation_mode {mode!r}")


def _nearest_index(x, nearest_mode):
    """Round source coordinates to an input index."""
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    raise ValueError(f"Resize: unknown nearest_mode {nearest_mode!r}")


def _cubic_kernel(t, a):
    """Keys' cubic convolution kernel with parameter a (support |t| < 2)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _filter_matrix(x, in_len, mode, cubic_coeff_a, exclude_outside, filter_scale):
    """[out, in] weights of linear/cubic interpolation at source coordinates x.

    ``filter_scale`` < 1 stretches the filter by 1/filter_scale (antialiasing); then the taps
    are renormalised to sum to 1.
    """
    support = 1 if mode == "linear" else 2
    start = math.floor(-support / filter_scale) + 1  # first tap, relative to x0
    taps = np.arange(start, 2 - start)  # e.g. [0, 1] for linear, [-1, 0, 1, 2] for cubic
    x0 = np.ceil(x) - 1  # the sample left of x (x itself sits at fraction 1 when integral)
    pos = x0[:, None] + taps[None, :]  # [out, taps] input positions
    t = (pos - x[:, None]) * filter_scale
    w = np.maximum(0.0, 1 - np.abs(t)) if mode == "linear" else _cubic_kernel(t, cubic_coeff_a)
    if filter_scale < 1:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((pos < 0) | (pos >= in_len), 0.0, w)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    idx = np.clip(pos, 0, in_len - 1).astype(np.intp)  # outside taps repeat the edge
    m = np.zeros((len(x), in_len))
    np.add.at(m, (np.arange(len(x))[:, None], idx), w)
    return m


def _resize_axis(y, axis, out_len, scale, roi, *, mode, coordinate_transformation_mode,
                 cubic_coeff_a, exclude_outside, extrapolation_value, nearest_mode, antialias):
    """Resize one axis of y (float64) to out_len."""
    in_len = y.shape[axis]
    x = _source_coords(coordinate_transformation_mode, out_len, in_len, scale, *roi)
    if mode == "nearest":
        idx = np.clip(_nearest_index(x, nearest_mode), 0, in_len - 1).astype(np.intp)
        out = np.take(y, idx, axis=axis)  # [..., in, ...] -> [..., out, ...]
    else:
        filter_scale = min(scale, 1.0) if antialias else 1.0
        m = _filter_matrix(x, in_len, mode, cubic_coeff_a, exclude_outside, filter_scale)
        out = np.moveaxis(np.tensordot(m, y, axes=([1], [axis])), 0, axis)  # [out, in] . [..., in, ...] -> [..., out, ...]
    if coordinate_transformation_mode == "tf_crop_and_resize":
        outside = (x < 0) | (x > in_len - 1)
        shape = [1] * y.ndim
        shape[axis] = out_len
        out = np.where(outside.reshape(shape), extrapolation_value, out)
    return out


def _cast_like(y, dtype):
    """Back to the input dtype; integer images round and saturate."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(dtype)


def _resize(X, roi, scales, sizes, *, axes=None, keep_aspect_ratio_policy="stretch", **kw):
    r = X.ndim
    axes = [a + r if a < 0 else a for a in axes] if axes is not None else list(range(r))
    in_shape = [X.shape[a] for a in axes]
    if sizes is not None:
        sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
        scales = [s / i for s, i in zip(sizes, in_shape)]
        if keep_aspect_ratio_policy != "stretch":
            pick = min if keep_aspect_ratio_policy == "not_larger" else max
            s = pick(scales)
            scales = [s] * len(axes)
            sizes = [int(s * i + 0.5) for i in in_shape]  # round half up
    else:
        scales = [float(v) for v in np.asarray(scales).reshape(-1)]
        sizes = [int(math.floor(i * s)) for i, s in zip(in_shape, scales)]
    if len(scales) == r and len(axes) < r:
        scales, sizes = [scales[a] for a in axes], [sizes[a] for a in axes]
    roi = np.asarray(roi, dtype=np.float64).reshape(-1) if roi is not None else np.zeros(0)
    if roi.size == 0:
        roi = np.array([0.0] * len(axes) + [1.0] * len(axes))
    nroi = roi.size // 2

    y = X.astype(np.float64)
    for i, axis in enumerate(axes):
        k = axis if nroi == r else i  # roi is either per input axis or per listed axis
        box = (roi[k], roi[k + nroi])
        if sizes[i] == X.shape[axis] and scales[i] == 1 and box == (0.0, 1.0):
            continue  # nothing to do along this axis
        y = _resize_axis(y, axis, sizes[i], scales[i], box, **kw)
    return _cast_like(y, X.dtype)


def _empty_to_none(t):
    return None if t is None or np.asarray(t).size == 0 else t


# ----------------------------------------------------------------------------- Resize, Upsample


@op("Resize", since=11)
def Resize(X, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    """Y[o] = sum_k w_k(x(o)) X[k], x(o) the source coordinate of output o (separable per axis) — https://onnx.ai/onnx/operators/onnx__Resize.html

    Opset 11 to 19 in one function: 13 made roi/scales optional, 18 added axes,
    keep_aspect_ratio_policy and antialias, 19 half_pixel_symmetric.
    """
    return _resize(X, _empty_to_none(roi), _empty_to_none(scales), _empty_to_none(sizes),
                   axes=axes, keep_aspect_ratio_policy=keep_aspect_ratio_policy, mode=mode,
                   coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value, nearest_mode=nearest_mode,
                   antialias=antialias)


def _resize_asymmetric(X, scales, mode):
    """The pre-opset-11 semantics: asymmetric coordinates, nearest rounds down."""
    return _resize(X, None, scales, None, mode=mode, coordinate_transformation_mode="asymmetric",
                   cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
                   nearest_mode="floor", antialias=0)


@op("Resize", since=10)
def Resize_10(X, scales, *, mode="nearest"):
    """Y[o] = X[o / scale] (nearest: floor) or its linear interpolation — https://onnx.ai/onnx/operators/onnx__Resize.html"""
    return _resize_asymmetric(X, scales, mode)


@op("Upsample", since=9)
def Upsample(X, scales, *, mode="nearest"):
    """Y[o] = X[o / scale] (nearest: floor) or its linear interpolation — https://onnx.ai/onnx/operators/onnx__Upsample.html"""
    return _resize_asymmetric(X, scales, mode)


@op("Upsample", since=7)
def Upsample_7(X, *, mode="nearest", scales=None):
    """As Upsample-9, with the scales as an attribute — https://onnx.ai/onnx/operators/onnx__Upsample.html"""
    return _resize_asymmetric(X, np.asarray(scales, dtype=np.float32), mode)


# ----------------------------------------------------------------------------- GridSample


def _reflect(x, lo, hi):
    """Fold coordinates into [lo, hi] by reflecting at the borders, as often as needed."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    d = np.where(below, lo - x, x - hi)  # distance past the nearer border
    n = np.floor(d / span)
    r = d - n * span
    even = n % 2 == 0
    return np.where(below, np.where(even, lo + r, hi - r),
                    np.where(above, np.where(even, hi - r, lo + r), x))


def _grid_taps(x, mode):
    """Per-coordinate sample positions and weights: [..., taps]."""
    if mode == "nearest":
        return np.trunc(x)[..., None], np.ones_like(x)[..., None]
    x0 = np.floor(x)
    t = (x - x0)[..., None]
    if mode == "linear":
        return x0[..., None] + np.array([0, 1]), np.concatenate([1 - t, t], axis=-1)
    offsets = np.array([-1, 0, 1, 2])
    return x0[..., None] + offsets, _cubic_kernel(offsets - t, -0.75)


@op("GridSample", since=16)
def GridSample(X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    """Y[n, c, o] = X[n, c] sampled at the denormalised location grid[n, o] (in [-1, 1]) — https://onnx.ai/onnx/operators/onnx__GridSample.html

    Opset 16's "bilinear"/"bicubic" are the same as 20's N-d "linear"/"cubic".
    """
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    N, C = X.shape[:2]
    dims = X.shape[2:]
    nd = len(dims)
    out = grid.shape[1:-1]
    idxs, weights, valids = [], [], []
    for i, d in enumerate(dims):
        g = grid[..., nd - 1 - i]  # the grid lists coordinates innermost axis first: (x, y, z)
        if align_corners:
            x, lo, hi = (g + 1) / 2 * (d - 1), 0.0, d - 1.0
        else:
            x, lo, hi = ((g + 1) * d - 1) / 2, -0.5, d - 0.5
        x = x.astype(np.float64)
        if mode == "nearest":
            x = np.rint(x)  # halves go to even, as PyTorch does
        # nearest/linear bring an outside location back in; cubic only folds its taps (as PyTorch)
        if padding_mode == "border" and mode != "cubic":
            x = np.where((x < lo) | (x > hi), np.clip(x, 0, d - 1), x)
        elif padding_mode == "reflection" and mode != "cubic":
            x = _reflect(x, lo, hi)
        pos, w = _grid_taps(x, mode)  # [N, *out, taps]
        if padding_mode == "zeros":
            valids.append((pos >= 0) & (pos <= d - 1))
        else:
            valids.append(np.ones(pos.shape, dtype=bool))
            if padding_mode == "reflection":
                pos = np.trunc(_reflect(pos, lo, hi))
        idxs.append(np.clip(pos, 0, d - 1).astype(np.intp))
        weights.append(w)

    n_idx = np.arange(N).reshape((N,) + (1,) * len(out))
    y = np.zeros((N, *out, C), dtype=np.float64)
    for taps in itertools.product(*[range(w.shape[-1]) for w in weights]):  # every tap combination
        w = np.ones((N, *out))
        index = [n_idx, slice(None)]
        for i, t in enumerate(taps):
            w = w * weights[i][..., t] * valids[i][..., t]
            index.append(idxs[i][..., t])
        y += X[tuple(index)] * w[..., None]  # [N, *out, C]
    return np.moveaxis(y, -1, 1).astype(X.dtype)  # [N, *out, C] -> [N, C, *out]


# ----------------------------------------------------------------------------- AffineGrid


@op("AffineGrid", since=20)
def AffineGrid(theta, size, *, align_corners=0):
    """grid[n, o] = theta[n] @ (x_o, y_o, [z_o,] 1), the normalised coordinates of output o — https://onnx.ai/onnx/operators/onnx__AffineGrid.html"""
    dims = [int(v) for v in np.asarray(size).reshape(-1)[2:]]
    axes_coords = []
    for d in dims:
        if align_corners:
            axes_coords.append(np.linspace(-1, 1, d))  # a single point sits at -1
        else:
            axes_coords.append((np.arange(d) * 2 + 1) / d - 1)
    mesh = np.meshgrid(*axes_coords, indexing="ij")  # nd arrays of [*dims]
    base = np.stack(list(mesh[::-1]) + [np.ones(dims)], axis=-1)  # [*dims, nd+1] as (x, y, [z,] 1)
    grid = np.einsum("...k,njk->n...j", base, theta.astype(np.float64))  # [N, *dims, nd]
    return grid.astype(theta.dtype)
