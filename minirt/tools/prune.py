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

Transformers (``structured=True``, e.g. the bundled chargpt)
    *FFN hidden units*: ``x @ W1 [d, ff] (+ b1) -> GELU/Relu -> @ W2 [ff, d]`` loses columns of
    W1 and b1 and the matching rows of W2. The channels may branch and meet again through
    element-wise ops, so the erf form of GELU that exporters write
    (``x * 0.5 * (1 + Erf(x / sqrt 2))``) is followed as one region.
    *Attention heads* (``heads=True``): a fused Q/K/V projection ``W_qkv [d, 3*H*hd]`` that is
    Split into Q, K, V and reshaped to ``[B, T, H, hd]`` with constant ``H, hd`` loses the
    column groups of the dropped heads (in Q, K and V), the output projection the matching rows,
    and the Split sizes, the Reshape constants and the ``past_*``/``present_*`` shapes become
    ``H' = H - round(sparsity * H)`` heads. Heads are scored by the L1 norm of their Q/K/V
    columns plus their output-projection rows. Every op between the Reshape into heads and the
    one merging them must keep the head axis apart (checked op by op); otherwise the heads stay.
    The layers that write the residual stream (attention output, W2) keep their outputs.
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
# more element-wise ops, and binary ones (channel c of the output from channel c of the inputs)
UNARY = ("Erf", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Softsign", "Mish", "Cast")
BINARY = ("Add", "Mul", "Sub", "Div", "Pow")


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
          output_path=None, *, strict: bool = True, heads: bool = True) -> tuple[onnx.ModelProto, PruneReport]:
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
        new = _prune_structured(m, inits, sparsity, report, strict, heads)
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


def _constants(m: onnx.ModelProto, inits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph: initializers and the outputs of Constant nodes."""
    consts = dict(inits)
    for n in m.graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.attribute) == 1 \
                and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def _plan_cut(m, inits, node, users, graph_outputs, consts=None):
    """Where output channel c of ``node`` goes: a list of (initializer, axis, block) to slice
    along with it — block > 1 after a Flatten, where channel c is the columns c*block..(c+1)*block.

    The channels may branch and meet again through element-wise ops, as in the erf form of GELU
    that exporters write, ``x * 0.5 * (1 + Erf(x / sqrt 2))``: every tensor reached from the
    layer's output must be read only by channel-wise ops (or by binary ops whose other operand is
    a scalar, a per-channel constant, or another tensor of the same region), and the region must
    end in exactly one next layer. Raises :class:`Unsupported` naming the op that prevents the cut.
    """
    consts = inits if consts is None else consts
    cuts = []
    block = 1
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            raise Unsupported("its bias is not a constant")
        cuts.append((node.input[2], inits[node.input[2]].ndim - 1, 1))
    region, todo, done = {node.output[0]}, [node.output[0]], set()
    pending = []  # (op, operand): non-constant operands of binary ops, must turn out to be in the region
    end = None
    while todo:
        name = todo.pop(0)
        if name in graph_outputs:
            raise Unsupported("its output is a graph output (the model's interface)")
        readers = users.get(name, [])
        if not readers:
            raise Unsupported("nothing reads its output")
        if len(readers) > 1 and any(r.op_type not in CHANNELWISE + UNARY + BINARY for r in readers):
            if any(r.op_type == "Add" and not any(i in consts for i in r.input) for r in readers):
                raise Unsupported("its channels are the residual stream (an Add of two activations, "
                                  "read elsewhere too)")
            kinds = ", ".join(sorted({r.op_type for r in readers}))
            raise Unsupported(f"its channels flow to {len(readers)} readers ({kinds})")
        for r in readers:
            if id(r) in done:
                continue
            done.add(id(r))
            if r.op_type in TARGETS and r.input[0] == name and r.input[1] in inits and len(readers) == 1:
                if r.op_type == "Conv" and _attrs(r).get("group", 1) != 1:
                    raise Unsupported("the next Conv is grouped (depthwise)")
                if end is not None:
                    raise Unsupported("its channels flow into two layers")
                end = r
                cuts.append((r.input[1], _in_axis(r), block))
                continue
            if r.op_type in CHANNELWISE or r.op_type in UNARY:
                if r.op_type == "MaxPool" and len(r.output) > 1 and r.output[1]:
                    raise Unsupported("MaxPool Indices output")
                if any(i in consts and consts[i].size > 1 for i in r.input[1:] if i):
                    raise Unsupported(f"{r.op_type} with per-channel parameters")
            elif r.op_type == "BatchNormalization":
                if any(i not in inits for i in r.input[1:5]):
                    raise Unsupported("BatchNormalization with non-constant statistics")
                cuts += [(i, 0, block) for i in r.input[1:5]]
            elif r.op_type in BINARY and len(r.input) == 2:
                for other in r.input:
                    if other == name or other in region:
                        continue
                    if other not in consts:
                        pending.append((r, other))
                        continue
                    arr = consts[other]
                    if arr.size == 1:
                        continue
                    if other not in inits:
                        raise Unsupported(f"{r.op_type} with a per-channel Constant node (not an initializer)")
                    if node.op_type == "Conv" and arr.ndim >= 3 and arr.shape[-3] > 1 and \
                            all(d == 1 for d in arr.shape[-2:]):
                        cuts.append((other, arr.ndim - 3, block))
                    elif node.op_type != "Conv" and arr.shape[-1] > 1 and all(d == 1 for d in arr.shape[:-1]):
                        cuts.append((other, arr.ndim - 1, block))
                    else:
                        raise Unsupported(f"{r.op_type} with a constant of shape {list(arr.shape)}")
            elif r.op_type == "Flatten" and node.op_type == "Conv":
                shape = _shape(m, r.input[0])
                if _attrs(r).get("axis", 1) != 1 or shape is None or any(d is None for d in shape[2:]):
                    raise Unsupported("Flatten with an unknown spatial size or axis != 1")
                block *= int(np.prod(shape[2:]))
            else:
                raise Unsupported(f"its channels flow into {r.op_type} ({r.name or r.output[0]})")
            region.add(r.output[0])
            todo.append(r.output[0])
    for r, other in pending:
        if other not in region:
            raise Unsupported(f"{r.op_type} ({r.name or r.output[0]}) mixes its channels with {other!r}")
    if end is None:
        raise Unsupported("its channels reach no next layer")
    seen, unique = set(), []
    for c in cuts:  # a constant read twice in the region is cut once
        if c[0] not in seen:
            seen.add(c[0])
            unique.append(c)
    return unique


# ----------------------------------------------------------------------------- attention heads


@dataclass
class _HeadPlan:
    """Everything to rewrite when attention heads go (see :func:`_plan_heads`)."""

    qkv: str  # fused Q/K/V weight [d, 3*H*hd]
    bias: str | None  # its bias [3*H*hd]
    proj: str  # output projection weight [H*hd, d]
    heads: int
    head_dim: int
    split: onnx.NodeProto  # Split of the qkv tensor into Q, K, V
    head_shapes: list[tuple[onnx.NodeProto, int]]  # (node, input index) of a constant holding H
    merged_shapes: list[tuple[onnx.NodeProto, int]]  # ... holding H*hd (the Reshape back to [B, T, H*hd])
    interface: list[tuple[str, int]]  # graph inputs / outputs (past_* / present_*) and their head axis


def _const_input(consts, producer, name):
    """(value, node, index) of the constant shape ``name``: a constant, or a Concat of pieces
    with constant tails. Returns a list of (value, node, input index) pieces, or None."""
    if name in consts:
        return [(consts[name], None, None)]
    p = producer.get(name)
    if p is None or p.op_type != "Concat":
        return None
    return [(consts.get(i), p, k) for k, i in enumerate(p.input)]


def _plan_heads(m, consts, node, users, producer, graph_outputs, graph_inputs, ranks) -> _HeadPlan:
    """Find the attention block around a fused Q/K/V projection, as ``torch.onnx`` exports it::

        x @ W_qkv [d, 3*H*hd] (+ b) -> Split(3, last axis) -> 3 x Reshape [B, T, H, hd]
          -> Transpose ... attention over the head axis (Concat with past_*, MatMul, Softmax ...)
          -> Transpose -> Reshape [B, T, H*hd] -> @ W_proj [H*hd, d]

    and check that every op between the two Reshapes keeps the head axis apart (a batch axis of
    the MatMuls, not the Softmax or Concat axis, broadcast by any other operand). Raises
    :class:`Unsupported` when the graph has any other shape."""
    out = node.output[0]
    w = consts[node.input[1]]
    bias = None
    r = users.get(out, [])
    if len(r) == 1 and r[0].op_type == "Add" and any(i in consts for i in r[0].input):
        bias = next(i for i in r[0].input if i in consts)
        if consts[bias].shape != (w.shape[1],):
            raise Unsupported("the Q/K/V bias is not one value per column")
        out = r[0].output[0]
        r = users.get(out, [])
    if len(r) != 1 or r[0].op_type != "Split" or len(r[0].output) != 3:
        raise Unsupported("its output is not split into Q, K, V")
    split = r[0]
    rank = ranks.get(out)
    axis = _attrs(split).get("axis", 0)
    if rank is None or axis % rank != rank - 1:
        raise Unsupported("the Q/K/V Split is not along the last axis")
    if w.shape[1] % 3:
        raise Unsupported("the Q/K/V width is not a multiple of 3")
    width = w.shape[1] // 3
    sizes = consts.get(split.input[1]) if len(split.input) > 1 and split.input[1] else \
        _attrs(split).get("split")
    if sizes is not None and [int(s) for s in np.asarray(sizes).reshape(-1)] != [width] * 3:
        raise Unsupported("the Q/K/V Split is not in three equal parts")
    head_shapes, heads, head_dim = [], None, None
    axis_of: dict[str, int] = {}  # tensor -> its head axis
    for t in split.output:
        rs = users.get(t, [])
        if len(rs) != 1 or rs[0].op_type != "Reshape":
            raise Unsupported("Q, K or V is not reshaped into heads")
        pieces = _const_input(consts, producer, rs[0].input[1])
        if pieces is None:
            raise Unsupported("the Reshape into heads has a computed shape")
        if pieces[0][1] is None:  # one constant [.., .., H, hd]
            shape = pieces[0][0].reshape(-1)
            if len(shape) != 4:
                raise Unsupported("the Reshape into heads is not to rank 4")
            h, d = int(shape[2]), int(shape[3])
            head_shapes.append((rs[0], 1))
        else:
            if len(pieces) != 4 or pieces[2][0] is None or pieces[3][0] is None \
                    or pieces[2][0].size != 1 or pieces[3][0].size != 1:
                raise Unsupported("the Reshape into heads does not end in constant [H, hd]")
            h, d = int(pieces[2][0].reshape(-1)[0]), int(pieces[3][0].reshape(-1)[0])
            head_shapes.append((pieces[2][1], pieces[2][2]))
        if h * d != width or (heads is not None and (h, d) != (heads, head_dim)):
            raise Unsupported(f"the Reshape into heads gives {h} x {d}, not {width} columns")
        heads, head_dim = h, d
        axis_of[rs[0].output[0]] = 2
    # walk forward from Q, K, V until the Reshape that merges the heads again
    todo, done, merged, interface, pending = list(axis_of), set(), [], [], []
    while todo:
        t = todo.pop(0)
        h = axis_of[t]
        rank = ranks.get(t)
        if rank is None:
            raise Unsupported(f"the rank of {t!r} is unknown")
        if t in graph_outputs:
            interface.append((t, h))
        for r in users.get(t, []):
            if id(r) in done:
                continue
            done.add(id(r))
            op = r.op_type
            outs = [r.output[0]]
            if op == "Transpose":
                perm = list(_attrs(r).get("perm", range(rank - 1, -1, -1)))
                new_h = perm.index(h)
            elif op == "Reshape" and h == rank - 2 and rank == 4:
                pieces = _const_input(consts, producer, r.input[1])
                if pieces is None:
                    raise Unsupported("the Reshape merging the heads has a computed shape")
                last = pieces[-1]
                if last[0] is None or int(np.asarray(last[0]).reshape(-1)[-1]) != width:
                    raise Unsupported("the Reshape merging the heads does not end in H*hd")
                merged.append((r if last[1] is None else last[1], 1 if last[1] is None else last[2]))
                nxt = users.get(r.output[0], [])
                if len(nxt) != 1 or nxt[0].op_type != "MatMul" or nxt[0].input[0] != r.output[0] \
                        or nxt[0].input[1] not in consts or consts[nxt[0].input[1]].shape[0] != width:
                    raise Unsupported("the merged heads do not go straight into the output projection")
                proj = nxt[0].input[1]
                continue
            elif op == "Concat":
                a = _attrs(r)["axis"] % rank
                if a == h:
                    raise Unsupported("a Concat along the head axis")
                for i in r.input:
                    if i in graph_inputs:
                        interface.append((i, h))
                    elif i not in axis_of:
                        pending.append((r, i, h))
                new_h = h
            elif op == "MatMul":
                if h >= rank - 2:
                    raise Unsupported("a MatMul over the head axis")
                for i in r.input:
                    if i != t:
                        pending.append((r, i, h))
                new_h = h
            elif op == "Softmax":
                if _attrs(r).get("axis", -1) % rank == h:
                    raise Unsupported("a Softmax over the head axis")
                new_h = h
            elif op in ("Add", "Sub", "Mul", "Div", "Where"):
                for i in r.input:
                    if i == t or i in axis_of:
                        continue
                    ri = consts[i].ndim if i in consts else ranks.get(i)
                    if ri is None:
                        raise Unsupported(f"{op} with an operand of unknown rank")
                    if ri >= rank - h:  # it reaches the head axis: must broadcast there
                        dim = (consts[i].shape if i in consts else _shape(m, i) or [None] * ri)[h - (rank - ri)]
                        if dim != 1:
                            pending.append((r, i, h))
                new_h = h
            else:
                raise Unsupported(f"the heads flow into {op} ({r.name or r.output[0]})")
            for o in outs:
                axis_of[o] = new_h
                todo.append(o)
    for r, i, h in pending:
        if axis_of.get(i) != h:
            raise Unsupported(f"{r.op_type} ({r.name or r.output[0]}) mixes the heads with {i!r}")
    if len(merged) != 1:
        raise Unsupported(f"the heads are merged by {len(merged)} Reshapes, not one")
    return _HeadPlan(node.input[1], bias, proj, heads, head_dim, split, head_shapes, merged, interface)


def _cut_heads(m, plan: _HeadPlan, new, inits, sparsity, b) -> tuple[int, int]:
    """Remove the heads with the smallest L1 norm (their Q, K, V columns and projection rows);
    rewrite the Split sizes, the Reshape constants and the past/present shapes. Returns (H, kept)."""
    H, hd = plan.heads, plan.head_dim
    w, p = new.get(plan.qkv, inits[plan.qkv]), new.get(plan.proj, inits[plan.proj])
    cols = lambda heads: np.concatenate([part * H * hd + hh * hd + np.arange(hd)  # noqa: E731
                                         for part in range(3) for hh in heads])
    norms = [np.abs(w[:, cols([hh])]).sum() + np.abs(p[hh * hd:(hh + 1) * hd]).sum() for hh in range(H)]
    k = max(1, H - int(round(sparsity * H)))
    if k == H:
        return H, k  # nothing to remove: leave the graph as it is
    keep = np.sort(np.argsort(-np.asarray(norms), kind="stable")[:k])
    new[plan.qkv] = np.take(w, cols(keep), axis=1)
    if plan.bias:
        new[plan.bias] = np.take(new.get(plan.bias, inits[plan.bias]), cols(keep), axis=0)
    rows = (keep[:, None] * hd + np.arange(hd)[None, :]).reshape(-1)
    new[plan.proj] = np.take(p, rows, axis=0)

    def set_const(node, index, old_value, value):
        old = np.asarray(old_value)
        node.input[index] = b.const(f"{node.name or node.output[0]}_pruned", np.asarray(value, dtype=old.dtype))

    sizes = np.array([k * hd] * 3, dtype=np.int64)
    if len(plan.split.input) > 1 and plan.split.input[1]:
        set_const(plan.split, 1, sizes, sizes)
    else:
        for a in plan.split.attribute:
            if a.name == "split":
                del a.ints[:]
                a.ints.extend(sizes.tolist())
    for node, index in plan.head_shapes:
        old = b.value(node.input[index])
        val = old.copy().reshape(-1)
        val[-2 if val.size == 4 else -1] = k  # [.., .., H, hd] or the piece [H]
        set_const(node, index, old, val.reshape(old.shape))
    for node, index in plan.merged_shapes:
        old = b.value(node.input[index])
        val = old.copy().reshape(-1)
        val[-1] = k * hd
        set_const(node, index, old, val.reshape(old.shape))
    for v in list(m.graph.input) + list(m.graph.output):
        for name, axis in plan.interface:
            if v.name == name:
                v.type.tensor_type.shape.dim[axis].dim_value = k
    return H, k


class _Consts:
    """New initializers with fresh names, and the value of any constant by name."""

    def __init__(self, m, consts):
        self.m, self.consts = m, consts
        self.taken = {t.name for t in m.graph.initializer} | {o for n in m.graph.node for o in n.output}

    def value(self, name):
        return np.asarray(self.consts[name])

    def const(self, base, value) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        self.m.graph.initializer.append(numpy_helper.from_array(value, name))
        self.consts[name] = value
        return name


def _keep(w: np.ndarray, axis: int, sparsity: float) -> np.ndarray:
    """Indices (sorted) of the channels along ``axis`` with the largest L1 norms."""
    norms = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).sum(axis=1)
    n_keep = max(1, w.shape[axis] - int(round(sparsity * w.shape[axis])))
    return np.sort(np.argsort(-norms, kind="stable")[:n_keep])


def _take(a: np.ndarray, keep: np.ndarray, axis: int, block: int) -> np.ndarray:
    if block > 1:  # channel c = columns c*block .. (c+1)*block - 1
        keep = (keep[:, None] * block + np.arange(block)[None, :]).reshape(-1)
    return np.take(a, keep, axis=axis)


def _prune_structured(m, inits, sparsity, report, strict, heads=True) -> dict[str, np.ndarray]:
    users: dict[str, list] = {}
    for n in m.graph.node:
        for i in set(n.input):
            users.setdefault(i, []).append(n)
    producer = {o: n for n in m.graph.node for o in n.output}
    graph_outputs = {o.name for o in m.graph.output}
    graph_inputs = {i.name for i in m.graph.input} - set(inits)
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)
             if v.type.tensor_type.HasField("shape")}
    consts = _constants(m, inits)
    layers = _weights(m, inits)
    layer_weights = {name for _, name in layers}
    new = dict()
    refused = []
    notes: dict[str, str] = {}

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

    output_layers = set()
    for node, name in layers:
        if not feeds_a_layer(node.output[0]):
            output_layers.add(name)  # the classifier head: its outputs are the model's outputs
            continue
        if sum(1 for n, _ in layers if n.input[1] == name) > 1 or len(users.get(name, [])) > 1:
            refused.append((node, "its weight is shared with another node"))
            continue
        if node.op_type == "Conv" and _attrs(node).get("group", 1) != 1:
            refused.append((node, "a grouped (depthwise) Conv: its outputs are tied to its inputs"))
            continue
        try:
            cuts = _plan_cut(m, inits, node, users, graph_outputs, consts)
        except Unsupported as e:
            why = str(e)
            if node.op_type == "MatMul":  # a fused Q/K/V projection: whole attention heads can go
                try:
                    plan = _plan_heads(m, consts, node, users, producer, graph_outputs, graph_inputs, ranks)
                except Unsupported as e2:
                    if "not split into Q, K, V" not in str(e2):  # it looked like attention
                        why = f"{why}; as attention: {e2}"
                else:
                    if heads:
                        h, k = _cut_heads(m, plan, new, inits, sparsity, _Consts(m, consts))
                        notes[name] = f"attention heads {h} -> {k}"
                        notes.setdefault(plan.proj, f"input rows of the {h - k} removed heads")
                    else:
                        notes[name] = "attention heads kept (heads=False)"
                    continue
            refused.append((node, why))
            continue
        w = new.get(name, inits[name])
        axis = _out_axis(node, w)
        keep = _keep(w, axis, sparsity)
        new[name] = np.take(w, keep, axis=axis)
        for cname, caxis, block in cuts:
            new[cname] = _take(new.get(cname, inits[cname]), keep, caxis, block)
            if cname in layer_weights:
                notes.setdefault(cname, "input rows of the removed units")
    if refused and strict:
        lines = "\n".join(f"  {n.op_type} {n.name or n.output[0]!r}: {why}" for n, why in refused)
        raise ValueError("structured pruning cannot cut the channels of:\n" + lines +
                         "\nminirt handles chains Conv -> [BN] -> Relu-like -> [pool] -> Conv/Flatten -> Gemm, "
                         "Gemm/MatMul -> [Add] -> element-wise (Relu, GELU ...) -> Gemm/MatMul, and the "
                         "heads of a fused Q/K/V attention block; residual Adds and Concats "
                         "need the channel cut in every branch at once. prune(..., strict=False) skips them.")
    refused_why = {n.input[1]: why for n, why in refused}
    for node, name in layers:
        w, p = inits[name], new.get(name, inits[name])
        note = "kept: the model's output layer" if name in output_layers else notes.get(name, "")
        if name in refused_why:
            note = f"skipped: {refused_why[name]}" + (f"; {note}" if note else "")
        report.layers.append(LayerStat(node.name or node.output[0], node.op_type, name, w.shape, p.shape,
                                       int(np.count_nonzero(w)), int(np.count_nonzero(p)), p.size, note))
    _drop_dead_constants(m)
    return new


def _drop_dead_constants(m: onnx.ModelProto) -> None:
    """Remove Constant nodes whose value nobody reads any more (replaced shape pieces)."""
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    keep = [n for n in m.graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    if len(keep) != len(m.graph.node):
        del m.graph.node[:]
        m.graph.node.extend(keep)


# ----------------------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    p = sub.add_parser("prune", help="magnitude pruning of Conv/Gemm/MatMul weights")
    p.add_argument("model")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights (or channels) to remove")
    p.add_argument("--structured", action="store_true", help="remove whole output channels (smaller, faster)")
    p.add_argument("--global", dest="scope", action="store_const", const="global", default="layer",
                   help="one magnitude threshold across all layers (unstructured)")
    p.add_argument("--skip-unsupported", dest="strict", action="store_false",
                   help="structured: skip the layers whose channels cannot be cut (residual stream ...)")
    p.add_argument("--no-heads", dest="heads", action="store_false",
                   help="structured: keep every attention head (prune only FFN units / channels)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.set_defaults(func=_cmd_prune)


def _cmd_prune(args) -> int:
    before = os.path.getsize(args.model)
    _, report = prune(args.model, args.sparsity, structured=args.structured, scope=args.scope,
                      output_path=args.output, strict=args.strict, heads=args.heads)
    print(report.table())
    after = os.path.getsize(args.output)
    print(f"size: {before:,} B -> {after:,} B; written to {args.output}")
    return 0
