"""Where does the time go? A per-node profile of one model on one input.

    prof = minirt.profile("resnet50.onnx", {"data": x}, runs=10)
    print(prof.table(top=20))        # per node: time, % of total, FLOPs, bytes, intensity
    print(prof.by_op_table())        # totals per op type
    print(prof.summary())            # first vs warm run, peak memory, achieved GFLOP/s vs peak
    prof.save_chrome_trace("trace.json")   # open in chrome://tracing or ui.perfetto.dev

Timings: the first run is timed on its own (it pays one-time costs: JIT compilation, caches,
page faults); per-node times are medians over the warm runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from minirt.observe import Observer
from minirt.session import InferenceSession
from minirt.tools.cost import measured_gemm_peak, node_cost


@dataclass
class NodeProfile:
    """One node's share of a run."""

    name: str
    op_type: str
    input_shapes: list[str]
    output_shapes: list[str]
    ms: float  # median over warm runs
    flops: int
    macs: int
    bytes_read: int
    bytes_written: int
    start_ms: float = 0.0  # offset in the median run, for the trace

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte moved. High = compute bound, low = memory bound."""
        moved = self.bytes_read + self.bytes_written
        return self.flops / moved if moved else 0.0

    @property
    def gflops(self) -> float:
        return self.flops / (self.ms * 1e6) if self.ms > 0 else 0.0


@dataclass
class Profile:
    """The result of :func:`profile`."""

    model: str
    nodes: list[NodeProfile]
    first_run_ms: float
    warm_ms: float  # median of whole warm runs
    runs: int
    peak_activation_bytes: int
    weight_bytes: int
    gemm_peak_gflops: float
    warm_run_ms: list[float] = field(default_factory=list)

    @property
    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    def by_op(self) -> list[dict[str, Any]]:
        """Totals per op type, slowest first."""
        groups: dict[str, dict[str, Any]] = {}
        for n in self.nodes:
            g = groups.setdefault(n.op_type, {"op_type": n.op_type, "count": 0, "ms": 0.0, "flops": 0,
                                              "bytes": 0})
            g["count"] += 1
            g["ms"] += n.ms
            g["flops"] += n.flops
            g["bytes"] += n.bytes_read + n.bytes_written
        total = sum(g["ms"] for g in groups.values()) or 1.0
        for g in groups.values():
            g["percent"] = 100 * g["ms"] / total
        return sorted(groups.values(), key=lambda g: -g["ms"])

    def table(self, top: int | None = None, sort: str = "time") -> str:
        """The per-node table; ``sort="time"`` (slowest first) or ``"order"`` (graph order)."""
        rows = sorted(self.nodes, key=lambda n: -n.ms) if sort == "time" else list(self.nodes)
        rows = rows[:top] if top else rows
        total = sum(n.ms for n in self.nodes) or 1.0
        head = (f"{'node':<28} {'op':<16} {'input shapes':<30} {'output shape':<22} {'ms':>8} {'%':>6} "
                f"{'MFLOPs':>10} {'MACs(M)':>9} {'KB read':>9} {'KB write':>9} {'FLOP/B':>7}")
        lines = [head, "-" * len(head)]
        for n in rows:
            lines.append(
                f"{_clip(n.name, 28):<28} {_clip(n.op_type, 16):<16} {_clip(' '.join(n.input_shapes), 30):<30} "
                f"{_clip(', '.join(n.output_shapes), 22):<22} "
                f"{n.ms:8.3f} {100 * n.ms / total:6.1f} {n.flops / 1e6:10.2f} {n.macs / 1e6:9.2f} "
                f"{n.bytes_read / 1024:9.1f} {n.bytes_written / 1024:9.1f} {n.intensity:7.2f}"
            )
        if top and len(self.nodes) > top:
            lines.append(f"... {len(self.nodes) - top} more nodes")
        return "\n".join(lines)

    def by_op_table(self) -> str:
        head = f"{'op':<24} {'nodes':>6} {'ms':>9} {'%':>6} {'GFLOPs':>9} {'GFLOP/s':>9}"
        lines = [head, "-" * len(head)]
        for g in self.by_op():
            rate = g["flops"] / (g["ms"] * 1e6) if g["ms"] > 0 else 0.0
            lines.append(f"{g['op_type']:<24} {g['count']:>6} {g['ms']:9.3f} {g['percent']:6.1f} "
                         f"{g['flops'] / 1e9:9.3f} {rate:9.1f}")
        return "\n".join(lines)

    def summary(self) -> str:
        """First vs warm time, memory, and a roofline-style line: achieved vs this machine's peak."""
        achieved = self.total_flops / (self.warm_ms * 1e6) if self.warm_ms > 0 else 0.0
        lines = [
            f"model {self.model}: {len(self.nodes)} nodes, {self.total_flops / 1e9:.3f} GFLOPs per run",
            f"  first run {self.first_run_ms:.2f} ms (includes one-time costs), warm run "
            f"{self.warm_ms:.2f} ms (median of {self.runs})",
            f"  weights {_mb(self.weight_bytes)}, peak activation memory {_mb(self.peak_activation_bytes)}",
            f"  achieved {achieved:.1f} GFLOP/s = {100 * achieved / self.gemm_peak_gflops:.0f}% of this "
            f"machine's measured float32 GEMM peak ({self.gemm_peak_gflops:.0f} GFLOP/s)",
        ]
        heavy = [g for g in self.by_op() if g["flops"]]
        if heavy:
            g = heavy[0]
            rate = g["flops"] / (g["ms"] * 1e6) if g["ms"] > 0 else 0.0
            lines.append(f"  heaviest compute op: {g['op_type']} at {rate:.1f} GFLOP/s")
        return "\n".join(lines)

    def chrome_trace(self) -> dict[str, Any]:
        """The median run as Chrome trace events (chrome://tracing, ui.perfetto.dev)."""
        events = []
        for n in self.nodes:
            events.append({
                "name": n.name, "cat": n.op_type, "ph": "X", "pid": 0, "tid": 0,
                "ts": n.start_ms * 1e3, "dur": n.ms * 1e3,
                "args": {"op": n.op_type, "inputs": n.input_shapes, "outputs": n.output_shapes,
                         "flops": n.flops, "bytes": n.bytes_read + n.bytes_written},
            })
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def save_chrome_trace(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.chrome_trace(), f)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _mb(b: int) -> str:
    return f"{b / 1e6:.2f} MB"


def _shape(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype}[{','.join(map(str, a.shape))}]"
    return "None" if a is None else type(a).__name__


class _Recorder(Observer):
    """Records, for one run, each node's time, cost and the live activation memory."""

    def __init__(self, graph, feeds: dict[str, Any]):
        self.index = {id(n): i for i, n in enumerate(graph.nodes)}
        self.times = [0.0] * len(graph.nodes)
        self.costs: list[dict | None] = [None] * len(graph.nodes)
        self.shapes: list[tuple[list[str], list[str]]] = [([], [])] * len(graph.nodes)
        # value name -> index of the last node reading it (graph outputs live to the end)
        self.last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for name in list(n.inputs) + [o for g in n.subgraphs() for o in g.outer_names()]:
                self.last_use[name] = i
        for v in graph.outputs:
            self.last_use[v.name] = len(graph.nodes)
        self.live = {k: v.nbytes for k, v in feeds.items() if isinstance(v, np.ndarray)}
        self.peak = sum(self.live.values())

    def after(self, node, inputs, outputs, seconds):
        i = self.index[id(node)]
        self.times[i] = seconds
        if self.costs[i] is None:
            self.costs[i] = node_cost(node.op_type, node.attrs, inputs, outputs)
            self.shapes[i] = ([_shape(a) for a in inputs], [_shape(o) for o in outputs])
        for name, out in zip(node.outputs, outputs):
            if name and isinstance(out, np.ndarray):
                self.live[name] = out.nbytes
        self.peak = max(self.peak, sum(self.live.values()))
        for name in node.inputs + node.outputs:
            if name in self.live and self.last_use.get(name, -1) <= i:
                del self.live[name]


def _recorded_run(sess: InferenceSession, feeds: dict[str, Any]) -> tuple[_Recorder, float]:
    """One run with a fresh recorder attached; returns it and the run's wall time in ms."""
    rec = _Recorder(sess.graph, feeds)
    hook = sess.add_hook(rec)
    t0 = time.perf_counter()
    try:
        sess.run(None, feeds)
    finally:
        sess.remove_hook(hook)
    return rec, (time.perf_counter() - t0) * 1e3


def profile(model, inputs: dict[str, Any] | None = None, *, runs: int = 10,
            shapes: dict[str, tuple[int, ...]] | None = None, optimize: int = 2) -> Profile:
    """Profile ``model`` (a path, bytes, ModelProto or InferenceSession) on ``inputs``.

    Without inputs, random ones shaped like the model's inputs are used (``shapes`` fixes the
    symbolic dims, e.g. ``{"image": (8, 3, 224, 224)}``). The optimized graph is profiled, as it
    runs; ``optimize=0`` profiles the nodes as the model wrote them.
    """
    from minirt.tools.inputs import random_inputs

    sess = model if isinstance(model, InferenceSession) else InferenceSession(model, optimize=optimize)
    feeds = inputs if inputs is not None else random_inputs(sess, shapes)
    graph = sess.graph

    first, first_ms = _recorded_run(sess, feeds)
    per_node: list[list[float]] = [[] for _ in graph.nodes]
    whole: list[float] = []
    for _ in range(max(runs, 1)):
        rec, ms = _recorded_run(sess, feeds)
        whole.append(ms)
        for i, t in enumerate(rec.times):
            per_node[i].append(t * 1e3)

    nodes, clock = [], 0.0
    for i, n in enumerate(graph.nodes):
        cost = first.costs[i] or {"flops": 0, "macs": 0, "bytes_read": 0, "bytes_written": 0}
        ms = float(np.median(per_node[i]))
        ins, outs = first.shapes[i]
        nodes.append(NodeProfile(n.name, n.op_type, ins, outs, ms, start_ms=clock, **cost))
        clock += ms
    return Profile(
        model=str(getattr(model, "name", None) or (model if isinstance(model, str) else graph.name)),
        nodes=nodes,
        first_run_ms=first_ms,
        warm_ms=float(np.median(whole)),
        runs=len(whole),
        peak_activation_bytes=first.peak,
        weight_bytes=graph.parameter_count()[1],
        gemm_peak_gflops=measured_gemm_peak(),
        warm_run_ms=whole,
    )


# ---------------------------------------------------------------------- CLI
def add_cli(sub) -> None:
    p = sub.add_parser("profile", help="per-node time, FLOPs, bytes and a roofline summary")
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument("--shape", action="append", default=[], metavar="NAME:1x3x224x224",
                   help="shape of a random input (sets its symbolic dims)")
    p.add_argument("--runs", type=int, default=10, help="warm runs to take medians over")
    p.add_argument("--optimize", "-O", type=int, default=2, choices=(0, 1, 2),
                   help="graph-pass level of the profiled session (0: the nodes as written)")
    p.add_argument("--top", type=int, default=25, help="rows of the per-node table (0 = all)")
    p.add_argument("--trace", metavar="TRACE.json", help="write a Chrome trace of the median run")
    p.add_argument("--json", metavar="OUT.json", help="write the whole profile as JSON")
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args) -> int:
    from minirt.tools.inputs import load_inputs, parse_shape

    shapes = dict(parse_shape(s) for s in args.shape)
    feeds = load_inputs(args.input) if args.input else None
    prof = profile(args.model, feeds, runs=args.runs, shapes=shapes, optimize=args.optimize)
    prof.model = args.model
    print(prof.summary())
    print()
    print(prof.table(top=args.top or None))
    print()
    print(prof.by_op_table())
    if args.trace:
        prof.save_chrome_trace(args.trace)
        print(f"\nChrome trace written to {args.trace} (open it in ui.perfetto.dev)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(prof.to_dict(), f, indent=1)
        print(f"profile written to {args.json}")
    return 0
