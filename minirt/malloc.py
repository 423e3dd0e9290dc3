"""glibc's malloc, tuned once for inference: freed arrays are kept for the next run's arrays
instead of being handed back to the operating system.

Why: NumPy allocates every intermediate with ``malloc``. glibc serves a big allocation with
``mmap`` (above a threshold that it moves as it goes) and gives it back with ``munmap`` when it
is freed, and it trims the top of its heap back to the system once more than
``M_TRIM_THRESHOLD`` of it is free. Either way the next run's arrays land on fresh pages, and
the kernel zero-fills each page on first touch. Measured on the development machine (2 cores,
a VM, where a page fault costs ~2-3 us): DenseNet-121 took ~9,700 page faults a run (its
Concats make arrays of ever new sizes), VGG-19 ~4,000 — with the two thresholds below, 0 of
either, and DenseNet-121 ran 94-133 ms -> 75-97 ms (process-by-process A/B, medians).

The cost: up to ``TRIM_THRESHOLD`` of freed memory stays with the process. The tuning is made
once, when the first ``InferenceSession`` is built, on Linux with glibc only. Opt out with
``MINIRT_MALLOC=default``; glibc's own settings (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) also leave it alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # allocations up to this come from the heap (glibc's maximum)
TRIM_THRESHOLD = 128 << 20  # free memory the heap keeps before it gives the top back

_tuned: bool | None = None  # None: not tried yet


def tune_malloc() -> bool:
    """Set the two thresholds (once per process); True if glibc accepted them."""
    global _tuned
    if _tuned is None:
        _tuned = _tune()
    return _tuned


def _tune() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("MINIRT_MALLOC", "").lower() == "default":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False  # the user tuned malloc already
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
