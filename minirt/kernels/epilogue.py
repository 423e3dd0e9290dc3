"""``activate``: one output's activation, shared by every loop that ends a conv in its own pass
(the conv paths' epilogues in :mod:`minirt.kernels.conv`, the Winograd output transform in
:mod:`minirt.kernels.winograd`). Inlined into them by Numba."""

from __future__ import annotations

import numba


def _activate(v, lo, hi, hard, alpha, beta):
    """One output's activation: min(max(v, lo), hi); ``hard`` 1: HardSigmoid, min(max(alpha*v +
    beta, lo), hi) with lo = 0, hi = 1; ``hard`` 2: HardSwish, v times that."""
    h = v * alpha + beta if hard else v
    if h < lo:
        h = lo
    if h > hi:
        h = hi
    return v * h if hard == 2 else h


activate = numba.njit(cache=True, inline="always")(_activate)
