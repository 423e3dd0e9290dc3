"""Fused ops made by :func:`minirt.passes.fuse_elementwise`, in minirt's private domain "minirt".

Each one is a product op followed by an optional Add and an optional activation::

    FusedConv(X, W, B, Z)    Y = activation(Conv(X, W, B) + Z)
    FusedMatMul(A, B, Z)     Y = activation(MatMul(A, B) + Z)
    FusedGemm(A, B, C)       Y = activation(Gemm(A, B, C))

``Z`` is optional (a bias, or the skip branch of a residual block). ``activation`` names the
ONNX op applied last ("" for none) and ``activation_params`` holds its float attributes in the
order onnxruntime's fused ops use:

    Relu, Sigmoid, Tanh, HardSwish, Gelu (exact, erf): no parameters
    LeakyRelu, Elu: [alpha]          HardSigmoid: [alpha, beta]          Clip: [min, max]

The reference versions below are literally the unfused ops called one after the other, so a
fused graph computes what the original graph computed. The ``@kernel`` versions do the same with
the fastest registered version of each op (a Numba conv, a BLAS matmul), so fusing never runs
slower than not fusing; a real fused kernel (the activation applied in the conv's loop, no
intermediate array) can replace them.

Note: ``minirt.FusedMatMul`` is not ``com.microsoft.FusedMatMul`` (that one scales and transposes).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from minirt import registry
from minirt.ops.activation import Elu, Gelu, HardSigmoid, HardSwish, LeakyRelu, Relu, Sigmoid, Tanh
from minirt.ops.conv import Conv
from minirt.ops.elementwise import Add, Clip
from minirt.ops.linalg import Gemm, MatMul
from minirt.registry import kernel, op

DOMAIN = "minirt"
ACTIVATIONS = ("Relu", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Clip", "Gelu")

# op name -> reference function: what the fused ops are made of
_REFERENCE: dict[str, Callable] = {
    "Conv": Conv, "MatMul": MatMul, "Gemm": Gemm, "Add": Add,
    "Relu": Relu, "LeakyRelu": LeakyRelu, "Elu": Elu, "Sigmoid": Sigmoid, "Tanh": Tanh,
    "HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "Clip": Clip, "Gelu": Gelu,
}


def _reference(op_type: str) -> Callable:
    return _REFERENCE[op_type]


def _fastest(op_type: str) -> Callable:
    """The registered kernel for the newest version of ``op_type``, else its reference op."""
    opdef = registry.lookup("", op_type, 1 << 30, kernels=True)
    return opdef.fn if opdef is not None else _REFERENCE[op_type]


def activate(y, activation: str, params, get: Callable = _reference):
    """Apply the activation named ``activation`` (an ONNX op name, "" for none) to ``y``."""
    p = list(params or [])
    if not activation:
        return y
    if activation in ("Relu", "Sigmoid", "Tanh", "HardSwish", "Gelu"):
        return get(activation)(y)
    if activation in ("LeakyRelu", "Elu"):
        return get(activation)(y, alpha=p[0])
    if activation == "HardSigmoid":
        return get(activation)(y, alpha=p[0], beta=p[1])
    if activation == "Clip":
        return get("Clip")(y, np.asarray(p[0], dtype=y.dtype), np.asarray(p[1], dtype=y.dtype))
    raise ValueError(f"fused activation {activation!r} is not one of {ACTIVATIONS}")


# ----------------------------------------------------------------------------- FusedConv


def _fused_conv(get, X, W, B, Z, activation, activation_params, conv_attrs):
    y = get("Conv")(X, W, B, **conv_attrs)  # [N, C, *in] -> [N, M, *out]
    if Z is not None:
        y = get("Add")(y, Z)
    return activate(y, activation, activation_params, get)


@op("FusedConv", since=1, domain=DOMAIN)
def FusedConv(X, W, B=None, Z=None, *, activation="", activation_params=None, auto_pad="NOTSET",
              dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Y = activation(Conv(X, W, B) + Z), Z optional — Conv: https://onnx.ai/onnx/operators/onnx__Conv.html"""
    conv_attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                      pads=pads, strides=strides)
    return _fused_conv(_reference, X, W, B, Z, activation, activation_params, conv_attrs)


@kernel("FusedConv", since=1, domain=DOMAIN)
def FusedConv_fast(X, W, B=None, Z=None, *, activation="", activation_params=None, auto_pad="NOTSET",
                   dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """FusedConv with the fastest registered Conv, Add and activation."""
    conv_attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                      pads=pads, strides=strides)
    return _fused_conv(_fastest, X, W, B, Z, activation, activation_params, conv_attrs)


# ----------------------------------------------------------------------------- FusedMatMul


def _fused_matmul(get, A, B, Z, activation, activation_params):
    y = get("MatMul")(A, B)  # [..., M, K] @ [..., K, N] -> [..., M, N]
    if Z is not None:
        y = get("Add")(y, Z)
    return activate(y, activation, activation_params, get)


@op("FusedMatMul", since=1, domain=DOMAIN)
def FusedMatMul(A, B, Z=None, *, activation="", activation_params=None):
    """Y = activation(MatMul(A, B) + Z), Z optional — MatMul: https://onnx.ai/onnx/operators/onnx__MatMul.html"""
    return _fused_matmul(_reference, A, B, Z, activation, activation_params)


@kernel("FusedMatMul", since=1, domain=DOMAIN)
def FusedMatMul_fast(A, B, Z=None, *, activation="", activation_params=None):
    """FusedMatMul with the fastest registered MatMul, Add and activation."""
    return _fused_matmul(_fastest, A, B, Z, activation, activation_params)


# ----------------------------------------------------------------------------- FusedGemm


def _fused_gemm(get, A, B, C, activation, activation_params, gemm_attrs):
    y = get("Gemm")(A, B, C, **gemm_attrs)  # [M, K] @ [K, N] + C -> [M, N]
    return activate(y, activation, activation_params, get)


@op("FusedGemm", since=1, domain=DOMAIN)
def FusedGemm(A, B, C=None, *, activation="", activation_params=None, alpha=1.0, beta=1.0, transA=0,
              transB=0):
    """Y = activation(alpha * A' @ B' + beta * C) — Gemm: https://onnx.ai/onnx/operators/onnx__Gemm.html"""
    gemm_attrs = dict(alpha=alpha, beta=beta, transA=transA, transB=transB)
    return _fused_gemm(_reference, A, B, C, activation, activation_params, gemm_attrs)


@kernel("FusedGemm", since=1, domain=DOMAIN)
def FusedGemm_fast(A, B, C=None, *, activation="", activation_params=None, alpha=1.0, beta=1.0, transA=0,
                   transB=0):
    """FusedGemm with the fastest registered Gemm and activation."""
    gemm_attrs = dict(alpha=alpha, beta=beta, transA=transA, transB=transB)
    return _fused_gemm(_fastest, A, B, C, activation, activation_params, gemm_attrs)
