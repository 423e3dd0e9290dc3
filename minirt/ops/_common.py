"""Small helpers shared by the op families."""

from __future__ import annotations

import numpy as np

from minirt.dtypes import np_dtype  # noqa: F401  (re-exported for ops)


def normalize_axis(axis: int, rank: int) -> int:
    """Turn a possibly negative axis into 0..rank-1."""
    return axis + rank if axis < 0 else axis


def as_ints(x) -> list[int]:
    """An int64 tensor input (axes, shape, pads ...) as a Python list of ints."""
    return [int(v) for v in np.asarray(x).reshape(-1)]
