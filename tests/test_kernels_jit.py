"""Every Numba build of a kernel loop has its own on-disk cache entry (see minirt/kernels/_jit.py)."""

import importlib
import pkgutil

import numba
import pytest

import minirt.kernels
from minirt.kernels._jit import renamed


def _dispatchers():
    for mod in pkgutil.iter_modules(minirt.kernels.__path__):
        module = importlib.import_module(f"minirt.kernels.{mod.name}")
        for value in vars(module).values():
            if hasattr(value, "py_func") and hasattr(value, "targetoptions"):
                yield value


def test_no_two_builds_share_a_cache_entry():
    """Numba names cache files by qualified name and line, not by options: two builds of one
    function with different options (parallel, nogil) would load each other's machine code."""
    seen = {}
    for d in _dispatchers():
        f = d.py_func
        key = (f.__module__, f.__qualname__, f.__code__.co_firstlineno)
        options = tuple(sorted(d.targetoptions.items()))
        assert seen.setdefault(key, options) == options, f"{key} compiled with {seen[key]} and {options}"
    assert seen, "no Numba kernels found"


def test_renamed_copy_runs_the_same_code():
    def axpy(a, x, y):
        return a * x + y

    copy = renamed(axpy, "serial")
    assert copy.__name__ == copy.__qualname__ == "axpy_serial"
    assert copy(2, 3, 4) == axpy(2, 3, 4) == 10
    if numba.config.DISABLE_JIT:
        pytest.skip("the JIT is off")
    assert numba.njit(copy)(2.0, 3.0, 4.0) == 10.0
