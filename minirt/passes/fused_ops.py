"""Fused ops made by :func:`minirt.passes.fuse_elementwise`, in minirt's private domain "minirt".

Each one is a product op followed by an optional Add and an optional activation::

    FusedConv(X, W, B, Z)    Y = activation(Conv(X, W, B) + Z)
    FusedMatMul(A, B, Z)     Y = activation(MatMul(A, B) + Z)
    FusedGemm(A, B, C)       Y = activation(Gemm(A, B, C))
    FusedBatchNormalization(X, scale, B, mean, var)    Y = Relu/Clip(BatchNormalization(...))

``Z`` is optional (a bias, or the skip branch of a residual block). ``activation`` names the
ONNX op applied last ("" for none) and ``activation_params`` holds its float attributes in the
order onnxruntime's fused ops use:

    Relu, Sigmoid, Tanh, HardSwish, Gelu (exact, erf): no parameters
    LeakyRelu, Elu: [alpha]          HardSigmoid: [alpha, beta]          Clip: [min, max]

The reference versions below are literally the unfused ops called one after the other, so a
fused graph computes what the original graph computed. The ``@kernel`` versions run the fastest
registered product op (a Numba/BLAS conv, a BLAS matmul), then apply the Add and the activation
**in place** on the product's output — a fresh array the op owns — so a Conv+Add+Relu makes one
array and one extra pass over it per step, instead of one new array per step (``y += Z``,
``np.maximum(y, 0, out=y)``). Activations without an in-place form run the fastest registered op.
FusedConv and FusedBatchNormalization with no activation, Relu or Clip (FusedConv also with
HardSigmoid or HardSwish) go further: the Add and the activation happen inside the op's own last
pass over its output (one Numba loop).

One more op of this domain is not a fusion but the same kind of "do less": ``minirt.MaxPool`` is
MaxPool computing Y alone, for the nodes that name no Indices output (nearly all): finding Y
tap by tap is several times faster than tracking which tap won (see :mod:`minirt.kernels.pool`).
And ``minirt.ChainConcat`` is Concat for the links of a chain of Concats, each extending the one
before (DenseNet): its kernel appends each link's new inputs to one shared buffer instead of
copying the whole chain again (see :mod:`minirt.passes.concat`).

Note: ``minirt.FusedMatMul`` is not ``com.microsoft.FusedMatMul`` (that one scales and transposes).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from minirt import registry
from minirt.kernels import concat as kconcat
from minirt.kernels import conv as kconv
from minirt.kernels import norm as knorm
from minirt.kernels.pool import max_pool_values, prepare_pool
from minirt.kernels.quant import prepared_step
from minirt.ops.activation import Elu, Gelu, HardSigmoid, HardSwish, LeakyRelu, Relu, Sigmoid, Tanh
from minirt.ops.conv import Conv
from minirt.ops.elementwise import Add, Clip
from minirt.ops.linalg import Gemm, MatMul
from minirt.ops.norm import BatchNormalization
from minirt.ops.pool import MaxPool as MaxPool_onnx
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


def _epilogue_in_place(y, Z, activation: str, params):
    """activation(y + Z) where ``y`` is a fresh array this op owns: in place where NumPy can."""
    if Z is not None:
        added = False
        if Z.dtype == y.dtype and y.flags.writeable:
            try:  # Z broadcasts into y: no new array (asking np.broadcast_shapes first costs ~2 us)
                np.add(y, Z, out=y)
                added = True
            except ValueError:  # Z is bigger than y in some axis: the result is a new, bigger array
                pass
        if not added:
            y = _fastest("Add")(y, Z)
    if activation == "Relu" and y.flags.writeable:
        np.maximum(y, y.dtype.type(0), out=y)  # NaN stays NaN, as np.maximum in the reference
        return y
    if activation == "Clip" and y.flags.writeable and y.dtype.kind == "f":
        lo, hi = params
        np.minimum(np.maximum(y, y.dtype.type(lo), out=y), y.dtype.type(hi), out=y)
        return y
    return activate(y, activation, params, _fastest)


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


def prepare_fused_conv(*, activation="", activation_params=None, **conv_attrs):
    """FusedConv's plan-time step: the activation is read once, and a float 2-D conv whose
    activation the conv's last pass can do runs the node's :class:`~minirt.kernels.conv.PreparedConv`
    (everything its shapes and weights decide kept from the first run); other calls run
    :func:`FusedConv_fast`."""
    @functools.wraps(FusedConv_fast)
    def general(X, W, B=None, Z=None):
        return FusedConv_fast(X, W, B, Z, activation=activation, activation_params=activation_params, **conv_attrs)

    if _fastest("Conv") is not kconv.Conv:
        return general
    hard = _HARD.get(activation)  # HardSigmoid / HardSwish: in the same pass (MobileNetV3's convs)
    if hard is not None:
        alpha, beta = (1 / 6, 0.5) if activation == "HardSwish" else activation_params
        prepared = kconv.PreparedConv(**conv_attrs, hard=hard, alpha=alpha, beta=beta)
    else:
        bounds = _clip_bounds(activation, activation_params)
        if bounds is None:
            return general
        prepared = kconv.PreparedConv(**conv_attrs, lo=bounds[0], hi=bounds[1])

    @functools.wraps(FusedConv_fast)  # named as the kernel, and inspect.unwrap(fused_conv) is FusedConv_fast
    def fused_conv(X, W, B=None, Z=None):
        y = prepared(X, W, B, Z)
        return general(X, W, B, Z) if y is None else y

    return fused_conv


@kernel("FusedConv", since=1, domain=DOMAIN, prepare=prepare_fused_conv)
def FusedConv_fast(X, W, B=None, Z=None, *, activation="", activation_params=None, auto_pad="NOTSET",
                   dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """FusedConv with the fastest registered Conv, then the Add and the activation in place; a
    float 2-D conv with no activation, Relu, Clip, HardSigmoid or HardSwish does the Add and the
    activation inside the conv's own last pass over its output (:func:`minirt.kernels.conv.fused_conv`)."""
    conv_attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                      pads=pads, strides=strides)
    conv = _fastest("Conv")
    bounds = _clip_bounds(activation, activation_params)
    hard = _HARD.get(activation)  # HardSigmoid / HardSwish: in the same pass (MobileNetV3's convs)
    if hard is not None and conv is kconv.Conv:
        alpha, beta = (1 / 6, 0.5) if activation == "HardSwish" else activation_params
        y = kconv.fused_conv(X, W, B, Z, None, None, **conv_attrs, hard=hard, alpha=alpha, beta=beta)
        if y is not None:
            return y
    if bounds is not None and conv is kconv.Conv:
        y = kconv.fused_conv(X, W, B, Z, *bounds, **conv_attrs)
        if y is not None:
            return y
    y = conv(X, W, B, **conv_attrs)  # [N, C, *in] -> [N, M, *out]
    return _epilogue_in_place(y, Z, activation, activation_params)


_HARD = {"HardSigmoid": 1, "HardSwish": 2}  # kconv._epilogue_loops' codes for them


def _clip_bounds(activation: str, params):
    """(lo, hi) when the activation is a clip (None: no bound): "", Relu, Clip; else None."""
    if not activation:
        return None, None
    if activation == "Relu":
        return 0.0, None
    if activation == "Clip":
        lo, hi = params
        return float(lo), float(hi)
    return None


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
    """FusedMatMul with the fastest registered MatMul, then the Add and the activation in place."""
    y = _fastest("MatMul")(A, B)  # [..., M, K] @ [..., K, N] -> [..., M, N]
    return _epilogue_in_place(y, Z, activation, activation_params)


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
    """FusedGemm with the fastest registered Gemm, then the activation in place."""
    y = _fastest("Gemm")(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)  # [M, N]
    return _epilogue_in_place(y, None, activation, activation_params)


# ----------------------------------------------------------------------------- FusedBatchNormalization


@op("FusedBatchNormalization", since=1, domain=DOMAIN)
def FusedBatchNormalization(X, scale, B, input_mean, input_var, *, epsilon=1e-5, activation="Relu",
                            activation_params=None):
    """Y = activation(BatchNormalization(X, scale, B, mean, var)), inference —
    https://onnx.ai/onnx/operators/onnx__BatchNormalization.html"""
    y = BatchNormalization(X, scale, B, input_mean, input_var, epsilon=epsilon)
    return activate(y, activation, activation_params)


def _batch_norm_clip_runner(X, scale, B, input_mean, input_var, *, epsilon=1e-5, activation="Relu",
                            activation_params=None):
    """FusedBatchNormalization's runner for one node (``prepared_step``): the kernel's case,
    :func:`minirt.kernels.norm.batch_norm_clip_runner`, worked out once (a pre-activation net's
    [1, 16, 32, 32] BN + Relu: the checks and lookups were half of its ~6 us)."""
    bounds = _clip_bounds(activation, activation_params)
    if bounds is None or not knorm._bn_fast(X, (scale, B, input_mean, input_var)):
        return None
    lo, hi = bounds
    return knorm.batch_norm_clip_runner(X.shape, X.dtype, scale, B, input_mean, input_var, epsilon,
                                        -np.inf if lo is None else lo, np.inf if hi is None else hi)


def prepare_fused_batch_norm(**attrs):
    """FusedBatchNormalization's plan-time step (``prepared_step``)."""
    return prepared_step(_batch_norm_clip_runner, FusedBatchNormalization_fast, attrs)


@kernel("FusedBatchNormalization", since=1, domain=DOMAIN, prepare=prepare_fused_batch_norm)
def FusedBatchNormalization_fast(X, scale, B, input_mean, input_var, *, epsilon=1e-5, activation="Relu",
                                 activation_params=None):
    """The normalization and the Relu/Clip in one Numba pass (:func:`minirt.kernels.norm.batch_norm_clip_runner`);
    other cases: the fastest BatchNormalization, then the activation in place."""
    run = _batch_norm_clip_runner(X, scale, B, input_mean, input_var, epsilon=epsilon,
                                  activation=activation, activation_params=activation_params)
    if run is not None:
        return run(X)
    y = _fastest("BatchNormalization")(X, scale, B, input_mean, input_var, epsilon=epsilon)
    return _epilogue_in_place(y, None, activation, activation_params)


# ----------------------------------------------------------------------------- MaxPool (Y only)


@op("MaxPool", since=1, domain=DOMAIN)
def MaxPool(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Y of ONNX MaxPool, without Indices — https://onnx.ai/onnx/operators/onnx__MaxPool.html"""
    return MaxPool_onnx(X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                        kernel_shape=kernel_shape, pads=pads, storage_order=storage_order, strides=strides)[0]


@kernel("MaxPool", since=1, domain=DOMAIN, prepare=lambda **attrs: prepare_pool(max_pool_values, **attrs))
def MaxPool_fast(X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
                 storage_order=0, strides=None):
    """Y of MaxPool, tap by tap (:func:`minirt.kernels.pool.max_pool_values`)."""
    return max_pool_values(X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                           kernel_shape=kernel_shape, pads=pads, storage_order=storage_order, strides=strides)


# ----------------------------------------------------------------------------- ChainConcat


@op("ChainConcat", since=1, domain=DOMAIN)
def ChainConcat(*inputs, axis, capacity=0):
    """Concat of one link of a chain (:func:`minirt.passes.concat.chain_concats`): the inputs
    joined along axis — https://onnx.ai/onnx/operators/onnx__Concat.html"""
    return np.concatenate(inputs, axis=axis)


@kernel("ChainConcat", since=1, domain=DOMAIN)
def ChainConcat_fast(*inputs, axis, capacity=0):
    """The same, appending to the chain's one buffer of ``capacity`` along axis
    (:func:`minirt.kernels.concat.chain_concat`): a link copies only its new inputs."""
    return kconcat.chain_concat(inputs, axis, capacity)
