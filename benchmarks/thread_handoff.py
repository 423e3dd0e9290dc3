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
2. **products** — single-precision products of the sizes small models have, each right after
   another product and ~0.1 ms of other work: ``matmul`` with the spinning helper, without it
   (one thread below 5 MFLOP, OpenBLAS's own threads above), and on one thread.
3. **openmp** — Numba's OpenMP pool: the cost of a ``prange`` call back to back and after idle
   gaps, and the CPU time the process burns in the 5 ms after one call (its worker spins).

Medians of interleaved rounds; the machine is shared, so compare columns, not runs.
"""

from __future__ import annotations

import argparse
import time

import minirt  # noqa: F401  (first: sets OpenBLAS's short spin before NumPy loads it)
import numba
import numpy as np

from minirt.kernels import gemm, spin

# ----------------------------------------------------------------------------- the parts

@numba.njit(nogil=True)
def work(x, n):
    """Arithmetic on x, n passes (no GIL): the pieces, and the other work between two calls."""
    s = 0.0
    for _ in range(n):
        for i in range(x.shape[0]):
            s += x[i] * 1.0001
    return s


def median_us(times):
    return float(np.median(times)) * 1e6


def part_handoff(rounds):
    x = np.ones(1000)
    work(x, 1)
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
                    work(x, gap)
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
    blas = gemm._openblas()
    if not blas or blas.get_num_threads() != 2 or spin.gemm_helper(blas) is None:
        print("2. products: skipped (needs NumPy's OpenBLAS, 2 threads and the spinning helper)")
        return
    rng = np.random.default_rng(0)
    x = np.ones(1000)
    print("2. a product after another and ~0.1 ms of other work, as in a model (us, medians): matmul with the")
    print("   spinning helper (now), without it (before: OpenBLAS's own threads from 5 MFLOP), one thread")
    print(f"{'M x K x N':>16} {'MFLOP':>6} {'before':>8} {'1 thread':>9} {'now':>8} {'now/before':>11}")
    for M, K, N in ((192, 48, 169), (64, 16, 3025), (48, 384, 169), (16, 128, 3025), (32, 256, 729),
                    (64, 512, 169), (64, 144, 3135), (256, 576, 169), (1000, 512, 169)):
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        out = np.empty((M, N), np.float32)

        def before():
            gemm.USE_HELPER = False
            try:
                gemm.matmul(a, b, out=out)
            finally:
                gemm.USE_HELPER = True

        def one():
            blas.set_num_threads(1)
            np.matmul(a, b, out=out)
            blas.set_num_threads(2)

        ways = {"before": before, "one": one, "now": lambda: gemm.matmul(a, b, out=out)}
        times = {k: [] for k in ways}
        for _ in range(rounds):
            for k, fn in ways.items():
                fn()  # the product before (the threads awake, as in a model) ...
                work(x, 100)  # ... then other work ...
                t0 = time.perf_counter(); fn(); times[k].append(time.perf_counter() - t0)  # ... then this one
                time.sleep(0.001)  # (each way's threads asleep before the next way's turn)
        assert np.allclose(out, a @ b, rtol=1e-4, atol=1e-3)
        t = {k: median_us(v) for k, v in times.items()}
        print(f"{f'{M}x{K}x{N}':>16} {2 * M * K * N / 1e6:6.1f} {t['before']:8.1f} {t['one']:9.1f} {t['now']:8.1f} "
              f"{t['now'] / t['before']:11.2f}")


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
          "(a worker that spins after the call shows here)")


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
