"""MatMul and Gemm: BLAS (``np.matmul`` through :func:`minirt.kernels.gemm.matmul`) is the fast path; ``_matmul_blocked`` is the lesson.

The fast versions differ from the reference ops only in avoiding needless work: no float16
round trip for float32/float64, Gemm scales and adds C *in place* on the BLAS output instead of
allocating a new array per term.

``_matmul_blocked`` is the teaching kernel: the triple loop of C = A @ B reordered into tiles so
that a tile of A, B and C stays in cache while it is reused (parallel over row tiles). It is
tested against ``np.matmul`` and is *not* registered: a hand-written loop does not beat BLAS.
"""

from __future__ import annotations

import numba
import numpy as np

from minirt.kernels.gemm import matmul
from minirt.ops.linalg import Gemm as Gemm_reference
from minirt.ops.linalg import MatMul as MatMul_reference
from minirt.registry import kernel

_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _matmul_blocked(a, b, c, tile):
    """c[M, N] = a[M, K] @ b[K, N], tile by tile (c is written).

    for each tile of rows i0, of reduction k0, of columns j0:  c[i, j] += a[i, k] * b[k, j]
    The innermost loop runs along a row of b and c: contiguous, so it vectorizes.
    """
    M, K = a.shape
    N = b.shape[1]
    n_row_tiles = (M + tile - 1) // tile
    for t in numba.prange(n_row_tiles):  # row tiles are independent: one per thread
        i0 = t * tile
        i1 = min(i0 + tile, M)
        for i in range(i0, i1):
            for j in range(N):
                c[i, j] = 0
        for k0 in range(0, K, tile):
            k1 = min(k0 + tile, K)
            for j0 in range(0, N, tile):
                j1 = min(j0 + tile, N)
                for i in range(i0, i1):
                    for k in range(k0, k1):
                        aik = a[i, k]
                        for j in range(j0, j1):
                            c[i, j] += aik * b[k, j]


matmul_blocked_loops = numba.njit(parallel=True, cache=True)(_matmul_blocked)


def matmul_blocked(a, b, tile=64):
    """a [M, K] @ b [K, N] with the blocked loop kernel (the teaching kernel)."""
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    matmul_blocked_loops(np.ascontiguousarray(a), np.ascontiguousarray(b), c, tile)
    return c


@kernel("MatMul", since=1)
def MatMul(A, B):
    """Fast MatMul: one ``np.matmul`` (BLAS) for float32/float64; otherwise the reference."""
    if A.dtype in _BLAS_DTYPES and B.dtype == A.dtype:
        if A.ndim >= 2 and B.ndim >= 2:
            return matmul(A, B)  # [..., M, K] @ [..., K, N] -> [..., M, N] (kernels/gemm.py)
        return np.asarray(np.matmul(A, B))  # a 1-D operand: a vector product
    return MatMul_reference(A, B)


@kernel("Gemm", since=7)
def Gemm(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Fast Gemm: BLAS reads the transposed operands as they are (no copies); alpha and C are
    applied in place on the product. Other dtypes run the reference."""
    if A.dtype not in _BLAS_DTYPES or B.dtype != A.dtype or (C is not None and C.dtype != A.dtype):
        return Gemm_reference(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)
    a = A.T if transA else A  # [K, M] -> [M, K] (a view: BLAS takes the transposed layout)
    b = B.T if transB else B  # [N, K] -> [K, N]
    y = matmul(a, b)  # [M, K] @ [K, N] -> [M, N] (kernels/gemm.py)
    if alpha != 1.0:
        y *= A.dtype.type(alpha)
    if C is not None:
        try:  # in place, C broadcast to [M, N]; asking np.broadcast_shapes first cost 1.6 us
            if beta == 1.0:
                y += C
            else:
                y += C * A.dtype.type(beta)
        except ValueError:  # C does not broadcast to [M, N] (y is left as it was): the reference says what
            return Gemm_reference(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)
    return y


@kernel("Gemm", since=1)
def Gemm_1(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    """Gemm before opset 7: the same math."""
    return Gemm(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)
