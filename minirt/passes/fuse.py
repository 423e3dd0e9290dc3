"""Fusion passes: fewer, bigger nodes — fewer intermediate arrays, fewer passes over memory.

- :func:`fold_conv_batchnorm`: Conv (or ConvTranspose) -> BatchNormalization becomes one Conv
  with rescaled weights: ``BN(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta`` with
  ``s = gamma / sqrt(var + eps)`` per output channel (and per-channel constant Mul/Add alike).
- :func:`fuse_matmul_add`: MatMul(x, W) -> Add(b), W a 2-D weight and b a 1-D bias, becomes
  ``Gemm(x, W, b)`` when x is 2-D. Gemm is 2-D only, so for a 3-D x ([batch, seq, hidden]
  in transformers) the pair is left alone here; :func:`fuse_elementwise` turns it into one
  ``minirt.FusedMatMul`` instead.
- :func:`fuse_elementwise`: Conv/MatMul -> [Add] -> [activation] and Gemm -> activation
  become ``minirt.FusedConv`` / ``FusedMatMul`` / ``FusedGemm`` (see :mod:`minirt.passes.fused_ops`);
  it also turns a MaxPool whose Indices output nobody names into ``minirt.MaxPool`` (Y only:
  :func:`maxpool_values_only`), the one other "do less" rewrite of level 2.
- :func:`fold_conv_batchnorm` also folds a per-channel Mul/Add *after a BatchNormalization* into
  that BatchNormalization's scale and bias (DenseNet's Caffe2 export: BN -> Mul -> Add -> Relu).

Each pass only fuses a value that has exactly one reader and is not a graph output (else the
intermediate must still exist), and only with constant weights where it rewrites them.
"""

from __future__ import annotations

import numpy as np

from minirt.ir import Graph, Node
from minirt.passes._util import (
    NameMaker,
    consumers,
    copy_graph,
    for_each_graph,
    frozen,
    known_dims,
    only_consumer,
    rewrite_each_graph,
)
from minirt.passes.fused_ops import DOMAIN


def _is(node: Node | None, *op_types: str) -> bool:
    return node is not None and node.domain == "" and node.op_type in op_types


def _producers(g: Graph) -> dict[str, Node]:
    return {o: n for n in g.nodes for o in n.outputs if o}


def _replace(g: Graph, old: list[Node], new: Node) -> None:
    """Put ``new`` where the last of ``old`` was (all its inputs exist there) and drop ``old``."""
    at = max(i for i, n in enumerate(g.nodes) if any(n is o for o in old))
    g.nodes[at] = new
    drop = {id(n) for n in old}
    g.nodes = [n for n in g.nodes if id(n) not in drop]


def _add_weight(g: Graph, names: NameMaker, base: str, value: np.ndarray) -> str:
    name = names(base)
    g.initializers[name] = frozen(value)
    return name


# ----------------------------------------------------------------------------- Conv + BN


def fold_conv_batchnorm(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where each Conv/ConvTranspose read only by an inference
    BatchNormalization (constant weights and statistics) absorbs that BatchNormalization.

    A ``Mul`` or ``Add`` by a constant with one value per output channel (shape [M, 1, 1],
    [1, M, 1, 1] or a scalar — Caffe2's "Scale" layer after BN) is the same kind of per-channel
    affine map and folds in too; so do several in a row.

    The folded weights are new initializers (the old ones may be shared; remove_dead_nodes
    drops them when nothing reads them any more). Computed in float64, stored in the weight's dtype.
    """
    g = copy_graph(graph)
    names = NameMaker(g)
    for_each_graph(lambda sg: _fold_conv_bn(sg, names), g)
    return g


def _channel_affine(g: Graph, node: Node, conv_out: str, M: int, rank: int, dtype) -> tuple | None:
    """(s, t), float64 vectors [M], when ``node`` computes ``conv_out * s + t`` per channel."""
    if _is(node, "BatchNormalization"):
        if len(node.inputs) < 5 or any(node.outputs[1:]) or node.inputs[0] != conv_out:
            return None
        if node.attrs.get("training_mode", 0) or node.attrs.get("spatial", 1) != 1:
            return None
        params = [g.initializers.get(i) for i in node.inputs[1:5]]
        if any(p is None or p.shape != (M,) for p in params):
            return None
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        s = gamma / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
        return s, beta - mean * s
    if _is(node, "Mul", "Add") and len(node.inputs) == 2 and g.opsets.get("", 1) >= 7:
        other = node.inputs[1] if node.inputs[0] == conv_out else node.inputs[0]
        c = g.initializers.get(other)
        if other == conv_out or c is None or c.dtype != dtype or c.ndim > rank:
            return None
        dims = (1,) * (rank - c.ndim) + c.shape  # right-aligned against [N, M, *spatial]
        if dims[0] != 1 or dims[1] not in (1, M) or any(d != 1 for d in dims[2:]):
            return None  # not one value per output channel
        v = np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (M,))
        return (v, np.zeros(M)) if node.op_type == "Mul" else (np.ones(M), v)
    return None


def _fold_into_batchnorm(g: Graph, names: NameMaker, bn: Node, node: Node) -> bool:
    """BN(x) then per-channel ``* s + t`` (``node``, a Mul or Add) is one BN with scale*s, B*s + t."""
    params = [g.initializers.get(i) for i in bn.inputs[1:5]] if len(bn.inputs) >= 5 else [None]
    if any(p is None or p.ndim != 1 for p in params) or any(bn.outputs[1:]):
        return False
    if bn.attrs.get("training_mode", 0) or bn.attrs.get("spatial", 1) != 1:
        return False
    scale, bias = params[0], params[1]
    M = scale.shape[0]
    known = known_dims(g, bn.inputs[0])
    affine = _channel_affine(g, node, bn.outputs[0], M, len(known) if known else 4, scale.dtype)
    if affine is None or known is None or bias.shape != (M,):
        return False
    s, t = affine
    base = bn.name or bn.outputs[0]
    new_scale = (np.asarray(scale, np.float64) * s).astype(scale.dtype)
    new_bias = (np.asarray(bias, np.float64) * s + t).astype(bias.dtype)
    bn.inputs = [bn.inputs[0], _add_weight(g, names, f"{base}.scale_affine", new_scale),
                 _add_weight(g, names, f"{base}.bias_affine", new_bias)] + list(bn.inputs[3:5])
    g.value_info.pop(bn.outputs[0], None)
    bn.outputs = [node.outputs[0]] + list(bn.outputs[1:])
    g.nodes = [n for n in g.nodes if n is not node]
    return True


def _fold_conv_bn(g: Graph, names: NameMaker) -> None:
    users = consumers(g)
    producers = _producers(g)
    for node in list(g.nodes):
        if not _is(node, "BatchNormalization", "Mul", "Add"):
            continue
        bn = next((producers[i] for i in node.inputs if i in producers), None)
        if (_is(node, "Mul", "Add") and _is(bn, "BatchNormalization")
                and only_consumer(g, users, bn.outputs[0]) is node and _fold_into_batchnorm(g, names, bn, node)):
            producers[bn.outputs[0]] = bn  # a following Mul/Add can fold in as well
            continue
        conv = next((producers[i] for i in node.inputs if i in producers), None)
        if not _is(conv, "Conv", "ConvTranspose") or only_consumer(g, users, conv.outputs[0]) is not node:
            continue
        W = g.initializers.get(conv.inputs[1])
        has_bias = len(conv.inputs) > 2 and bool(conv.inputs[2])
        b = g.initializers.get(conv.inputs[2]) if has_bias else None
        if W is None or (has_bias and b is None) or W.dtype.kind != "f":
            continue
        group = conv.attrs.get("group", 1)
        M = W.shape[0] if conv.op_type == "Conv" else W.shape[1] * group  # output channels
        affine = _channel_affine(g, node, conv.outputs[0], M, W.ndim, W.dtype)
        if affine is None or (b is not None and b.shape != (M,)):
            continue
        s, t = affine  # y = conv(x, W, b) * s + t = conv(x, W * s, b * s + t)
        w = W.astype(np.float64)
        if conv.op_type == "Conv":  # W: [M, C/G, *k], scale each output channel
            w = w * s.reshape((M,) + (1,) * (W.ndim - 1))
        else:  # ConvTranspose W: [C, M/G, *k]; output channel g*M/G + j is W[g*C/G:(g+1)*C/G, j]
            C = W.shape[0]
            w = w.reshape((group, C // group, M // group) + W.shape[2:])
            w = w * s.reshape((group, 1, M // group) + (1,) * (W.ndim - 2))
            w = w.reshape(W.shape)
        bias = (np.asarray(b, dtype=np.float64) if b is not None else 0.0) * s + t
        base = conv.name or conv.outputs[0]
        weight_name = conv.inputs[1]
        if not np.all(s == 1):  # an Add leaves the weights as they are
            weight_name = _add_weight(g, names, f"{base}.weight_bn", w.astype(W.dtype))
        conv.inputs = [conv.inputs[0], weight_name, _add_weight(g, names, f"{base}.bias_bn", bias.astype(W.dtype))]
        old_out = conv.outputs[0]
        conv.outputs = [node.outputs[0]]
        producers[node.outputs[0]] = conv  # a following Mul/Add/BN can fold in as well
        g.value_info.pop(old_out, None)
        g.nodes = [n for n in g.nodes if n is not node]


# ----------------------------------------------------------------------------- MatMul + Add


def fuse_matmul_add(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where ``Add(MatMul(x, W), b)`` is one ``Gemm(x, W, b)``.

    Only when: W is a 2-D weight [K, N]; b a weight of shape [N] or [1, N]; x known to be 2-D (Gemm is
    2-D only: for a 3-D x the MatMul and Add stay — fuse_elementwise fuses them instead);
    float dtypes; default-domain opset >= 7 (Gemm broadcasts C from there on).
    """
    g = copy_graph(graph)
    if g.opsets.get("", 1) >= 7:
        for_each_graph(_fuse_matmul_add, g)
    return g


def _fuse_matmul_add(g: Graph) -> None:
    users = consumers(g)
    producers = _producers(g)
    for add in list(g.nodes):
        if not _is(add, "Add") or len(add.inputs) != 2:
            continue
        for k in (0, 1):
            mm = producers.get(add.inputs[k])
            bias_name = add.inputs[1 - k]
            if not _is(mm, "MatMul") or only_consumer(g, users, mm.outputs[0]) is not add:
                continue
            W, b = g.initializers.get(mm.inputs[1]), g.initializers.get(bias_name)
            dims = known_dims(g, mm.inputs[0])
            if W is None or b is None or dims is None or len(dims) != 2:
                continue
            if W.ndim != 2 or b.shape not in ((W.shape[1],), (1, W.shape[1])) or W.dtype.kind != "f" or b.dtype != W.dtype:
                continue
            gemm = Node("Gemm", [mm.inputs[0], mm.inputs[1], bias_name], [add.outputs[0]],
                        name=mm.name or add.name)
            _replace(g, [mm, add], gemm)
            g.value_info.pop(mm.outputs[0], None)
            break


# ----------------------------------------------------------------------------- elementwise


def _activation(g: Graph, node: Node | None, opsets: dict[str, int]) -> tuple[str, list[float]] | None:
    """(activation name, params) when ``node`` is an activation FusedConv & co. can absorb."""
    if node is None or node.domain != "":
        return None
    a = node.attrs
    op_type = node.op_type
    if op_type in ("Relu", "Sigmoid", "Tanh", "HardSwish") and len(node.inputs) == 1:
        return op_type, []
    if op_type == "LeakyRelu":
        return op_type, [float(a.get("alpha", 0.01))]
    if op_type == "Elu":
        return op_type, [float(a.get("alpha", 1.0))]
    if op_type == "HardSigmoid":
        return op_type, [float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))]
    if op_type == "Gelu" and a.get("approximate", "none") == "none":
        return op_type, []
    if op_type == "Clip":
        if opsets.get("", 1) < 11:  # bounds as attributes
            return op_type, [float(a.get("min", -3.4028234663852886e38)), float(a.get("max", 3.4028234663852886e38))]
        bounds = []
        for i, default in ((1, -np.inf), (2, np.inf)):
            name = node.inputs[i] if len(node.inputs) > i else ""
            if not name:
                bounds.append(default)
                continue
            c = g.initializers.get(name)
            if c is None or c.size != 1 or c.dtype.kind != "f":
                return None
            bounds.append(float(np.ravel(c)[0]))
        return op_type, bounds
    return None


def fuse_elementwise(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where these chains are single nodes of domain "minirt":

        Conv   -> [Add(Z)] -> [activation]   =>  FusedConv(X, W, B, Z)
        MatMul -> [Add(Z)] -> [activation]   =>  FusedMatMul(A, B, Z)
        Gemm   -> activation                 =>  FusedGemm(A, B, C)
        BatchNormalization -> Relu/Clip      =>  FusedBatchNormalization(X, scale, B, mean, var)

    (at least one of the bracketed steps present). ``Z`` is whatever the Add adds: a bias, or a
    residual branch (a two-input ``Sum`` counts as an Add). Activations: Relu, LeakyRelu, Elu,
    Sigmoid, Tanh, HardSigmoid, HardSwish, Clip with constant bounds, exact Gelu. Each
    intermediate must have one reader and not be a graph output. Adds "minirt": 1 to the
    opsets when it fuses anything.
    """
    g = copy_graph(graph)
    opsets = g.opsets
    if opsets.get("", 1) < 7:  # Add/Gemm broadcasting semantics start at opset 7
        return g
    rewrite_each_graph(lambda sg: _fuse_elementwise(sg, opsets), g, DOMAIN)
    rewrite_each_graph(_maxpool_values_only, g, DOMAIN)
    return g


def maxpool_values_only(graph: Graph) -> Graph:
    """Return a copy of ``graph`` where each MaxPool that names no Indices output is a
    ``minirt.MaxPool`` (Y only, several times faster; run by :func:`fuse_elementwise`)."""
    g = copy_graph(graph)
    rewrite_each_graph(_maxpool_values_only, g, DOMAIN)
    return g


def _maxpool_values_only(g: Graph) -> int:
    count = 0
    for i, node in enumerate(g.nodes):
        if _is(node, "MaxPool") and len(node.outputs) >= 1 and not any(node.outputs[1:]):
            g.nodes[i] = Node("MaxPool", list(node.inputs), node.outputs[:1], dict(node.attrs),
                              name=node.name, domain=DOMAIN)
            count += 1
    return count


def _fuse_batchnorm_activation(g: Graph, opsets: dict[str, int]) -> int:
    """BatchNormalization (inference) -> Relu/Clip  =>  minirt.FusedBatchNormalization: the
    pre-activation blocks of DenseNet-style models (BN, Relu, then the conv), one pass instead
    of two. Only opset >= 9 forms (no ``spatial``/``is_test``), one output, not training."""
    if opsets.get("", 1) < 9:
        return 0
    users = consumers(g)
    count = 0
    for bn in list(g.nodes):
        if (not _is(bn, "BatchNormalization") or any(bn.outputs[1:]) or bn.attrs.get("training_mode", 0)
                or set(bn.attrs) - {"epsilon", "momentum", "training_mode"} or not any(n is bn for n in g.nodes)):
            continue
        nxt = only_consumer(g, users, bn.outputs[0])
        act = _activation(g, nxt, opsets)
        if act is None or act[0] not in ("Relu", "Clip") or nxt.inputs[0] != bn.outputs[0] or len(nxt.outputs) != 1:
            continue
        attrs = {"epsilon": float(bn.attrs.get("epsilon", 1e-5)), "activation": act[0]}
        if act[1]:
            attrs["activation_params"] = act[1]
        fused = Node("FusedBatchNormalization", list(bn.inputs[:5]), [nxt.outputs[0]], attrs,
                     name=bn.name or nxt.outputs[0], domain=DOMAIN)
        _replace(g, [bn, nxt], fused)
        g.value_info.pop(bn.outputs[0], None)
        users = consumers(g)
        count += 1
    return count


def _fuse_elementwise(g: Graph, opsets: dict[str, int]) -> int:
    count = _fuse_batchnorm_activation(g, opsets)
    users = consumers(g)
    for anchor in list(g.nodes):
        if not _is(anchor, "Conv", "MatMul", "Gemm") or not any(n is anchor for n in g.nodes):
            continue
        if anchor.op_type == "Gemm" and opsets.get("", 1) < 7:
            continue
        chain, out, z = [anchor], anchor.outputs[0], ""
        nxt = only_consumer(g, users, out)
        if anchor.op_type != "Gemm" and _is(nxt, "Add", "Sum") and len(nxt.inputs) == 2 and nxt.inputs[0] != nxt.inputs[1]:
            z = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
            chain.append(nxt)
            out = nxt.outputs[0]
            nxt = only_consumer(g, users, out)
        act = _activation(g, nxt, opsets)
        if act is not None and nxt.inputs[0] == out and len(nxt.outputs) == 1:
            chain.append(nxt)
            out = nxt.outputs[0]
        else:
            act = None
        if len(chain) == 1:
            continue
        activation, params = act if act is not None else ("", [])
        attrs = dict(anchor.attrs)
        attrs["activation"] = activation
        if params:
            attrs["activation_params"] = params
        if anchor.op_type == "Conv":
            inputs = (list(anchor.inputs) + ["", ""])[:3] + [z]
            op_type = "FusedConv"
        elif anchor.op_type == "MatMul":
            inputs = list(anchor.inputs[:2]) + [z]
            op_type = "FusedMatMul"
        else:
            inputs = list(anchor.inputs)
            op_type = "FusedGemm"
        while inputs and not inputs[-1]:
            inputs.pop()  # trailing absent optional inputs
        fused = Node(op_type, inputs, [out], attrs, name=anchor.name or out, domain=DOMAIN)
        _replace(g, chain, fused)
        for n in chain[:-1]:
            g.value_info.pop(n.outputs[0], None)
        users = consumers(g)  # the fused node now reads Z: a later chain must see that
        count += 1
    return count
