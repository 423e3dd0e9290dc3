"""Fast versions of ops: Numba loop kernels and BLAS-backed paths, registered with ``@kernel``.

Each kernel module keeps the plain-Python loop function (``_conv_loops`` ...) that a student can
read and run without the JIT (``NUMBA_DISABLE_JIT=1``), wrapped once by ``numba.njit``.
Importing this package registers every kernel.
"""

import importlib
import os
import pkgutil

# Numba's OpenMP thread pool (its default threading layer here) spins after each parallel loop,
# stealing the cores from the OpenBLAS threads of the matmul that usually follows (2x-10x slower
# convs on a busy machine): let idle threads sleep. Process-wide, so it is set once here, before
# any kernel module imports Numba, and only when the user has not chosen a policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
