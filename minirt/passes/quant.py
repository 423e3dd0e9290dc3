"""QDQ -> integer ops: the pass that puts quantized models on minirt's int8 kernels.

A QDQ model (what ``minirt.quantize`` and onnxruntime's ``quantize_static`` write) keeps every
op in float and marks where values are quantized with QuantizeLinear/DequantizeLinear pairs.
Run as written, it computes in float. ``fuse_qdq`` finds the islands DQ -> Conv/MatMul/Gemm -> Q
and replaces each with the integer op (QLinearConv, QLinearMatMul, QGemm ...) so the int32
accumulation runs on the int8 kernels. It runs first in ``optimize`` (levels 1 and 2), before
constant folding would turn DequantizeLinear(int8 weight) back into a float weight.
"""

from __future__ import annotations

import numpy as np

from minirt.ir import Graph, Node
from minirt.passes._util import copy_graph, frozen
from minirt.passes.cleanup import remove_dead_nodes

TRANSPARENT = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def fuse_qdq(graph: Graph) -> Graph:
    """Turn QDQ islands of minirt's IR into integer ops, so the int8 kernels run; returns a new graph.

    ===========================================================  ====================================
    pattern                                                      becomes
    ===========================================================  ====================================
    DQ(x), DQ(W)[, DQ(b_int32)] -> Conv [-> Relu] -> Q            QLinearConv (int8 in, int8 out)
    DQ(a), DQ(W) -> MatMul -> Q                                  QLinearMatMul
    DQ(a), DQ(W) -> MatMul [-> Add(float32 bias [N])] (float)   com.microsoft.MatMulIntegerToFloat
    Q(x) -> DQ, DQ(W) -> MatMul [-> Add(bias)]  (float)          minirt.QuantizeMatMul (Q + the above)
    DQ(a), DQ(W)[, DQ(C_int32)] -> Gemm [-> Relu] [-> Q]          com.microsoft.QGemm (int8 or float out)
    DQ(x) -> MaxPool/Flatten/Reshape/... -> Q  (same params)      the op on the int8 values
    ===========================================================  ====================================

    A Relu is absorbed only when the Q's zero point is its type's minimum (then saturation *is*
    the Relu). A DQ / Q left without readers is removed. Everything else stays as it was, so the
    result computes what the QDQ graph means, up to the rounding of the requantization.
    """
    g = copy_graph(graph)
    changed = True
    while changed:  # fusing one node can expose the next pattern (Q -> DQ -> MaxPool -> Q ...)
        changed = _fuse_once(g)
    return remove_dead_nodes(g)


def _is(node, op_type) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


class _View:
    def __init__(self, g: Graph):
        self.g = g
        self.producer = {o: n for n in g.nodes for o in n.outputs if o}
        self.users: dict[str, list[Node]] = {}
        for n in g.nodes:
            for i in set(n.inputs):
                if i:
                    self.users.setdefault(i, []).append(n)
        self.outputs = {v.name for v in g.outputs}

    def const(self, name):
        return self.g.initializers.get(name) if name else None

    def dq(self, name) -> tuple[str, np.ndarray, np.ndarray, int] | None:
        """(quantized input, scale, zero point, axis) when ``name`` is a DQ of constant params."""
        n = self.producer.get(name)
        if not _is(n, "DequantizeLinear") or n.attrs.get("block_size", 0):
            return None
        scale = self.const(n.inputs[1])
        zp = self.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
        if scale is None or (len(n.inputs) > 2 and n.inputs[2] and zp is None):
            return None
        q = n.inputs[0]
        qv = self.const(q)
        dtype = qv.dtype if qv is not None else (zp.dtype if zp is not None else None)
        if dtype is None or np.dtype(dtype) not in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32)):
            return None
        if zp is None:
            zp = np.zeros(scale.shape, dtype=dtype)
        return q, scale, zp, n.attrs.get("axis", 1)

    def sole_reader(self, name) -> Node | None:
        u = self.users.get(name, [])
        return u[0] if len(u) == 1 and name not in self.outputs else None

    def q_after(self, name, allow_relu: bool):
        """(Q node, nodes passed) when ``name`` [-> Relu] -> QuantizeLinear of constant params."""
        nxt = self.sole_reader(name)
        passed = []
        if allow_relu and _is(nxt, "Relu"):
            passed.append(nxt)
            nxt = self.sole_reader(nxt.outputs[0])
        if not _is(nxt, "QuantizeLinear") or len(nxt.inputs) < 3 or not nxt.inputs[2]:
            return None
        s, z = self.const(nxt.inputs[1]), self.const(nxt.inputs[2])
        if s is None or z is None or s.size != 1 or z.size != 1:
            return None
        if passed and int(z) != np.iinfo(z.dtype).min:
            return None  # the Relu is not implied by saturation: keep it, and don't fuse
        return nxt, passed


def _scalar(a) -> bool:
    return a is not None and np.asarray(a).size == 1


def _new_const(g: Graph, base: str, value) -> str:
    name, i = base, 0
    while name in g.initializers:
        i += 1
        name = f"{base}_{i}"
    g.initializers[name] = frozen(np.asarray(value))
    return name


def _int_bias(v: _View, g: Graph, name: str, x_scale, w_scale, base: str) -> str | None:
    """The int32 bias at scale x_scale * w_scale: from a DQ of int32, or by quantizing a float constant."""
    want = (np.float32(x_scale) * np.asarray(w_scale, np.float32)).reshape(-1)
    d = v.dq(name)
    if d is not None:
        q, s, z, _ = d
        qv = v.const(q)
        if qv is None or qv.dtype != np.int32 or np.any(z != 0):
            return None
        if not np.allclose(np.asarray(s, np.float32).reshape(-1), want, rtol=1e-5, atol=0):
            return None
        return q
    c = v.const(name)
    p = v.producer.get(name)
    if c is None and _is(p, "Identity"):  # exporters pass shared weights through Identity
        c = v.const(p.inputs[0])
    if c is None or c.ndim != 1:
        return None
    return _new_const(g, f"{base}_bias_int32", np.rint(c / want).astype(np.int32))


def _replace(g: Graph, old: list[Node], new: Node) -> None:
    """Put ``new`` where the last of ``old`` was (all its inputs exist there); drop the rest."""
    ids = {id(n) for n in old}
    at = max(i for i, n in enumerate(g.nodes) if id(n) in ids)
    g.nodes = [new if i == at else n for i, n in enumerate(g.nodes) if i == at or id(n) not in ids]


def _fuse_once(g: Graph) -> bool:
    v = _View(g)
    for node in list(g.nodes):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("Conv", "MatMul", "Gemm") and len(node.inputs) >= 2:
            if _fuse_linear(g, v, node):
                return True
        elif node.op_type in TRANSPARENT and node.inputs:
            if _fuse_transparent(g, v, node):
                return True
    return False


def _fuse_transparent(g: Graph, v: _View, node: Node) -> bool:
    d = v.dq(node.inputs[0])
    if d is None or not _scalar(d[1]) or d[2].dtype == np.int32:
        return False
    got = v.q_after(node.outputs[0], allow_relu=False)
    if got is None or node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        return False
    q, _ = got
    s, z = v.const(q.inputs[1]), v.const(q.inputs[2])
    if not (np.float32(s) == np.float32(d[1]) and int(z) == int(d[2]) and z.dtype == d[2].dtype):
        return False  # different parameters: requantization needed, leave it in float
    new = Node(node.op_type, [d[0]] + node.inputs[1:], [q.outputs[0]] + node.outputs[1:],
               dict(node.attrs), node.name, node.domain)
    _replace(g, [node, q], new)
    return True


def _fuse_linear(g: Graph, v: _View, node: Node) -> bool:
    x, w = v.dq(node.inputs[0]), v.dq(node.inputs[1])
    if x is None or w is None or not _scalar(x[1]) or v.const(w[0]) is None:
        return False
    xq, xs, xz, _ = x
    wq, ws, wz, waxis = w
    wv = v.const(wq)
    if wv.dtype == np.int32 or xz.dtype == np.int32:
        return False
    base = node.name or node.outputs[0]
    op, attrs, ins, domain = None, {}, [], ""
    tail = None  # an absorbed node after ``node`` whose output the fused node takes over
    if node.op_type == "Conv":
        if ws.size > 1 and waxis not in (0, -wv.ndim):
            return False
        got = v.q_after(node.outputs[0], allow_relu=True)
        if got is None:
            return False
        q, passed = got
        bias = None
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = _int_bias(v, g, node.inputs[2], xs, ws, base)
            if bias is None:
                return False
        op, attrs = "QLinearConv", dict(node.attrs)
        ins = [xq, node_in(g, v, x), node_zp(g, x, base, "x"), wq, node_in(g, v, w), node_zp(g, w, base, "w"),
               q.inputs[1], q.inputs[2]] + ([bias] if bias else [])
    elif node.op_type == "MatMul":
        if wv.ndim != 2 or (ws.size > 1 and waxis not in (1, -1)):
            return False
        got = v.q_after(node.outputs[0], allow_relu=False)
        passed = []
        if got is not None:
            q, passed = got
            op = "QLinearMatMul"
            ins = [xq, node_in(g, v, x), node_zp(g, x, base, "x"), wq, node_in(g, v, w),
                   node_zp(g, w, base, "w"), q.inputs[1], q.inputs[2]]
        else:
            q, op, domain = None, "MatMulIntegerToFloat", "com.microsoft"
            ins = [xq, wq, node_in(g, v, x), node_in(g, v, w), node_zp(g, x, base, "x"), node_zp(g, w, base, "w")]
            add = v.sole_reader(node.outputs[0])
            b = _other(add, node.outputs[0]) if _is(add, "Add") else None
            bv = v.const(b) if b else None
            if bv is not None and bv.dtype == np.float32 and bv.shape == (wv.shape[1],):
                # the bias Add joins the fused op: MatMulIntegerToFloat adds its bias last, in
                # float32, as the Add did (bit-identical to MatMulIntegerToFloat, then Add)
                ins.append(b)
                passed, tail = [add], add
            qx = _quantized_by(v, node.inputs[0])
            if qx is not None:  # Q -> DQ -> MatMul: quantize and multiply in one node
                op, domain = "QuantizeMatMul", "minirt"
                ins = [qx.inputs[0], qx.inputs[1], qx.inputs[2], wq, ins[3], ins[5]] + ins[6:]
                passed = [qx, v.producer[node.inputs[0]]] + passed
    else:  # Gemm
        a = node.attrs
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or wv.ndim != 2:
            return False
        tb = a.get("transB", 0)
        if ws.size > 1 and waxis % 2 != (0 if tb else 1):
            return False  # per-channel must be per output column
        got = v.q_after(node.outputs[0], allow_relu=True)
        q, passed = got if got is not None else (None, [])
        if q is None:
            nxt = v.sole_reader(node.outputs[0])
            if _is(nxt, "Relu"):
                passed = []  # a float Relu after a float-output QGemm stays
        bias = ""
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = _int_bias(v, g, node.inputs[2], xs, ws, base)
            if bias is None:
                return False
        op, domain, attrs = "QGemm", "com.microsoft", {"transB": tb}
        ins = [xq, node_in(g, v, x), node_zp(g, x, base, "x"), wq, node_in(g, v, w), node_zp(g, w, base, "w"), bias]
        if q is not None:
            ins += [q.inputs[1], q.inputs[2]]
    out = q.outputs[0] if q is not None else tail.outputs[0] if tail is not None else node.outputs[0]
    new = Node(op, ins, [out], attrs, node.name, domain)
    if domain and domain not in g.opsets:
        g.opsets[domain] = 1
    _replace(g, [node] + passed + ([q] if q is not None else []), new)
    return True


def _quantized_by(v: _View, name: str) -> Node | None:
    """The QuantizeLinear node Q when ``name`` = DQ(Q(x)) with the same constant per-tensor
    parameters, Q's output read by that DQ only and the DQ's by one node: Q, DQ and their reader
    can become one node (the 8-bit tensor is never needed on its own)."""
    dq = v.producer.get(name)
    if v.sole_reader(name) is None or dq is None or v.sole_reader(dq.inputs[0]) is not dq:
        return None
    q = v.producer.get(dq.inputs[0])
    if not _is(q, "QuantizeLinear") or len(q.inputs) < 3 or not q.inputs[2]:
        return None
    if q.attrs.get("block_size", 0) or q.attrs.get("output_dtype", 0) or q.attrs.get("precision", 0):
        return None
    s, z = v.const(q.inputs[1]), v.const(q.inputs[2])
    d = v.dq(name)
    if s is None or z is None or s.size != 1 or z.size != 1 or s.dtype != np.float32:
        return None
    if not (np.float32(s) == np.float32(d[1]) and z.dtype == d[2].dtype and int(z) == int(d[2])
            and np.asarray(d[1]).dtype == np.float32):
        return None
    return q


def node_in(g: Graph, v: _View, d) -> str:
    """The name of a DQ's scale (an initializer already)."""
    scale = d[1]
    for name, arr in g.initializers.items():
        if arr is scale:
            return name
    return _new_const(g, "scale", scale)


def node_zp(g: Graph, d, base: str, what: str) -> str:
    zp = d[2]
    for name, arr in g.initializers.items():
        if arr is zp:
            return name
    return _new_const(g, f"{base}_{what}_zero_point", zp)


# ---------------------------------------------------------------------------- dynamic quantization


def fuse_dynamic_matmul(graph: Graph) -> Graph:
    """Fold the chain that dynamic quantization writes (``minirt.quantize(mode="dynamic")`` and
    onnxruntime's ``quantize_dynamic`` both do) into one ``com.microsoft.MatMulIntegerToFloat``;
    returns a new graph::

        xq, xs, xz = DynamicQuantizeLinear(x)             xq, xs, xz = DynamicQuantizeLinear(x)
        s   = Mul(xs, w_scale)          (either order)
        acc = MatMulInteger(xq, Wq, xz, wz)          ->   y = MatMulIntegerToFloat(xq, Wq, xs, w_scale,
        f   = Cast(acc, to=FLOAT)                                                  xz, wz[, bias])
        y   = Mul(f, s)                 (either order)
        y   = Add(y, bias)              (optional, either order)

    ``Wq`` must be a constant int8/uint8 matrix, ``w_scale`` a float32 constant of size 1 or N
    (and ``wz`` constant when given), ``bias`` a float32 constant of shape [N] (otherwise the Add
    stays and the rest fuses). Every intermediate (acc, f, s, and y before the Add) must have that
    single reader and not be a graph output.

    Then a DynamicQuantizeLinear whose three outputs only that MatMulIntegerToFloat reads (none a
    graph output) joins it: ``com.microsoft.DynamicQuantizeMatMul(x, Wq, w_scale, wz[, bias])``,
    one node instead of two (fraud's three layers: ~2 us each). A DynamicQuantizeLinear shared by
    several products (a transformer's Q, K and V projections) stays, quantizing x once.

    Bit-identical: MatMulIntegerToFloat computes float32(acc) * (xs * w_scale) [+ bias], the
    same float32 operations, in the same order, as the chain (products and sums of two operands
    commute exactly in IEEE arithmetic).

    The convolutions' chain, ``ConvInteger -> Cast -> Mul(Mul(xs, w_scale)) [-> Add(bias)]``,
    has no contrib op to become: its float end (Cast, both Muls, the Add) becomes one
    ``minirt.ScaleIntegerToFloat(acc, xs, w_scale[, bias])`` after the ConvInteger, again the
    same float32 operations in the same order. Then, as above, a DynamicQuantizeLinear read only
    by that ConvInteger and ScaleIntegerToFloat joins them, with a Relu that alone reads the
    result: ``minirt.DynamicQuantizeConv(x, W, w_scale[, wz[, bias]], activation="Relu")``, the
    whole chain in one node (its kernel keeps the exact product in float32 and applies the
    Relu in the scaling pass).
    """
    g = copy_graph(graph)
    changed = True
    while changed:
        changed = _fuse_dynamic_once(g)
    return remove_dead_nodes(g)


def _fuse_dynamic_once(g: Graph) -> bool:
    v = _View(g)
    for node in list(g.nodes):
        if _is(node, "MatMulInteger") and _fuse_dynamic(g, v, node):
            return True
        if _is(node, "ConvInteger") and (_fuse_dynamic_conv(g, v, node) or _absorb_dynamic_quantize_conv(g, v, node)):
            return True
        if (node.op_type == "MatMulIntegerToFloat" and node.domain == "com.microsoft"
                and _absorb_dynamic_quantize(g, v, node)):
            return True
    return False


def _absorb_dynamic_quantize(g: Graph, v: _View, mm: Node) -> bool:
    """DynamicQuantizeLinear(x) -> MatMulIntegerToFloat(xq, Wq, xs, ws, xz[, wz[, bias]]) ->
    ``com.microsoft.DynamicQuantizeMatMul(x, Wq, ws[, wz[, bias]])`` when the product alone reads
    the three outputs (none a graph output). Its reference is that very pair, and its kernel the
    two kernels' arithmetic: bit-identical."""
    ins = list(mm.inputs) + [""] * (7 - len(mm.inputs))
    dql = v.producer.get(ins[0])
    if not _is(dql, "DynamicQuantizeLinear") or [ins[0], ins[2], ins[4]] != list(dql.outputs):
        return False
    if any(v.sole_reader(o) is not mm for o in dql.outputs):
        return False
    new_ins = [dql.inputs[0], ins[1], ins[3], ins[5], ins[6]]
    while not new_ins[-1]:  # trailing optional inputs left out
        new_ins.pop()
    old, out, op, domain, attrs = [dql, mm], mm.outputs[0], "DynamicQuantizeMatMul", "com.microsoft", {}
    relu = v.sole_reader(out)
    if _is(relu, "Relu"):  # minirt's op with onnxruntime's Fused* activation attribute
        old.append(relu)
        out, op, domain, attrs = relu.outputs[0], "FusedDynamicQuantizeMatMul", "minirt", {"activation": "Relu"}
    g.opsets.setdefault(domain, 1)
    _replace(g, old, Node(op, new_ins, [out], attrs, mm.name, domain))
    return True


def _fuse_dynamic_conv(g: Graph, v: _View, conv: Node) -> bool:
    """ConvInteger -> Cast(FLOAT) -> Mul(Mul(xs, ws)) [-> Add(constant bias)] (either operand
    orders) -> ``minirt.ScaleIntegerToFloat(acc, xs, ws[, bias])``. The ConvInteger stays (its
    int32 output is the new node's input); every intermediate must have that single reader and
    not be a graph output. Bit-identical: the same float32 operations in the same order."""
    acc = conv.outputs[0]
    chain = _cast_scale_chain(v, acc)
    if chain is None:
        return False
    cast, mul, smul = chain
    a, b = smul.inputs
    if v.const(b) is None and v.const(a) is not None:
        a, b = b, a  # the constant (the weight's scale) second
    old, out, ins = [cast, smul, mul], mul.outputs[0], [acc, a, b]
    bias_add = _bias_add(v, mul.outputs[0])
    if bias_add is not None:
        add, bias = bias_add
        old.append(add)
        out = add.outputs[0]
        ins.append(bias)
    g.opsets.setdefault("minirt", 1)
    _replace(g, old, Node("ScaleIntegerToFloat", ins, [out], {}, cast.name, "minirt"))
    return True


def _absorb_dynamic_quantize_conv(g: Graph, v: _View, conv: Node) -> bool:
    """DynamicQuantizeLinear(x) -> ConvInteger(xq, W, xz[, wz]) -> ScaleIntegerToFloat(acc, xs,
    ws[, bias]) [-> Relu] -> ``minirt.DynamicQuantizeConv(x, W, ws[, wz[, bias]], activation)``
    when W and ws are constants and each intermediate has that single reader (no graph output):
    four nodes become one (digits: ~4 us per conv). Its reference is that chain, its kernel the
    chain's kernels' arithmetic: bit-identical."""
    ins = list(conv.inputs) + [""] * (4 - len(conv.inputs))
    dql = v.producer.get(ins[0])
    if not _is(dql, "DynamicQuantizeLinear") or [ins[0], ins[2]] != [dql.outputs[0], dql.outputs[2]]:
        return False
    sitf = v.sole_reader(conv.outputs[0])
    if sitf is None or (sitf.op_type, sitf.domain) != ("ScaleIntegerToFloat", "minirt") or sitf.inputs[0] != conv.outputs[0]:
        return False
    xs, scales = dql.outputs[1], sitf.inputs[1:3]
    ws = scales[1] if scales[0] == xs else scales[0] if scales[1] == xs else None
    if ws is None or ws == xs or v.const(ws) is None or v.const(ins[1]) is None:
        return False
    if (v.sole_reader(ins[0]) is not conv or v.sole_reader(ins[2]) is not conv
            or v.sole_reader(xs) is not sitf):
        return False
    old, out, attrs = [dql, conv, sitf], sitf.outputs[0], dict(conv.attrs)
    relu = v.sole_reader(out)
    if _is(relu, "Relu"):  # done in the scaling pass, while the row is in cache
        old.append(relu)
        out, attrs["activation"] = relu.outputs[0], "Relu"
    new_ins = [dql.inputs[0], ins[1], ws, ins[3], sitf.inputs[3] if len(sitf.inputs) > 3 else ""]
    while not new_ins[-1]:  # trailing optional inputs left out
        new_ins.pop()
    g.opsets.setdefault("minirt", 1)
    _replace(g, old, Node("DynamicQuantizeConv", new_ins, [out], attrs, conv.name, "minirt"))
    return True


def _cast_scale_chain(v: _View, acc: str) -> tuple[Node, Node, Node] | None:
    """``acc -> Cast(FLOAT) -> Mul(., s)`` with ``s = Mul(..)`` of two inputs, each step read by
    the next alone: (cast, mul, smul); None otherwise. The dequantization of an integer product."""
    cast = v.sole_reader(acc)
    if not _is(cast, "Cast") or cast.attrs.get("to") != 1:  # 1: FLOAT
        return None
    mul = v.sole_reader(cast.outputs[0])
    if not _is(mul, "Mul"):
        return None
    s = _other(mul, cast.outputs[0])
    smul = v.producer.get(s) if s else None
    if not _is(smul, "Mul") or v.sole_reader(s) is not mul or len(smul.inputs) != 2:
        return None
    return cast, mul, smul


def _bias_add(v: _View, out: str, shape: tuple | None = None) -> tuple[Node, str] | None:
    """The Add that alone reads ``out`` and adds a float32 constant (of ``shape`` when given):
    (add, the constant's name); None otherwise."""
    add = v.sole_reader(out)
    if not _is(add, "Add"):
        return None
    bias = _other(add, out)
    bv = v.const(bias) if bias else None
    if bv is None or bv.dtype != np.float32 or (shape is not None and bv.shape != shape):
        return None
    return add, bias


def _other(node: Node, name: str) -> str | None:
    """The other input of a two-input node one of whose inputs is ``name``."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    return b if a == name else a if b == name else None


def _fuse_dynamic(g: Graph, v: _View, mm: Node) -> bool:
    if len(mm.inputs) < 3 or not mm.inputs[2]:
        return False
    xq, wq = mm.inputs[0], mm.inputs[1]
    dql = v.producer.get(xq)
    if not _is(dql, "DynamicQuantizeLinear") or dql.outputs[0] != xq or mm.inputs[2] != dql.outputs[2]:
        return False
    xs, xz = dql.outputs[1], dql.outputs[2]
    wv = v.const(wq)
    if wv is None or wv.ndim != 2 or wv.dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return False
    n_out = wv.shape[1]
    wz = mm.inputs[3] if len(mm.inputs) > 3 and mm.inputs[3] else ""
    if wz:
        wzv = v.const(wz)
        if wzv is None or wzv.dtype != wv.dtype or wzv.size not in (1, n_out) or wzv.ndim > 1:
            return False
    chain = _cast_scale_chain(v, mm.outputs[0])
    if chain is None:
        return False
    cast, mul, smul = chain
    ws = _other(smul, xs)
    wsv = v.const(ws) if ws else None
    if wsv is None or wsv.dtype != np.float32 or wsv.ndim > 1 or wsv.size not in (1, n_out):
        return False
    old, out, bias = [smul, mm, cast, mul], mul.outputs[0], ""
    bias_add = _bias_add(v, mul.outputs[0], (n_out,))
    if bias_add is not None:
        add, bias = bias_add
        old.append(add)
        out = add.outputs[0]
    ins = [xq, wq, xs, ws, xz, wz] + ([bias] if bias else [])
    new = Node("MatMulIntegerToFloat", ins, [out], {}, mm.name, "com.microsoft")
    if "com.microsoft" not in g.opsets:
        g.opsets["com.microsoft"] = 1
    _replace(g, old, new)
    return True
