"""Magnitude pruning of Conv / Gemm / MatMul weights: set the smallest weights to zero, or cut
whole channels out so the model really gets smaller and faster.

Unstructured (``structured=False``)
    In each weight, the ``sparsity`` fraction of entries with the smallest |w| become 0
    (``scope="layer"``: that fraction of *each* layer; ``scope="global"``: of all layers together,
    one threshold for every layer, so layers with many small weights lose more). The file keeps
    its shapes: it compresses well, but a dense kernel does the same work. That is the lesson of
    the benchmark: sparsity alone buys nothing without a sparse kernel.

Structured (``structured=True``)
    Whole output channels of a Conv (or output units of a Gemm / MatMul) go, those with the
    smallest L1 norm ``sum |W[c]|``. Every tensor that follows the channel axis goes with them:
    the layer's bias, a BatchNormalization's scale/bias/mean/var, a per-channel Add, and the
    *input* channels of the next Conv / Gemm (through Relu-like ops, pooling and Flatten, where
    channel ``c`` is the block of columns ``c*H*W .. (c+1)*H*W``). The weights really shrink, so
    the model runs faster. The layer whose output leaves the graph keeps its outputs (they are
    the model's interface). A channel that flows somewhere else — a residual ``Add`` of two
    activations, a ``Concat``, a second reader — cannot be cut in one place, so such layers are
    refused with an error naming them (``strict=False`` skips them instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from minirt.tools.quantize import _load_proto

TARGETS = ("Conv", "Gemm", "MatMul")
# ops that keep the channel axis as it is (channel c of the output depends on channel c only)
CHANNELWISE = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSwish", "HardSigmoid", "Elu",
               "Selu", "Gelu", "Softplus", "Identity", "MaxPool", "AveragePool", "Dropout",
               "GlobalAveragePool", "GlobalMaxPool")


@dataclass
class LayerStat:
    """One pruned weight: its node, op, shape and number of nonzero values before and after."""

    node: str
    op: str
    weight: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    nonzero_before: int
    nonzero_after: int
    size_after: int
    note: str = ""

    @property
    def sparsity(self) -> float:
        """Fraction of the original weights that are gone (zeroed or removed)."""
        before = int(np.prod(self.shape_before))
        return 1.0 - self.nonzero_after / before if before else 0.0


@dataclass
class PruneReport:
    """Per-layer results of :func:`prune`; ``table()`` prints them."""

    structured: bool
    scope: str
    requested: float
    layers: list[LayerStat] = field(default_factory=list)
    params_before: int = 0  # every initializer value of the model
    params_after: int = 0

    @property
    def sparsity(self) -> float:
        """Fraction of the pruned layers' weights that are gone."""
        before = sum(int(np.prod(s.shape_before)) for s in self.layers)
        after = sum(s.nonzero_after for s in self.layers)
        return 1.0 - after / before if before else 0.0

    def table(self) -> str:
        kind = "structured (channels)" if self.structured else f"unstructured, {self.scope}"
        lines = [f"pruning {kind}, requested sparsity {self.requested:.0%}",
                 f"{'layer':<36} {'op':<7} {'shape before':<16} {'shape after':<16} "
                 f"{'nonzero':>15} {'sparsity':>8}"]
        for s in self.layers:
            shape_b = "x".join(map(str, s.shape_before))
            shape_a = "x".join(map(str, s.shape_after))
            nz = f"{s.nonzero_before}->{s.nonzero_after}"
            shown = s.node if len(s.node) <= 36 else "…" + s.node[-35:]
            line = f"{shown:<36} {s.op:<7} {shape_b:<16} {shape_a:<16} {nz:>15} {s.sparsity:>8.1%}"
            lines.append(line + (f"  {s.note}" if s.note else ""))
        lines.append(f"total: {self.sparsity:.1%} of the pruned weights gone; parameters "
                     f"{self.params_before:,} -> {self.params_after:,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def prune(model, sparsity: float = 0.5, structured: bool = False, scope: str = "layer",
          output_path=None, *, strict: bool = True) -> tuple[onnx.ModelProto, PruneReport]:
    """Magnitude-prune the Conv / Gemm / MatMul weights of ``model`` (path, bytes or ModelProto).

    Returns the pruned ModelProto (also written to ``output_path`` when given) and a
    :class:`PruneReport`. ``scope`` is "layer" or "global" (unstructured only).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    m = _load_proto(model)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    report = PruneReport(structured, scope, sparsity, params_before=sum(a.size for a in inits.values()))
    if structured:
        m = onnx.shape_inference.infer_shapes(m)
        new = _prune_structured(m, inits, sparsity, report, strict)
    else:
        new = _prune_unstructured(m, inits, sparsity, scope, report)
    for t in m.graph.initializer:
        if t.name in new:
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new[t.name]), t.name))
    if structured:  # shapes of intermediates changed: infer them again
        del m.graph.value_info[:]
        m = onnx.shape_inference.infer_shapes(m)
    report.params_after = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    onnx.checker.check_model(m)
    if output_path is not None:
        onnx.save(m, os.fspath(output_path))
    return m, report


def _weights(m: onnx.ModelProto, inits: dict[str, np.ndarray]) -> list[tuple[onnx.NodeProto, str]]:
    """(node, weight name) of every Conv / Gemm / MatMul with a float constant weight, once per weight."""
    found, seen = [], set()
    for n in m.graph.node:
        if n.op_type in TARGETS and n.domain in ("", "ai.onnx") and len(n.input) > 1:
            w = inits.get(n.input[1])
            if w is not None and w.dtype.kind == "f" and w.ndim >= 2 and n.input[1] not in seen:
                seen.add(n.input[1])
                found.append((n, n.input[1]))
    return found


# ----------------------------------------------------------------------------- unstructured


def _smallest(a: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries of the flat array ``a`` (exactly k; ties by position)."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    return np.argpartition(a, k - 1, kind="introselect")[:k]


def _prune_unstructured(m, inits, sparsity, scope, report) -> dict[str, np.ndarray]:
    layers = _weights(m, inits)
    new = {}
    if scope == "layer":
        for _, name in layers:
            w = inits[name]
            flat = np.abs(w).reshape(-1)
            pruned = w.copy().reshape(-1)
            pruned[_smallest(flat, int(round(sparsity * flat.size)))] = 0
            new[name] = pruned.reshape(w.shape)
    else:  # one threshold for all: the k smallest |w| of every layer together
        flats = [np.abs(inits[name]).reshape(-1) for _, name in layers]
        sizes = np.cumsum([0] + [f.size for f in flats])
        allw = np.concatenate(flats) if flats else np.zeros(0)
        drop = _smallest(allw, int(round(sparsity * allw.size)))
        for i, (_, name) in enumerate(layers):
            mine = drop[(drop >= sizes[i]) & (drop < sizes[i + 1])] - sizes[i]
            pruned = inits[name].copy().reshape(-1)
            pruned[mine] = 0
            new[name] = pruned.reshape(inits[name].shape)
    for node, name in layers:
        w, p = inits[name], new[name]
        report.layers.append(LayerStat(node.name or node.output[0], node.op_type, name, w.shape, p.shape,
                                       int(np.count_nonzero(w)), int(np.count_nonzero(p)), p.size))
    return new


# ----------------------------------------------------------------------------- structured


class Unsupported(ValueError):
    """A layer whose output channels cannot be cut in one place."""


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _out_axis(node, w) -> int:
    """The axis of the weight that indexes the layer's output channels."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if _attrs(node).get("transB", 0) else 1
    return 1  # MatMul W [K, N]


def _in_axis(node) -> int:
    """The axis of the weight that indexes the layer's input channels."""
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        return 1 if _attrs(node).get("transB", 0) else 0
    return 0


def _shape(m, name):
    for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        if v.name == name and v.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    return None


def _plan_cut(m, inits, node, users, graph_outputs):
    """Where output channel c of ``node`` goes: a list of (initializer, axis, block) to slice
    along with it — block > 1 after a Flatten, where channel c is the columns c*block..(c+1)*block.
    Raises :class:`Unsupported` naming the op that prevents the cut."""
    cuts = []
    name, block = node.output[0], 1
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            raise Unsupported("its bias is not a constant")
        cuts.append((node.input[2], inits[node.input[2]].ndim - 1, 1))
    while True:
        if name in graph_outputs:
            raise Unsupported("its output is a graph output (the model's interface)")
        readers = users.get(name, [])
        if len(readers) != 1:
            kinds = ", ".join(sorted({r.op_type for r in readers})) or "nothing"
            raise Unsupported(f"its channels flow to {len(readers)} readers ({kinds})")
        r = readers[0]
        if r.op_type in CHANNELWISE:
            if r.op_type == "MaxPool" and len(r.output) > 1 and r.output[1]:
                raise Unsupported("MaxPool Indices output")
            if any(i in inits and inits[i].size > 1 for i in r.input[1:] if i):
                raise Unsupported(f"{r.op_type} with per-channel parameters")
            name = r.output[0]
        elif r.op_type == "BatchNormalization":
            if any(i not in inits for i in r.input[1:5]):
                raise Unsupported("BatchNormalization with non-constant statistics")
            cuts += [(i, 0, block) for i in r.input[1:5]]
            name = r.output[0]
        elif r.op_type in ("Add", "Mul", "Sub", "Div") and len(r.input) == 2 and \
                sum(i in inits for i in r.input) == 1:
            c = r.input[0] if r.input[0] in inits else r.input[1]
            arr = inits[c]
            rank = len(_shape(m, name) or []) or None
            if arr.size == 1:
                pass
            elif node.op_type == "Conv" and arr.ndim >= 3 and arr.shape[-3] > 1 and \
                    all(d == 1 for d in arr.shape[-2:]):
                cuts.append((c, arr.ndim - 3, 1))
            elif node.op_type != "Conv" and arr.shape[-1] > 1 and all(d == 1 for d in arr.shape[:-1]):
                cuts.append((c, arr.ndim - 1, 1))
            else:
                raise Unsupported(f"{r.op_type} with a constant of shape {list(arr.shape)} (rank {rank})")
            name = r.output[0]
        elif r.op_type == "Flatten" and node.op_type == "Conv":
            shape = _shape(m, r.input[0])
            if _attrs(r).get("axis", 1) != 1 or shape is None or any(d is None for d in shape[2:]):
                raise Unsupported("Flatten with an unknown spatial size or axis != 1")
            block *= int(np.prod(shape[2:]))
            name = r.output[0]
        elif r.op_type in TARGETS and r.input[0] == name and r.input[1] in inits:
            if r.op_type == "Conv" and _attrs(r).get("group", 1) != 1:
                raise Unsupported("the next Conv is grouped (depthwise)")
            cuts.append((r.input[1], _in_axis(r), block))
            return cuts
        else:
            raise Unsupported(f"its channels flow into {r.op_type} ({r.name or r.output[0]})")


def _keep(w: np.ndarray, axis: int, sparsity: float) -> np.ndarray:
    """Indices (sorted) of the channels along ``axis`` with the largest L1 norms."""
    norms = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).sum(axis=1)
    n_keep = max(1, w.shape[axis] - int(round(sparsity * w.shape[axis])))
    return np.sort(np.argsort(-norms, kind="stable")[:n_keep])


def _take(a: np.ndarray, keep: np.ndarray, axis: int, block: int) -> np.ndarray:
    if block > 1:  # channel c = columns c*block .. (c+1)*block - 1
        keep = (keep[:, None] * block + np.arange(block)[None, :]).reshape(-1)
    return np.take(a, keep, axis=axis)


def _prune_structured(m, inits, sparsity, report, strict) -> dict[str, np.ndarray]:
    users: dict[str, list] = {}
    for n in m.graph.node:
        for i in set(n.input):
            users.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in m.graph.output}
    layers = _weights(m, inits)
    new = dict()
    refused = []
    def feeds_a_layer(start: str) -> bool:
        todo, seen = [start], set()
        while todo:
            for r in users.get(todo.pop(), []):
                if r.op_type in TARGETS:
                    return True
                if id(r) not in seen:
                    seen.add(id(r))
                    todo += list(r.output)
        return False

    heads = set()
    for node, name in layers:
        if not feeds_a_layer(node.output[0]):
            heads.add(name)  # the classifier head: its outputs are the model's outputs
            continue
        if sum(1 for n, _ in layers if n.input[1] == name) > 1 or len(users.get(name, [])) > 1:
            refused.append((node, "its weight is shared with another node"))
            continue
        if node.op_type == "Conv" and _attrs(node).get("group", 1) != 1:
            refused.append((node, "a grouped (depthwise) Conv: its outputs are tied to its inputs"))
            continue
        try:
            cuts = _plan_cut(m, inits, node, users, graph_outputs)
        except Unsupported as e:
            refused.append((node, str(e)))
            continue
        w = new.get(name, inits[name])
        axis = _out_axis(node, w)
        keep = _keep(w, axis, sparsity)
        new[name] = np.take(w, keep, axis=axis)
        for cname, caxis, block in cuts:
            new[cname] = _take(new.get(cname, inits[cname]), keep, caxis, block)
    if refused and strict:
        lines = "\n".join(f"  {n.op_type} {n.name or n.output[0]!r}: {why}" for n, why in refused)
        raise ValueError("structured pruning cannot cut the channels of:\n" + lines +
                         "\nminirt handles chains Conv -> [BN] -> Relu-like -> [pool] -> Conv/Flatten -> Gemm "
                         "and Gemm/MatMul -> [Add] -> Relu-like -> Gemm/MatMul; residual Adds and Concats "
                         "need the channel cut in every branch at once. prune(..., strict=False) skips them.")
    notes = {n.input[1]: why for n, why in refused}
    for node, name in layers:
        w, p = inits[name], new.get(name, inits[name])
        note = "kept: the model's output layer" if name in heads else ""
        if name in notes:
            note = f"skipped: {notes[name]}"
        report.layers.append(LayerStat(node.name or node.output[0], node.op_type, name, w.shape, p.shape,
                                       int(np.count_nonzero(w)), int(np.count_nonzero(p)), p.size, note))
    return new


# ----------------------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    p = sub.add_parser("prune", help="magnitude pruning of Conv/Gemm/MatMul weights")
    p.add_argument("model")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights (or channels) to remove")
    p.add_argument("--structured", action="store_true", help="remove whole output channels (smaller, faster)")
    p.add_argument("--global", dest="scope", action="store_const", const="global", default="layer",
                   help="one magnitude threshold across all layers (unstructured)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.set_defaults(func=_cmd_prune)


def _cmd_prune(args) -> int:
    before = os.path.getsize(args.model)
    _, report = prune(args.model, args.sparsity, structured=args.structured, scope=args.scope,
                      output_path=args.output)
    print(report.table())
    after = os.path.getsize(args.output)
    print(f"size: {before:,} B -> {after:,} B; written to {args.output}")
    return 0
