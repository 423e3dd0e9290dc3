"""``renamed(fn, variant)``: a copy of a loop function under a name of its own, for a second
``numba.njit`` of it with other options.

Why: Numba's on-disk cache (``cache=True``) names its files after the function's qualified name
and line, and keys the entries inside by signature and CPU only — **not** by the options. Two
compilations of one function, ``njit(parallel=True)`` and ``njit()`` (or ``nogil=True``), share
one cache entry: whichever ran first on this machine is what both load ever after. We found our
"serial" LayerNormalization for tiny inputs running the parallel build (50-75 us a call for a
[16, 32] input instead of ~2: a thread-pool wake-up each time), and the "nogil" depthwise conv
holding the GIL. A renamed copy has its own cache files, so each variant loads its own build.
"""

from __future__ import annotations

import types


def renamed(fn: types.FunctionType, variant: str) -> types.FunctionType:
    """The same code as ``fn``, named ``{fn.__name__}_{variant}`` (its own Numba cache entry)."""
    name = f"{fn.__name__}_{variant}"
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    copy = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__doc__ = fn.__doc__
    copy.__qualname__ = name
    return copy
