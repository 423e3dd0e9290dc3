"""LayerNormalization over rows (a Numba loop per row); inference BatchNormalization and LRN.

BatchNormalization (inference) is a per-channel affine map: the [C] statistics become one scale
``s = scale / sqrt(var + eps)`` and shift ``t = B - mean * s`` (cheap, in float64), then
``y = x * s + t`` is two in-place NumPy passes over a single output array (the reference makes
four temporaries). LRN sums the squares of ``size`` neighbouring channels as ``size`` shifted
whole-array adds (the reference loops over the channels), and works in place on one array.

LayerNormalization:

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

from minirt.kernels._jit import renamed  # the serial build gets its own Numba cache entry
from minirt.kernels.quant import _prepared
from minirt.ops._common import normalize_axis, np_dtype
from minirt.ops.norm import LRN as LRN_reference
from minirt.ops.norm import BatchNormalization as BatchNormalization_reference
from minirt.ops.norm import BatchNormalization_1 as BatchNormalization_1_reference
from minirt.ops.norm import LayerNormalization as LayerNormalization_reference
from minirt.registry import kernel

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _layer_norm_rows(x, scale, bias, epsilon, y, mean, inv_std):
    """For each row r of x [R, D]: y[r] = (x[r] - mean[r]) * inv_std[r] * scale + bias.

    mean[r] = sum(x[r]) / D, inv_std[r] = 1 / sqrt(sum((x[r] - mean[r])^2) / D + epsilon).
    """
    R, D = x.shape
    # (built with fastmath "reassoc": the two sums may be added in any order, so they vectorize;
    # in the order written, each add waited for the one before: [128, 64] 19 -> 9 us)
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


layer_norm_rows = numba.njit(parallel=True, cache=True, fastmath={"reassoc"})(_layer_norm_rows)
layer_norm_rows_serial = numba.njit(cache=True, fastmath={"reassoc"})(renamed(_layer_norm_rows, "serial"))  # small inputs: no thread pool wake-up
PARALLEL_MIN = 1 << 18  # elements: below this, starting Numba's threads costs more than it saves
#                        (round-robin medians, us, parallel / serial: [1024, 64] 99 / 62, [4096, 64]
#                        191 / 179, [512, 768] 167 / 182, [2048, 768] 500 / 729)


def _flat_param(p, shape, dtype):
    """Scale / B broadcast to the normalized shape, flattened: [..] -> [D]."""
    if p.shape == shape and p.dtype == dtype and p.flags.c_contiguous:
        return p.reshape(-1)  # the usual case: a view, no copy
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
    loops = layer_norm_rows if x.size >= PARALLEL_MIN else layer_norm_rows_serial
    loops(x, scale, bias, float(epsilon), y, mean, inv_std)
    stats_shape = X.shape[:axis] + (1,) * (X.ndim - axis)  # [d0, .., d(axis-1), 1, .., 1]
    return y.reshape(X.shape), mean.reshape(stats_shape), inv_std.reshape(stats_shape)


@kernel("LayerNormalization", since=1)
def LayerNormalization_1(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """onnxruntime's pre-17 LayerNormalization: the same math."""
    return LayerNormalization(X, Scale, B, axis=axis, epsilon=epsilon, stash_type=stash_type)


# ----------------------------------------------------------------------------- BatchNormalization


def channel_scale_shift(scale, B, mean, var, epsilon, dtype):
    """(s, t) [C] in ``dtype``: s = scale / sqrt(var + eps), t = B - mean * s, computed in float64.

    Made once per read-only set of weights (:func:`minirt.kernels.quant._prepared`): these eight
    NumPy calls cost 4.5 us a call, twice the normalization itself on a [1, 16, 32, 32] input."""

    def make():
        s = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
        t = np.asarray(B, np.float64) - np.asarray(mean, np.float64) * s
        return s.astype(dtype), t.astype(dtype)

    return _prepared(scale, ("batch_norm", float(epsilon), np.dtype(dtype)), (B, mean, var), make)


def batch_norm_inference(X, scale, B, mean, var, epsilon):
    """y = x * s + t per channel (axis 1), s = scale / sqrt(var + eps), t = B - mean * s."""
    s, t = channel_scale_shift(scale, B, mean, var, epsilon, X.dtype)  # [C]
    shape = (X.shape[1],) + (1,) * (X.ndim - 2)  # [C] -> [C, 1, ...] against [N, C, D1, ...]
    y = np.multiply(X, s.reshape(shape))  # the one new array
    y += t.reshape(shape)  # in place
    return y


def _channel_affine_loops(x, s, t, lo, hi, y):
    """y[n, c, i] = min(max(x[n, c, i] * s[c] + t[c], lo), hi): inference BatchNormalization and
    the Relu/Clip after it in one pass (x, y [N, C, L]; the multiply and the add round one after
    the other, as NumPy's two passes do: bit-identical). NaN passes the clip, as np.maximum keeps it."""
    N, C, L = x.shape
    for n in range(N):
        for c in range(C):
            sc, tc = s[c], t[c]
            src, dst = x[n, c], y[n, c]
            for i in range(L):
                v = src[i] * sc + tc
                if v < lo:
                    v = lo
                if v > hi:
                    v = hi
                dst[i] = v


channel_affine_loops = numba.njit(cache=True)(_channel_affine_loops)


def batch_norm_clip_runner(shape, dtype, scale, B, mean, var, epsilon, lo, hi):
    """``run(X)`` = min(max(BatchNormalization(X), lo), hi) for inference, for float32/float64 X
    of ``shape`` [N, C, ...] and [C] parameters (check with ``_bn_fast``): the per-channel s, t of
    ``batch_norm_inference``, the bounds and the [N, C, L] view worked out here, once; a run is
    one pass. FusedBatchNormalization's plan-time step keeps it per node."""
    s, t = channel_scale_shift(scale, B, mean, var, epsilon, dtype)  # [C]
    # bounds of X's dtype: float64 ones against float32 values would convert every element (2x slower)
    lo, hi = dtype.type(lo), dtype.type(hi)
    shape3 = (shape[0], shape[1], math.prod(shape[2:]))  # [N, C, D1, ...] -> [N, C, L]

    def run(X):
        y = np.empty(X.shape, dtype)
        channel_affine_loops(np.ascontiguousarray(X).reshape(shape3), s, t, lo, hi, y.reshape(shape3))
        return y

    return run


def _bn_fast(X, params):
    return (X.dtype in _FAST_DTYPES and X.ndim >= 2 and X.shape[1] > 0
            and all(p.ndim == 1 and p.shape[0] == X.shape[1] for p in params))


@kernel("BatchNormalization", since=14)
def BatchNormalization(X, scale, B, input_mean, input_var, *, epsilon=1e-5, momentum=0.9, training_mode=0):
    """Fast inference BatchNormalization (float32/float64, [C] parameters); training mode and
    other dtypes run the reference."""
    if training_mode or not _bn_fast(X, (scale, B, input_mean, input_var)):
        return BatchNormalization_reference(X, scale, B, input_mean, input_var, epsilon=epsilon,
                                            momentum=momentum, training_mode=training_mode)
    return batch_norm_inference(X, scale, B, input_mean, input_var, epsilon)


@kernel("BatchNormalization", since=1)
def BatchNormalization_1(X, scale, B, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1, is_test=0,
                         consumed_inputs=None):
    """Fast BatchNormalization before opset 14 (inference only, as the reference)."""
    if not _bn_fast(X, (scale, B, mean, var)):
        return BatchNormalization_1_reference(X, scale, B, mean, var, epsilon=epsilon, momentum=momentum,
                                              spatial=spatial, is_test=is_test, consumed_inputs=consumed_inputs)
    return batch_norm_inference(X, scale, B, mean, var, epsilon)


# ----------------------------------------------------------------------------- LRN


def lrn_window_sums(X, size):
    """For each channel c, the sum of X^2 over channels [c - (size-1)//2, c + size-1 - (size-1)//2]
    clipped to [0, C): ``size`` shifted whole-array adds (the reference loops over the C channels)."""
    C = X.shape[1]
    before = (size - 1) // 2
    square = np.square(X)
    total = square.copy()  # the k = 0 term
    for k in range(-before, size - before):  # channel c + k, for every c at once
        if k > 0 and k < C:
            total[:, :C - k] += square[:, k:]
        elif k < 0 and -k < C:
            total[:, -k:] += square[:, :C + k]
    return total


@kernel("LRN", since=1)
def LRN(X, *, alpha=0.0001, beta=0.75, bias=1.0, size):
    """Fast LRN for float32/float64 [N, C, ...]; other dtypes run the reference."""
    if X.dtype not in _FAST_DTYPES or X.ndim < 3 or X.size == 0:
        return LRN_reference(X, alpha=alpha, beta=beta, bias=bias, size=size)
    d = lrn_window_sums(X, int(size))
    d *= X.dtype.type(alpha / size)
    d += X.dtype.type(bias)
    if beta == 0.75:  # AlexNet's and GoogLeNet's: d^0.75 = sqrt(d * sqrt(d)), three cheap passes
        r = np.sqrt(d)  # instead of np.power (~1.2 ns an element): [1,192,55,55] LRN 1.17 -> 0.94 ms
        r *= d
        np.sqrt(r, out=r)  # (bias + alpha/size * sum)^0.75, within 2 ulp of np.power's
        np.divide(X, r, out=r)
        return r
    np.power(d, X.dtype.type(-beta), out=d)  # (bias + alpha/size * sum)^-beta, in the input's dtype
    d *= X
    return d
