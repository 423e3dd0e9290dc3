"""What the benchmark scripts share to time minirt and onnxruntime fairly in one process
(benchmarks/README.md has the measurements behind each rule). Import it before NumPy.

- OpenBLAS's threads must not spin for ~0.1 s after minirt's products on the cores onnxruntime
  is being timed on (that made onnxruntime up to 2x slower here): ``OPENBLAS_THREAD_TIMEOUT=18``
  before NumPy loads OpenBLAS (a value in the environment wins), as ``import minirt`` does.
- The other way round: onnxruntime's intra-op worker spins ~40 ms after each of its runs, so
  each round starts ``ORT_SPIN_S`` after the last one.
- Each runtime is timed in its steady state: ``warm_up`` runs it untimed for ``WARM_S`` (once
  at least) right before its timed run.

It also puts this checkout first on ``sys.path`` (``REPO``): a script run from a worktree of
another commit times that commit's minirt, not the one pip installed in editable mode.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORT_SPIN_S = 0.06  # seconds onnxruntime's worker threads spin after a run (~0.04), and a margin
WARM_S = 0.005  # seconds of untimed runs (one at least) before each timed run: the steady state


def warm_up(fn) -> None:
    """Untimed calls of ``fn`` for at least WARM_S seconds, one at least."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < WARM_S:
        fn()


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
