"""Where do two runtimes first disagree? Node-by-node comparison of every intermediate.

    report = minirt.tools.compare.compare("model.onnx", {"image": x})   # against onnxruntime
    print(report)                  # the first diverging node, with its inputs, then a table
    report.ok                      # True when every compared value is within tolerance
    report.first_divergence        # a Divergence (node, op, errors, summaries) or None

The final output being wrong says little: *which node* went wrong first says where to look.
minirt runs with every intermediate kept (:meth:`InferenceSession.run_with_intermediates`);
the other opinion is

- ``against="onnxruntime"``: the model is copied with every node output that ONNX shape
  inference can type appended as an extra graph output (onnxruntime needs the type of every
  output), and run with graph optimizations **off** (``ORT_DISABLE_ALL``): a fused node would
  otherwise hide the intermediates it swallowed;
- ``against="reference"``: ``onnx.reference.ReferenceEvaluator``, the ONNX spec in Python
  (slow, but independent of both).

minirt's graph passes are off by default (``optimize=0``), so that both sides run the nodes
as written; ``optimize=2`` compares the graph minirt runs by default instead, which catches a
pass (a fusion, a folding) that changed a result.

Nodes are walked in minirt's topological order; a node *diverges* when one of its outputs
fails ``np.allclose(minirt, other, rtol, atol)`` (or differs in shape). The first diverging node
is where an error was made: its inputs still agreed (they come from earlier nodes), its
outputs do not. Everything after it inherits the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from minirt.errors import InputError, MinirtError

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


# ---------------------------------------------------------------------- value summaries
def summarize(x: Any, head: int = 6) -> dict[str, Any]:
    """Shape, dtype, min/max/mean and the first few values of an array (for reports and JSON)."""
    if x is None:
        return {"missing": True}
    if not isinstance(x, np.ndarray):
        if isinstance(x, list):
            return {"kind": f"sequence of {len(x)}"}
        x = np.asarray(x)
    out: dict[str, Any] = {"shape": list(x.shape), "dtype": str(x.dtype)}
    if x.size and x.dtype.kind in "fiub":
        xf = x.astype(np.float64)
        finite = xf[np.isfinite(xf)]
        if finite.size:
            out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
        if finite.size < xf.size:
            out["non_finite"] = int(xf.size - finite.size)
    out["first"] = x.reshape(-1)[:head].tolist()
    return out


def format_summary(s: dict[str, Any]) -> str:
    if s.get("missing"):
        return "(not computed)"
    if "kind" in s:
        return s["kind"]
    text = f"{s['dtype']}[{', '.join(map(str, s['shape']))}]"
    if "min" in s:
        text += f"  min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}"
    if s.get("non_finite"):
        text += f"  ({s['non_finite']} nan/inf)"
    first = ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in s["first"])
    return text + f"  first [{first}]"


def errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute error and max relative error of two arrays.

    The relative error is ``|a - b| / max(|a|, |b|)`` (0 where both are 0): symmetric, at most
    2, and meaningful where one side is 0 (a ReLU that leaks gives 1, not infinity).
    """
    if a.size == 0:
        return 0.0, 0.0
    af, bf = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(af) & np.isnan(bf)
    diff = np.where(both_nan, 0.0, np.abs(af - bf))
    diff = np.where(np.isnan(diff), np.inf, diff)  # nan on one side only: infinitely wrong
    scale = np.maximum(np.abs(np.nan_to_num(af)), np.abs(np.nan_to_num(bf)))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    rel = np.where(np.isinf(diff), np.inf, rel)
    return float(diff.max()), float(rel.max())


# ---------------------------------------------------------------------- report
@dataclass
class NodeDiff:
    """One node: the worst of its outputs' errors, and whether they are within tolerance."""

    name: str
    op_type: str
    outputs: list[str]
    max_abs: float | None  # None when nothing of this node could be compared
    max_rel: float | None
    status: str  # "ok", "diverges", or "skipped: why"
    shape: str = ""

    @property
    def diverges(self) -> bool:
        return self.status == "diverges"


@dataclass
class Divergence:
    """The first node whose output disagrees, with both values and the node's inputs."""

    node: str
    op_type: str
    output: str
    max_abs: float
    max_rel: float
    minirt: dict[str, Any]  # summaries
    other: dict[str, Any]
    inputs: list[dict[str, Any]]  # name, minirt summary, other summary, max_abs
    attributes: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def __str__(self) -> str:
        lines = [
            f"first divergence: node {self.node!r} ({self.op_type}), output {self.output!r}",
            f"  {self.reason}" if self.reason else f"  max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g}",
            f"  minirt: {format_summary(self.minirt)}",
            f"  other:  {format_summary(self.other)}",
        ]
        if self.attributes:
            lines.append("  attributes: " + ", ".join(f"{k}={v!r}" for k, v in self.attributes.items()))
        for inp in self.inputs:
            agree = "" if inp.get("max_abs") is None else f"   (inputs agree to {inp['max_abs']:.3g})"
            lines.append(f"  input {inp['name']!r}: {format_summary(inp['minirt'])}{agree}")
        return "\n".join(lines)


@dataclass
class CompareReport:
    """The result of :func:`compare`."""

    model: str
    against: str
    rtol: float
    atol: float
    nodes: list[NodeDiff]
    first_divergence: Divergence | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    @property
    def compared(self) -> int:
        return sum(1 for n in self.nodes if n.max_abs is not None)

    def table(self, max_rows: int | None = None) -> str:
        """Every node in run order: output shape, max abs/rel error, status."""
        rows = self.nodes if max_rows is None else self.nodes[:max_rows]
        width = max([len(n.name) for n in rows] + [4])
        width = min(width, 48)
        lines = [f"{'node':<{width}} {'op':<18} {'output':<20} {'max abs':>10} {'max rel':>10}  status"]
        for n in rows:
            abs_, rel = ("-", "-") if n.max_abs is None else (f"{n.max_abs:.3g}", f"{n.max_rel:.3g}")
            name = n.name if len(n.name) <= width else "…" + n.name[-(width - 1):]
            lines.append(f"{name:<{width}} {n.op_type:<18} {n.shape:<20} {abs_:>10} {rel:>10}  {n.status}")
        if max_rows is not None and len(self.nodes) > max_rows:
            lines.append(f"... {len(self.nodes) - max_rows} more nodes (report.table() shows all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def text(self, max_rows: int | None = 60) -> str:
        """The headline, the first divergence (or that all agree), notes, and the per-node table."""
        head = (f"minirt vs {self.against} on {self.model}: {self.compared} of {len(self.nodes)} nodes compared "
                f"(rtol {self.rtol:g}, atol {self.atol:g})")
        if self.ok:
            body = "every compared value agrees within tolerance"
        else:
            body = str(self.first_divergence)
        parts = [head, body] + [f"note: {n}" for n in self.notes] + ["", self.table(max_rows=max_rows)]
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = self.first_divergence
        return {
            "model": self.model, "against": self.against, "rtol": self.rtol, "atol": self.atol, "ok": self.ok,
            "first_divergence": None if d is None else {k: v for k, v in vars(d).items()},
            "nodes": [vars(n).copy() for n in self.nodes],
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------- the other opinions
def _model_proto(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(str(model))


def with_every_output(proto) -> tuple[Any, list[str]]:
    """A copy of ``proto`` whose graph outputs include every typed node output; and the untyped names.

    onnxruntime refuses a graph output without a type, so ONNX shape inference runs first and
    names it cannot type are left out (and reported).
    """
    import onnx

    model = type(proto)()
    model.CopyFrom(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (shape inference may fail on unusual models; keep what we have)
        inferred = model
    typed = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            typed[vi.name] = vi
    have = {o.name for o in model.graph.output}
    untyped = []
    for node in model.graph.node:
        for name in node.output:
            if not name or name in have:
                continue
            if name in typed:
                model.graph.output.append(typed[name])
                have.add(name)
            else:
                untyped.append(name)
    return model, untyped


def onnxruntime_intermediates(model, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every typed intermediate as onnxruntime computes it (optimizations off), and the untyped names."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MinirtError("compare against onnxruntime needs it installed: pip install onnxruntime "
                          "(or compare against='reference', the ONNX reference evaluator)") from None
    proto, untyped = with_every_output(_model_proto(model))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)))), untyped


def reference_intermediates(model, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every intermediate as onnx.reference.ReferenceEvaluator computes it."""
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(_model_proto(model))
    return dict(ref.run(None, dict(feeds), intermediate=True)), []


# ---------------------------------------------------------------------- compare
def _as_array(x: Any) -> Any:
    if isinstance(x, (np.ndarray, list)) or x is None:
        return x
    return np.asarray(x)


def _diff(ours: Any, theirs: Any, rtol: float, atol: float) -> tuple[float | None, float | None, str]:
    """(max abs, max rel, status) for one value."""
    ours, theirs = _as_array(ours), _as_array(theirs)
    if not isinstance(ours, np.ndarray) or not isinstance(theirs, np.ndarray):
        return None, None, "skipped: not a tensor"
    if ours.shape != theirs.shape:
        return float("inf"), float("inf"), "diverges"
    if ours.dtype.kind not in "fiub" or theirs.dtype.kind not in "fiub":
        same = bool(np.array_equal(ours.astype(str), theirs.astype(str)))
        return (0.0, 0.0, "ok") if same else (float("inf"), float("inf"), "diverges")
    abs_err, rel_err = errors(ours, theirs)
    ok = np.allclose(ours.astype(np.float64), theirs.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
    return abs_err, rel_err, "ok" if ok else "diverges"


def _session(model, optimize: int):
    from minirt.session import InferenceSession

    return InferenceSession(model, optimize=optimize)


def compare(model, inputs: Mapping[str, Any] | None = None, *, against: str = "onnxruntime",
            rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, shapes: Mapping[str, Any] | None = None,
            seed: int = 0, optimize: int = 0, session=None) -> CompareReport:
    """Run ``model`` on minirt and on ``against`` with every intermediate; find the first disagreement.

    ``model``: a path, bytes or ModelProto. ``inputs``: name -> array; random inputs (shaped by
    ``shapes`` for symbolic dims) when omitted. ``optimize``: minirt's graph-pass level; 0 (the
    default) runs every node as written in the file, one for one with the other runtime's
    unoptimized run; 2 compares the graph minirt runs by default, to catch a pass that changed a
    result (fused nodes are compared on the outputs they keep). ``session``: a ready minirt
    InferenceSession of the same model (to compare one with hooks or options of your own).
    """
    from minirt.tools.inputs import random_inputs

    if against not in ("onnxruntime", "reference"):
        raise InputError(f"against must be 'onnxruntime' or 'reference', got {against!r}")
    sess = session or _session(model, optimize)
    feeds = dict(inputs) if inputs is not None else random_inputs(sess, dict(shapes or {}), seed=seed)
    ours = sess.run_with_intermediates(feeds)
    other_fn = onnxruntime_intermediates if against == "onnxruntime" else reference_intermediates
    theirs, untyped = other_fn(model, feeds)

    graph = sess.graph
    weights = graph.initializers
    nodes: list[NodeDiff] = []
    first: Divergence | None = None
    for node in graph.nodes:
        diffs: list[tuple[float, float, str]] = []
        status, shapes_text = "skipped: no other value", ""
        for out in node.outputs:
            a = ours.get(out) if out else None
            if isinstance(a, np.ndarray) and not shapes_text:
                shapes_text = f"{a.dtype}{list(a.shape)}"
            if not out or out not in theirs:
                continue
            abs_err, rel_err, st = _diff(a, theirs[out], rtol, atol) if a is not None else (
                float("inf"), float("inf"), "diverges")
            if abs_err is None:
                status = st  # e.g. "skipped: not a tensor"
                continue
            diffs.append((abs_err, rel_err, st))
            if st == "diverges" and first is None:
                first = _divergence(node, out, ours, theirs, weights, rtol, atol)
        if diffs:
            status = "diverges" if any(d[2] == "diverges" for d in diffs) else "ok"
        nodes.append(NodeDiff(node.name, node.op_type, [o for o in node.outputs if o],
                              max(d[0] for d in diffs) if diffs else None,
                              max(d[1] for d in diffs) if diffs else None, status, shapes_text))

    notes = []
    if untyped:
        notes.append(f"{len(untyped)} intermediate(s) could not be typed by ONNX shape inference, so "
                     f"onnxruntime could not expose them (e.g. {untyped[:3]}); those nodes are skipped")
    # the graph outputs, always: a model can agree node by node and still return something else
    for o in graph.outputs:
        if o.name in theirs and o.name in ours and first is None:
            _, _, st = _diff(ours[o.name], theirs[o.name], rtol, atol)
            if st == "diverges":
                notes.append(f"graph output {o.name!r} differs")
    name = str(model) if isinstance(model, str) or hasattr(model, "__fspath__") else (graph.name or "model")
    return CompareReport(name, against, rtol, atol, nodes, first, notes)


def _divergence(node, out: str, ours, theirs, weights, rtol, atol) -> Divergence:
    a, b = _as_array(ours.get(out)), _as_array(theirs[out])
    reason = ""
    if a is None:
        reason = "minirt did not compute this output"
        abs_err = rel_err = float("inf")
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape != b.shape:
        reason = f"shapes differ: minirt {list(a.shape)}, other {list(b.shape)}"
        abs_err = rel_err = float("inf")
    else:
        abs_err, rel_err, _ = _diff(a, b, rtol, atol)
    inputs = []
    for name in node.inputs:
        if not name:
            continue
        mine = ours.get(name, weights.get(name))
        other = theirs.get(name, mine if name in weights else None)
        agree = None
        if isinstance(mine, np.ndarray) and isinstance(other, np.ndarray) and mine.shape == other.shape \
                and mine.dtype.kind in "fiub" and np.asarray(other).dtype.kind in "fiub":
            agree = errors(mine, np.asarray(other))[0]
        inputs.append({"name": name, "minirt": summarize(mine), "other": summarize(other), "max_abs": agree,
                       "weight": name in weights})
    attrs = {k: v for k, v in node.attrs.items() if not hasattr(v, "nodes")}
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) and v.size <= 8 else v) for k, v in attrs.items()
             if not isinstance(v, np.ndarray) or v.size <= 8}
    return Divergence(node.name, node.op_type, out, abs_err, rel_err, summarize(a), summarize(b), inputs,
                      attrs, reason)


# ---------------------------------------------------------------------- CLI
def add_cli(sub) -> None:
    p = sub.add_parser("compare", help="find the first node where minirt and onnxruntime disagree")
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input (a .npz file may hold all of them); random inputs otherwise")
    p.add_argument("--shape", action="append", default=[], metavar="NAME:1x3x224x224",
                   help="shape of a random input (sets its symbolic dims)")
    p.add_argument("--against", choices=("onnxruntime", "reference"), default="onnxruntime",
                   help="the second opinion: onnxruntime (default) or the ONNX reference evaluator")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL)
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL)
    p.add_argument("--optimize", "-O", type=int, default=0, choices=(0, 1, 2),
                   help="minirt's graph passes: 0 (default) every node as written; 2 as minirt runs it")
    p.add_argument("--all", action="store_true", help="print every node of the table, not the first 60")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    """Exit status 0 when everything agrees, 1 at a divergence (as ``diff`` does), 2 on bad input."""
    from minirt.tools.inputs import load_inputs, parse_shape

    shapes = dict(parse_shape(s) for s in args.shape)
    feeds = load_inputs(args.input) if args.input else None
    report = compare(args.model, feeds, against=args.against, rtol=args.rtol, atol=args.atol, shapes=shapes,
                     optimize=args.optimize)
    print(report.text(max_rows=None if args.all else 60))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=1, default=str)
        print(f"report written to {args.json}")
    return 0 if report.ok else 1
