"""``matmul(a, b, out)``: float32/float64 BLAS on every core, robust to a busy machine;
``run_pieces``: the same sharing of work, for any independent pieces that release the GIL.

The kernels' big products (a conv's weights @ columns, Gemm, MatMul) go through here instead of
calling ``np.matmul`` with OpenBLAS's own threads. Why: OpenBLAS splits a product evenly between
its threads and the calling thread waits for *all* of them. On a machine that others share, a
worker thread is often not running when the work arrives; the caller then waits a whole
scheduler time slice (5-20 ms) for a product that takes 0.05 ms — we measured 24 ms instead of
0.06 ms for a 32x288x256 conv at a load average of 9 on 2 cores, and ResNet-50 4x slower than
onnxruntime (whose thread pool lets the caller do the work nobody picked up). So:

- **with two threads** (the usual case here), a product from ``HELPER_MIN_FLOPS`` is shared with
  the **spinning helper** of :mod:`minirt.kernels.spin` (``_with_helper``): two halves, or one
  product each of a stack, as jobs the caller and the helper claim; ``run_pieces`` runs its pieces
  on the same helper (a row vector times a matrix: two cblas gemv halves). OpenBLAS's own threads
  are then never used (they would wake onto the core the helper spins on), and a product below
  ``HELPER_WAKE_MIN_FLOPS`` (and ``HELPER_WAKE_MIN_BYTES`` of operands) does not wake a sleeping
  helper. A product right after another and ~0.1 ms of other work, µs, OpenBLAS's threads / one
  thread / helper (``benchmarks/thread_handoff.py``): 16x128x3025 149 / 188 / 123, 64x512x169
  123 / 138 / 95, 256x576x169 337 / 550 / 308. Everything below is the policy without the helper
  (more than two threads, ``MINIRT_SPIN=0``, no cblas functions found, ``NUMBA_DISABLE_JIT=1``):

- a tiny product (< ``OPENBLAS_SERIAL_FLOPS``, which OpenBLAS never threads) is a plain
  ``np.matmul``: no thread-count calls (they cost ~2 us each, a third of a tiny Gemm); so is a
  stack of tiny products (NumPy calls BLAS once per product of a batch) unless the whole stack
  is big enough for the pieces below (``PIECES_MIN_FLOPS``);
- a small product (< ``SPLIT_MIN_FLOPS``, 5 MFLOP: ~55 us on one core) runs on the calling
  thread alone (one BLAS thread): waking a helper would cost more than it saves. OpenBLAS's
  workers sleep ~0.1 ms after a product (``import minirt`` sets that short spin), so in a
  model, where other ops run between the products, each threaded product first wakes a
  sleeping worker (30-50 us here). Measured on chargpt at batch 1 (its products 2-4 MFLOP, a
  LayerNorm or a Softmax between them): 1.22 ms with threads from 2 MFLOP, 1.14 from 5;
  the conv models within +/-2% (same-process A/B, round-robin medians);
- a matrix-vector-like product (fewer than ``MIN_OTHER`` rows or columns: a fully connected
  layer at batch 1), whatever its size, keeps OpenBLAS's own threads — it is memory-bound, and
  OpenBLAS's gemv path would round the columns of different pieces differently;
- anything bigger (from ``OWN_MIN_FLOPS`` = ``SPLIT_MIN_FLOPS``) runs on **OpenBLAS's own
  threads while they get the cores**: each such call reads the wall clock and the calling
  thread's CPU clock before and after (~1 us each). OpenBLAS's caller computes its share, then
  spins until the helper threads are done, so on cores of its own it is on the CPU the whole
  call; if it got less than ``HEALTHY_CPU`` of the wall time, it was descheduled or yielded to
  another process (others share the machine). A big call (from ``SLOW_CHECK_FLOPS``) more than
  ``SLOW_FACTOR`` x slower than the fastest of its shape counts as starved too: with one other
  busy process, the caller keeps its core (spinning) while OpenBLAS's helper shares the other
  one. Either counts only while more threads than ours are runnable (``others_running``: a
  virtual machine whose host pauses it now and then slows a call without any other process),
  and a starved call counts only when another one came less than ``STRIKE_S`` before it (under
  contention a fifth of the calls starve; alone, one in a few hundred, ~1 a second). After such
  a call the next ``_backoff`` seconds run products without OpenBLAS's
  threads (1 s, doubling to 16 s while it goes on, halved by each good call): below
  ``PIECES_MIN_FLOPS`` on the calling thread alone, above it in the pieces below. Measured on
  2 cores, a 64x576x3136 product: the CPU/wall ratio is >= 0.88 in every call on a quiet
  machine; with one or two busy processes beside it, 20-30% of the calls fall below 0.8, and
  those take 28-40 ms instead of 1.3. On a quiet machine OpenBLAS's own split beats the pieces
  at every size (2x on 4.7 MFLOP — a helper thread costs ~50 us to hand work to — 1.0-1.5x
  from 50 MFLOP: it packs the shared matrix once); on a busy one a starved call costs at most
  one time slice, then the fallback;
- otherwise it is cut into ``CHUNKS_PER_THREAD`` x threads pieces along its widest output axis
  (columns, or rows when there are few columns); each piece is one single-threaded BLAS call.
  The calling thread and the helper threads take pieces from a shared counter until none is
  left — a helper that is not running simply takes fewer (or none): the caller never waits for
  work nobody started, only for pieces already being computed.

The thread count is OpenBLAS's (so ``InferenceSession(threads=N)``, which caps it with
threadpoolctl, still applies). Other BLAS libraries than OpenBLAS keep plain ``np.matmul``.

Before the first product on OpenBLAS's own threads, ``pin_blas_workers`` pins each of its worker
threads to a CPU of its own: a product after a pause otherwise waited ~12 ms for its worker
(a run of resnet_mini after 0.1 s idle: 47 ms instead of 2).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minirt.kernels.spin import PIN_BLAS, Pieces, gemm_helper

OPENBLAS_SERIAL_FLOPS = 2 * 4 * 65536  # OpenBLAS itself runs products below this on one thread
SPLIT_MIN_FLOPS = 5e6  # below: one thread (a 64x576x3136 conv is 231e6)
CHUNKS_PER_THREAD = 1  # one piece each (an idle helper's piece is taken by the caller); more
#                        pieces cost 10-30% on a quiet machine (each re-packs the weights)
MIN_PIECE = 32  # columns (or rows) per piece at least: BLAS is slow on thin slices
MIN_OTHER = 16  # rows (or columns) the pieces must keep: fewer is a matrix-vector product
USE_HELPER = True  # run_pieces on the spinning helper when there are two threads
HELPER_MIN_FLOPS = 1e6  # on two threads, 2-D products from here run half on the spinning helper ...
HELPER_WAKE_MIN_FLOPS = SPLIT_MIN_FLOPS  # ... but only from here if it sleeps (waking it costs ~50 us),
HELPER_WAKE_MIN_BYTES = 1 << 20  # or from this many bytes of operands: a matrix-vector product (a fully connected
#                                  layer at batch 1) is memory-bound (ResNet-50's 2048 -> 1000: 4 MFLOP, 8 MB)
_HELPER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
OWN_MIN_FLOPS = SPLIT_MIN_FLOPS  # OpenBLAS's own threads from here, unless they were starved
#                     lately: on a quiet machine they beat the pieces at every size (measured
#                     2x on 4.7 MFLOP, 1.0-1.05x from 50 MFLOP), and a starved call is detected
PIECES_MIN_FLOPS = 2e7  # backed off from OpenBLAS's threads, smaller products run on one thread:
#                     handing pieces to a helper thread costs ~50 us (measured at load 1.6 on a
#                     16x144x1088 product: one thread p50 71 us, pieces 114, own threads 44 but
#                     a mean of 935 from the calls that waited for a descheduled thread)
SLOW_CHECK_FLOPS = 5e7  # only products this big compare their time to the fastest of their shape:
#                     a small one is often 1.6x slower for reasons that are not other processes
HEALTHY_CPU = 0.8  # the calling thread's CPU time / wall time of an own-threaded call, at least
SLOW_FACTOR = 1.6  # ... and its wall time at most this times the fastest seen for that shape
BACKOFF_S = (1.0, 16.0)  # pieces for this long after a starved call, doubling up to the second
STRIKE_S = 1.0  # ... a starved call that follows another one within this many seconds: one alone
#                 is the machine pausing as often as contention (a kernel thread, the VM's host)

_own_after = 0.0  # perf_counter time before which the pieces run instead of OpenBLAS's threads
_last_starved = -1e9  # perf_counter time of the last starved call
_fastest: dict = {}  # (a.shape, b.shape) -> the fastest own-threaded wall time seen, seconds
_backoff = BACKOFF_S[0]

_blas = None  # the OpenBLAS threadpoolctl controller, found on first use (False: not OpenBLAS)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _openblas():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            found = ThreadpoolController().select(internal_api="openblas").lib_controllers
            if len(found) > 1:  # e.g. SciPy's beside NumPy's: the one NumPy loaded
                found = [c for c in found if "numpy" in os.path.basename(os.path.dirname(c.filepath))]
            _blas = found[0] if len(found) == 1 else False
        except Exception:  # noqa: BLE001  (no threadpoolctl / an odd setup: plain np.matmul)
            _blas = False
    return _blas


def reread_blas_timeout() -> bool:
    """Make NumPy's already loaded OpenBLAS take ``OPENBLAS_THREAD_TIMEOUT`` from the environment
    now; True if it did.

    OpenBLAS reads its environment once, when it loads — with NumPy. A script that imports NumPy
    before minirt (the usual order) loads it before ``import minirt`` sets the short spin, and its
    workers then spin ~0.1 s after every product on its threads, taking a core from minirt's own
    threads (conv bands, Numba loops): measured, VGG-19 25-30% and DenseNet-121 30-60% slower than
    with minirt imported first. OpenBLAS exports what it does itself around a fork: it reads its
    environment again (``openblas_read_env``), and stops its workers
    (``blas_thread_shutdown_``), which it starts again, with the timeout just read, at the next
    product on its threads. Called once, by ``import minirt``, when NumPy came first and the user
    set no timeout; a build without these symbols (or another BLAS) is left as it is."""
    blas = _openblas()
    lib = getattr(blas, "dynlib", None) if blas else None
    try:
        read_env, shutdown, timeout = lib.openblas_read_env, lib.blas_thread_shutdown_, lib.openblas_thread_timeout
    except AttributeError:  # no such symbols (or no OpenBLAS at all)
        return False
    read_env()
    shutdown()
    return timeout() == int(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "0"))


def _helpers(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(n, thread_name_prefix="minirt-gemm")
        return _pool


def run_pieces(pieces, threads: int) -> None:
    """Call every function of ``pieces`` (independent work), on up to ``threads`` threads: the
    calling thread and helpers take them from a shared counter; returns when all are done.
    The pieces must release the GIL to overlap (BLAS calls, ``numba.njit(nogil=True)`` loops)."""
    if threads <= 1 or len(pieces) <= 1:
        for piece in pieces:
            piece()
        return
    if threads == 2 and USE_HELPER:
        helper = gemm_helper(_openblas())
        if helper is not None:  # the spinning helper (kernels/spin.py)
            helper.run_pieces(pieces)
            return
    job = Pieces(pieces)
    pool = _helpers(threads - 1)
    for _ in range(min(threads, len(pieces)) - 1):
        pool.submit(job.work)
    job.work()  # the calling thread works too, and takes what the helpers have not
    job.wait(spin=False)


def blas_threads() -> int:
    """The threads BLAS may use now (``InferenceSession(threads=N)`` caps it); 1 if not OpenBLAS."""
    blas = _openblas()
    return blas.get_num_threads() if blas else 1


def run_blas_pieces(pieces) -> None:
    """``run_pieces`` on every BLAS thread, each piece's BLAS calls single-threaded: for work cut
    into independent pieces that each copy and multiply (a conv's bands of output rows)."""
    blas = _openblas()
    threads = blas.get_num_threads() if blas else 1
    if threads <= 1 or len(pieces) <= 1:
        run_pieces(pieces, 1)
        return
    blas.set_num_threads(1)
    try:
        run_pieces(pieces, threads)
    finally:
        blas.set_num_threads(threads)


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` for 2-D or batched float arrays, pieces on every BLAS thread."""
    if 2.0 * max(a.size * b.shape[-1], b.size * a.shape[-2]) < OPENBLAS_SERIAL_FLOPS:
        return np.matmul(a, b, out=out)  # tiny (the flops below, counted cheaper): ~0.45 us saved a call
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = max(a.size // max(M * K, 1), b.size // max(K * N, 1))
    flops = 2.0 * M * K * N * batch
    if 2.0 * M * K * N < OPENBLAS_SERIAL_FLOPS and flops < PIECES_MIN_FLOPS:
        # a stack of tiny products (Winograd's 16 on a small map): NumPy makes one BLAS call per
        # product and OpenBLAS runs each on one thread anyway — no thread-count calls (16 of
        # [64, 32] @ [32, 32]: 26.6 -> 20.3 us)
        return np.matmul(a, b, out=out)
    blas = _openblas() if flops >= OPENBLAS_SERIAL_FLOPS else False
    helper = gemm_helper(blas) if blas and USE_HELPER and blas.get_num_threads() == 2 else None
    if helper is not None:
        return _with_helper(a, b, out, blas, helper, M, N, flops)
    if not blas or min(M, N) < MIN_OTHER:
        # tiny (OpenBLAS runs it on one thread anyway), not OpenBLAS, or a matrix-vector-like
        # product (a fully connected layer at batch 1): memory-bound, and OpenBLAS's gemv path
        # threads it as it sees fit (capping it to one thread first: 2.6x slower on [1, 544] @
        # [544, 1000]); its pieces would round the columns of different widths differently
        return np.matmul(a, b, out=out)
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (M, N)
        out = np.empty(shape, dtype=np.result_type(a, b))
    threads = blas.get_num_threads()
    by_columns = N >= M
    width = N if by_columns else M
    n_pieces = min(threads * CHUNKS_PER_THREAD, width // MIN_PIECE)
    big = threads > 1 and flops >= OWN_MIN_FLOPS and n_pieces >= 2
    if big and time.perf_counter() >= _own_after:
        if not _pinned and _pin_tries < PIN_TRIES:
            pin_blas_workers(blas)  # once per process (a forked child too: see _forget_pinned)
        return _own_threads(a, b, out)  # OpenBLAS's own threads, unless they were starved lately
    if threads > 1:
        blas.set_num_threads(1)  # every BLAS call below runs on the thread that makes it
    try:
        if threads <= 1 or flops < PIECES_MIN_FLOPS or n_pieces < 2:
            return np.matmul(a, b, out=out)  # one thread: small, or backed off and not worth pieces
        step = -(-width // n_pieces)
        if by_columns:  # out[..., j0:j1] = a @ b[..., j0:j1]
            pieces = [lambda j=j: np.matmul(a, b[..., j:j + step], out=out[..., j:j + step])
                      for j in range(0, N, step)]
        else:  # out[..., i0:i1, :] = a[..., i0:i1, :] @ b
            pieces = [lambda i=i: np.matmul(a[..., i:i + step, :], b, out=out[..., i:i + step, :])
                      for i in range(0, M, step)]
        run_pieces(pieces, threads)
        return out
    finally:
        if threads > 1:
            blas.set_num_threads(threads)


PIN_TRIES = 3  # looks for the workers per process at most (none found: a busy machine, or none)
_pinned: list[int] = []  # the thread ids of this process's OpenBLAS workers, pinned
_pin_tries = 0
_pin_lock = threading.Lock()


def _forget_pinned() -> None:
    """In a forked child: OpenBLAS starts workers of its own (new thread ids), to be looked for
    again."""
    global _pinned, _pin_tries, _pin_lock
    _pinned, _pin_tries, _pin_lock = [], 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pinned)


def pin_blas_workers(blas) -> list[int]:
    """Pin each OpenBLAS worker thread to a CPU of its own (worker i to the (i+1)-th CPU this
    process may use, as OpenBLAS does itself when built with affinity — NumPy's is not); returns
    their thread ids. Once per process (up to ``PIN_TRIES`` looks while none is found);
    MINIRT_PIN_BLAS=0 turns it off.

    Why: a product after the workers slept for a while (~20 ms or more: ``import minirt`` makes
    them sleep after ~0.1 ms of spinning) took ~12 ms instead of 0.5 here, and a model run after a
    pause of 0.1 s paid that on several products (resnet_mini 47 ms instead of 1). The slow
    calls were not CPU time: most likely the woken worker was queued on the CPU of the thread
    that called BLAS — which does its own share and then spins until the worker is done — and
    ran only when the scheduler's next tick moved it. Pinned, the worker wakes on its own CPU
    (products after any pause: 0.5 ms), and the calling thread, not pinned, is moved off it.
    The cost: processes that all pin their workers share those CPUs (the back-off of
    ``_own_threads`` then takes over, as on any busy machine)."""
    global _pinned, _pin_tries
    with _pin_lock:  # (two threads running sessions at once would each count the other's wakes)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
        if _pinned or _pin_tries >= PIN_TRIES or not PIN_BLAS or len(cpus) < 2 or blas.get_num_threads() < 2:
            return _pinned
        _pin_tries += 1
        try:
            workers = _blas_workers(blas)
            for i, tid in enumerate(workers):
                os.sched_setaffinity(tid, {cpus[(i + 1) % len(cpus)]})
        except OSError:  # a thread gone, /proc not readable, no permission: leave them as they are
            return _pinned
        _pinned = workers
        return _pinned


def _wakes(tid: int) -> int:
    """How many times thread ``tid`` of this process went to sleep and woke (its voluntary
    context switches, /proc/self/task/<tid>/status); 0 for a thread that has exited."""
    try:
        with open(f"/proc/self/task/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"voluntary_ctxt_switches"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _blas_workers(blas) -> list[int]:
    """The thread ids of OpenBLAS's workers: the threads not started by Python that wake for
    each of a few products on all of OpenBLAS's threads made 0.5 ms apart (with the short spin
    ``import minirt`` sets they sleep in between), and not for the same products on one thread.
    (CPU time cannot tell: the kernel adds up a spinning thread's time only at its ticks.) A
    thread woken for some other reason wakes in both rounds, and is left out. With OpenBLAS's
    default spin (0.1 s) its workers never sleep here: none is found, and none needs pinning
    for pauses below 0.1 s."""
    x = np.ones((256, 256), np.float32)  # 34 MFLOP: split over every OpenBLAS thread
    np.matmul(x, x)  # (after a fork OpenBLAS starts its workers on the first such product)
    python_threads = {t.native_id for t in threading.enumerate()}
    tids = [int(t) for t in os.listdir("/proc/self/task") if int(t) not in python_threads]

    def wakes(threads):
        blas.set_num_threads(threads)
        before = {t: _wakes(t) for t in tids}
        for _ in range(6):
            time.sleep(0.0005)  # longer than the workers' spin: they sleep, and wake for the product
            np.matmul(x, x)
        return {t: _wakes(t) - before[t] for t in tids}

    n = blas.get_num_threads()
    try:
        shared, alone = wakes(n), wakes(1)
    finally:
        blas.set_num_threads(n)
    return [t for t in tids if shared[t] >= 4 and alone[t] <= 1]


def others_running(threads: int) -> bool:
    """Whether more threads than ours (``threads``: the caller and OpenBLAS's, still spinning)
    stay runnable on the machine — another process wants the cores. Linux's /proc/stat counts
    the runnable threads (~16 us a read): read three times, 0.5 ms apart (only after a slow
    call), the fewest counts. Why: a slow call with no other process was the machine itself (a
    kernel thread waking for a millisecond, the host of a virtual machine taking its CPUs away
    now and then: ~1 call in 500, 1-10 ms each, here); the pieces would not have been faster,
    and backing off for seconds made whole models 1.3-1.5x slower (DenseNet-121 81 vs 54 ms,
    SqueezeNet 12.6 vs 9.5, Inception-v2 64 vs 51: round-robin medians). A busy process is
    runnable at every read. Where /proc/stat cannot be read, every slow call counts. A read that
    finds no more than ``threads`` settles it at once (the fewest can only be fewer): the usual
    answer costs one read, not 1 ms — it is asked after every slow call, and the first calls
    after a pause are all slow."""
    try:
        for k in range(3):
            if k:
                time.sleep(0.0005)
            with open("/proc/stat", "rb") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith(b"procs_running"))
            if running <= threads:
                return False
        return True
    except (OSError, ValueError, StopIteration):
        return True


def _with_helper(a, b, out, blas, helper, M, N, flops):
    """``matmul`` on two threads with the spinning helper (kernels/spin.py): every BLAS call
    single-threaded, OpenBLAS's own workers never woken (they would take the core the helper
    spins on). From ``HELPER_MIN_FLOPS``, a 2-D product (or a batch of one) runs as two halves, a
    stack of products as one job each, claimed by this thread and the helper; operands cblas
    cannot take (elements not contiguous along a row, mixed dtypes) in two NumPy pieces."""
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (M, N)
        out = np.empty(shape, dtype=np.result_type(a, b))
    by_columns = N >= M
    width = N if by_columns else M
    blas.set_num_threads(1)
    try:
        if flops < HELPER_MIN_FLOPS or width < 2 * MIN_PIECE:
            return np.matmul(a, b, out=out)
        wake = flops >= HELPER_WAKE_MIN_FLOPS or a.nbytes + b.nbytes >= HELPER_WAKE_MIN_BYTES
        if a.dtype == b.dtype == out.dtype and a.dtype in _HELPER_DTYPES:
            if out.ndim == 2 or out.size == M * N:  # a 2-D product (or a batch of one): halves
                if helper.product(a.reshape(a.shape[-2:]), b.reshape(b.shape[-2:]), out.reshape(M, N), by_columns,
                                  wake):
                    return out
            elif out.ndim == 3 and a.ndim <= 3 and b.ndim <= 3:  # a stack: a product each
                if helper.stack(a if a.ndim == 3 else a[None], b if b.ndim == 3 else b[None], out, wake):
                    return out
        if helper.sleeping and not wake:
            return np.matmul(a, b, out=out)  # small: not worth waking the helper
        step = -(-width // 2)  # (operands cblas cannot take, or a stack too long: NumPy's matmul in two pieces)
        if by_columns:  # out[..., j0:j1] = a @ b[..., j0:j1]
            pieces = [lambda j=j: np.matmul(a, b[..., j:j + step], out=out[..., j:j + step]) for j in range(0, N, step)]
        else:  # out[..., i0:i1, :] = a[..., i0:i1, :] @ b
            pieces = [lambda i=i: np.matmul(a[..., i:i + step, :], b, out=out[..., i:i + step, :])
                      for i in range(0, M, step)]
        helper.run_pieces(pieces)
        return out
    finally:
        blas.set_num_threads(2)


def _own_threads(a, b, out):
    """``np.matmul`` on OpenBLAS's own threads; a call during which the calling thread lost its
    core, or that took much longer than the fastest of its shape, switches the next products to
    the pieces for a while."""
    global _own_after, _backoff, _last_starved
    wall, cpu = time.perf_counter(), time.thread_time()
    np.matmul(a, b, out=out)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    key = (a.shape, b.shape)
    fastest = _fastest.get(key, wall)
    _fastest[key] = min(fastest, wall)
    # descheduled or yielded to another process (a stall), or a helper thread sharing its core
    # with another job (the caller keeps spinning on its own core; the call is ~2x slower)
    slow = wall > SLOW_FACTOR * fastest and 2.0 * a.shape[-2] * a.shape[-1] * b.shape[-1] >= SLOW_CHECK_FLOPS
    if (cpu < HEALTHY_CPU * wall or slow) and others_running(blas_threads()):
        now = time.perf_counter()
        if now - _last_starved <= STRIKE_S:  # the second in a row: contention, not a pause
            _own_after = now + _backoff
            _backoff = min(2 * _backoff, BACKOFF_S[1])
        _last_starved = now
    else:  # a good call: a shorter back-off next time (not at once: loads come and go)
        _backoff = max(BACKOFF_S[0], _backoff / 2)
    return out
