"""minirt asks OpenBLAS not to spin ~0.1 s after each product (see minirt/__init__.py)."""

import os
import subprocess
import sys

_SHOW = "import minirt, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"


def _run(env):
    out = subprocess.run([sys.executable, "-c", _SHOW], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_import_sets_a_short_blas_spin_and_a_users_value_wins():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _run(env) == "18"
    assert _run(dict(env, OPENBLAS_THREAD_TIMEOUT="28")) == "28"


_NUMPY_FIRST = ("import numpy as np; import minirt; from minirt.kernels.gemm import _openblas; "
                "a = np.arange(40000, dtype=np.float32).reshape(200, 200) % 7; "
                "assert np.array_equal(a @ a, (a.astype(np.float64) @ a).astype(np.float32)); "
                "blas = _openblas(); print(blas.dynlib.openblas_thread_timeout() if blas else 'none')")


def _run_numpy_first(env):
    out = subprocess.run([sys.executable, "-c", _NUMPY_FIRST], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_numpy_imported_first_rereads_the_spin():
    """The usual order in a script, NumPy then minirt: OpenBLAS (loaded with NumPy, before minirt
    set the variable) is asked to read it again, and its workers restart with it; products stay
    right. A user's own value, read at load, is left as it is."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    got = _run_numpy_first(env)
    if got == "none":  # NumPy without OpenBLAS: nothing to ask
        return
    assert got == "18"
    assert _run_numpy_first(dict(env, OPENBLAS_THREAD_TIMEOUT="28")) == "28"
