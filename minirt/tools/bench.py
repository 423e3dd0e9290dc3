"""What does inference cost? Latency at batch 1, throughput over a batch-size sweep, and money.

    res = minirt.tools.bench.bench("model.onnx", against_onnxruntime=True, price_per_hour=0.50)
    print(res)                      # latency p50/p90/p99, the sweep table, cost per million
    res.to_dict()                   # the same as JSON-ready data (``minirt bench --json``)
    res.plot("bench.png")           # latency and throughput vs batch size (needs matplotlib)

How it measures, so the numbers mean something:

- every batch size gets ``warmup`` untimed runs first (JIT compilation, caches, page faults),
  then ``iterations`` timed runs, or as many as fit in ``duration`` seconds;
- each run is timed on its own (``time.perf_counter``), so we get a distribution, not one mean:
  **p50** is the typical run, **p99** the slow tail a user waits for one time in a hundred;
- throughput is ``batch * runs / total time`` (samples per second): batching amortises the
  per-run overhead (Python, dispatch, memory traffic for weights) over more samples, so
  throughput rises while each batch takes longer — latency and throughput pull apart;
- with ``against_onnxruntime=True``, onnxruntime runs the same inputs with the same number of
  threads, *interleaved* run by run with minirt in this process, so both see the same machine
  state (clock boosts, other processes) and the ratio is fair;
- with ``price_per_hour`` (USD for the machine), the cost of a million inferences at each batch
  size is ``price_per_hour / 3600 / samples_per_s * 1e6``.

The batch dimension is the first axis of every input whose first axis is symbolic (``N``,
``batch_size``, ...). A model exported with a fixed batch is measured at batch 1 only, and
the result says why.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from minirt.errors import InputError, MinirtError

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_DURATION = 0.5  # seconds per batch size when neither iterations nor duration is given
MIN_ITERATIONS = 5  # a time budget still takes at least this many timed runs


# ---------------------------------------------------------------------- results
@dataclass
class SweepPoint:
    """One engine at one batch size: latency percentiles (ms), throughput and cost."""

    batch: int
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    latency_ms_mean: float
    latency_ms_min: float
    per_sample_ms: float  # mean latency / batch
    samples_per_s: float  # batch * runs / total time
    runs: int
    cost_per_million_usd: float | None = None
    samples_per_s_p50: float = 0.0  # batch / p50: the typical run's rate, outliers left out

    @classmethod
    def from_times(cls, batch: int, seconds: Sequence[float], price_per_hour: float | None) -> SweepPoint:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        mean = float(ms.mean())
        sps = batch * 1e3 / mean
        return cls(batch, p50, p90, p99, mean, float(ms.min()), mean / batch, sps, len(ms),
                   cost_per_million(price_per_hour, sps) if price_per_hour is not None else None,
                   batch * 1e3 / p50)

    def latency(self) -> dict[str, float]:
        return {"p50": self.latency_ms_p50, "p90": self.latency_ms_p90, "p99": self.latency_ms_p99,
                "mean": self.latency_ms_mean, "min": self.latency_ms_min}


def cost_per_million(price_per_hour: float, samples_per_s: float) -> float:
    """USD for one million inferences: what one second costs, divided by samples per second."""
    return price_per_hour / 3600.0 / samples_per_s * 1e6


@dataclass
class EngineResult:
    """What one engine (minirt or onnxruntime) measured."""

    engine: str
    version: str
    latency_ms: dict[str, float]  # batch 1: p50, p90, p99, mean, min
    sweep: list[SweepPoint]

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.version, "latency_ms": self.latency_ms,
                "sweep": [vars(p).copy() for p in self.sweep]}


@dataclass
class BenchResult:
    """The result of :func:`bench`: ``str()`` is the table, ``to_dict()`` the JSON."""

    model: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    minirt: EngineResult
    onnxruntime: EngineResult | None = None
    price_per_hour: float | None = None
    notes: list[str] = field(default_factory=list)

    # the fields most people read, at the top level
    @property
    def latency_ms(self) -> dict[str, float]:
        return self.minirt.latency_ms

    @property
    def sweep(self) -> list[SweepPoint]:
        return self.minirt.sweep

    def cost(self) -> dict[str, Any] | None:
        """Cost per million inferences at each batch size (None without a price)."""
        if self.price_per_hour is None:
            return None
        ort = {p.batch: p for p in self.onnxruntime.sweep} if self.onnxruntime else {}
        rows = []
        for p in self.sweep:
            row = {"batch": p.batch, "minirt_usd_per_million": p.cost_per_million_usd}
            if p.batch in ort:
                row["onnxruntime_usd_per_million"] = ort[p.batch].cost_per_million_usd
            rows.append(row)
        best = min(self.sweep, key=lambda p: p.cost_per_million_usd)
        return {
            "price_per_hour_usd": self.price_per_hour,
            "formula": "price_per_hour / 3600 / samples_per_s * 1e6",
            "per_million": rows,
            "cheapest_batch": best.batch,
        }

    def to_dict(self) -> dict[str, Any]:
        m = self.minirt.to_dict()
        return {
            "model": self.model,
            "machine": self.machine,
            "settings": self.settings,
            "minirt_version": m["version"],
            "latency_ms": m["latency_ms"],
            "sweep": m["sweep"],
            "onnxruntime": self.onnxruntime.to_dict() if self.onnxruntime else None,
            "cost": self.cost(),
            "notes": list(self.notes),
        }

    def save_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    # ------------------------------------------------------------------ text
    def table(self) -> str:
        s = self.settings
        how = (f"{s['iterations']} runs" if s.get("iterations") else f"{s['duration']:g} s") + \
              f" per batch size after {s['warmup']} warm-up runs"
        m = self.machine
        lines = [
            f"minirt bench {self.model}",
            f"  machine: {m.get('cpu_count')} CPUs, {s['threads']} threads, {m.get('blas') or 'BLAS ?'}; {how}",
        ]
        ort = self.onnxruntime
        lat = self.latency_ms
        lines.append("")
        lines.append("latency at batch 1 (ms)      p50      p90      p99     mean      min")
        lines.append("  minirt              " + "".join(f"{lat[k]:9.3f}" for k in ("p50", "p90", "p99", "mean", "min")))
        if ort:
            ol = ort.latency_ms
            lines.append(f"  onnxruntime {ort.version:<8}" + "".join(f"{ol[k]:9.3f}" for k in ("p50", "p90", "p99", "mean", "min")))
            lines.append(f"  minirt/onnxruntime  {lat['p50'] / ol['p50']:9.2f}x  (time ratio at p50: above 1 = minirt slower)")
        lines.append("")
        head = f"{'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'ms/sample':>10} {'samples/s':>11}"
        orts = {p.batch: p for p in ort.sweep} if ort else {}
        if ort:
            head += f" {'ORT p50 ms':>10} {'ORT samples/s':>13} {'minirt/ORT':>10}"
        priced = self.price_per_hour is not None
        if priced:
            head += f" {'$/1M':>9}" + (f" {'ORT $/1M':>9}" if ort else "")
        lines.append("batch-size sweep")
        lines.append(head)
        for p in self.sweep:
            row = (f"{p.batch:>5} {p.latency_ms_p50:9.3f} {p.latency_ms_p99:9.3f} {p.per_sample_ms:10.4f} "
                   f"{p.samples_per_s:11,.0f}")
            o = orts.get(p.batch)
            if ort:
                row += (f" {o.latency_ms_p50:10.3f} {o.samples_per_s:13,.0f} {p.latency_ms_p50 / o.latency_ms_p50:9.2f}x"
                        if o else f" {'-':>10} {'-':>13} {'-':>10}")
            if priced:
                row += f" {p.cost_per_million_usd:9.4f}"
                if ort:
                    row += f" {o.cost_per_million_usd:9.4f}" if o else f" {'-':>9}"
            lines.append(row)
        if priced:
            first, best = self.sweep[0], min(self.sweep, key=lambda p: p.cost_per_million_usd)
            lines.append("")
            lines.append(
                f"cost per million inferences = ${self.price_per_hour:g}/h / 3600 / samples/s * 1e6: you pay for "
                f"seconds of machine, so more samples per second is cheaper"
                + (f" (batch {best.batch} costs {first.cost_per_million_usd / best.cost_per_million_usd:.1f}x "
                   f"less than batch {first.batch})" if best is not first else "")
            )
        notes = list(self.notes)
        noisy = [p.batch for p in self.sweep if p.latency_ms_mean > 1.5 * p.latency_ms_p50]
        if noisy:
            notes.append(
                f"at batch {', '.join(map(str, noisy))} the mean is far above the median: rare slow runs "
                "(other processes, page faults) weigh on samples/s and cost; samples_per_s_p50 in the JSON "
                "is the typical run's rate"
            )
        for note in notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # ------------------------------------------------------------------ plot
    def plot(self, path: str) -> None:
        """Latency (p50, p99) and throughput vs batch size, as a PNG. Needs matplotlib."""
        plt = _pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        engines = [self.minirt] + ([self.onnxruntime] if self.onnxruntime else [])
        for eng, style, color in zip(engines, ("-o", "--s"), ("C0", "C1")):
            b = [p.batch for p in eng.sweep]
            ax1.plot(b, [p.latency_ms_p50 for p in eng.sweep], style, color=color, label=f"{eng.engine} p50")
            ax1.plot(b, [p.latency_ms_p99 for p in eng.sweep], style, color=color, alpha=0.35,
                     label=f"{eng.engine} p99")
            ax2.plot(b, [p.samples_per_s for p in eng.sweep], style, color=color, label=eng.engine)
        batches = [p.batch for p in self.sweep]
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_xlabel("batch size")
            ax.grid(True, alpha=0.3)
            ax.legend()
        ax1.set_yscale("log")
        ax1.set_ylabel("latency per batch (ms)")
        ax1.set_title("latency grows with the batch")
        ax2.set_ylabel("samples / s")
        ax2.set_title("throughput grows too, then flattens")
        fig.suptitle(os.path.basename(self.model))
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MinirtError("plotting needs matplotlib, which is not installed: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only: no window, works without a display
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------- inputs per batch size
def batch_axes(session) -> tuple[dict[str, bool], str | None]:
    """Which inputs have a sweepable (symbolic) first axis, and why not when none does."""
    sweepable, why = {}, None
    for arg in session.get_inputs():
        first = arg.shape[0] if arg.shape else None
        fixed = isinstance(first, int) and first > 0
        sweepable[arg.name] = bool(arg.shape) and not fixed
        if arg.shape and fixed and why is None:
            why = (f"input {arg.name!r} has a fixed first dim {first} ({arg.type} {arg.shape}), likely fixed "
                   "at export: only batch 1 is measured; re-export with a dynamic batch axis to sweep")
        elif not arg.shape and why is None:
            why = f"input {arg.name!r} is a scalar (no batch axis): only batch 1 is measured"
    if any(sweepable.values()):
        why = None
    return sweepable, why


def feeds_for_batch(base: Mapping[str, np.ndarray], sweepable: Mapping[str, bool], batch: int) -> dict[str, Any]:
    """``base`` (the batch-1 feeds, or the user's samples) made into a batch of ``batch`` samples.

    Inputs with a sweepable first axis cycle through their given samples; the rest stay as they are.
    """
    out = {}
    for name, x in base.items():
        if sweepable.get(name) and isinstance(x, np.ndarray) and x.ndim:
            out[name] = np.ascontiguousarray(np.take(x, np.arange(batch) % len(x), axis=0))
        else:
            out[name] = x
    return out


# ---------------------------------------------------------------------- measuring
def _machine_info(threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": None,
    }
    try:  # NumPy >= 1.25 describes its BLAS as a dict, cheaply
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # noqa: BLE001  (older NumPy, or a build that does not say)
        pass
    return info


def _ort_session(model, threads: int):
    """An onnxruntime session with ``threads`` intra-op threads, or (None, why not)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed: no side-by-side (pip install onnxruntime)"
    if isinstance(model, (str, os.PathLike)):
        src: Any = str(model)
    elif isinstance(model, bytes):
        src = model
    elif hasattr(model, "SerializeToString"):
        src = model.SerializeToString()
    else:
        return None, f"onnxruntime needs the model as a path, bytes or ModelProto, not {type(model).__name__}"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ORT's idle threads spin after each run by default; interleaved with minirt, that spinning
    # would steal minirt's cores. Sleeping threads keep the comparison fair.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"]), ort.__version__
    except Exception as e:  # noqa: BLE001  (ORT's own load error, e.g. an op it lacks)
        return None, f"onnxruntime could not load the model, no side-by-side: {str(e).splitlines()[0][:200]}"


def _measure(runners: list[Callable[[], Any]], warmup: int, iterations: int | None, duration: float | None,
             tick: Callable[[], None]) -> list[list[float]]:
    """Warm every runner up, then time them interleaved: r0, r1, r0, r1 ... One list of seconds each."""
    for _ in range(warmup):
        for r in runners:
            r()
    times: list[list[float]] = [[] for _ in runners]
    start = time.perf_counter()
    n = 0
    while True:
        if iterations is not None and n >= iterations:
            break
        if iterations is None and n >= MIN_ITERATIONS and time.perf_counter() - start >= duration:
            break
        for r, t in zip(runners, times):
            t0 = time.perf_counter()
            r()
            t.append(time.perf_counter() - t0)
        n += 1
        tick()
    return times


def bench(model, inputs: Mapping[str, np.ndarray] | None = None, *, shapes: Mapping[str, Sequence[int]] | None = None,
          batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, warmup: int = 5, iterations: int | None = None,
          duration: float | None = None, against_onnxruntime: bool = False, price_per_hour: float | None = None,
          threads: int | None = None, progress: bool | None = None, seed: int = 0) -> BenchResult:
    """Measure latency at batch 1 and throughput over ``batch_sizes``; see the module docstring.

    ``model``: a path, bytes or ModelProto (onnxruntime needs one of those), or an InferenceSession.
    ``inputs``: the samples to run (cycled to fill each batch); random ones shaped by ``shapes``
    (name -> shape, for symbolic dims; the first axis is replaced by each batch size) otherwise.
    ``iterations``: timed runs per batch size; or ``duration``: seconds per batch size (at least
    5 runs); neither: 0.5 s per batch size. ``threads``: for both engines (default: every CPU).
    ``progress``: draw a progress bar (default: only when stderr is a terminal).
    """
    from minirt.session import InferenceSession
    from minirt.tools.inputs import random_inputs
    from minirt.tools.progress import Progress
    import minirt

    if iterations is not None and duration is not None:
        raise InputError("give iterations or duration, not both")
    if iterations is not None and iterations < 1:
        raise InputError(f"iterations must be at least 1, got {iterations}")
    if duration is not None and not duration > 0:
        raise InputError(f"duration must be a positive number of seconds, got {duration}")
    if warmup < 0:
        raise InputError(f"warmup must be 0 or more, got {warmup}")
    if price_per_hour is not None and not price_per_hour > 0:
        raise InputError(f"price_per_hour must be a positive number of USD, got {price_per_hour}")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise InputError(f"batch sizes must be integers of at least 1, got {list(batch_sizes)}")
    if iterations is None and duration is None:
        duration = DEFAULT_DURATION
    cpus = os.cpu_count() or 1
    threads = threads or cpus
    # all cores is minirt's default: no cap then, since capping costs a little on every run
    cap = threads if threads < cpus else None
    sess = model if isinstance(model, InferenceSession) else InferenceSession(model, threads=cap)
    sweepable, fixed_why = batch_axes(sess)
    notes = []
    if fixed_why:
        notes.append(fixed_why)
        sizes = [1]
    if inputs is None:
        base = random_inputs(sess, dict(shapes or {}), batch=1, seed=seed)
        # a --shape gives the whole shape; its first axis is the batch, set per batch size below
        base = {k: (v[:1] if sweepable.get(k) and v.ndim else v) for k, v in base.items()}
    else:
        base = {k: np.asarray(v) for k, v in inputs.items()}
        for k, v in base.items():
            if sweepable.get(k) and v.ndim and len(v) == 0:
                raise InputError(f"input {k!r} has no samples (first dim 0)")
    sess.run(None, feeds_for_batch(base, sweepable, 1))  # fails here, clearly, on wrong inputs

    ort_sess, ort_version = None, None
    if against_onnxruntime:
        ort_sess, why = _ort_session(model, threads)
        if ort_sess is None:
            notes.append(why)
        else:
            ort_version = why
    measured = sizes if 1 in sizes else [1] + sizes  # batch 1 always, for the latency numbers
    total = len(measured) * (iterations if iterations is not None else 1)
    points: dict[str, dict[int, SweepPoint]] = {"minirt": {}, "onnxruntime": {}}
    with Progress(total, "bench", unit="run" if iterations is not None else "batch size", enabled=progress) as bar:
        for b in measured:
            feeds = feeds_for_batch(base, sweepable, b)
            runners: list[Callable[[], Any]] = [lambda f=feeds: sess.run(None, f)]
            if ort_sess is not None:
                runners.append(lambda f=feeds: ort_sess.run(None, f))
            times = _measure(runners, warmup, iterations, duration,
                             bar.update if iterations is not None else (lambda: None))
            if iterations is None:
                bar.update()
            points["minirt"][b] = SweepPoint.from_times(b, times[0], price_per_hour)
            if ort_sess is not None:
                points["onnxruntime"][b] = SweepPoint.from_times(b, times[1], price_per_hour)

    def engine(name: str, version: str) -> EngineResult:
        pts = points[name]
        return EngineResult(name, version, pts[1].latency(), [pts[b] for b in sizes])

    name = str(model) if isinstance(model, (str, os.PathLike)) else (sess.graph.name or type(model).__name__)
    return BenchResult(
        model=name,
        machine=_machine_info(threads),
        settings={"threads": threads, "warmup": warmup, "iterations": iterations, "duration": duration,
                  "batch_sizes": sizes, "inputs": {k: f"{v.dtype}{list(v.shape)}" for k, v in base.items()
                                                   if isinstance(v, np.ndarray)}},
        minirt=engine("minirt", minirt.__version__),
        onnxruntime=engine("onnxruntime", ort_version) if ort_sess is not None else None,
        price_per_hour=price_per_hour,
        notes=notes,
    )


# ---------------------------------------------------------------------- CLI
def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]`` (the ``--batch-sizes`` option)."""
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--batch-sizes expects integers separated by commas, e.g. 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batch-sizes must be integers of at least 1, got {text!r}")
    return sizes


def add_cli(sub) -> None:
    p = sub.add_parser("bench", help="latency (p50/p90/p99), throughput over batch sizes, cost per million")
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="samples to run (cycled to fill each batch); random inputs otherwise")
    p.add_argument("--shape", action="append", default=[], metavar="NAME:1x3x224x224",
                   help="shape of a random input (sets its symbolic dims; the first axis is swept)")
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), metavar="1,8,32")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--iterations", "-n", type=int, metavar="N", help="timed runs per batch size")
    how.add_argument("--duration", type=float, metavar="S",
                     help=f"seconds per batch size (default {DEFAULT_DURATION})")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs before each batch size")
    p.add_argument("--ort", action="store_true", help="run onnxruntime side by side, interleaved")
    p.add_argument("--price-per-hour", type=float, metavar="USD", help="machine price, for cost per million")
    p.add_argument("--threads", type=int, metavar="N", help="threads for both engines (default: every CPU)")
    p.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="plot latency and throughput vs batch size (matplotlib)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from minirt.tools.inputs import load_inputs, parse_shape

    sizes = parse_batch_sizes(args.batch_sizes)
    shapes = dict(parse_shape(s) for s in args.shape)
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    if args.plot:
        _pyplot()  # no matplotlib: say so now, not after a long run
    feeds = load_inputs(args.input) if args.input else None
    res = bench(args.model, feeds, shapes=shapes, batch_sizes=sizes, warmup=args.warmup,
                iterations=args.iterations, duration=args.duration, against_onnxruntime=args.ort,
                price_per_hour=args.price_per_hour, threads=args.threads)
    print(res.table())
    if args.json:
        res.save_json(args.json)
        print(f"\nresults written to {args.json}")
    if args.plot:
        res.plot(args.plot)
        print(f"plot written to {args.plot}")
    return 0
