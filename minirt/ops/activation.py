"""Activation functions: elementwise non-linearities, Y has X's shape and dtype.

Also the com.microsoft contrib activations that onnxruntime's transformer optimizer emits
when it fuses PyTorch/transformers graphs (Gelu, FastGelu, BiasGelu, QuickGelu).
"""

from __future__ import annotations

import numpy as np

from minirt.ops.elementwise import _erf_f64, _with_consumed_inputs
from minirt.registry import op


def _sigmoid(x):
    """1 / (1 + e^-x) without overflow: only ever exponentiate -|x|, then (x >= 0 ? 1 : e) / (1 + e).
    One division of the selected numerator (the same quotients as dividing both and selecting,
    NaN included) and the constant in x's dtype: 5 NumPy calls instead of 8 ([1, 1]: 5.4 -> 4.9 us)."""
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, one, e) / (e + one))  # (0-d: an array, not a NumPy scalar)


def _gelu_erf(x):
    """0.5 x (1 + erf(x / sqrt 2)), computed in float64, returned in x's dtype."""
    x64 = x.astype(np.float64)
    return np.asarray(0.5 * x64 * (1.0 + _erf_f64(x64 / np.sqrt(2.0)))).astype(x.dtype)


def _gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed in float64, returned in x's dtype."""
    x64 = x.astype(np.float64)
    inner = np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64**3)
    return np.asarray(0.5 * x64 * (1.0 + np.tanh(inner))).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# ReLU family
# ---------------------------------------------------------------------------------------------


@op("Relu", since=6)
def Relu(X):
    """Y = max(0, X) — https://onnx.ai/onnx/operators/onnx__Relu.html"""
    return np.asarray(np.maximum(X, X.dtype.type(0)))


@op("LeakyRelu", since=6)
def LeakyRelu(X, *, alpha=0.01):
    """Y = X if X >= 0 else alpha * X — https://onnx.ai/onnx/operators/onnx__LeakyRelu.html"""
    return np.where(X >= 0, X, X * X.dtype.type(alpha))


@op("LeakyRelu", since=1)
def LeakyRelu_1(X, *, alpha=0.01, consumed_inputs=None):
    """LeakyRelu with the legacy `consumed_inputs` attribute (ignored) — https://onnx.ai/onnx/operators/onnx__LeakyRelu.html"""
    return LeakyRelu(X, alpha=alpha)


@op("PRelu", since=7)
def PRelu(X, slope):
    """Y = X if X >= 0 else slope * X; slope broadcasts to X — https://onnx.ai/onnx/operators/onnx__PRelu.html"""
    return np.where(X >= 0, X, X * slope).astype(X.dtype, copy=False)


@op("PRelu", since=1)
def PRelu_1(X, slope, *, consumed_inputs=None):
    """PRelu before opset 7: slope has X's shape, or is one value per channel (axis 1) — https://onnx.ai/onnx/operators/onnx__PRelu.html"""
    if slope.ndim == 1 and X.ndim >= 2 and slope.shape[0] == X.shape[1] != X.shape[-1]:
        slope = slope.reshape((-1,) + (1,) * (X.ndim - 2))  # [C] -> [C, 1, ..., 1]
    return PRelu(X, slope)


@op("ThresholdedRelu", since=10)
def ThresholdedRelu(X, *, alpha=1.0):
    """Y = X if X > alpha else 0 — https://onnx.ai/onnx/operators/onnx__ThresholdedRelu.html"""
    return np.where(X > alpha, X, X.dtype.type(0))


@op("Elu", since=6)
def Elu(X, *, alpha=1.0):
    """Y = X if X > 0 else alpha * (e^X - 1) — https://onnx.ai/onnx/operators/onnx__Elu.html"""
    return np.where(X > 0, X, X.dtype.type(alpha) * np.expm1(np.minimum(X, 0)))


@op("Elu", since=1)
def Elu_1(X, *, alpha=1.0, consumed_inputs=None):
    """Elu with the legacy `consumed_inputs` attribute (ignored) — https://onnx.ai/onnx/operators/onnx__Elu.html"""
    return Elu(X, alpha=alpha)


@op("Selu", since=6)
def Selu(X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    """Y = gamma * (X if X > 0 else alpha * (e^X - 1)) — https://onnx.ai/onnx/operators/onnx__Selu.html"""
    return np.asarray(X.dtype.type(gamma) * Elu(X, alpha=alpha))


@op("Selu", since=1)
def Selu_1(X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875, consumed_inputs=None):
    """Selu with the legacy `consumed_inputs` attribute (ignored) — https://onnx.ai/onnx/operators/onnx__Selu.html"""
    return Selu(X, alpha=alpha, gamma=gamma)


@op("Celu", since=12)
def Celu(X, *, alpha=1.0):
    """Y = max(0, X) + min(0, alpha * (e^(X/alpha) - 1)) — https://onnx.ai/onnx/operators/onnx__Celu.html"""
    a = X.dtype.type(alpha)
    return np.where(X > 0, X, a * np.expm1(np.minimum(X, 0) / a))


# ---------------------------------------------------------------------------------------------
# sigmoid family
# ---------------------------------------------------------------------------------------------


@op("Sigmoid", since=6)
def Sigmoid(X):
    """Y = 1 / (1 + e^-X) — https://onnx.ai/onnx/operators/onnx__Sigmoid.html"""
    return _sigmoid(X)


@op("HardSigmoid", since=6)
def HardSigmoid(X, *, alpha=0.2, beta=0.5):
    """Y = max(0, min(1, alpha * X + beta)) — https://onnx.ai/onnx/operators/onnx__HardSigmoid.html"""
    return np.asarray(np.clip(X * X.dtype.type(alpha) + X.dtype.type(beta), 0, 1))


@op("HardSigmoid", since=1)
def HardSigmoid_1(X, *, alpha=0.2, beta=0.5, consumed_inputs=None):
    """HardSigmoid with the legacy `consumed_inputs` attribute (ignored) — https://onnx.ai/onnx/operators/onnx__HardSigmoid.html"""
    return HardSigmoid(X, alpha=alpha, beta=beta)


@op("HardSwish", since=14)
def HardSwish(X):
    """Y = X * max(0, min(1, X / 6 + 1/2)) — https://onnx.ai/onnx/operators/onnx__HardSwish.html"""
    return np.asarray(X * HardSigmoid(X, alpha=1 / 6, beta=0.5))


@op("Tanh", since=6)
def Tanh(input):
    """output = tanh(input) — https://onnx.ai/onnx/operators/onnx__Tanh.html"""
    return np.asarray(np.tanh(input))


Relu_1 = _with_consumed_inputs(Relu)
Sigmoid_1 = _with_consumed_inputs(Sigmoid)
Tanh_1 = _with_consumed_inputs(Tanh)


@op("Softplus", since=1)
def Softplus(X):
    """Y = ln(1 + e^X) — https://onnx.ai/onnx/operators/onnx__Softplus.html"""
    return np.asarray(np.logaddexp(X.dtype.type(0), X))  # ln(e^0 + e^X), without overflow


@op("Softsign", since=1)
def Softsign(input):
    """output = input / (1 + |input|) — https://onnx.ai/onnx/operators/onnx__Softsign.html"""
    return np.asarray(input / (1 + np.abs(input)))


@op("Shrink", since=9)
def Shrink(input, *, bias=0.0, lambd=0.5):
    """output = x + bias if x < -lambd, x - bias if x > lambd, else 0 — https://onnx.ai/onnx/operators/onnx__Shrink.html"""
    shrunk = np.where(input < -lambd, input + bias, np.where(input > lambd, input - bias, 0))
    return shrunk.astype(input.dtype)  # integer inputs: Python-float bias widened to float64


@op("Mish", since=18)
def Mish(X):
    """Y = X * tanh(softplus(X)) — https://onnx.ai/onnx/operators/onnx__Mish.html"""
    return np.asarray(X * np.tanh(Softplus(X)))


@op("Swish", since=24)
def Swish(X, *, alpha=1.0):
    """Y = X * sigmoid(alpha * X) — https://onnx.ai/onnx/operators/onnx__Swish.html"""
    return np.asarray(X * _sigmoid(X * X.dtype.type(alpha)))


@op("Gelu", since=20)
def Gelu(X, *, approximate="none"):
    """Y = X * Phi(X) (erf form), or its tanh approximation — https://onnx.ai/onnx/operators/onnx__Gelu.html"""
    if approximate == "tanh":
        return _gelu_tanh(X)
    if approximate == "none":
        return _gelu_erf(X)
    raise ValueError(f"Gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


# ---------------------------------------------------------------------------------------------
# com.microsoft contrib activations (onnxruntime fusions)
# ---------------------------------------------------------------------------------------------


@op("Gelu", since=1, domain="com.microsoft")
def Gelu_ms(X):
    """Y = 0.5 X (1 + erf(X / sqrt 2)) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.Gelu"""
    return _gelu_erf(X)


@op("BiasGelu", since=1, domain="com.microsoft")
def BiasGelu(A, B):
    """C = Gelu(A + B), erf form; B is a bias over the last axis — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.BiasGelu"""
    return _gelu_erf(A + B)


@op("FastGelu", since=1, domain="com.microsoft")
def FastGelu(X, bias=None):
    """Y = Gelu(X + bias), tanh approximation — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.FastGelu"""
    return _gelu_tanh(X if bias is None else X + bias)


@op("QuickGelu", since=1, domain="com.microsoft")
def QuickGelu(X, *, alpha=1.702):
    """Y = X * sigmoid(alpha * X) — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.QuickGelu"""
    return np.asarray(X * _sigmoid(X * X.dtype.type(alpha)))
