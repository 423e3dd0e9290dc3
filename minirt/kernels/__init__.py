"""Fast versions of ops: Numba loop kernels and BLAS-backed paths, registered with ``@kernel``.

Each kernel module keeps the plain-Python loop function (``_conv_loops`` ...) that a student can
read and run without the JIT (``NUMBA_DISABLE_JIT=1``), wrapped once by ``numba.njit``.
Importing this package registers every kernel.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
