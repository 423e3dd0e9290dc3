"""LayerNormalization over rows: one Numba loop per row (parallel over rows).

The dims from ``axis`` on are contiguous, so the input is a ``[rows, D]`` view for every axis.
Each row: the mean, the variance (a second pass, as the reference: no catastrophic
cancellation), then y = (x - mean) * inv_std * scale + bias. The statistics are accumulated in
float64 and returned in the stash type, like the reference. Runs when x already is in the stash
type (float32 with stash_type=1, the usual case, or float64); other cases run the reference.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from minirt.ops._common import normalize_axis, np_dtype
from minirt.ops.norm import LayerNormalization as LayerNormalization_reference
from minirt.registry import kernel

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _layer_norm_rows(x, scale, bias, epsilon, y, mean, inv_std):
    """For each row r of x [R, D]: y[r] = (x[r] - mean[r]) * inv_std[r] * scale + bias.

    mean[r] = sum(x[r]) / D, inv_std[r] = 1 / sqrt(sum((x[r] - mean[r])^2) / D + epsilon).
    """
    R, D = x.shape
    for r in numba.prange(R):
        total = 0.0
        for j in range(D):
            total += x[r, j]
        mu = total / D
        sq = 0.0
        for j in range(D):
            d = x[r, j] - mu
            sq += d * d
        inv = 1.0 / math.sqrt(sq / D + epsilon)
        mean[r] = mu
        inv_std[r] = inv
        for j in range(D):
            y[r, j] = (x[r, j] - mu) * inv * scale[j] + bias[j]


layer_norm_rows = numba.njit(parallel=True, cache=True)(_layer_norm_rows)


def _flat_param(p, shape, dtype):
    """Scale / B broadcast to the normalized shape, flattened: [..] -> [D]."""
    return np.ascontiguousarray(np.broadcast_to(p, shape).reshape(-1), dtype=dtype)


@kernel("LayerNormalization", since=17)
def LayerNormalization(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Fast LayerNormalization (also returns Mean and InvStdDev, like the reference)."""
    args = dict(axis=axis, epsilon=epsilon, stash_type=stash_type)
    if X.dtype not in _FAST_DTYPES or X.dtype != np_dtype(stash_type) or X.size == 0 or X.ndim == 0:
        return LayerNormalization_reference(X, Scale, B, **args)
    axis = normalize_axis(axis, X.ndim)
    inner = X.shape[axis:]
    try:
        scale = _flat_param(Scale, inner, X.dtype)
        bias = np.zeros_like(scale) if B is None else _flat_param(B, inner, X.dtype)
    except ValueError:  # Scale / B do not broadcast to the normalized dims: let the reference say so
        return LayerNormalization_reference(X, Scale, B, **args)
    x = np.ascontiguousarray(X).reshape(-1, scale.size)  # [d0, .., dn] -> [R, D]
    y = np.empty_like(x)
    mean = np.empty(x.shape[0], dtype=X.dtype)
    inv_std = np.empty(x.shape[0], dtype=X.dtype)
    layer_norm_rows(x, scale, bias, float(epsilon), y, mean, inv_std)
    stats_shape = X.shape[:axis] + (1,) * (X.ndim - axis)  # [d0, .., d(axis-1), 1, .., 1]
    return y.reshape(X.shape), mean.reshape(stats_shape), inv_std.reshape(stats_shape)


@kernel("LayerNormalization", since=1)
def LayerNormalization_1(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """onnxruntime's pre-17 LayerNormalization: the same math."""
    return LayerNormalization(X, Scale, B, axis=axis, epsilon=epsilon, stash_type=stash_type)
