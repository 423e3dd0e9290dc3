"""Normalization: Softmax / LogSoftmax / Hardmax, BatchNormalization, InstanceNormalization,
LayerNormalization, GroupNormalization, RMSNormalization, LRN, MeanVarianceNormalization,
LpNormalization, the losses built on LogSoftmax (NegativeLogLikelihoodLoss,
SoftmaxCrossEntropyLoss), and onnxruntime's fused SkipLayerNormalization family.

float16 / bfloat16 inputs are normalized in float32 and cast back: the statistics (a mean
of many squares) lose too much in half precision.
"""

from __future__ import annotations

import numpy as np

from minirt.ops._common import normalize_axis, np_dtype
from minirt.registry import op


def _wide(x):
    """float16 / bfloat16 -> float32 for the arithmetic; other dtypes unchanged."""
    return x.astype(np.float32) if x.dtype.name in ("float16", "bfloat16") else x


def _as_2d(x, axis):
    """Coerce x to 2-D at axis, as Softmax-1/11 does: [a0..ak-1, ak..an] -> [a0*..*ak-1, ak*..*an]."""
    axis = normalize_axis(axis, x.ndim)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


# --------------------------------------------------------------------------- softmax family


@op("Softmax", since=13)
def Softmax(input, *, axis=-1):
    """y = exp(x - max(x)) / sum(exp(x - max(x))) along axis —
    https://onnx.ai/onnx/operators/onnx__Softmax.html"""
    x = _wide(input)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(input.dtype, copy=False)


@op("Softmax", since=1)
def Softmax_1(input, *, axis=1):
    """Softmax over all dims from axis on, x seen as 2-D [prod(shape[:axis]), prod(shape[axis:])] —
    https://onnx.ai/onnx/operators/onnx__Softmax.html"""
    return Softmax(_as_2d(input, axis), axis=1).reshape(input.shape)  # [M, K] -> input shape


@op("LogSoftmax", since=13)
def LogSoftmax(input, *, axis=-1):
    """y = (x - max(x)) - log(sum(exp(x - max(x)))) along axis —
    https://onnx.ai/onnx/operators/onnx__LogSoftmax.html"""
    x = _wide(input)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    y = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return y.astype(input.dtype, copy=False)


@op("LogSoftmax", since=1)
def LogSoftmax_1(input, *, axis=1):
    """LogSoftmax over all dims from axis on (x coerced to 2-D at axis) —
    https://onnx.ai/onnx/operators/onnx__LogSoftmax.html"""
    return LogSoftmax(_as_2d(input, axis), axis=1).reshape(input.shape)  # [M, K] -> input shape


@op("Hardmax", since=13)
def Hardmax(input, *, axis=-1):
    """y = 1 at the first maximum along axis, 0 elsewhere —
    https://onnx.ai/onnx/operators/onnx__Hardmax.html"""
    axis = normalize_axis(axis, input.ndim)
    first_max = np.expand_dims(np.argmax(input, axis=axis), axis)  # [..., 1, ...]
    positions = np.arange(input.shape[axis]).reshape([-1] + [1] * (input.ndim - axis - 1))
    return (positions == first_max).astype(input.dtype)


@op("Hardmax", since=1)
def Hardmax_1(input, *, axis=1):
    """Hardmax over all dims from axis on (x coerced to 2-D at axis) —
    https://onnx.ai/onnx/operators/onnx__Hardmax.html"""
    return Hardmax(_as_2d(input, axis), axis=1).reshape(input.shape)  # [M, K] -> input shape


# --------------------------------------------------------------------------- batch statistics


def _per_channel(p, ndim):
    """A per-channel parameter [C] (or [C, D1, ...]) shaped to broadcast against [N, C, D1, ...]."""
    return p.reshape(p.shape + (1,) * (ndim - 1 - p.ndim))


@op("BatchNormalization", since=14)
def BatchNormalization(X, scale, B, input_mean, input_var, *, epsilon=1e-5, momentum=0.9,
                       training_mode=0):
    """y = scale * (x - mean) / sqrt(var + epsilon) + B, per channel (axis 1); in training mode
    the batch statistics are used and the running ones updated —
    https://onnx.ai/onnx/operators/onnx__BatchNormalization.html"""
    x = _wide(X)
    if training_mode:
        axes = (0,) + tuple(range(2, X.ndim))
        mean, var = np.mean(x, axis=axes), np.var(x, axis=axes)  # [N, C, ...] -> [C]
    else:
        mean, var = _wide(input_mean), _wide(input_var)
    m, v = _per_channel(mean, X.ndim), _per_channel(var, X.ndim)
    s, b = _per_channel(_wide(scale), X.ndim), _per_channel(_wide(B), X.ndim)
    y = ((x - m) / np.sqrt(v + epsilon) * s + b).astype(X.dtype, copy=False)
    if not training_mode:
        return y
    running_mean = input_mean * momentum + mean * (1 - momentum)
    running_var = input_var * momentum + var * (1 - momentum)
    return y, running_mean.astype(input_mean.dtype), running_var.astype(input_var.dtype)


@op("BatchNormalization", since=1)
def BatchNormalization_1(X, scale, B, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1,
                         is_test=0, consumed_inputs=None):
    """BatchNormalization before opset 14, inference only. With spatial=0 the parameters are
    [C, D1, ...] instead of [C] (``_per_channel`` handles both) —
    https://onnx.ai/onnx/operators/onnx__BatchNormalization.html"""
    return BatchNormalization(X, scale, B, mean, var, epsilon=epsilon)


@op("InstanceNormalization", since=1)
def InstanceNormalization(input, scale, B, *, epsilon=1e-5):
    """y = scale * (x - mean) / sqrt(var + epsilon) + B, statistics per (n, c) over the spatial dims —
    https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html"""
    x = _wide(input)
    axes = tuple(range(2, input.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)  # [N, C, D1, ...] -> [N, C, 1, ...]
    var = np.var(x, axis=axes, keepdims=True)
    s, b = _per_channel(_wide(scale), input.ndim), _per_channel(_wide(B), input.ndim)
    return ((x - mean) / np.sqrt(var + epsilon) * s + b).astype(input.dtype, copy=False)


# --------------------------------------------------------------------------- layer statistics


@op("LayerNormalization", since=17)
def LayerNormalization(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """y = (x - mean) / sqrt(var + epsilon) * Scale + B, statistics over the dims from axis on;
    also returns Mean and InvStdDev (computed in the stash_type precision) —
    https://onnx.ai/onnx/operators/onnx__LayerNormalization.html"""
    axis = normalize_axis(axis, X.ndim)
    x = X.astype(np_dtype(stash_type))
    axes = tuple(range(axis, X.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)  # [d0, .., dn] -> [d0, .., d(axis-1), 1, .., 1]
    inv_std = 1 / np.sqrt(np.mean(np.square(x - mean), axis=axes, keepdims=True) + epsilon)
    y = (x - mean) * inv_std * Scale
    if B is not None:
        y = y + B
    return y.astype(X.dtype, copy=False), mean, inv_std


@op("GroupNormalization", since=21)
def GroupNormalization(X, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1):
    """Channels split into num_groups groups, each normalized over (its channels, spatial dims);
    then y = y * scale[c] + bias[c] per channel —
    https://onnx.ai/onnx/operators/onnx__GroupNormalization.html"""
    N, C = X.shape[:2]
    x = X.astype(np_dtype(stash_type)).reshape(N, num_groups, -1)  # [N, C, ...] -> [N, G, C/G*...]
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.var(x, axis=-1, keepdims=True)
    y = ((x - mean) / np.sqrt(var + epsilon)).reshape(X.shape)  # [N, G, C/G*...] -> [N, C, ...]
    y = y * _per_channel(scale, X.ndim) + _per_channel(bias, X.ndim)
    return y.astype(X.dtype, copy=False)


@op("GroupNormalization", since=18)
def GroupNormalization_18(X, scale, bias, *, epsilon=1e-5, num_groups):
    """GroupNormalization-18: scale and bias are per *group* [num_groups], not per channel —
    https://onnx.ai/onnx/operators/onnx__GroupNormalization.html"""
    per_group = X.shape[1] // num_groups
    return GroupNormalization(X, np.repeat(scale, per_group), np.repeat(bias, per_group),
                              epsilon=epsilon, num_groups=num_groups)


@op("RMSNormalization", since=23)
def RMSNormalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """y = x / sqrt(mean(x^2) + epsilon) * scale, the mean over the dims from axis on —
    https://onnx.ai/onnx/operators/onnx__RMSNormalization.html"""
    axis = normalize_axis(axis, X.ndim)
    x = X.astype(np_dtype(stash_type))
    mean_square = np.mean(np.square(x), axis=tuple(range(axis, X.ndim)), keepdims=True)
    return (x / np.sqrt(mean_square + epsilon) * scale).astype(X.dtype, copy=False)


@op("LRN", since=1)
def LRN(X, *, alpha=0.0001, beta=0.75, bias=1.0, size):
    """y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels)^beta —
    https://onnx.ai/onnx/operators/onnx__LRN.html"""
    x = _wide(X)
    C = X.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    square = np.square(x)
    square_sum = np.zeros_like(x)
    for c in range(C):  # a window of channels [c - before, c + after], clipped to [0, C)
        square_sum[:, c] = np.sum(square[:, max(0, c - before):min(C, c + after + 1)], axis=1)
    return (x / (bias + alpha / size * square_sum) ** beta).astype(X.dtype, copy=False)


@op("MeanVarianceNormalization", since=9)
def MeanVarianceNormalization(X, *, axes=(0, 2, 3)):
    """y = (x - mean) / (sqrt(var) + 1e-9), statistics over axes —
    https://onnx.ai/onnx/operators/onnx__MeanVarianceNormalization.html"""
    x = _wide(X)
    axes = tuple(axes)
    mean = np.mean(x, axis=axes, keepdims=True)
    std = np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True) - np.square(mean))
    return ((x - mean) / (std + 1e-9)).astype(X.dtype, copy=False)


@op("LpNormalization", since=1)
def LpNormalization(input, *, axis=-1, p=2):
    """y = x / ||x||_p along axis (0 where the norm is 0) —
    https://onnx.ai/onnx/operators/onnx__LpNormalization.html"""
    x = _wide(input)
    if p == 1:
        norm = np.sum(np.abs(x), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0, x / norm)
    return y.astype(input.dtype, copy=False)


# --------------------------------------------------------------------------- losses


@op("NegativeLogLikelihoodLoss", since=12)
def NegativeLogLikelihoodLoss(input, target, weight=None, *, ignore_index=None, reduction="mean"):
    """loss[n, d] = -input[n, target[n, d], d] * weight[target[n, d]], then mean (weighted), sum
    or none — https://onnx.ai/onnx/operators/onnx__NegativeLogLikelihoodLoss.html"""
    x = _wide(input)
    keep = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    t = np.where(keep, target, 0)  # ignored targets may be out of range: point them at class 0
    picked = np.take_along_axis(x, np.expand_dims(t, 1), axis=1)  # [N, C, d...] -> [N, 1, d...]
    w = keep.astype(x.dtype) if weight is None else np.where(keep, _wide(weight)[t], 0)
    loss = -np.squeeze(picked, axis=1) * w  # [N, d...]
    if reduction == "sum":
        loss = np.sum(loss)
    elif reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as 0/0
            loss = np.sum(loss) / np.sum(w)
    return np.asarray(loss).astype(input.dtype)


@op("SoftmaxCrossEntropyLoss", since=12)
def SoftmaxCrossEntropyLoss(scores, labels, weights=None, *, ignore_index=None, reduction="mean"):
    """loss = NegativeLogLikelihoodLoss(LogSoftmax(scores, axis=1), labels, weights); also returns
    the log-probabilities — https://onnx.ai/onnx/operators/onnx__SoftmaxCrossEntropyLoss.html"""
    log_prob = LogSoftmax(scores, axis=1)
    loss = NegativeLogLikelihoodLoss(log_prob, labels, weights, ignore_index=ignore_index,
                                     reduction=reduction)
    return loss, log_prob


# --------------------------------------------------------------------------- onnxruntime fusions


@op("LayerNormalization", since=1)
def LayerNormalization_1(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """onnxruntime's LayerNormalization in the ai.onnx domain before opset 17 (emitted by its
    transformer optimizer); the same math as opset 17 —
    https://onnx.ai/onnx/operators/onnx__LayerNormalization.html"""
    return LayerNormalization(X, Scale, B, axis=axis, epsilon=epsilon, stash_type=stash_type)


@op("SimplifiedLayerNormalization", since=1)
def SimplifiedLayerNormalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """onnxruntime's RMS norm, y = x / sqrt(mean(x^2) + epsilon) * scale, also returning InvStdDev —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md"""
    axis = normalize_axis(axis, X.ndim)
    x = X.astype(np_dtype(stash_type))
    mean_square = np.mean(np.square(x), axis=tuple(range(axis, X.ndim)), keepdims=True)
    inv_std = 1 / np.sqrt(mean_square + epsilon)
    return (x * inv_std * scale).astype(X.dtype, copy=False), inv_std


@op("SkipLayerNormalization", since=1, domain="com.microsoft")
def SkipLayerNormalization(input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """s = input + skip + bias; y = LayerNormalization(s) * gamma + beta over the last dim; also
    returns mean, inv_std_var and s —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.SkipLayerNormalization"""
    s = input + skip if bias is None else input + skip + bias
    y, mean, inv_std = LayerNormalization(s, gamma, beta, axis=-1, epsilon=epsilon)
    return y, mean, inv_std, s


@op("SkipSimplifiedLayerNormalization", since=1, domain="com.microsoft")
def SkipSimplifiedLayerNormalization(input, skip, gamma, bias=None, *, epsilon=1e-12):
    """s = input + skip + bias; y = s / sqrt(mean(s^2) + epsilon) * gamma over the last dim; also
    returns mean (None), inv_std_var and s —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md"""
    s = input + skip if bias is None else input + skip + bias
    y, inv_std = SimplifiedLayerNormalization(s, gamma, axis=-1, epsilon=epsilon)
    return y, None, inv_std, s
