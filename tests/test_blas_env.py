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
