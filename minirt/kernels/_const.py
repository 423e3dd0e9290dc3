"""``immutable(a)``: whether an array can never change, so that what a kernel derives from it
(prepared int8 weights, Winograd-transformed filters) may be kept from run to run."""

from __future__ import annotations

import numpy as np


def immutable(a) -> bool:
    """True when ``a`` can never change: it and every array it views are read-only."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    # the last base is not an ndarray (bytes, mmap of a file: minirt never writes it), or ``a``
    # is None, a NumPy scalar or a Python number: immutable
    return True
