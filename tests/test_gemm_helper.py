"""The spinning GEMM helper (minirt/kernels/spin.py) and matmul's use of it (kernels/gemm.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minirt  # noqa: F401
from minirt.kernels import gemm as kgemm
from minirt.kernels import spin

SETTINGS = settings(deadline=None, max_examples=25)


def _helper():
    blas = kgemm._openblas()
    helper = spin.gemm_helper(blas) if blas else None
    if helper is None or blas.get_num_threads() != 2:
        pytest.skip("needs NumPy's OpenBLAS (its cblas functions) and 2 BLAS threads")
    return helper


_NO_MINIMUM = ("OPENBLAS_SERIAL_FLOPS", "HELPER_MIN_FLOPS", "HELPER_WAKE_MIN_FLOPS", "MIN_PIECE")


@contextlib.contextmanager
def _every_product_on_the_helper():
    """matmul hands every product to the helper, however small, and wakes it for each."""
    _helper()
    old = [getattr(kgemm, name) for name in _NO_MINIMUM]
    for name in _NO_MINIMUM:
        setattr(kgemm, name, 0)
    try:
        yield
    finally:
        for name, value in zip(_NO_MINIMUM, old):
            setattr(kgemm, name, value)


@pytest.fixture
def every_product_on_the_helper():
    with _every_product_on_the_helper():
        yield


@SETTINGS
@given(st.integers(1, 70), st.integers(1, 40), st.integers(1, 70), st.sampled_from([(), (1,), (3,)]),
       st.sampled_from(["a", "b", "both"]), st.booleans(), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_products_on_the_helper_match_numpy(M, K, N, batch, stacked, transposed, with_out, dtype, seed):
    """2-D products, batches of one, stacks (one operand shared, or both stacked), b a transposed
    view (rows not contiguous: NumPy's matmul in pieces), with and without out."""
    rng = np.random.default_rng(seed)
    a_shape = batch + (M, K) if stacked in ("a", "both") else (M, K)
    b_shape = batch + (K, N) if stacked in ("b", "both") else (K, N)
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal(b_shape).astype(dtype)
    if transposed:
        b = np.ascontiguousarray(np.swapaxes(b, -1, -2)).swapaxes(-1, -2)  # same values, column-major rows
    want = np.matmul(a, b)
    out = np.full(want.shape, np.nan, dtype) if with_out else None
    with _every_product_on_the_helper():
        got = kgemm.matmul(a, b, out)
    assert got.dtype == dtype and got.shape == want.shape and (out is None or got is out)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 * np.sqrt(K) if dtype == np.float32 else 1e-12)


def test_the_caller_claims_the_jobs_nobody_took():
    """A post whose helper never comes (here: no helper thread at all, only the arrays) is run
    whole by the caller's finish(): each job is claimed by exactly one thread, and the caller never
    waits for a job that nobody started."""
    helper = _helper()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 30)).astype(np.float32), rng.standard_normal((30, 50)).astype(np.float32)
    out = np.full((40, 50), np.nan, np.float32)
    ctrl, claims, jobs = np.zeros(4, np.int64), np.zeros(spin.MAX_JOBS, np.int64), np.zeros((spin.MAX_JOBS, spin.JOB_FIELDS), np.int64)
    assert spin.post_halves(ctrl, claims, jobs, helper.gemm[a.dtype], helper.gemv[a.dtype], helper.lp64, a, b, out, True, 7)
    assert ctrl[spin.POSTED] == 7 and list(claims[:2]) == [-7, -7]  # posted, unclaimed
    assert spin.finish(ctrl, claims, jobs, 7, 10)
    assert list(claims[:2]) == [7, 7] and ctrl[spin.FINISHED] == 2
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    # a thread still on an older post claims nothing of a newer one
    assert spin.post_halves(ctrl, claims, jobs, helper.gemm[a.dtype], helper.gemv[a.dtype], helper.lp64, a, b, out, False, 8)
    spin._take_jobs(ctrl, claims, jobs, 7)
    assert list(claims[:2]) == [-8, -8] and ctrl[spin.FINISHED] == 0
    assert spin.finish(ctrl, claims, jobs, 8, 10)


def test_operands_cblas_cannot_take_post_nothing():
    helper = _helper()
    a = np.ones((8, 6), np.float32)
    b = np.ones((12, 8), np.float32)[::2]  # rows 2 apart: fine (a leading dimension)
    b_cols = np.ones((6, 16), np.float32)[:, ::2]  # elements 2 apart: not for cblas
    out = np.empty((8, 8), np.float32)
    ctrl, claims, jobs = np.zeros(4, np.int64), np.zeros(spin.MAX_JOBS, np.int64), np.zeros((spin.MAX_JOBS, spin.JOB_FIELDS), np.int64)
    assert spin.post_halves(ctrl, claims, jobs, helper.gemm[a.dtype], helper.gemv[a.dtype], 0, a, b, out, True, 1)
    assert spin.finish(ctrl, claims, jobs, 1, 10)
    np.testing.assert_allclose(out, a @ b)
    assert not spin.post_halves(ctrl, claims, jobs, helper.gemm[a.dtype], helper.gemv[a.dtype], 0, a, b_cols, out, True, 2)
    assert ctrl[spin.POSTED] == 1  # nothing posted


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "transposed"])
@pytest.mark.parametrize("x_step", [1, 3])
def test_a_row_vector_runs_as_two_matrix_vector_jobs(dtype, layout, x_step):
    """x [1, K] @ b [K, N] (a fully connected layer at batch 1) is posted as two cblas_?gemv
    jobs, halves of the columns: b's rows contiguous (y = b^T x), or b a transposed view of W
    [N, K] whose rows are (Gemm's transB: y = W x); x with elements ``x_step`` apart."""
    helper = _helper()
    rng = np.random.default_rng(3)
    K, N = 300, 130
    x = rng.standard_normal((1, K * x_step)).astype(dtype)[:, ::x_step]
    b = rng.standard_normal((K, N)).astype(dtype)
    if layout == "transposed":
        b = np.ascontiguousarray(b.T).T  # same values, W [N, K] row by row
    out = np.full((1, N), np.nan, dtype)
    ctrl, claims, jobs = np.zeros(4, np.int64), np.zeros(spin.MAX_JOBS, np.int64), np.zeros((spin.MAX_JOBS, spin.JOB_FIELDS), np.int64)
    assert spin.post_halves(ctrl, claims, jobs, helper.gemm[b.dtype], helper.gemv[b.dtype], helper.lp64, x, b, out, True, 1)
    assert list(jobs[:2, 12]) == [spin.MATRIX_VECTOR] * 2
    assert spin.finish(ctrl, claims, jobs, 1, 10)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, x @ b, rtol=tol, atol=tol * np.sqrt(K))
    # and through matmul, as Gemm(transB=1) calls it
    got = kgemm.matmul(x, b)
    np.testing.assert_allclose(got, x @ b, rtol=tol, atol=tol * np.sqrt(K))


def test_pieces_on_the_helper_run_once_each_and_raise_errors():
    helper = _helper()
    ran = []
    lock = threading.Lock()

    def piece(i):
        with lock:
            ran.append(i)

    kgemm.run_pieces([lambda i=i: piece(i) for i in range(9)], 2)
    assert sorted(ran) == list(range(9))
    with pytest.raises(ZeroDivisionError):
        helper.run_pieces([lambda: None, lambda: 1 / 0, lambda: None])
    kgemm.run_pieces([lambda: piece(100), lambda: piece(101)], 2)  # still works after an error
    assert sorted(ran)[-2:] == [100, 101]


def test_products_from_two_threads_at_once(every_product_on_the_helper):
    """Two sessions' threads share the one helper: each post waits for the one before."""
    rng = np.random.default_rng(1)
    pairs = [(rng.standard_normal((64, 48)).astype(np.float32), rng.standard_normal((48, 96)).astype(np.float32))
             for _ in range(2)]
    errors = []

    def loop(a, b):
        want = a @ b
        for _ in range(300):
            if not np.allclose(kgemm.matmul(a, b), want, rtol=1e-5, atol=1e-4):
                errors.append(1)

    threads = [threading.Thread(target=loop, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_blas_threads_restored_and_a_small_product_does_not_wake_the_helper(monkeypatch):
    helper = _helper()
    blas = kgemm._openblas()
    a, b = np.ones((64, 64), np.float32), np.ones((64, 512), np.float32)  # 4.2 MFLOP
    assert kgemm.HELPER_MIN_FLOPS <= 2 * 64 * 64 * 512 < kgemm.HELPER_WAKE_MIN_FLOPS
    monkeypatch.setattr(helper, "sleeping", True)  # (as if: it went to sleep)
    before = helper.posted
    np.testing.assert_array_equal(kgemm.matmul(a, b), a @ b)
    assert helper.posted == before and blas.get_num_threads() == 2  # run here alone


def test_no_helper_without_jit_or_when_switched_off():
    """MINIRT_SPIN=0 (and NUMBA_DISABLE_JIT=1) run products as before, on OpenBLAS's threads."""
    code = ("import minirt, numpy as np\nfrom minirt.kernels import gemm, spin\n"
            "a = np.ones((64, 256), np.float32)\nassert (gemm.matmul(a, a.T) == 256).all()\n"
            "print(spin.gemm_helper(gemm._openblas()))")
    for env in ({"MINIRT_SPIN": "0"}, {"NUMBA_DISABLE_JIT": "1"}):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr[-2000:]


def test_a_forked_child_starts_its_own_helper():
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    code = ("import os, minirt, numpy as np\nfrom minirt.kernels import gemm, spin\n"
            "h = spin.gemm_helper(gemm._openblas())\nif h is None:\n    print('skip'); raise SystemExit\n"
            "a = np.ones((256, 256), np.float32)\ngemm.matmul(a, a)\npid = os.fork()\nif pid == 0:\n"
            "    ok = (gemm.matmul(a, a) == 256).all() and spin._helper is not h and spin._helper.thread.is_alive()\n"
            "    os._exit(0 if ok else 3)\n_, status = os.waitpid(pid, 0)\n"
            "print('ok' if os.waitstatus_to_exitcode(status) == 0 else 'child failed')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.stdout.strip() == "skip":
        pytest.skip("no spinning helper in the child: NumPy's BLAS is not an OpenBLAS with cblas_?gemm/?gemv, "
                    "or MINIRT_SPIN=0 / NUMBA_DISABLE_JIT=1 is set")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
