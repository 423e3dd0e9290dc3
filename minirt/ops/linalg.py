"""Linear algebra: MatMul, Gemm, Einsum, Det, and the com.microsoft FusedMatMul.

MatMul and Gemm are plain ``np.matmul`` (BLAS does the work). float16 products are computed in
float32 and cast back, as accelerators accumulate half-precision products in float32.
"""

from __future__ import annotations

import numpy as np

from minirt.registry import op



def _wide(x):
    """float16 / bfloat16 -> float32 for accumulation; other dtypes unchanged."""
    if x.dtype.name in ("float16", "bfloat16"):
        return x.astype(np.float32)
    return x


def _matmul(A, B):
    """np.matmul that accumulates narrow floats in float32 and keeps A's dtype."""
    return np.asarray(np.matmul(_wide(A), _wide(B))).astype(A.dtype, copy=False)


@op("MatMul", since=1)
def MatMul(A, B):
    """Y = A @ B, numpy.matmul semantics (batched, 1-D operands promoted) —
    https://onnx.ai/onnx/operators/onnx__MatMul.html"""
    return _matmul(A, B)  # [..., M, K] @ [..., K, N] -> [..., M, N]


@op("Gemm", since=7)
def Gemm(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Y = alpha * A' @ B' + beta * C, A' = A.T if transA, C broadcast to [M, N] —
    https://onnx.ai/onnx/operators/onnx__Gemm.html"""
    a = A.T if transA else A  # [K, M] -> [M, K]
    b = B.T if transB else B  # [N, K] -> [K, N]
    y = np.matmul(_wide(a), _wide(b))  # [M, K] @ [K, N] -> [M, N]
    if alpha != 1.0:
        y = y * alpha
    if C is not None:
        c = _wide(C)
        y = y + (c * beta if beta != 1.0 else c)  # C broadcasts to [M, N]
    return np.asarray(y).astype(A.dtype, copy=False)


@op("Gemm", since=1)
def Gemm_1(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    """Gemm before opset 7: the same math; ``broadcast`` only allowed C to broadcast —
    https://onnx.ai/onnx/operators/onnx__Gemm.html"""
    return Gemm(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)


@op("Einsum", since=12)
def Einsum(*Inputs, equation):
    """Einstein summation, e.g. 'bij,bjk->bik' — https://onnx.ai/onnx/operators/onnx__Einsum.html"""
    out = np.einsum(equation, *[_wide(x) for x in Inputs])
    return np.asarray(out).astype(Inputs[0].dtype, copy=False)


@op("Det", since=11)
def Det(X):
    """Y = det(X) over the last two dims — https://onnx.ai/onnx/operators/onnx__Det.html"""
    out = np.linalg.det(_wide(X))  # [..., M, M] -> [...]
    return np.asarray(out).astype(X.dtype, copy=False)


@op("FusedMatMul", since=1, domain="com.microsoft")
def FusedMatMul(A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """Y = alpha * A' @ B', A' = A with its last two dims swapped if transA (onnxruntime contrib) —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.FusedMatMul"""
    if transBatchA or transBatchB:
        raise NotImplementedError("FusedMatMul: transBatchA/transBatchB are not supported by minirt")
    a = np.swapaxes(A, -1, -2) if transA else A  # [..., K, M] -> [..., M, K]
    b = np.swapaxes(B, -1, -2) if transB else B  # [..., N, K] -> [..., K, N]
    y = np.matmul(_wide(a), _wide(b))  # [..., M, K] @ [..., K, N] -> [..., M, N]
    if alpha != 1.0:
        y = y * alpha
    return np.asarray(y).astype(A.dtype, copy=False)
