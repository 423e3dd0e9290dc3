"""Quantization ops: QuantizeLinear / DequantizeLinear and the integer matmul / conv family.

A quantized tensor stores ``q = saturate(round(x / scale) + zero_point)`` and means
``x ≈ (q - zero_point) * scale``. Three rules keep these ops exact:

* widen int8/uint8 to int32 *before* any product (NumPy's ``int8 @ int8`` wraps silently);
* accumulate in int32;
* requantize with round-half-to-even (``np.rint``) and saturate to the output type's range.

The com.microsoft contrib ops at the end are the ones onnxruntime's quantizer emits
(https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from minirt.dtypes import np_dtype
from minirt.ops._common import normalize_axis
from minirt.ops.activation import Relu
from minirt.registry import op

_FLOAT8 = {np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                  ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)}
_FLOAT4 = np.dtype(ml_dtypes.float4_e2m1fn)


# ---------------------------------------------------------------------------- helpers


def _int_range(dtype) -> tuple[int, int]:
    """(min, max) of an integer type, int4/uint4 included."""
    info = ml_dtypes.iinfo(dtype) if np.dtype(dtype).kind == "V" else np.iinfo(dtype)
    return int(info.min), int(info.max)


def _is_int(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind in "iu" or dtype in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4),
                                           np.dtype(ml_dtypes.int2), np.dtype(ml_dtypes.uint2))


def _saturate(x, dtype):
    """Round half to even, clip to the range of integer ``dtype``, cast."""
    lo, hi = _int_range(dtype)
    return np.clip(np.rint(x), lo, hi).astype(dtype)


def _param(p, shape, axis, block_size=0):
    """Scale / zero point made broadcastable to ``shape``: per-tensor, per-axis or blocked."""
    p = np.asarray(p)
    if p.size == 1 and not block_size:
        return p.reshape(())  # per tensor
    axis = normalize_axis(axis, len(shape))
    if not block_size:
        dims = [1] * len(shape)
        dims[axis] = p.size
        return p.reshape(dims)  # per axis: [C] -> [1, C, 1, ...]
    p = np.repeat(p, block_size, axis=axis)  # blocked: [.., C/bs, ..] -> [.., C, ..]
    return np.take(p, np.arange(shape[axis]), axis=axis)  # last block may be short


def _widen(q, zero_point=None):
    """q - zero_point as int32 (the only safe place to do integer arithmetic)."""
    q = np.asarray(q).astype(np.int32)
    if zero_point is not None:
        q = q - np.asarray(zero_point).astype(np.int32)
    return q


def _matmul_int32(a, b):
    """Exact int32 matmul of widened 8-bit values.

    Products of 8-bit values summed in float64 are exact far below 2**53, so this runs the
    fast float BLAS and casts back; ``np.matmul`` on int32 is exact too, just much slower.
    """
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int32)


def _float_work_dtype(*arrays):
    """float64 if any input is float64, else float32 (float16 scales are widened)."""
    return np.float64 if any(np.asarray(a).dtype == np.float64 for a in arrays) else np.float32


def _requantize(acc, multiplier, y_zero_point, dtype):
    """int32 accumulator -> quantized output: saturate(rint(acc * multiplier) + zp)."""
    zp = 0 if y_zero_point is None else np.asarray(y_zero_point).astype(np.int32)
    y = np.rint(acc.astype(np.float32) * np.asarray(multiplier, dtype=np.float32)) + zp
    return _saturate(y, dtype)


def _pads_for(auto_pad, in_shape, kernel, strides, dilations, pads):
    """Explicit [begin..., end...] pads from auto_pad (SAME_UPPER / SAME_LOWER / VALID)."""
    n = len(in_shape)
    if auto_pad in ("NOTSET", "", None):
        return list(pads) if pads is not None else [0] * (2 * n)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for size, k, s, d in zip(in_shape, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin + end


def _windows(x, kernel, strides, dilations, pads, pad_value=0):
    """Sliding windows over the spatial axes: [N, C, *S] -> [N, C, *out, *kernel]."""
    n = len(kernel)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)]
    xp = np.pad(x, pad_width, constant_values=pad_value)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    v = np.lib.stride_tricks.sliding_window_view(xp, extent, axis=tuple(range(2, 2 + n)))
    out_sl = tuple(slice(None, None, s) for s in strides)
    k_sl = tuple(slice(None, None, d) for d in dilations)
    return v[(slice(None), slice(None)) + out_sl + k_sl]


def _conv_int32(x, w, *, auto_pad, dilations, group, kernel_shape, pads, strides):
    """Integer convolution of already-widened int32 x [N, C, *S] and w [M, C/g, *k]."""
    n = x.ndim - 2
    kernel = list(kernel_shape or w.shape[2:])
    strides = list(strides or [1] * n)
    dilations = list(dilations or [1] * n)
    pads = _pads_for(auto_pad, x.shape[2:], kernel, strides, dilations, pads)
    win = _windows(x, kernel, strides, dilations, pads)  # [N, C, *out, *k]
    N, C, out = x.shape[0], x.shape[1], win.shape[2:2 + n]
    M, cg = w.shape[0], C // group
    cols = np.moveaxis(win, 1, 1 + n)  # [N, *out, C, *k]
    cols = cols.reshape(N, int(np.prod(out)), group, cg * int(np.prod(kernel)))  # [N, P, g, C/g*K]
    wg = w.reshape(group, M // group, -1)  # [g, M/g, C/g*K]
    y = np.concatenate([_matmul_int32(cols[:, :, g], wg[g].T) for g in range(group)], axis=-1)
    return np.moveaxis(y, -1, 1).reshape(N, M, *out)  # [N, P, M] -> [N, M, *out]


# ---------------------------------------------------------------------------- ai.onnx


# One function serves every version: later versions only add attributes
# (axis in 13, saturate + float8 in 19, block_size + output_dtype in 21, precision in 23).
@op("QuantizeLinear", since=10)
@op("QuantizeLinear", since=13)
@op("QuantizeLinear", since=19)
@op("QuantizeLinear", since=21)
def QuantizeLinear(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0,
                   output_dtype=0, precision=0):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point) — https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html"""
    if y_zero_point is not None:
        dtype = np.asarray(y_zero_point).dtype
    else:
        dtype = np_dtype(output_dtype) if output_dtype else np.dtype(np.uint8)
    work = np_dtype(precision) if precision else _float_work_dtype(x, y_scale)
    scale = _param(y_scale, x.shape, axis, block_size).astype(work)
    y = x.astype(work) / scale
    if _is_int(dtype):
        if y_zero_point is not None:
            y = np.rint(y) + _param(y_zero_point, x.shape, axis, block_size).astype(np.int32)
        return _saturate(y, dtype)
    if dtype in _FLOAT8 and saturate:
        fmax = float(ml_dtypes.finfo(dtype).max)
        y = np.clip(y, -fmax, fmax)  # +-inf and overflow -> +-max; NaN stays NaN
    return y.astype(dtype)  # float8 / float4 (float4 has no inf: the cast saturates)


@op("DequantizeLinear", since=10)
@op("DequantizeLinear", since=13)
@op("DequantizeLinear", since=19)
@op("DequantizeLinear", since=21)
def DequantizeLinear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """y = (x - x_zero_point) * x_scale — https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html"""
    out_dtype = np_dtype(output_dtype) if output_dtype else np.asarray(x_scale).dtype
    work = _float_work_dtype(x_scale)
    if _is_int(x.dtype):
        zp = None if x_zero_point is None else _param(x_zero_point, x.shape, axis, block_size)
        dx = _widen(x, zp).astype(work)  # exact integer subtraction first
    else:
        dx = x.astype(work)  # float8 / float4: the zero point must be 0
    y = dx * _param(x_scale, x.shape, axis, block_size).astype(work)
    return y.astype(out_dtype)


@op("DynamicQuantizeLinear", since=11)
def DynamicQuantizeLinear(x):
    """uint8 quantization with scale, zero point computed from min(x, 0), max(x, 0) — https://onnx.ai/onnx/operators/onnx__DynamicQuantizeLinear.html"""
    lo = np.float32(min(0.0, float(x.min()) if x.size else 0.0))
    hi = np.float32(max(0.0, float(x.max()) if x.size else 0.0))
    scale = np.float32((hi - lo) / np.float32(255)) if hi != lo else np.float32(1.0 / 255)
    zero_point = _saturate(np.float32(0) - lo / scale, np.uint8)
    y = _saturate(np.rint(x.astype(np.float32) / scale) + zero_point, np.uint8)
    return y, np.asarray(scale, dtype=x.dtype), np.asarray(zero_point)


def _row_zero_point(zp):
    """A's zero point: scalar, or per row [M] -> [M, 1] so it broadcasts over K."""
    zp = np.asarray(zp)
    return zp.reshape(-1, 1) if zp.ndim == 1 and zp.size > 1 else zp


@op("MatMulInteger", since=10)
def MatMulInteger(A, B, a_zero_point=None, b_zero_point=None):
    """Y = (A - a_zero_point) @ (B - b_zero_point) in int32 — https://onnx.ai/onnx/operators/onnx__MatMulInteger.html"""
    a_zp = None if a_zero_point is None else _row_zero_point(a_zero_point)
    return _matmul_int32(_widen(A, a_zp), _widen(B, b_zero_point))  # [.., M, K] @ [.., K, N]


def _channel_zero_point(zp, ndim):
    """W's zero point: scalar, or per output channel [M] -> [M, 1, 1, ...]."""
    zp = np.asarray(zp)
    return zp.reshape((-1,) + (1,) * (ndim - 1)) if zp.size > 1 else zp.reshape(())


@op("ConvInteger", since=10)
def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET",
                dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """y = conv(x - x_zero_point, w - w_zero_point) in int32 — https://onnx.ai/onnx/operators/onnx__ConvInteger.html"""
    w_zp = None if w_zero_point is None else _channel_zero_point(w_zero_point, w.ndim)
    # subtracting the zero point first makes zero padding mean "pad with x_zero_point"
    return _conv_int32(_widen(x, x_zero_point), _widen(w, w_zp), auto_pad=auto_pad,
                       dilations=dilations, group=group, kernel_shape=kernel_shape,
                       pads=pads, strides=strides)


@op("QLinearConv", since=10)
def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                pads=None, strides=None):
    """y = quantize(conv(x - xzp, w - wzp) + B, x_scale * w_scale / y_scale) — https://onnx.ai/onnx/operators/onnx__QLinearConv.html"""
    acc = ConvInteger(x, w, x_zero_point, w_zero_point, auto_pad=auto_pad, dilations=dilations,
                      group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    spatial = (1,) * (x.ndim - 2)
    if B is not None:
        acc = acc + B.astype(np.int32).reshape(-1, *spatial)  # bias per output channel
    w_scale = np.asarray(w_scale, dtype=np.float32)
    if w_scale.size > 1:
        w_scale = w_scale.reshape(-1, *spatial)  # per output channel [M] -> [M, 1, 1]
    multiplier = np.float32(x_scale) * w_scale / np.float32(y_scale)
    dtype = x.dtype if y_zero_point is None else np.asarray(y_zero_point).dtype
    return _requantize(acc, multiplier, y_zero_point, dtype)


@op("QLinearMatMul", since=10)
@op("QLinearMatMul", since=21)
def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """y = quantize((a - azp) @ (b - bzp), a_scale * b_scale / y_scale) — https://onnx.ai/onnx/operators/onnx__QLinearMatMul.html"""
    acc = MatMulInteger(a, b, a_zero_point, b_zero_point)  # int32 [.., M, N]
    a_scale = np.asarray(a_scale, dtype=np.float32)
    if a_scale.size > 1:
        a_scale = a_scale.reshape(-1, 1)  # per row of a
    multiplier = a_scale * np.asarray(b_scale, dtype=np.float32) / np.asarray(y_scale, dtype=np.float32)
    return _requantize(acc, multiplier, y_zero_point, np.asarray(y_zero_point).dtype)


# ---------------------------------------------------------------------------- com.microsoft
# Elementwise contrib ops dequantize, compute in float32, and quantize again.


def _dq(x, scale, zero_point):
    """float32 value of a quantized tensor."""
    return _widen(x, zero_point).astype(np.float32) * np.asarray(scale, dtype=np.float32)


def _q(y, scale, zero_point, dtype):
    """Quantize a float32 tensor with round-half-to-even and saturation."""
    zp = 0 if zero_point is None else np.asarray(zero_point).astype(np.int32)
    return _saturate(np.rint(y / np.asarray(scale, dtype=np.float32)) + zp, dtype)


@op("QLinearAdd", since=1, domain="com.microsoft")
def QLinearAdd(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) + dequantize(B)) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearAdd"""
    return _q(_dq(A, A_scale, A_zero_point) + _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A.dtype)


@op("QLinearMul", since=1, domain="com.microsoft")
def QLinearMul(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) * dequantize(B)) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearMul"""
    return _q(_dq(A, A_scale, A_zero_point) * _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A.dtype)


@op("QLinearSigmoid", since=1, domain="com.microsoft")
def QLinearSigmoid(X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    """Y = quantize(sigmoid(dequantize(X))) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearSigmoid"""
    x = _dq(X, X_scale, X_zero_point)
    return _q(1 / (1 + np.exp(-x)), Y_scale, Y_zero_point, X.dtype)


@op("QLinearLeakyRelu", since=1, domain="com.microsoft")
def QLinearLeakyRelu(X, X_scale, X_zero_point, Y_scale, Y_zero_point=None, *, alpha=0.01):
    """Y = quantize(leaky_relu(dequantize(X), alpha)) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearLeakyRelu"""
    x = _dq(X, X_scale, X_zero_point)
    return _q(np.where(x >= 0, x, x * np.float32(alpha)), Y_scale, Y_zero_point, X.dtype)


@op("QLinearGlobalAveragePool", since=1, domain="com.microsoft")
def QLinearGlobalAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last=0):
    """Y = quantize(mean over spatial axes of dequantize(X)) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearGlobalAveragePool"""
    axes = tuple(range(1, X.ndim - 1)) if channels_last else tuple(range(2, X.ndim))
    mean = _dq(X, x_scale, x_zero_point).mean(axis=axes, keepdims=True)  # [N, C, H, W] -> [N, C, 1, 1]
    return _q(mean, y_scale, y_zero_point, X.dtype)


@op("QLinearAveragePool", since=1, domain="com.microsoft")
def QLinearAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point=None, *, auto_pad="NOTSET",
                       ceil_mode=0, channels_last=0, count_include_pad=0, kernel_shape=None,
                       pads=None, strides=None):
    """Y = quantize(average_pool(dequantize(X))) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearAveragePool"""
    x = _dq(X, x_scale, x_zero_point)
    if channels_last:
        x = np.moveaxis(x, -1, 1)  # [N, *S, C] -> [N, C, *S]
    n = x.ndim - 2
    strides = list(strides or [1] * n)
    ones = [1] * n
    pads = _pads_for(auto_pad, x.shape[2:], kernel_shape, strides, ones, pads)
    extra = [0] * n  # ceil_mode: room for a last, partial window at the end
    for i in range(n):
        span = x.shape[2 + i] + pads[i] + pads[i + n] - kernel_shape[i]
        out = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (out - 1) * strides[i] >= x.shape[2 + i] + pads[i]:
            out -= 1  # a window may not start in the end padding
        extra[i] = max((out - 1) * strides[i] + kernel_shape[i] - (x.shape[2 + i] + pads[i] + pads[i + n]), 0)
    padded = pads[:n] + [p + e for p, e in zip(pads[n:], extra)]
    total = _windows(x, kernel_shape, strides, ones, padded).sum(axis=tuple(range(-n, 0)))
    counted = np.pad(np.ones(x.shape[2:], np.float32), [(pads[i], pads[i + n]) for i in range(n)],
                     constant_values=1 if count_include_pad else 0)
    counted = counted[None, None]  # [1, 1, *S_padded]
    count = _windows(counted, kernel_shape, strides, ones, [0] * n + extra).sum(axis=tuple(range(-n, 0)))
    y = total / count  # [N, C, *out]
    if channels_last:
        y = np.moveaxis(y, 1, -1)
    return _q(y, y_scale, y_zero_point, X.dtype)


@op("QLinearConcat", since=1, domain="com.microsoft")
def QLinearConcat(Y_scale, Y_zero_point, *inputs, axis):
    """Y = quantize(concat(dequantize(X_i))) with inputs as (X, scale, zero_point) triples — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QLinearConcat"""
    parts = [_dq(inputs[i], inputs[i + 1], inputs[i + 2]) for i in range(0, len(inputs), 3)]
    return _q(np.concatenate(parts, axis=axis), Y_scale, Y_zero_point, np.asarray(Y_zero_point).dtype)


@op("QGemm", since=1, domain="com.microsoft")
def QGemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None,
          y_zero_point=None, *, alpha=1.0, transA=0, transB=0):
    """Y = alpha * a_scale * b_scale * ((A' - azp) @ (B' - bzp) + C), quantized when y_scale is given — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QGemm"""
    a = _widen(A.T if transA else A, a_zero_point)  # [M, K]
    b_zp = np.asarray(b_zero_point)
    b = _widen(B.T if transB else B, b_zp if b_zp.size == 1 or transB == 0 else b_zp.reshape(1, -1))
    acc = _matmul_int32(a, b)  # [M, N] int32
    if C is not None:
        acc = acc + C.astype(np.int32)
    scale = np.float32(alpha) * np.float32(a_scale) * np.asarray(b_scale, dtype=np.float32)
    if y_scale is None:
        return (acc.astype(np.float32) * scale).astype(np.float32)
    return _requantize(acc, scale / np.float32(y_scale), y_zero_point, np.asarray(y_zero_point).dtype)


@op("MatMulIntegerToFloat", since=1, domain="com.microsoft")
def MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
    """Y = (A - azp) @ (B - bzp) * a_scale * b_scale + bias — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.MatMulIntegerToFloat"""
    acc = MatMulInteger(A, B, a_zero_point, b_zero_point)  # int32 [.., M, N]
    y = acc.astype(np.float32) * (np.asarray(a_scale, np.float32) * np.asarray(b_scale, np.float32))
    if bias is not None:
        y = y + bias
    return y.astype(np.asarray(a_scale).dtype)


@op("DynamicQuantizeMatMul", since=1, domain="com.microsoft")
def DynamicQuantizeMatMul(A, B, b_scale, b_zero_point=None, bias=None):
    """Y = dequantize(DynamicQuantizeLinear(A)) @ dequantize(B) + bias, computed in int32 — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.DynamicQuantizeMatMul"""
    qa, a_scale, a_zero_point = DynamicQuantizeLinear(A)
    return MatMulIntegerToFloat(qa, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)


# ---------------------------------------------------------------------------- minirt


@op("FusedDynamicQuantizeMatMul", since=1, domain="minirt")
def FusedDynamicQuantizeMatMul(A, B, b_scale, b_zero_point=None, bias=None, *, activation=""):
    """Y = activation(DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias)): what
    fuse_dynamic_matmul makes of a DynamicQuantizeMatMul and the Relu after it (activation ""
    or "Relu", onnxruntime's Fused* attribute convention)."""
    if activation not in ("", "Relu"):
        raise ValueError(f"FusedDynamicQuantizeMatMul: unsupported activation {activation!r}")
    y = DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias)
    return Relu(y) if activation == "Relu" else y

# What fuse_qdq writes for ``QuantizeLinear -> DequantizeLinear -> MatMul [-> Add(bias)]`` with
# a float output: the activation's quantization and the integer product in one node.


@op("QuantizeMatMul", since=1, domain="minirt")
def QuantizeMatMul(A, a_scale, a_zero_point, B, b_scale, b_zero_point=None, bias=None):
    """Y = MatMulIntegerToFloat(QuantizeLinear(A, a_scale, a_zero_point), B, a_scale, b_scale,
    a_zero_point, b_zero_point, bias): static quantization's ``DynamicQuantizeMatMul`` (minirt's own)."""
    qa = QuantizeLinear(A, a_scale, a_zero_point)
    return MatMulIntegerToFloat(qa, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)


@op("ScaleIntegerToFloat", since=1, domain="minirt")
def ScaleIntegerToFloat(acc, a_scale, b_scale, bias=None):
    """Y = Cast(acc, float32) * (a_scale * b_scale) [+ bias]: the float end of dynamic
    quantization's ``ConvInteger -> Cast -> Mul(Mul(x_scale, w_scale)) -> Add(bias)`` chain,
    which fuse_dynamic_matmul folds into this node (ConvInteger stays)."""
    y = acc.astype(np.float32) * (np.asarray(a_scale) * np.asarray(b_scale))
    return y if bias is None else y + bias


@op("DynamicQuantizeConv", since=1, domain="minirt")
def DynamicQuantizeConv(X, W, w_scale, w_zero_point=None, bias=None, *, activation="", auto_pad="NOTSET",
                        dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Y = activation(ScaleIntegerToFloat(ConvInteger(DynamicQuantizeLinear(X), W), x_scale,
    w_scale, bias)): dynamic quantization's whole ``DynamicQuantizeLinear -> ConvInteger ->
    Cast -> Mul -> Add [-> Relu]`` chain, which fuse_dynamic_matmul folds into this node
    (minirt's own; activation "" or "Relu")."""
    if activation not in ("", "Relu"):
        raise ValueError(f"DynamicQuantizeConv: unsupported activation {activation!r}")
    xq, x_scale, x_zero_point = DynamicQuantizeLinear(X)
    acc = ConvInteger(xq, W, x_zero_point, w_zero_point, auto_pad=auto_pad, dilations=dilations,
                      group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    y = ScaleIntegerToFloat(acc, x_scale, w_scale, bias)
    return Relu(y) if activation == "Relu" else y
