"""What it costs to hand work to a second thread, three ways — the numbers behind "the threads"
in docs/performance.md (stop 16).

    python benchmarks/thread_handoff.py              # all three parts (~1 min)
    python benchmarks/thread_handoff.py --part products

Before stop 16 minirt shared work between the two cores through three thread pools: OpenBLAS's
own workers (a big product), Numba's OpenMP pool (a ``prange`` loop), and Python helper threads
(``minirt.kernels.gemm.run_pieces``: conv bands, products cut in pieces), each sleeping soon
after its job. onnxruntime has one pool whose threads spin between ops; minirt now has one
helper that spins (``minirt/kernels/spin.py``). This script measures, in one process:

1. **handoff** — two pieces of the same work (a Numba ``nogil`` loop) on the calling thread one
   after the other, against ``run_pieces`` on two threads: on minirt's spinning helper
   (:mod:`minirt.kernels.spin`), and on Python threads that sleep between jobs (the pool
   without it); each call after some serial work, as in a model.
2. **products** — single-precision products of the sizes small models have, each after ~0.1 ms
   of serial work: ``matmul`` without the spinning helper (one thread below 5 MFLOP, OpenBLAS's
   own threads above), one thread, and a minimal spinning helper written out here (a Numba loop
   that watches a flag and calls OpenBLAS's ``cblas_sgemm`` itself, through ctypes, on the other
   half of the columns; it spins ~0.3 ms after each job) — the experiment that led to
   ``minirt/kernels/spin.py``; and ``matmul`` as it is now (with that helper).
3. **openmp** — Numba's OpenMP pool: the cost of a ``prange`` call back to back and after idle
   gaps, and the CPU time the process burns in the 5 ms after one call (its worker spins).

Medians of interleaved rounds; the machine is shared, so compare columns, not runs.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import threading
import time

import minirt  # noqa: F401  (first: sets OpenBLAS's short spin before NumPy loads it)
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from minirt.kernels import gemm

# ----------------------------------------------------------------------------- spinning helpers

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


@intrinsic
def _load_acquire(typingctx, flags, i):
    """flags[i] as an atomic load (acquire): re-read on every turn of a loop, never hoisted."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", context.get_abi_alignment(ptr.type.pointee))

    return flags.dtype(flags, i), codegen


@intrinsic
def _cpu_relax(typingctx):
    """``pause`` on x86 (this is a spin loop); nothing elsewhere."""

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(nogil=True)
def spin_while_equal(flags, i, value, spins):
    """Read flags[i] until it differs from ``value`` (return it) or ``spins`` turns have passed."""
    for _ in range(spins):
        now = _load_acquire(flags, i)
        if now != value:
            return now
        _cpu_relax()
    return value


def find_sgemm():
    """OpenBLAS's cblas_sgemm as a ctypes function (NumPy's own copy), or None."""
    blas = gemm._openblas()
    if not blas:
        return None
    lib = ctypes.CDLL(blas.filepath)
    for name, int_type in (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
                           ("scipy_cblas_sgemm", ctypes.c_int), ("cblas_sgemm", ctypes.c_int)):
        fn = getattr(lib, name, None)
        if fn is not None:
            e, n, p, f = ctypes.c_int, int_type, ctypes.c_void_p, ctypes.c_float
            fn.argtypes = [e, e, e, n, n, n, f, p, n, p, n, f, p, n]
            fn.restype = None
            return fn
    return None


SGEMM = find_sgemm()
ROW_MAJOR, NO_TRANS = 101, 111


def make_helper_loop(sgemm):
    @numba.njit(nogil=True)
    def helper_loop(ctrl, job, seen, spins):
        """Spin on ctrl[0] (jobs posted); run each new job — C = A @ B for the row-major float32
        matrices whose sizes and addresses ``job`` holds — then set ctrl[1] (jobs done). Returns
        the last job seen after ``spins`` idle turns, -1 to stop."""
        while True:
            posted = spin_while_equal(ctrl, 0, seen, spins)
            if posted == seen or posted < 0:
                return posted
            sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, job[0], job[1], job[2], np.float32(1.0), job[3], job[4],
                  job[5], job[6], np.float32(0.0), job[7], job[8])
            seen = posted
            ctrl[1] = posted

    return helper_loop


class SpinningHelper:
    """One helper thread that takes the second half of each product's columns, without the GIL."""

    SPINS = 12_000  # ~0.3 ms of turns before it sleeps

    def __init__(self, sgemm):
        self.sgemm, self.loop = sgemm, make_helper_loop(sgemm)
        self.ctrl = np.zeros(2, np.int64)  # [jobs posted, jobs done]
        self.job = np.zeros(9, np.int64)
        self.cond = threading.Condition()
        self.sleeping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        seen = 0
        while seen >= 0:
            seen = self.loop(self.ctrl, self.job, seen, self.SPINS)
            with self.cond:  # (the poster checks `sleeping` under the same lock: no lost wake-up)
                while seen >= 0 and int(self.ctrl[0]) == seen:
                    self.sleeping = True
                    self.cond.wait()
                self.sleeping = False

    def matmul(self, a, b, out):
        M, K = a.shape
        N = b.shape[1]
        h = N // 2
        f = a.itemsize
        self.job[:] = (M, N - h, K, a.ctypes.data, K, b.ctypes.data + f * h, N, out.ctypes.data + f * h, N)
        posted = int(self.ctrl[0]) + 1
        self.ctrl[0] = posted
        if self.sleeping:
            with self.cond:
                self.cond.notify()
        self.sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, h, K, 1.0, a.ctypes.data, K, b.ctypes.data, N,
                   0.0, out.ctypes.data, N)  # the first half here
        while spin_while_equal(self.ctrl, 1, posted - 1, self.SPINS) == posted - 1:
            time.sleep(0)  # the helper lost its core: let it finish
        return out

    def stop(self):
        with self.cond:
            self.ctrl[0] = -1
            self.cond.notify()
        self.thread.join()


# ----------------------------------------------------------------------------- the parts

@numba.njit(nogil=True)
def work(x, n):
    """~n microseconds-ish of arithmetic on x (no GIL)."""
    s = 0.0
    for _ in range(n):
        for i in range(x.shape[0]):
            s += x[i] * 1.0001
    return s


@numba.njit
def serial(x, n):
    """Serial work between two measured calls, as other ops run between two products."""
    s = 0.0
    for _ in range(n):
        for i in range(x.shape[0]):
            s += x[i] * 0.9999
    return s


def median_us(times):
    return float(np.median(times)) * 1e6


def part_handoff(rounds):
    x = np.ones(1000)
    work(x, 1), serial(x, 1)
    print("1. two pieces of work: on the calling thread, then run_pieces on 2 threads — on the spinning")
    print("   helper (Python pieces: it takes the GIL for them), and on Python helper threads that sleep")
    print("   between jobs (MINIRT_SPIN=0's pool); us, medians")
    print(f"{'gap':>5} {'piece':>6} {'serial':>8} {'helper':>8} {'sleeping':>9}")
    for gap in (0, 50, 250):
        for n in (10, 50):
            def piece():
                work(x, n)

            times = {"serial": [], "helper": [], "sleeping": []}
            for _ in range(rounds):
                for way in times:
                    serial(x, gap)
                    gemm.USE_HELPER = way == "helper"
                    t0 = time.perf_counter()
                    if way == "serial":
                        piece(), piece()
                    else:
                        gemm.run_pieces([piece, piece], 2)
                    times[way].append(time.perf_counter() - t0)
            gemm.USE_HELPER = True
            t = {k: median_us(v) for k, v in times.items()}
            print(f"{gap:5d} {n:6d} {t['serial']:8.1f} {t['helper']:8.1f} {t['sleeping']:9.1f}")


def part_products(rounds):
    if SGEMM is None:
        print("2. products: skipped (no OpenBLAS cblas_sgemm found in NumPy's BLAS)")
        return
    blas = gemm._openblas()
    helper = SpinningHelper(SGEMM)
    rng = np.random.default_rng(0)
    x = np.ones(1000)
    print("2. products after ~0.1 ms of serial work (us, medians; before = matmul without the spinning helper,")
    print("   spinning = the minimal helper written out here, now = matmul with minirt's helper)")
    print(f"{'M x K x N':>16} {'MFLOP':>6} {'before':>8} {'1 thread':>9} {'spinning':>9} {'now':>8} {'now/before':>11}")
    try:
        for M, K, N in ((192, 48, 169), (64, 16, 3025), (48, 384, 169), (16, 128, 3025), (32, 256, 729),
                        (64, 512, 169), (64, 144, 3135), (256, 576, 169), (1000, 512, 169)):
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            out = np.empty((M, N), np.float32)
            threads = blas.get_num_threads()

            def one():
                blas.set_num_threads(1)
                np.matmul(a, b, out=out)
                blas.set_num_threads(threads)

            def spinning():
                blas.set_num_threads(1)
                helper.matmul(a, b, out)
                blas.set_num_threads(threads)

            spinning()
            assert np.allclose(out, a @ b, rtol=1e-4, atol=1e-3)
            def before():
                gemm.USE_HELPER = False
                try:
                    gemm.matmul(a, b, out=out)
                finally:
                    gemm.USE_HELPER = True

            ways = {"minirt": before, "one": one, "spin": spinning, "now": lambda: gemm.matmul(a, b, out=out)}
            times = {k: [] for k in ways}
            for r in range(rounds):
                for k, fn in ways.items():
                    fn()  # the product before (the helpers are warm, as in a model) ...
                    serial(x, 100)  # ... then other work ...
                    t0 = time.perf_counter(); fn(); times[k].append(time.perf_counter() - t0)  # ... then this one
                    time.sleep(0.001)  # (each helper asleep before the next way's turn)
            t = {k: median_us(v) for k, v in times.items()}
            print(f"{f'{M}x{K}x{N}':>16} {2 * M * K * N / 1e6:6.1f} {t['minirt']:8.1f} {t['one']:9.1f} "
                  f"{t['spin']:9.1f} {t['now']:8.1f} {t['now'] / t['minirt']:11.2f}")
    finally:
        helper.stop()


@numba.njit(parallel=True)
def _prange_add(a):
    for i in numba.prange(a.shape[0]):
        a[i] += 1


def part_openmp(rounds):
    a = np.zeros(2)
    _prange_add(a)
    print(f"3. Numba's pool ({numba.threading_layer()}, {numba.get_num_threads()} threads): a prange call (us, medians)")
    for gap in (0.0, 1e-3, 1e-2):
        t = []
        for _ in range(rounds):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter(); _prange_add(a); t.append(time.perf_counter() - t0)
        print(f"   after {gap * 1e3:4.0f} ms idle: {median_us(t):7.1f}")
    cpu = []
    for _ in range(5):
        _prange_add(a)
        c0 = time.process_time(); time.sleep(0.005); cpu.append(time.process_time() - c0)
    print(f"   CPU time of the process in the 5 ms after a call: {np.median(cpu) * 1e3:.2f} ms "
          "(its worker spinning; OMP_WAIT_POLICY=passive: ~0)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("handoff", "products", "openmp"), help="one part only")
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args(argv)
    for name, fn in (("handoff", part_handoff), ("products", part_products), ("openmp", part_openmp)):
        if args.part in (None, name):
            fn(args.rounds)
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
