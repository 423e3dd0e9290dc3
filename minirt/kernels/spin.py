"""A helper thread that shares the work without being woken for it: ``GemmHelper``.

Why: minirt shares a product between the two cores. OpenBLAS's own workers sleep ~0.1 ms after a
product, and Python helper threads sleep between jobs; in a model, where other ops run between
two products, each product first wakes a sleeping thread. Waking costs the kernel a wake-up and,
on a virtual machine whose idle CPU the host has halted, tens of microseconds more; a Python
helper then also waits for the GIL. onnxruntime's thread pool spins between ops for this reason.
Measured (``benchmarks/thread_handoff.py``: a product right after another and ~0.1 ms of other
work), µs, OpenBLAS's threads / one thread / this helper: 48x384x169 96 / 82 / 71, 64x512x169
123 / 138 / 95, 256x576x169 337 / 550 / 308.

How: one helper thread runs :func:`_helper_loop`, Numba code without the GIL. It spins on the
count of posts, ``ctrl[POSTED]``. To share out a product, the calling thread writes its parts as
**jobs** into a table (the sizes and addresses of ``out[i0:i1, j0:j1] = a[i0:i1] @ b[:, j0:j1]``:
two halves of a product, or one product each of a stack), posts them, and then takes jobs too.
Each job has a claim word: whoever turns it from ``-post`` to ``post`` first (an atomic
compare-and-swap) runs it, so each job runs once, the caller never waits for a job nobody started
(a helper asleep or descheduled simply takes none), and a helper still on an older post claims
nothing of a newer one. The caller returns when the post's count of finished jobs is complete.
Jobs call OpenBLAS's ``cblas_sgemm`` / ``cblas_dgemm`` through their address (NumPy's own
OpenBLAS, found with threadpoolctl and ctypes), single-threaded; a row vector times a matrix (a
fully connected layer at batch 1) calls ``cblas_sgemv`` / ``cblas_dgemv`` instead, half of the
matrix's columns each (sgemm would pack the whole matrix for its one row: ResNet-50's 2048 -> 1000
Gemm 1.0 ms as sgemm halves, 0.58 on one thread, 0.27 as gemv halves). A post of **Python pieces**
(:meth:`GemmHelper.run_pieces`: a conv's bands) sends the helper back to Python to take pieces
with the GIL. After ``SPIN_TURNS`` turns without a post (~0.3 ms) the helper sleeps on a
condition; a small product does not wake it (``gemm.HELPER_WAKE_MIN_FLOPS``, or
``HELPER_WAKE_MIN_BYTES`` of operands for a memory-bound matrix-vector product).

What makes the spin loop correct: every read of a counter is an atomic load (otherwise LLVM may
read it once and hoist it out of the loop); a post's jobs are written before the post is
counted, with a release store; on x86 each turn executes ``pause``.

On a busy machine spinning is the wrong trade (it takes a core another process waits for, and a
helper preempted mid-job stalls the caller: with two busy processes beside it, ResNet-50 174-181
ms against 112-178 without it, squeezenet 22-30 against 19-21): there, ``MINIRT_SPIN=0``.

Under ``NUMBA_DISABLE_JIT=1``, with ``MINIRT_SPIN=0``, without OpenBLAS, or where its cblas
functions are not found, there is no helper (``gemm_helper()`` returns None) and products run
as before: OpenBLAS's own threads, or pieces on Python helper threads.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

POSTED, FINISHED, N_JOBS, KIND = 0, 1, 2, 3  # ctrl: the posts so far, and the last post's jobs done, jobs, kind
GEMM, PYTHON = 0, 1  # kinds of post: products (the job table) or Python pieces
MAX_JOBS = 32  # jobs a post at most (a stack of more products is cut in pieces instead)
JOB_FIELDS = 14  # int64 fields of a job (see _run_job)
SPIN_TURNS = 12_000  # turns of the spin loop (~25 ns each here: ~0.3 ms) before the helper sleeps ...
WAIT_TURNS = 40_000  # ... and before the caller, waiting for the helper's part, yields its core
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
PIN_BLAS = os.environ.get("MINIRT_PIN_BLAS", "1") != "0"  # 0: neither the helper nor OpenBLAS's workers pinned


# ----------------------------------------------------------------------------- atomics, by hand

def _flag_pointer(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def _load_acquire(typingctx, flags, i):
    """flags[i], an atomic load (acquire): re-read on every turn of a loop."""

    def codegen(context, builder, signature, args):
        ptr = _flag_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return flags.dtype(flags, i), codegen


@intrinsic
def _store_release(typingctx, flags, i, value):
    """flags[i] = value, an atomic store (release): what was written before is seen first."""

    def codegen(context, builder, signature, args):
        ptr = _flag_pointer(context, builder, signature.args[0], args[0], args[1])
        val = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, i, value), codegen


@intrinsic
def _compare_swap(typingctx, flags, i, expected, new):
    """Atomically: if flags[i] == expected, set it to new and return True; else False."""

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        ptr = _flag_pointer(context, builder, signature.args[0], args[0], args[1])
        old = context.cast(builder, args[2], signature.args[2], dtype)
        val = context.cast(builder, args[3], signature.args[3], dtype)
        pair = builder.cmpxchg(ptr, old, val, "acq_rel", "acquire")
        return builder.extract_value(pair, 1)

    return types.boolean(flags, i, expected, new), codegen


@intrinsic
def _fetch_add(typingctx, flags, i, value):
    """Atomically flags[i] += value."""

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        ptr = _flag_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.atomic_rmw("add", ptr, context.cast(builder, args[2], signature.args[2], dtype), "acq_rel")
        return context.get_dummy_value()

    return types.void(flags, i, value), codegen


@intrinsic
def _cpu_relax(typingctx):
    """``pause`` on x86: tells the core this is a spin loop. Nothing elsewhere."""

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _call_gemv(typingctx, fn, order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy):
    """cblas_?gemv(order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy) at address ``fn``
    (argument types as for :func:`_call_gemm`)."""
    sig = types.void(fn, order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in signature.args[1:]])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_gemm(typingctx, fn, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) at address ``fn``.
    The C types follow the arguments' types: int32 flags, int64 (ILP64) or int32 sizes, float32
    or float64 scalars, addresses as int64 (passed like pointers on x86-64 and arm64)."""
    sig = types.void(fn, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in signature.args[1:]])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])
        return context.get_dummy_value()

    return sig, codegen


# ----------------------------------------------------------------------------- the loops

def _spin_while_equal(flags, i, value, turns):
    """Read flags[i] until it differs from ``value`` (return it) or ``turns`` turns have passed
    (return ``value``)."""
    for _ in range(turns):
        now = _load_acquire(flags, i)
        if now != value:
            return now
        _cpu_relax()
    return value


ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's CblasRowMajor, CblasNoTrans, CblasTrans
PRODUCT, MATRIX_VECTOR = 0, 1  # field 12 of a job: what it calls


# a product's job: [gemm address, float64?, m, n, k, a address, lda, b address, ldb, c address, ldc,
#                   LP64?, PRODUCT, -]
# a matrix-vector job: [gemv address, float64?, rows, columns, -, matrix address, ld, x address,
#                       incx, y address, incy, LP64?, MATRIX_VECTOR, the matrix transposed?]
# (an LP64 OpenBLAS takes 32-bit sizes, an ILP64 one — NumPy 2's — 64-bit ones)
def _run_job(job):
    """A product's job: C = A @ B for row-major A [m, k] and B [k, n] with the leading dimensions
    of the job. A matrix-vector job: y = A x (or A^T x) for the row-major matrix A [rows, columns]."""
    if job[12] == MATRIX_VECTOR:
        _run_matrix_vector(job)
    elif job[11]:
        if job[1]:
            _call_gemm(job[0], np.int32(ROW_MAJOR), np.int32(NO_TRANS), np.int32(NO_TRANS), np.int32(job[2]), np.int32(job[3]),
                       np.int32(job[4]), 1.0, job[5], np.int32(job[6]), job[7], np.int32(job[8]), 0.0, job[9],
                       np.int32(job[10]))
        else:
            _call_gemm(job[0], np.int32(ROW_MAJOR), np.int32(NO_TRANS), np.int32(NO_TRANS), np.int32(job[2]), np.int32(job[3]),
                       np.int32(job[4]), np.float32(1.0), job[5], np.int32(job[6]), job[7], np.int32(job[8]),
                       np.float32(0.0), job[9], np.int32(job[10]))
    elif job[1]:
        _call_gemm(job[0], np.int32(ROW_MAJOR), np.int32(NO_TRANS), np.int32(NO_TRANS), job[2], job[3], job[4], 1.0, job[5],
                   job[6], job[7], job[8], 0.0, job[9], job[10])
    else:
        _call_gemm(job[0], np.int32(ROW_MAJOR), np.int32(NO_TRANS), np.int32(NO_TRANS), job[2], job[3], job[4], np.float32(1.0),
                   job[5], job[6], job[7], job[8], np.float32(0.0), job[9], job[10])


def _run_matrix_vector(job):
    """cblas_?gemv for a matrix-vector job (see above)."""
    trans = np.int32(TRANS if job[13] else NO_TRANS)
    if job[11]:
        if job[1]:
            _call_gemv(job[0], np.int32(ROW_MAJOR), trans, np.int32(job[2]), np.int32(job[3]), 1.0, job[5],
                       np.int32(job[6]), job[7], np.int32(job[8]), 0.0, job[9], np.int32(job[10]))
        else:
            _call_gemv(job[0], np.int32(ROW_MAJOR), trans, np.int32(job[2]), np.int32(job[3]), np.float32(1.0), job[5],
                       np.int32(job[6]), job[7], np.int32(job[8]), np.float32(0.0), job[9], np.int32(job[10]))
    elif job[1]:
        _call_gemv(job[0], np.int32(ROW_MAJOR), trans, job[2], job[3], 1.0, job[5], job[6], job[7], job[8], 0.0, job[9],
                   job[10])
    else:
        _call_gemv(job[0], np.int32(ROW_MAJOR), trans, job[2], job[3], np.float32(1.0), job[5], job[6], job[7], job[8],
                   np.float32(0.0), job[9], job[10])


def _take_jobs(ctrl, claims, jobs, posted):
    """Run every job of post ``posted`` that this thread claims first (a compare-and-swap on its
    claim word, -posted -> posted: a thread still on an older post claims nothing)."""
    for j in range(_load_acquire(ctrl, N_JOBS)):
        if _compare_swap(claims, j, -posted, posted):
            _run_job(jobs[j])
            _fetch_add(ctrl, FINISHED, 1)


def _helper_loop(ctrl, claims, jobs, seen, turns):
    """The helper: take jobs of every post after ``seen``. Returns (the last post seen, what now):
    0 when ``turns`` turns passed without a post, 1 for a post of Python pieces (the caller runs
    them, with the GIL), -1 to stop."""
    while True:
        posted = _spin_while_equal(ctrl, POSTED, seen, turns)
        if posted < 0:
            return seen, -1
        if posted == seen:
            return seen, 0
        seen = posted
        if _load_acquire(ctrl, KIND) == PYTHON:
            return seen, 1
        _take_jobs(ctrl, claims, jobs, posted)


def _post(ctrl, claims, n, kind, posted):
    """Make post ``posted`` of ``n`` jobs (their fields written already) visible to the helper."""
    for j in range(n):
        claims[j] = -posted
    ctrl[N_JOBS] = n
    ctrl[KIND] = kind
    _store_release(ctrl, FINISHED, 0)
    _store_release(ctrl, POSTED, posted)


def _fill(jobs, j, gemm, lp64, a, b, out, i0, i1, j0, j1):
    """Job j: out[i0:i1, j0:j1] = a[i0:i1] @ b[:, j0:j1], for 2-D a, b, out whose rows are runs of
    contiguous elements (False, and no job, otherwise)."""
    f = a.itemsize
    if a.strides[1] != f or b.strides[1] != f or out.strides[1] != f or a.shape[1] == 0:
        return False  # (k = 0: OpenBLAS would refuse the leading dimensions, and leave C as it is)
    lda, ldb, ldc = a.strides[0] // f, b.strides[0] // f, out.strides[0] // f
    job = jobs[j]
    job[0], job[1], job[2], job[3], job[4] = gemm, f == 8, i1 - i0, j1 - j0, a.shape[1]
    job[5], job[6] = a.ctypes.data + i0 * lda * f, lda
    job[7], job[8] = b.ctypes.data + j0 * f, ldb
    job[9], job[10], job[11], job[12] = out.ctypes.data + (i0 * ldc + j0) * f, ldc, lp64, PRODUCT
    return True


def _fill_matrix_vector(jobs, j, gemv, lp64, a, b, out, j0, j1):
    """Job j: out[0, j0:j1] = a[0] @ b[:, j0:j1] for a [1, k] (a row vector), as cblas_?gemv:
    y = b[:, j0:j1]^T x when b's rows are runs of contiguous elements, or W[j0:j1] x when b is a
    transposed view of W [n, k] whose rows are (Gemm's transB). False, and no job, otherwise."""
    f = a.itemsize
    k = a.shape[1]
    if k == 0 or (out.strides[1] != f and j1 - j0 > 1):
        return False
    incx = a.strides[1] // f if k > 1 else 1
    if incx <= 0 or (k > 1 and incx * f != a.strides[1]):
        return False
    job = jobs[j]
    if b.strides[1] == f and b.strides[0] >= b.shape[1] * f:  # b [k, n] row by row: y = b^T x
        job[2], job[3], job[5], job[6], job[13] = k, j1 - j0, b.ctypes.data + j0 * f, b.strides[0] // f, 1
    elif b.strides[0] == f and b.strides[1] >= k * f:  # b = W^T, W [n, k] row by row: y = W x
        job[2], job[3], job[5], job[6], job[13] = j1 - j0, k, b.ctypes.data + j0 * b.strides[1], b.strides[1] // f, 0
    else:
        return False
    job[0], job[1], job[4] = gemv, f == 8, 0
    job[7], job[8], job[9], job[10] = a.ctypes.data, incx, out.ctypes.data + j0 * f, 1
    job[11], job[12] = lp64, MATRIX_VECTOR
    return True


def _post_halves(ctrl, claims, jobs, gemm, gemv, lp64, a, b, out, by_columns, posted):
    """Post out = a @ b (2-D) as two jobs, halves of the columns (or of the rows); a row vector a
    as two matrix-vector jobs (cblas_?gemm would pack all of b for one row); False if the arrays
    do not suit cblas (nothing posted)."""
    M, N = out.shape
    if M == 1 and by_columns:
        ok = (_fill_matrix_vector(jobs, 0, gemv, lp64, a, b, out, 0, N // 2)
              and _fill_matrix_vector(jobs, 1, gemv, lp64, a, b, out, N // 2, N))
    elif by_columns:
        ok = _fill(jobs, 0, gemm, lp64, a, b, out, 0, M, 0, N // 2) and _fill(jobs, 1, gemm, lp64, a, b, out, 0, M, N // 2, N)
    else:
        ok = _fill(jobs, 0, gemm, lp64, a, b, out, 0, M // 2, 0, N) and _fill(jobs, 1, gemm, lp64, a, b, out, M // 2, M, 0, N)
    if ok:
        _post(ctrl, claims, 2, GEMM, posted)
    return ok


def _post_stack(ctrl, claims, jobs, gemm, lp64, a, b, out, posted):
    """Post out[g] = a[g % A] @ b[g % B] for each g (3-D arrays; A, B: 1 or G) as one job each;
    False if the arrays do not suit cblas (nothing posted)."""
    for g in range(out.shape[0]):
        if not _fill(jobs, g, gemm, lp64, a[g % a.shape[0]], b[g % b.shape[0]], out[g], 0, out.shape[1], 0, out.shape[2]):
            return False
    _post(ctrl, claims, out.shape[0], GEMM, posted)
    return True


def _finish(ctrl, claims, jobs, posted, turns):
    """The caller: take what is left of post ``posted``, then wait for the helper's jobs. False if
    the helper still runs one after ``turns`` turns (call again)."""
    _take_jobs(ctrl, claims, jobs, posted)
    n = ctrl[N_JOBS]
    for _ in range(turns):
        if _load_acquire(ctrl, FINISHED) >= n:
            return True
        _cpu_relax()
    return False


# wrapped once, in the order they call each other (plain Python again under NUMBA_DISABLE_JIT=1)
_jit = numba.njit(nogil=True, cache=True)
spin_while_equal = _spin_while_equal = _jit(_spin_while_equal)
_run_matrix_vector = _jit(_run_matrix_vector)
_run_job = _jit(_run_job)
_take_jobs = _jit(_take_jobs)
_fill = _jit(_fill)
_fill_matrix_vector = _jit(_fill_matrix_vector)
post = _post = _jit(_post)
helper_loop = _jit(_helper_loop)
post_halves = _jit(_post_halves)
post_stack = _jit(_post_stack)
finish = _jit(_finish)


# ----------------------------------------------------------------------------- the helper

def _gemm_addresses(blas):
    """(sgemm, dgemm, sgemv, dgemv addresses, LP64?) of the OpenBLAS that threadpoolctl found,
    or None."""
    try:
        lib = ctypes.CDLL(blas.filepath)
    except (OSError, AttributeError, TypeError):
        return None
    for prefix, suffix, lp64 in (("scipy_", "64_", False), ("", "64_", False), ("scipy_", "", True), ("", "", True)):
        found = [getattr(lib, f"{prefix}cblas_{name}{suffix}", None) for name in ("sgemm", "dgemm", "sgemv", "dgemv")]
        if all(fn is not None for fn in found):
            return (*(ctypes.cast(fn, ctypes.c_void_p).value for fn in found), lp64)
    return None


def _pin_to_the_other_cpu() -> None:
    """Pin the calling (helper) thread to the second CPU this process may use, as
    ``gemm.pin_blas_workers`` pins OpenBLAS's workers, and for the same reason: woken after a
    pause, an unpinned thread was queued on the CPU of the thread that woke it (the caller, unpinned,
    is moved off instead). ``MINIRT_PIN_BLAS=0`` leaves it alone."""
    if not PIN_BLAS or not hasattr(os, "sched_setaffinity"):
        return
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(threading.get_native_id(), {cpus[1]})
    except OSError:
        pass


class Pieces:
    """Work items taken from a shared counter by whoever is running (after an error, no more are
    taken); ``wait()`` returns when every piece taken is finished and none is left. It waits by
    spinning on the count of finished pieces without the GIL (the spinning helper's pieces), or
    with ``spin=False`` on a condition (``gemm.run_pieces``' sleeping threads)."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.next = 0
        self.finished = np.zeros(1, np.int64)
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def work(self) -> None:
        while True:
            with self.cond:
                if self.next >= len(self.pieces) or self.error is not None:
                    return
                i = self.next
                self.next += 1
            try:
                self.pieces[i]()
            except BaseException as e:  # noqa: BLE001  (re-raised by the caller in wait())
                self.error = e
            with self.cond:
                self.finished[0] += 1
                self.cond.notify_all()

    def wait(self, spin: bool = True) -> None:
        """(Called after ``work()``, which returns only when no piece is left to take.)"""
        if spin and CAN_SPIN:
            while (done := int(self.finished[0])) < self.next:
                if spin_while_equal(self.finished, 0, done, WAIT_TURNS) == done:
                    time.sleep(0)  # the helper has a piece but lost its core: let it run
        else:
            with self.cond:
                while self.finished[0] < self.next:
                    self.cond.wait()
        if self.error is not None:
            raise self.error


class GemmHelper:
    """One helper thread that shares 2-D float products and Python pieces with the calling thread
    (see the module doc)."""

    def __init__(self, sgemm: int, dgemm: int, sgemv: int, dgemv: int, lp64: bool):
        self.gemm = {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}
        self.gemv = {np.dtype(np.float32): sgemv, np.dtype(np.float64): dgemv}
        self.lp64 = int(lp64)
        self.ctrl = np.zeros(4, np.int64)  # [posted, finished, jobs, kind]
        self.claims = np.zeros(MAX_JOBS, np.int64)
        self.jobs = np.zeros((MAX_JOBS, JOB_FIELDS), np.int64)
        self.posted = 0
        self.pieces: Pieces | None = None  # the Python pieces posted last
        self.cond = threading.Condition()
        self.sleeping = False
        self.lock = threading.Lock()  # one post at a time (sessions in several threads)
        self.thread = threading.Thread(target=self._run, name="minirt-gemm-helper", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _pin_to_the_other_cpu()
        seen = 0
        while True:
            seen, what = helper_loop(self.ctrl, self.claims, self.jobs, seen, SPIN_TURNS)
            if what < 0:
                return
            if what == 1:
                pieces = self.pieces
                if pieces is not None:
                    pieces.work()
                continue
            with self.cond:
                self.sleeping = True  # (before the check: a poster that sees it notifies)
                while int(self.ctrl[POSTED]) == seen:
                    self.cond.wait()
                self.sleeping = False

    def _wake(self) -> None:
        """Notify the helper if it sleeps (it checks for a post under the same condition)."""
        if self.sleeping:
            with self.cond:
                self.cond.notify()

    def _submit(self, post_jobs, *args) -> bool:
        """Post jobs with ``post_jobs(ctrl, claims, jobs, *args, posted)`` and run them with the
        helper; False (nothing posted) where ``post_jobs`` refused the arrays."""
        with self.lock:
            posted = self.posted + 1
            if not post_jobs(self.ctrl, self.claims, self.jobs, *args, posted):
                return False
            self.posted = posted
            self._wake()
            while not finish(self.ctrl, self.claims, self.jobs, posted, WAIT_TURNS):
                time.sleep(0)  # the helper runs a job but lost its core: let it run
        return True

    def product(self, a, b, out, by_columns: bool, wake: bool = True) -> bool:
        """out = a @ b (2-D, one float dtype), half here and half on the helper; False (nothing
        done) where an operand's rows are not runs of contiguous elements, or the helper sleeps
        and ``wake`` is False (a small product: waking it would cost more than it saves)."""
        if self.sleeping and not wake:
            return False
        return self._submit(post_halves, self.gemm[a.dtype], self.gemv[a.dtype], self.lp64, a, b, out, by_columns)

    def stack(self, a, b, out, wake: bool = True) -> bool:
        """out[g] = a[g] @ b[g] (3-D; a or b may have one matrix for all), a product each, shared
        out; False (nothing done) where the arrays do not suit cblas, there are too many, or the
        helper sleeps and ``wake`` is False."""
        if out.shape[0] > MAX_JOBS or (self.sleeping and not wake):
            return False
        return self._submit(post_stack, self.gemm[a.dtype], self.lp64, a, b, out)

    def run_pieces(self, pieces) -> None:
        """Call every function of ``pieces``: this thread and the helper take them in turn from a
        shared counter (``Pieces``); returns when all are done."""
        job = Pieces(pieces)
        with self.lock:
            self.pieces = job
            self.posted += 1
            post(self.ctrl, self.claims, 0, PYTHON, self.posted)
            self._wake()
        job.work()
        job.wait()

    def stop(self) -> None:
        with self.cond:
            self.ctrl[POSTED] = -1
            self.cond.notify()
        self.thread.join()


CAN_SPIN = not numba.config.DISABLE_JIT and os.environ.get("MINIRT_SPIN", "1") != "0"
_helper: GemmHelper | None = None
_looked = False
_lock = threading.Lock()


def gemm_helper(blas) -> GemmHelper | None:
    """The process's GemmHelper (started on first use), or None where there can be none."""
    global _helper, _looked
    if _looked:
        return _helper
    with _lock:
        if not _looked:
            found = _gemm_addresses(blas) if CAN_SPIN and blas else None
            _helper = GemmHelper(*found) if found else None
            _looked = True
    return _helper


def _forget_helper() -> None:
    """In a forked child the helper thread does not exist: start another on first use."""
    global _helper, _looked, _lock
    _helper, _looked, _lock = None, False, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)
