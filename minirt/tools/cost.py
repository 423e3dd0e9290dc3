"""What a node costs: floating-point operations (FLOPs), multiply-accumulates (MACs), bytes.

Counts follow the usual conventions: one multiply-accumulate is 2 FLOPs; an elementwise op is
one FLOP per output element (a few for transcendental ones would be more honest, but one is
what every profiler prints); data movement ops (Reshape, Transpose, Gather ...) are 0 FLOPs
but still read and write bytes. Counts are computed from the actual input and output arrays
of a run, so symbolic dims are never a problem.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

# ops that move or select data without arithmetic
MOVEMENT_OPS = {
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Expand",
    "Tile", "Pad", "Identity", "Shape", "Size", "Constant", "ConstantOfShape", "Cast", "CastLike",
    "DepthToSpace", "SpaceToDepth", "Dropout", "Range", "NonZero", "Compress", "OneHot", "Trilu",
}
# ops whose cost is a handful of FLOPs per element (normalisations, softmax)
PER_ELEMENT = {
    "Softmax": 5, "LogSoftmax": 5, "LayerNormalization": 8, "BatchNormalization": 2,
    "InstanceNormalization": 8, "GroupNormalization": 8, "RMSNormalization": 5, "LRN": 8,
    "SkipLayerNormalization": 9, "Gelu": 8, "FastGelu": 8, "Erf": 8,
}
POOLS = {"MaxPool", "AveragePool", "LpPool"}


def _numel(a: Any) -> int:
    return int(a.size) if isinstance(a, np.ndarray) else 0


def _nbytes(a: Any) -> int:
    if isinstance(a, np.ndarray):
        return int(a.nbytes)
    if isinstance(a, list):
        return sum(_nbytes(x) for x in a)
    return 0


def node_macs(op_type: str, attrs: dict, inputs: list[Any], outputs: list[Any]) -> int:
    """Multiply-accumulates of the compute-heavy ops (Conv, MatMul, Gemm, RNNs ...), else 0."""
    out = outputs[0] if outputs else None
    if not isinstance(out, np.ndarray):
        return 0
    if op_type in ("Conv", "ConvInteger", "FusedConv", "DynamicQuantizeConv"):
        w = inputs[1]
        # every output element is a dot product over (C_in / group) * kernel elements
        return _numel(out) * prod(w.shape[1:])
    if op_type == "QLinearConv":
        return _numel(out) * prod(inputs[3].shape[1:])
    if op_type == "ConvTranspose":
        x, w = inputs[0], inputs[1]
        # every input element is scattered through (C_out / group) * kernel weights
        return _numel(x) * prod(w.shape[1:])
    if op_type in ("MatMul", "MatMulInteger", "FusedMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                   "FusedDynamicQuantizeMatMul", "QuantizeMatMul"):
        a = inputs[0]
        k = a.shape[-1] if a.ndim else 1
        return _numel(out) * k
    if op_type == "QLinearMatMul":
        a = inputs[0]
        return _numel(out) * (a.shape[-1] if a.ndim else 1)
    if op_type in ("Gemm", "QGemm", "FusedGemm"):
        a = inputs[0]
        k = a.shape[0] if attrs.get("transA", 0) else a.shape[1]
        return _numel(out) * k
    if op_type in ("LSTM", "GRU", "RNN"):
        x, w, r = inputs[0], inputs[1], inputs[2]
        gates = w.shape[1]  # num_directions x (4|3|1) * hidden
        seq, batch = (x.shape[0], x.shape[1]) if attrs.get("layout", 0) == 0 else (x.shape[1], x.shape[0])
        return w.shape[0] * seq * batch * gates * (w.shape[2] + r.shape[2])
    if op_type == "Einsum":
        return 0  # depends on the equation; not counted
    if op_type == "Attention":
        q, k = inputs[0], inputs[1]
        # Q K^T then (softmax) V: two products of the same size
        if q.ndim == 4:
            b, h, sq, d = q.shape
            sk = k.shape[2]
            return 2 * b * h * sq * sk * d
        return 0
    return 0


def node_cost(op_type: str, attrs: dict, inputs: list[Any], outputs: list[Any]) -> dict[str, int]:
    """FLOPs, MACs, bytes read and bytes written by one run of one node."""
    macs = node_macs(op_type, attrs, inputs, outputs)
    out_elems = sum(_numel(o) for o in outputs)
    if macs:
        flops = 2 * macs
    elif op_type in MOVEMENT_OPS:
        flops = 0
    elif op_type in POOLS:
        kernel = prod(attrs.get("kernel_shape", [1]))
        flops = _numel(outputs[0]) * kernel
    elif op_type.startswith("Reduce") or op_type.startswith("Global") or op_type in ("ArgMax", "ArgMin"):
        flops = _numel(inputs[0])
    elif op_type in PER_ELEMENT:
        flops = PER_ELEMENT[op_type] * out_elems
    else:
        flops = out_elems  # elementwise: one operation per output element
    return {
        "flops": int(flops),
        "macs": int(macs),
        "bytes_read": sum(_nbytes(a) for a in inputs),
        "bytes_written": sum(_nbytes(o) for o in outputs),
    }


_PEAK: dict[int, float] = {}


def measured_gemm_peak(n: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 GEMM speed in GFLOP/s (NumPy's BLAS, n×n×n, best of ``repeats``).

    Used as the roof of the roofline summary: what a perfect Conv/MatMul could reach here.
    """
    import time

    if n in _PEAK:
        return _PEAK[n]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    _PEAK[n] = 2 * n**3 / best / 1e9
    return _PEAK[n]
