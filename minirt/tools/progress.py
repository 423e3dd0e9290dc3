"""A small progress bar for long runs: drawn on stderr when it is a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "bench") as p: ... p.update(n)`` — shows done/total, rate and ETA.

    ``enabled=None`` (the default) draws only when stderr is a terminal, so logs and CI output
    stay clean.
    """

    def __init__(self, total: int | None, label: str = "", unit: str = "it", enabled: bool | None = None,
                 file=None):
        self.total, self.label, self.unit = total, label, unit
        self.file = file or sys.stderr
        self.enabled = self.file.isatty() if enabled is None else enabled
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw > 0.1 or self.done == self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 24)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text = f"\r{self.label} [{bar:<24}] {self.done}/{self.total} {rate:.1f} {self.unit}/s eta {eta:.0f}s"
        else:
            text = f"\r{self.label} {self.done} {self.unit} {rate:.1f} {self.unit}/s"
        self.file.write(text)
        self.file.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.file.write("\n")
            self.file.flush()
