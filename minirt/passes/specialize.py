"""Shape specialization: fold what the concrete input shapes decide.

Transformer exports compute shapes at run time: ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``, ``Range(0, seq)``, masks built from the sequence length. With symbolic input dims
(``batch``, ``seq``) load-time folding (:mod:`minirt.passes.fold`) cannot touch them. Once the
session knows the *concrete* shapes of the feeds, most of them are constants::

    g2 = specialize_shapes(graph, {"input_ids": (1, 16)})   # graph is unchanged

walks the graph once, in order, keeping for every value either its constant (initializers and
what was folded) or its exact shape, when that shape provably follows from the input shapes:

- a node whose inputs are all constants is folded with the reference op (the same code as
  ``fold_constants``); so is ``Shape``/``Size`` of a value whose shape is known;
- otherwise its output shapes are computed by a rule of :func:`output_shapes`, a **whitelist**
  of ops whose output shape depends only on their input *shapes* and *constant* inputs
  (elementwise and broadcasting ops, MatMul/Gemm and their quantized forms, Transpose,
  Reshape/Expand/Tile with a constant target, Slice/Unsqueeze/Squeeze/Split with constant
  parameters, Gather, Concat, reductions, LSTM/GRU/RNN ...). Any other op — NonZero, Compress,
  Unique, TopK, Loop/If/Scan, a Reshape whose target is data, other ops of other domains —
  leaves its outputs of unknown shape, and nothing downstream of them is folded.

The shapes recorded by ONNX shape inference at load time are *not* used (they are forgotten
on the copy): every shape used here was derived from the input shapes by the rules below.
Dead nodes are removed at the end. The session builds this graph when it sees the same input
shapes a second time and keeps a few such plans (see :class:`minirt.session.InferenceSession`).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from minirt.ir import Graph, Node, Value
from minirt.passes._util import copy_graph, frozen
from minirt.passes.cleanup import remove_dead_nodes
from minirt.passes.fold import MAX_ELEMENTS, _evaluate

Shape = tuple[int, ...]

# output 0 (and every output listed) has the shape of input 0
SAME_SHAPE = frozenset({
    "Identity", "Cast", "CastLike", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Tanh", "Sigmoid",
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Erf", "Not", "Softmax", "LogSoftmax", "Hardmax", "Gelu",
    "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Sin", "Cos",
    "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round",
    "Sign", "IsNaN", "IsInf", "Clip", "Trilu", "CumSum", "BitwiseNot", "LpNormalization",
    "InstanceNormalization", "MeanVarianceNormalization",
})
# ops whose first output only has input 0's shape (the others are statistics of another shape)
FIRST_OUTPUT_SAME = frozenset({"LayerNormalization", "BatchNormalization", "Dropout"})
# multidirectional (NumPy) broadcasting of all inputs (opset >= 8)
BROADCAST = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "And", "Or", "Xor", "Where", "Max", "Min", "Sum", "Mean", "BitShift", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "PRelu",
})
REDUCE = frozenset({
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
})


def has_shape_nodes(graph: Graph) -> bool:
    """True when the graph turns shapes into data (a ``Shape`` or ``Size`` node): only then can
    concrete input shapes make anything constant."""
    return any(n.domain == "" and n.op_type in ("Shape", "Size") for n in graph.nodes)


def specialize_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]], *,
                      max_elements: int = MAX_ELEMENTS) -> Graph:
    """A copy of ``graph`` for feeds of exactly these ``shapes`` (input name -> shape), with
    every computation that then depends only on shapes folded and dead nodes removed.

    The result is only valid for feeds of those shapes; ``graph`` itself is left unchanged.
    """
    g = copy_graph(graph)
    # forget the shapes recorded at load time: only what follows from `shapes` is used below
    g.value_info = {k: Value(k, v.dtype, None, v.kind) for k, v in g.value_info.items()}
    for v in g.outputs:
        v.shape = None
    for v in g.inputs:
        if v.name in g.initializers:
            continue
        v.shape = tuple(int(d) for d in shapes[v.name]) if v.name in shapes and v.kind == "tensor" else None
    opsets = g.opsets
    opset = opsets.get("", 1)
    const: dict[str, np.ndarray] = dict(g.initializers)
    known: dict[str, Shape] = {v.name: v.shape for v in g.inputs if v.shape is not None and v.name not in const}

    def shape_of(name: str) -> Shape | None:
        if not name:
            return None
        if name in const:
            return tuple(const[name].shape)
        return known.get(name)

    def record(name: str, shape: Shape) -> None:
        """Remember an exact shape, and write it where ``known_dims`` (fold) looks it up."""
        known[name] = shape
        old = g.value(name)
        if old is not None and old.name == name and any(old is o for o in g.outputs):
            old.shape = shape
        g.value_info[name] = Value(name, old.dtype if old is not None else None, shape,
                                   old.kind if old is not None else "tensor")

    kept: list[Node] = []
    for node in g.nodes:
        results = _fold_shape_of(node, shape_of)
        if results is None and not _too_big_fill(node, const, max_elements):
            results = _evaluate(g, node, const, {}, opsets, max_elements)
        if results is not None:
            for name, arr in zip(node.outputs, results):
                if name:
                    arr = frozen(arr)
                    g.initializers[name] = arr
                    const[name] = arr
                    record(name, tuple(arr.shape))
            continue
        kept.append(node)
        if node.subgraphs():
            continue
        try:
            out = output_shapes(node, shape_of, const, opset)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError):
            out = []  # a rule that cannot apply proves nothing: the shapes stay unknown
        for name, shape in zip(node.outputs, out):
            if name and shape is not None and all(d >= 0 for d in shape):
                record(name, tuple(int(d) for d in shape))
    g.nodes = kept
    return remove_dead_nodes(g)


def _too_big_fill(node: Node, const: Mapping[str, np.ndarray], max_elements: int) -> bool:
    """A ConstantOfShape over ``max_elements``: load-time folding takes it whatever its size (every
    run would rebuild it), but a specialized plan is one of several kept per session: leave it."""
    if node.domain != "" or node.op_type != "ConstantOfShape" or not node.inputs or node.inputs[0] not in const:
        return False
    return int(np.prod(const[node.inputs[0]], dtype=np.int64)) > max_elements


def _fold_shape_of(node: Node, shape_of: Callable[[str], Shape | None]) -> tuple[np.ndarray] | None:
    """``Shape(x)`` (with start/end) and ``Size(x)`` when the shape of ``x`` is known exactly
    (a 0 dim included: here every known shape is exact)."""
    if node.domain != "" or node.op_type not in ("Shape", "Size") or not node.inputs:
        return None
    s = shape_of(node.inputs[0])
    if s is None:
        return None
    if node.op_type == "Size":
        return (np.asarray(math.prod(s), dtype=np.int64),)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return (np.asarray(list(s)[start:end], dtype=np.int64),)  # Python slicing clamps as the spec says


# ---------------------------------------------------------------------------- shape rules
def _concat(shapes: list[Shape | None], axis: int) -> list[Shape | None]:
    """Concat's output shape: the inputs' shapes summed along ``axis``; ``[]`` if any is unknown."""
    if not shapes or any(t is None for t in shapes) or len({len(t) for t in shapes}) != 1:
        return []
    x = shapes[0]
    axis = axis + len(x) if axis < 0 else axis
    rest = {t[:axis] + t[axis + 1:] for t in shapes}
    if len(rest) != 1 or not 0 <= axis < len(x):
        return []
    return [x[:axis] + (sum(t[axis] for t in shapes),) + x[axis + 1:]]


def output_shapes(node: Node, shape_of: Callable[[str], Shape | None], const: Mapping[str, np.ndarray],
                  opset: int) -> list[Shape | None]:
    """The exact output shapes of ``node`` from its input shapes and constant inputs, one per
    output (None where unknown); ``[]`` when the op is not on the whitelist.

    Only ops whose output shape is a function of the input *shapes* (and of inputs that are
    constants) are listed. A rule may raise on inconsistent shapes: the caller then knows nothing.
    """
    ins = node.inputs
    op = node.op_type
    a = node.attrs

    def s(i: int) -> Shape | None:
        return shape_of(ins[i]) if i < len(ins) and ins[i] else None

    def c(i: int) -> list[int] | None:
        """Constant input ``i`` as a list of ints; None when absent or not constant."""
        if i >= len(ins) or not ins[i] or ins[i] not in const:
            return None
        return [int(x) for x in np.ravel(const[ins[i]])]

    def matmul_plus(b: int, bias: int) -> list[Shape | None]:
        """A product of inputs 0 and ``b``, plus the optional input ``bias`` (broadcast)."""
        y = _matmul(s(0), s(b))
        return [_broadcast([y, s(bias)]) if len(ins) > bias and ins[bias] else y]

    if node.domain == "minirt":
        if op == "FusedMatMul":
            return matmul_plus(1, 2)
        if op == "FusedGemm":
            return [_gemm(s(0), s(1), a)]
        if op == "FusedBatchNormalization":  # a per-channel affine map and a clip: X's shape
            return [s(0)]
        if op == "QuantizeMatMul":  # (A, a_scale, a_zero_point, B, b_scale, b_zero_point, bias)
            return matmul_plus(3, 6)
        if op == "FusedDynamicQuantizeMatMul":  # (A, B, b_scale, b_zero_point, bias)
            return matmul_plus(1, 4)
        if op == "ChainConcat":  # Concat, appending in place
            return _concat([s(i) for i in range(len(ins)) if ins[i]], a["axis"])
        return []
    if node.domain == "com.microsoft":  # the quantized products onnxruntime's quantizer emits
        if op == "DynamicQuantizeMatMul":  # (A, B, b_scale, b_zero_point, bias)
            return matmul_plus(1, 4)
        if op == "MatMulIntegerToFloat":  # (A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)
            return matmul_plus(1, 6)
        if op == "QGemm":  # (A, a_scale, a_zero_point, B, ...): Gemm's [M, N] (C adds, never widens)
            return [_gemm(s(0), s(3), a)]
        return []
    if node.domain != "":
        return []
    x = s(0)
    if op in SAME_SHAPE:
        return [x]
    if op in FIRST_OUTPUT_SAME:
        if op == "Dropout":
            return [x, x]
        return [x]
    if op in BROADCAST:
        if opset < 8:
            return []  # before opset 7/8 some of these had the legacy `broadcast`/`axis` semantics
        return [_broadcast([s(i) for i in range(len(ins))])]
    if x is None:
        return []
    if op in ("MatMul", "MatMulInteger"):
        return [_matmul(x, s(1))]
    if op == "QLinearMatMul":  # (a, a_scale, a_zero_point, b, ...)
        return [_matmul(x, s(3))]
    if op in ("QuantizeLinear", "DequantizeLinear"):  # elementwise (per tensor, axis or block)
        return [x]
    if op == "DynamicQuantizeLinear":  # y, and its scale and zero point (scalars)
        return [x, (), ()]
    if op == "Gemm":
        return [_gemm(x, s(1), a)]
    if op == "Transpose":
        perm = a.get("perm") or list(range(len(x)))[::-1]
        if sorted(perm) != list(range(len(x))):
            return []
        return [tuple(x[p] for p in perm)]
    if op == "Reshape":
        target = c(1) if "shape" not in a else list(a["shape"])
        return [_reshape(x, target, bool(a.get("allowzero", 0)))] if target is not None else []
    if op == "Flatten":
        axis = a.get("axis", 1)
        axis = axis + len(x) if axis < 0 else axis
        if not 0 <= axis <= len(x):
            return []
        return [(math.prod(x[:axis]), math.prod(x[axis:]))]
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes") if "axes" in a else c(1)
        if axes is None and len(ins) > 1 and ins[1]:
            return []  # axes given but not constant
        return [_unsqueeze(x, axes) if op == "Unsqueeze" else _squeeze(x, axes)]
    if op == "Concat":
        return _concat([s(i) for i in range(len(ins)) if ins[i]], a["axis"])
    if op == "Gather":
        idx = s(1)
        axis = a.get("axis", 0)
        axis = axis + len(x) if axis < 0 else axis
        if idx is None or not 0 <= axis < len(x):
            return []
        return [x[:axis] + idx + x[axis + 1:]]
    if op == "Slice":
        return [_slice(x, node, c, opset)]
    if op == "Split":
        return _split(x, node, c, opset)
    if op == "Expand":
        target = c(1)
        return [_broadcast([x, tuple(target)])] if target is not None else []
    if op == "ConstantOfShape":
        target = c(0)
        return [tuple(target)] if target is not None else []
    if op == "Tile":
        reps = c(1)
        if reps is None or len(reps) != len(x) or min(reps, default=0) < 0:
            return []
        return [tuple(d * r for d, r in zip(x, reps))]
    if op in REDUCE:
        return [_reduce(x, node, c, opset)]
    if op in ("LSTM", "GRU", "RNN"):
        return _recurrent(x, s(2), a)
    return []


def _recurrent(x: Shape, r: Shape | None, attrs: dict) -> list[Shape | None]:
    """LSTM/GRU/RNN: Y [seq, dirs, batch, H] and the last state(s) [dirs, batch, H], or with
    layout=1 Y [batch, seq, dirs, H] and [batch, dirs, H]; H is the last dim of R [dirs, G*H, H]."""
    dirs = 2 if attrs.get("direction", "forward") == "bidirectional" else 1
    if r is None or len(x) != 3 or len(r) != 3 or r[0] != dirs:
        return []
    H = r[2]
    if attrs.get("layout", 0):
        batch, seq = x[0], x[1]
        return [(batch, seq, dirs, H), (batch, dirs, H), (batch, dirs, H)]
    seq, batch = x[0], x[1]
    return [(seq, dirs, batch, H), (dirs, batch, H), (dirs, batch, H)]


def _broadcast(shapes: list[Shape | None]) -> Shape | None:
    if any(t is None for t in shapes):
        return None
    return tuple(np.broadcast_shapes(*shapes))  # raises ValueError when they do not broadcast


def _matmul(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None or not a or not b:
        return None
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError("inner dims differ")
    out = tuple(np.broadcast_shapes(a2[:-2], b2[:-2])) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _gemm(a: Shape | None, b: Shape | None, attrs: dict) -> Shape | None:
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = a[::-1] if attrs.get("transA", 0) else a
    k2, n = b[::-1] if attrs.get("transB", 0) else b
    if k != k2:
        raise ValueError("inner dims differ")
    return (m, n)


def _reshape(x: Shape, target: list[int], allowzero: bool) -> Shape | None:
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(x):
                return None
            t = x[i]
        out.append(t)
    if out.count(-1) > 1 or any(t < -1 for t in out):
        return None
    total = math.prod(x)
    if -1 in out:
        rest = math.prod(t for t in out if t != -1)
        if rest == 0 or total % rest:
            return None
        out[out.index(-1)] = total // rest
    return tuple(out) if math.prod(out) == total else None


def _unsqueeze(x: Shape, axes: list[int] | None) -> Shape | None:
    if axes is None:
        return None
    rank = len(x) + len(axes)
    axes = sorted(ax + rank if ax < 0 else ax for ax in axes)
    if len(set(axes)) != len(axes) or any(not 0 <= ax < rank for ax in axes):
        return None
    out, rest = [], iter(x)
    for i in range(rank):
        out.append(1 if i in axes else next(rest))
    return tuple(out)


def _squeeze(x: Shape, axes: list[int] | None) -> Shape | None:
    if axes is None:
        return tuple(d for d in x if d != 1)
    axes = {ax + len(x) if ax < 0 else ax for ax in axes}
    if any(not 0 <= ax < len(x) or x[ax] != 1 for ax in axes):
        return None
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _slice(x: Shape, node: Node, c, opset: int) -> Shape | None:
    a = node.attrs
    if opset < 10 or "starts" in a:
        starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
    else:
        starts, ends, axes, steps = c(1), c(2), c(3), c(4)
        for i, v in zip(range(1, 5), (starts, ends, axes, steps)):
            if v is None and i < len(node.inputs) and node.inputs[i]:
                return None  # a parameter that is data
    if starts is None or ends is None or len(starts) != len(ends):
        return None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if len(axes) != len(starts) or len(steps) != len(starts):
        return None
    out = list(x)
    seen = set()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + len(x) if axis < 0 else axis
        if not 0 <= axis < len(x) or axis in seen or step == 0:
            return None
        seen.add(axis)
        # Python's slice.indices clamps start/end exactly as the ONNX spec does, for both signs
        out[axis] = len(range(*slice(start, end, step).indices(x[axis])))
    return tuple(out)


def _split(x: Shape, node: Node, c, opset: int) -> list[Shape | None]:
    a = node.attrs
    axis = a.get("axis", 0)
    axis = axis + len(x) if axis < 0 else axis
    if not 0 <= axis < len(x):
        return []
    n = len(node.outputs)
    if "split" in a:
        sizes = list(a["split"])
    elif len(node.inputs) > 1 and node.inputs[1]:
        sizes = c(1)
        if sizes is None:
            return []
    else:
        n = a.get("num_outputs", n)
        dim = x[axis]
        if dim % n == 0:
            sizes = [dim // n] * n
        elif opset >= 18 and "num_outputs" in a:
            chunk = -(-dim // n)  # opset 18: ceil-sized chunks, the last one smaller
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        else:
            return []
    if len(sizes) != len(node.outputs) or sum(sizes) != x[axis] or min(sizes, default=0) < 0:
        return []
    return [x[:axis] + (k,) + x[axis + 1:] for k in sizes]


def _reduce(x: Shape, node: Node, c, opset: int) -> Shape | None:
    a = node.attrs
    keepdims = a.get("keepdims", 1)
    if "axes" in a:
        axes = list(a["axes"])
    elif len(node.inputs) > 1 and node.inputs[1]:
        axes = c(1)
        if axes is None:
            return None
    else:
        axes = []
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(len(x)))
    axes = {ax + len(x) if ax < 0 else ax for ax in axes}
    if any(not 0 <= ax < len(x) for ax in axes):
        return None
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)
