"""Post-training int8 quantization, written out so it can be read: calibrate, choose scales,
rewrite the graph — and :func:`fuse_qdq`, the pass that lets minirt run the result on int8 kernels.

A quantized tensor stores ``q = clip(round(x / scale) + zero_point)`` and means
``x ≈ (q - zero_point) * scale``. :func:`quantize` rewrites a float ONNX model into the standard
**QDQ** form that every runtime reads::

    x ─► QuantizeLinear ─► DequantizeLinear ─┐
    W_int8 ─────────────► DequantizeLinear ─┼─► Conv ─► Relu ─► QuantizeLinear ─► DequantizeLinear ─► ...
    b_int32 ────────────► DequantizeLinear ─┘

The file says *where* int8 is allowed and *which* scales to use; the float ops stay. A runtime
(onnxruntime, or minirt after :func:`fuse_qdq`) recognises ``DQ -> Conv -> Q`` and runs one
integer ``QLinearConv`` instead.

mode="static"
    Activation scales are fixed ahead of time from calibration data: the float model runs on a
    few batches (``InferenceSession.run_with_intermediates``), and the min/max (or a percentile)
    of every tensor entering a Conv / MatMul / Gemm, and of every such node's output, is recorded.
mode="dynamic"
    Only the weights are quantized ahead of time. Activations are quantized at run time, per
    batch, by ``DynamicQuantizeLinear`` (uint8, from the batch's own min/max) feeding
    ``MatMulInteger`` / ``ConvInteger``; the int32 result is scaled back to float
    (``Cast -> Mul(x_scale * w_scale) -> Add(bias)``). No calibration data is needed, and the
    outputs stay float: this is what onnxruntime's ``quantize_dynamic`` writes too.

Scales (``_activation_params`` / ``_weight_params``):

- activations, asymmetric: the range is widened to contain 0 (so 0.0, e.g. padding, is exact),
  ``scale = (max - min) / (qmax - qmin)``, ``zero_point = round(qmin - min / scale)``;
- weights, symmetric int8: ``scale = max|w| / 127``, ``zero_point = 0``, per output channel
  (axis 0 of a Conv weight ``[M, C, kh, kw]``, axis 1 of a MatMul weight ``[K, N]``, axis 0 of a
  Gemm weight with ``transB=1``) or per tensor;
- bias: int32 with ``scale = x_scale * w_scale`` and zero point 0, so it adds straight into the
  int32 accumulator of the integer conv/matmul.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from minirt.passes.quant import TRANSPARENT, fuse_qdq  # noqa: F401  (fuse_qdq re-exported: it lives with the passes)

TARGETS = ("Conv", "MatMul", "Gemm")
# TRANSPARENT: ops that only move or select values: a tensor that goes through them keeps the
# quantization parameters of its input (max-pool picks one of its inputs; the others reshape)
_TYPES = {"int8": np.int8, "uint8": np.uint8}


# ----------------------------------------------------------------------------- scales


def _qrange(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _activation_params(lo: float, hi: float, dtype) -> tuple[np.float32, Any]:
    """Asymmetric scale and zero point covering [min(lo, 0), max(hi, 0)]."""
    qmin, qmax = _qrange(dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32((hi - lo) / (qmax - qmin)) if hi > lo else np.float32(1.0)
    zp = int(np.clip(np.rint(qmin - lo / float(scale)), qmin, qmax))
    return scale, np.array(zp, dtype=dtype)


def _weight_params(w: np.ndarray, axis: int | None, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Scale(s) and zero point(s) of a weight: symmetric for int8, asymmetric for uint8.

    ``axis=None`` gives one scale for the whole tensor, else one per slice along ``axis``.
    """
    w = np.asarray(w, dtype=np.float32)
    reduce = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    lo, hi = np.minimum(w.min(axis=reduce), 0), np.maximum(w.max(axis=reduce), 0)
    if np.dtype(dtype) == np.int8:
        amax = np.maximum(-lo, hi)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        zp = np.zeros(scale.shape, dtype=np.int8)
    else:
        scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
        zp = np.clip(np.rint(-lo / scale), 0, 255).astype(np.uint8)
    return scale, zp


def _quantize_array(x: np.ndarray, scale, zp, axis: int | None, dtype) -> np.ndarray:
    """The QuantizeLinear of ``x`` (round half to even, saturate), per tensor or per ``axis``."""
    shape = [1] * x.ndim
    if axis is not None and np.ndim(scale) > 0:
        shape[axis] = -1
    s = np.reshape(scale, shape) if np.ndim(scale) else scale
    z = np.reshape(zp, shape).astype(np.int64) if np.ndim(zp) else int(zp)
    lo, hi = _qrange(dtype)
    return np.clip(np.rint(x / s) + z, lo, hi).astype(dtype)


# ----------------------------------------------------------------------------- calibration


class Calibrator:
    """Min/max (or percentile) of named tensors over calibration batches, run by minirt.

    ``method="percentile"`` keeps the ``percentile``-th percentile of |x| per batch and averages
    it over batches: a few outliers then no longer stretch the scale for everyone else.
    """

    def __init__(self, model, names: Iterable[str], method: str = "minmax", percentile: float = 99.99):
        import minirt

        if method not in ("minmax", "percentile"):
            raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
        self.sess = minirt.InferenceSession(model)
        self.names = set(names)
        self.method, self.percentile = method, percentile
        self.lo: dict[str, list[float]] = {n: [] for n in self.names}
        self.hi: dict[str, list[float]] = {n: [] for n in self.names}

    def collect(self, feed: Mapping[str, np.ndarray]) -> None:
        values = self.sess.run_with_intermediates(feed)
        for name in self.names:
            x = values.get(name)
            if x is None:
                continue
            x = np.asarray(x, dtype=np.float32)
            if self.method == "minmax":
                lo, hi = float(x.min()), float(x.max())
            else:
                lo = float(np.percentile(x, 100 - self.percentile))
                hi = float(np.percentile(x, self.percentile))
            self.lo[name].append(lo)
            self.hi[name].append(hi)

    def ranges(self) -> dict[str, tuple[float, float]]:
        out = {}
        for n in self.names:
            if not self.lo[n]:
                continue
            if self.method == "minmax":
                out[n] = (min(self.lo[n]), max(self.hi[n]))
            else:
                out[n] = (float(np.mean(self.lo[n])), float(np.mean(self.hi[n])))
        return out


def iter_batches(data, input_names: list[str], batch_size: int = 64):
    """Calibration data as feeds: an array (the only input), a dict name -> array (split along
    axis 0), a path to an .npz holding arrays named like the inputs, or an iterable of feeds."""
    if isinstance(data, (str, os.PathLike)):
        with np.load(data) as z:
            data = {k: z[k] for k in z.files}
    if isinstance(data, np.ndarray):
        if len(input_names) != 1:
            raise ValueError(f"the model has inputs {input_names}: pass calibration data as a dict")
        data = {input_names[0]: data}
    if isinstance(data, Mapping):
        missing = [n for n in input_names if n not in data]
        if missing:
            raise ValueError(f"calibration data lacks input(s) {missing}; it has {sorted(data)}")
        total = len(data[input_names[0]])
        for i in range(0, total, batch_size):
            yield {n: np.asarray(data[n][i:i + batch_size]) for n in input_names}
        return
    for feed in data:
        yield feed if isinstance(feed, Mapping) else {input_names[0]: feed}


# ----------------------------------------------------------------------------- graph rewrite


@dataclass
class _Target:
    node: onnx.NodeProto
    weight: str  # initializer name
    axis: int  # per-channel axis of the weight
    transposed: bool = False  # Gemm with transB=1


def _load_proto(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(os.fspath(model))


def _opset(m: onnx.ModelProto) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 1)


def _find_targets(m: onnx.ModelProto, inits: dict[str, np.ndarray]) -> list[_Target]:
    """Conv / MatMul / Gemm nodes whose weight is a float initializer (the ones worth int8)."""
    found = []
    for node in m.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in TARGETS or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is None or w.dtype != np.float32 or node.input[0] in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            found.append(_Target(node, node.input[1], axis=0))
        elif node.op_type == "MatMul" and w.ndim == 2:
            found.append(_Target(node, node.input[1], axis=1))  # W [K, N]: one scale per column
        elif node.op_type == "Gemm" and w.ndim == 2 and not attrs.get("transA", 0) \
                and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0:
            t = bool(attrs.get("transB", 0))
            found.append(_Target(node, node.input[1], axis=0 if t else 1, transposed=t))
    return found


class _Builder:
    """Collects new initializers and nodes, with fresh names."""

    def __init__(self, m: onnx.ModelProto):
        self.m = m
        self.taken = {i.name for i in m.graph.initializer} | {v.name for v in m.graph.input}
        for n in m.graph.node:
            self.taken.update(n.input)
            self.taken.update(n.output)
        self.inits: list[onnx.TensorProto] = []

    def name(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name


def quantize(model, calibration_data=None, mode: str = "static", per_channel: bool = True,
             weight_type: str = "int8", activation_type: str = "uint8", output_path=None, *,
             method: str = "minmax", percentile: float = 99.99, batch_size: int = 64) -> onnx.ModelProto:
    """Post-training quantization of ``model`` (path, bytes or ModelProto) to int8; returns the
    quantized ModelProto (and writes it to ``output_path`` when given).

    ``calibration_data`` (static mode): an array, a dict input name -> array, an .npz path, or an
    iterable of feeds — a few hundred representative samples are plenty. ``method`` is
    "minmax" or "percentile". Dynamic mode ignores it and ``activation_type`` (always uint8, as
    ``DynamicQuantizeLinear`` defines).
    """
    if mode not in ("static", "dynamic"):
        raise ValueError(f"mode must be 'static' or 'dynamic', got {mode!r}")
    for what, t in (("weight_type", weight_type), ("activation_type", activation_type)):
        if t not in _TYPES:
            raise ValueError(f"{what} must be 'int8' or 'uint8', got {t!r}")
    m = _load_proto(model)
    if per_channel and _opset(m) < 13:  # per-axis DequantizeLinear arrived in opset 13
        from onnx import version_converter

        m = version_converter.convert_version(m, 13)
    m = onnx.shape_inference.infer_shapes(m)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    targets = _find_targets(m, inits)
    if mode == "static":
        if calibration_data is None:
            raise ValueError("static quantization needs calibration_data (a few representative inputs)")
        out = _quantize_static(m, inits, targets, calibration_data, per_channel, _TYPES[weight_type],
                               _TYPES[activation_type], method, percentile, batch_size)
    else:
        out = _quantize_dynamic(m, inits, targets, per_channel, _TYPES[weight_type])
    out.producer_name = "minirt.quantize"
    onnx.checker.check_model(out)
    if output_path is not None:
        onnx.save(out, os.fspath(output_path))
    return out


def _consumers(m: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in m.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return users


def _quantize_static(m, inits, targets, data, per_channel, wtype, atype, method, percentile, batch_size):
    graph_outputs = {o.name for o in m.graph.output}
    users = _consumers(m)
    producer = {o: n for n in m.graph.node for o in n.output}

    # 1. which activations get a Q -> DQ pair: every target's input, and every target's output
    #    (after its Relu, which the int8 op absorbs) unless it leaves the graph
    def after_relu(name: str) -> str:
        u = users.get(name, [])
        if len(u) == 1 and u[0].op_type == "Relu" and name not in graph_outputs:
            return u[0].output[0]
        return name

    inputs = [t.node.input[0] for t in targets]
    outputs = [after_relu(t.node.output[0]) for t in targets]
    outputs = [o for o in outputs if o not in graph_outputs]
    wanted = list(dict.fromkeys(inputs + outputs))

    # a tensor reached from a quantized one through MaxPool/Flatten/Reshape... shares its params,
    # and so does every tensor on the way: fuse_qdq then runs those ops on the int8 values
    share = {n: n for n in wanted}
    for name in list(wanted):
        chain, seen = [], name
        while seen in producer and producer[seen].op_type in TRANSPARENT:
            up = producer[seen].input[0]
            if up in share and share[up] == up:
                for c in chain + [name]:
                    share[c] = up
                break
            chain.append(up)
            seen = up
    wanted = list(share)
    input_names = [i.name for i in m.graph.input if i.name not in inits]
    cal = Calibrator(m, set(share.values()), method, percentile)
    for feed in iter_batches(data, input_names, batch_size):
        cal.collect(feed)
    ranges = cal.ranges()

    b = _Builder(m)
    qdq_nodes: dict[str, list[onnx.NodeProto]] = {}  # producer output -> nodes to put after it
    renamed: dict[str, str] = {}  # activation -> its dequantized name
    act_params: dict[str, tuple] = {}
    for name in wanted:
        if share[name] not in ranges:
            continue
        scale, zp = _activation_params(*ranges[share[name]], atype)
        act_params[name] = (scale, zp)
        s, z = b.const(f"{name}_scale", scale), b.const(f"{name}_zero_point", zp)
        q, dq = b.name(f"{name}_quantized"), b.name(f"{name}_dequantized")
        qdq_nodes[name] = [
            helper.make_node("QuantizeLinear", [name, s, z], [q], name=b.name(f"{name}_QuantizeLinear")),
            helper.make_node("DequantizeLinear", [q, s, z], [dq], name=b.name(f"{name}_DequantizeLinear")),
        ]
        renamed[name] = dq

    # 2. weights (and biases) as integers + DequantizeLinear
    weight_nodes = []
    replace: dict[tuple[int, int], str] = {}  # (id(node), input index) -> new input name
    dropped = set()
    for t in targets:
        w = inits[t.weight]
        axis = t.axis if per_channel else None
        w_scale, w_zp = _weight_params(w, axis, wtype)
        wq = _quantize_array(w, w_scale, w_zp, axis, wtype)
        ws, wz = b.const(f"{t.weight}_scale", w_scale), b.const(f"{t.weight}_zero_point", w_zp)
        wq_name = b.const(f"{t.weight}_quantized", wq)
        w_dq = b.name(f"{t.weight}_dequantized")
        attrs = {"axis": axis} if axis is not None else {}
        weight_nodes.append(helper.make_node("DequantizeLinear", [wq_name, ws, wz], [w_dq],
                                             name=b.name(f"{t.weight}_DequantizeLinear"), **attrs))
        replace[(id(t.node), 1)] = w_dq
        dropped.add(t.weight)
        x = t.node.input[0]
        bias = t.node.input[2] if len(t.node.input) > 2 and t.node.input[2] else None
        if bias in inits and x in act_params and inits[bias].ndim == 1:
            # int32 bias at scale x_scale * w_scale: it adds into the integer accumulator as is
            b_scale = (act_params[x][0] * w_scale).astype(np.float32)
            bq = np.clip(np.rint(inits[bias] / b_scale), -2**31, 2**31 - 1).astype(np.int32)
            bs = b.const(f"{bias}_scale", b_scale)
            bz = b.const(f"{bias}_zero_point", np.zeros(b_scale.shape, np.int32))
            bq_name = b.const(f"{bias}_quantized", bq)
            b_dq = b.name(f"{bias}_dequantized")
            attrs = {"axis": 0} if b_scale.ndim else {}
            weight_nodes.append(helper.make_node("DequantizeLinear", [bq_name, bs, bz], [b_dq],
                                                 name=b.name(f"{bias}_DequantizeLinear"), **attrs))
            replace[(id(t.node), 2)] = b_dq
            dropped.add(bias)

    # 3. rebuild the node list: weight DQs first, graph-input QDQs, then each node followed by
    #    the Q -> DQ of its outputs; every reader of a quantized tensor reads the DQ instead
    new_nodes = list(weight_nodes)
    for inp in m.graph.input:
        new_nodes += qdq_nodes.get(inp.name, [])
    for node in m.graph.node:
        for k, i in enumerate(node.input):
            if (id(node), k) in replace:
                node.input[k] = replace[(id(node), k)]
            elif i in renamed:
                node.input[k] = renamed[i]
        new_nodes.append(node)
        for o in node.output:
            new_nodes += qdq_nodes.get(o, [])
    still_used = {i for n in new_nodes for i in n.input}
    return _finish(m, new_nodes, b, dropped - still_used)


def _finish(m, nodes, b: _Builder, dropped: set[str]) -> onnx.ModelProto:
    g = m.graph
    keep = [t for t in g.initializer if t.name not in dropped]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep + b.inits)
    kept_inputs = [i for i in g.input if i.name not in dropped]
    del g.input[:]
    g.input.extend(kept_inputs)
    del g.value_info[:]  # recomputed below for the new graph
    return onnx.shape_inference.infer_shapes(m)


def _quantize_dynamic(m, inits, targets, per_channel, wtype):
    """x -> DynamicQuantizeLinear -> MatMulInteger/ConvInteger(x_q, W_q) -> Cast -> Mul(scales) -> Add(bias)."""
    b = _Builder(m)
    by_node = {id(t.node): t for t in targets}
    dynamic: dict[str, tuple[str, str, str]] = {}  # activation -> (q, scale, zero point) outputs
    new_nodes, dropped = [], set()
    for node in m.graph.node:
        t = by_node.get(id(node))
        if t is None:
            new_nodes.append(node)
            continue
        w = inits[t.weight]
        if t.transposed:
            w = w.T  # Gemm transB=1: [N, K] -> [K, N], the MatMulInteger layout
        axis = (0 if node.op_type == "Conv" else 1) if per_channel else None
        w_scale, w_zp = _weight_params(w, axis, wtype)
        if node.op_type == "Conv" and np.dtype(wtype) == np.uint8 and w_zp.ndim:
            w_scale, w_zp = _weight_params(w, None, wtype)  # ConvInteger: one weight zero point
        wq = _quantize_array(w, w_scale, w_zp, axis if w_scale.ndim else None, wtype)
        x = node.input[0]
        if x not in dynamic:
            outs = [b.name(f"{x}_quantized"), b.name(f"{x}_scale"), b.name(f"{x}_zero_point")]
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [x], outs,
                                              name=b.name(f"{x}_DynamicQuantizeLinear")))
            dynamic[x] = tuple(outs)
        xq, xs, xz = dynamic[x]
        wq_name = b.const(f"{t.weight}_quantized", wq)
        wz = b.const(f"{t.weight}_zero_point", w_zp.reshape(-1)[:1].reshape(()) if wtype == np.int8 else w_zp)
        base = node.name or node.output[0]
        acc = b.name(f"{base}_int32")
        if node.op_type == "Conv":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            new_nodes.append(helper.make_node("ConvInteger", [xq, wq_name, xz, wz], [acc],
                                              name=b.name(f"{base}_ConvInteger"), **attrs))
            shape = (-1,) + (1,) * (w.ndim - 2)  # per output channel [M] -> [M, 1, 1]
        else:
            new_nodes.append(helper.make_node("MatMulInteger", [xq, wq_name, xz, wz], [acc],
                                              name=b.name(f"{base}_MatMulInteger")))
            shape = (-1,)  # per column [N]
        accf = b.name(f"{base}_float")
        new_nodes.append(helper.make_node("Cast", [acc], [accf], to=onnx.TensorProto.FLOAT))
        ws = b.const(f"{t.weight}_scale", w_scale.reshape(shape) if w_scale.ndim else w_scale)
        scale = b.name(f"{base}_scale")
        new_nodes.append(helper.make_node("Mul", [xs, ws], [scale]))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        out = node.output[0]
        scaled = b.name(f"{base}_scaled") if bias else out
        new_nodes.append(helper.make_node("Mul", [accf, scale], [scaled]))
        if bias:
            bias_name = bias
            if node.op_type == "Conv" and bias in inits:
                bias_name = b.const(f"{bias}_reshaped", inits[bias].reshape(shape))
                dropped.add(bias)
            new_nodes.append(helper.make_node("Add", [scaled, bias_name], [out]))
        dropped.add(t.weight)
    still_used = {i for n in new_nodes for i in n.input}
    return _finish(m, new_nodes, b, dropped - still_used)


def file_size(model: onnx.ModelProto) -> int:
    """Bytes the model takes when saved."""
    return model.ByteSize()


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes held in initializers."""
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


# ----------------------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    p = sub.add_parser("quantize", help="post-training int8 quantization (QDQ) of a float model")
    p.add_argument("model")
    p.add_argument("--calibration", metavar="FILE.npz",
                   help="arrays named like the model's inputs (static mode)")
    p.add_argument("--mode", choices=("static", "dynamic"), default="static")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="one weight scale per output channel (default) or per tensor")
    p.add_argument("--activation-type", choices=("uint8", "int8"), default="uint8")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.set_defaults(func=_cmd_quantize)


def _cmd_quantize(args) -> int:
    if args.mode == "static" and not args.calibration:
        raise ValueError("static quantization needs --calibration FILE.npz (or use --mode dynamic)")
    before = os.path.getsize(args.model)
    q = quantize(args.model, args.calibration, mode=args.mode, per_channel=args.per_channel,
                 activation_type=args.activation_type, output_path=args.output, method=args.method)
    after = os.path.getsize(args.output)
    ops = {}
    for n in q.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"quantized {args.model} ({args.mode}, per-channel {args.per_channel}) -> {args.output}")
    print(f"  size: {before:,} B -> {after:,} B ({before / max(after, 1):.2f}x smaller)")
    print("  nodes: " + ", ".join(f"{k} {c}" for k, c in sorted(ops.items())))
    return 0
