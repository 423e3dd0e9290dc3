"""Small helpers shared by the op families."""

from __future__ import annotations

import numpy as np

from minirt.dtypes import np_dtype  # noqa: F401  (re-exported for ops)


def normalize_axis(axis: int, rank: int) -> int:
    """Turn a possibly negative axis into 0..rank-1."""
    return axis + rank if axis < 0 else axis


def as_ints(x) -> list[int]:
    """An int64 tensor input (axes, shape, pads ...) as a Python list of ints."""
    flat = np.asarray(x).reshape(-1)
    if flat.dtype.kind in "iu":
        return flat.tolist()  # the same Python ints, 0.2 us instead of 1.1 for 2 values
    return [int(v) for v in flat]
