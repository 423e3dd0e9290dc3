"""Integer MatMul / Conv (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv) on float32 BLAS,
exactly.

The trick, and why it is exact: float32 holds every integer of magnitude <= 2**24 exactly. The
operands are 8-bit values minus their zero points, so |a| <= amax and |b| <= bmax with amax, bmax
<= 255 known from the dtypes and zero points. A dot product of k such terms has every product
and every partial sum — in *whatever order* BLAS adds them — bounded by k * amax * bmax. While
that is <= 2**24 every float32 operation is exact, so one float32 GEMM gives the exact int32
result. For longer dot products, ``_gemm_exact`` splits K into chunks of at most
2**24 // (amax * bmax) terms (>= 258 for any 8-bit operands; 1040 for int8 x int8 with zero
points 0) and adds the exact chunk results in int32.

``_matmul_blocked`` from ``minirt.kernels.matmul`` on int32 arrays is the plain integer loop
kernel (the oracle a student can read): ``matmul_int32_blocked``.

Requantization (QLinear*, QGemm, MatMulIntegerToFloat) is one Numba pass, ``requant_loops``:
int32 accumulator (+ int32 bias, wrapping as NumPy's int32 add does), times the float32
multiplier in float32, round half to even, add the zero point, saturate, cast. It does the same
float32 operations in the same order as the reference's ``_requantize``, so the outputs are
bit-exact (the tests compare them); a non-finite multiplier goes to the reference.

Per-weight preparations are cached (``_prepared``): the weight minus its zero point as float32
(transposed/reshaped as the GEMM wants it), and the combined requantization multiplier. Each is
computed on the first call and reused by every later run. Why that is safe: the cache is keyed
by ``id(weight)`` and only used for arrays that cannot change — not writeable, nor any array they
are a view of (``_immutable``): minirt's initializers and folded constants are made read-only
when loaded. The entry holds a weak reference to the array and is checked with ``is``, and a
weakref callback drops the entry when the array dies, so a reused id can never hit a stale entry
and the prepared copies are freed with the model. A writeable array (a graph input) is prepared
afresh on every call, as before.
"""

from __future__ import annotations

import functools
import weakref

import numba
import numpy as np

from minirt.kernels._const import immutable as _immutable
from minirt.kernels.conv import NO_EPILOGUE, depthwise_loops, im2col
from minirt.kernels.gemm import matmul
from minirt.kernels.matmul import matmul_blocked_loops
from minirt.ops.conv import _window_pads
from minirt.ops.quant import ConvInteger as ConvInteger_reference
from minirt.ops.quant import MatMulInteger as MatMulInteger_reference
from minirt.ops.quant import QLinearConv as QLinearConv_reference
from minirt.ops.quant import DynamicQuantizeConv as DynamicQuantizeConv_reference
from minirt.ops.quant import DynamicQuantizeLinear as DynamicQuantizeLinear_reference
from minirt.ops.quant import FusedDynamicQuantizeMatMul as FusedDynamicQuantizeMatMul_reference
from minirt.ops.quant import MatMulIntegerToFloat as MatMulIntegerToFloat_reference
from minirt.ops.quant import QGemm as QGemm_reference
from minirt.ops.quant import QLinearMatMul as QLinearMatMul_reference
from minirt.ops.quant import QuantizeLinear as QuantizeLinear_reference
from minirt.ops.quant import ScaleIntegerToFloat as ScaleIntegerToFloat_reference
from minirt.ops.quant import _channel_zero_point, _requantize, _row_zero_point
from minirt.registry import kernel

_EXACT = 2**24  # float32 represents every integer in [-2**24, 2**24]
_INT8 = frozenset((np.dtype(np.int8), np.dtype(np.uint8)))


def matmul_int32_blocked(a, b, tile=64):
    """int32 a [M, K] @ b [K, N] with the blocked loop kernel (exact, slow: the teaching kernel)."""
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    matmul_blocked_loops(np.ascontiguousarray(a, np.int32), np.ascontiguousarray(b, np.int32), c, tile)
    return c


def _bound(q_dtype, zero_point):
    """The largest |q - zero_point| a q_dtype value can have (zero_point: scalar or per channel)."""
    lo, hi = _LIMITS.get(np.dtype(q_dtype)) or (int(np.iinfo(q_dtype).min), int(np.iinfo(q_dtype).max))
    if zero_point is None:
        zmin = zmax = 0
    elif np.size(zero_point) == 1:  # the usual scalar: plain Python ints (no array reductions)
        zmin = zmax = int(np.asarray(zero_point).reshape(-1)[0])
    else:
        zp = np.asarray(zero_point, dtype=np.int64)
        zmin, zmax = int(zp.min()), int(zp.max())
    return max(hi - zmin, zmax - lo)


_LIMITS = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _widen_f32(q, zero_point):
    """q - zero_point as float32 (exact: 8-bit values and zero points)."""
    x = q.astype(np.float32)
    if zero_point is not None:
        x -= np.asarray(zero_point, dtype=np.float32)
    return x


def _chunk(amax, bmax):
    """How many products a float32 dot product may sum and stay exact."""
    return _EXACT // max(amax * bmax, 1)


def _gemm_exact(a, b, chunk, out=None):
    """Exact int32 a [.., M, K] @ b [.., K, N] of integer-valued float32 arrays, K in exact chunks."""
    K = a.shape[-1]
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, dtype=np.int32)
    if K <= chunk:
        np.copyto(out, matmul(a, b), casting="unsafe")  # [.., M, K] @ [.., K, N] -> [.., M, N], exact
        return out
    out[...] = 0
    for k0 in range(0, K, chunk):  # every chunk is exact; the int32 sum of chunks is exact
        part = matmul(a[..., k0:k0 + chunk], b[..., k0:k0 + chunk, :])
        np.add(out, part, out=out, casting="unsafe")  # (added in float64: exact for int32)
    return out


# ---------------------------------------------------------------------------- per-weight cache

_CACHE: dict[int, tuple] = {}  # id(weight) -> (weakref to it, {what: prepared value})


def _prepared(w, tag, params, make):
    """``make()``, computed once per immutable ``w``, hashable ``tag`` (attributes, dtypes,
    shapes) and ``params`` (the small scale / zero-point arrays the result depends on).

    The entry is keyed by the ids of ``params`` and keeps them referenced, so while it lives no
    other object can take those ids: a hit means the very same objects. Only immutable params are
    cached that way; a writeable one (a scale computed at run time) means ``make()`` every call,
    as does a writeable ``w``."""
    key = id(w)
    entry = _CACHE.get(key)
    if entry is not None and entry[0]() is w:  # the hit path first: it runs on every call
        hit = entry[1].get((tag, *map(id, params)))
        if hit is not None and _immutable(w):
            return hit[1]
    if not isinstance(w, np.ndarray) or not _immutable(w):
        return make()  # a NumPy scalar takes no weak reference; a writeable array may change
    if entry is None or entry[0]() is not w:
        entry = (weakref.ref(w, lambda _, key=key, cache=_CACHE: cache.pop(key, None)), {})
        _CACHE[key] = entry
    table = entry[1]
    id_key = (tag, *map(id, params))
    hit = table.get(id_key)
    if hit is not None:
        return hit[1]
    if not all(_immutable(p) for p in params):
        return make()
    value = make()
    table[id_key] = (params, value)  # params pinned: their ids stay theirs
    return value


def prepared_step(build, kernel_fn, attrs):
    """A quantized node's plan-time step (what :func:`minirt.registry.kernel`'s ``prepare``
    returns), for ops whose first input is the data and whose other inputs are constants of the
    model (scales, zero points, weights, bias). ``build(*inputs, **attrs)`` works out, once,
    everything that depends only on the data's shape and dtype and on the constants, and returns
    ``run(data)`` (or None: the case is not taken); ``run`` may also return None for a run it
    does not take. Then ``kernel_fn(*inputs, **attrs)`` runs instead.

    Why per node, beside ``_prepared``'s per-weight cache: on a small layer the lookups and the
    Python glue cost more than the arithmetic (digits' 8x8 QLinearConv: 9 us a call, of which
    the loop kernels take 2.5). The runner is kept while the constants are the very same
    objects (checked by id; they are held, so no other object can take their ids) and immutable
    (``_immutable``: a writeable one may change between runs, so it is never kept)."""
    key = held = run = None  # (data shape, dtype, ids of the constants); the constants; runner

    @functools.wraps(kernel_fn)  # named as the kernel, and inspect.unwrap(step) is kernel_fn
    def step(x, *consts):
        nonlocal key, held, run
        now = (x.shape, x.dtype, *map(id, consts))
        if now != key:
            key = held = run = None
            if type(x) is not np.ndarray or not all(_immutable(c) for c in consts):
                return kernel_fn(x, *consts, **attrs)
            run = build(x, *consts, **attrs)
            key, held = now, consts
        y = None if run is None or not x.flags.c_contiguous else run(x)
        return kernel_fn(x, *consts, **attrs) if y is None else y

    return step


# ---------------------------------------------------------------------------- the fused loops


def _requant_value(a, b, m, zp, lo, hi):
    """saturate(rint(float32(int32(a) + b) * m) + zp): one value of the requantization. The int32
    add wraps (int32 arithmetic), the product and rint are float32, the zero point is added in
    float64 (NumPy: float32 array + int32 array), then the clip to [lo, hi]."""
    v = np.int32(np.int64(np.int32(a)) + np.int64(b))  # int32 add, wrapping
    r = np.float64(np.rint(np.float32(v) * m)) + zp
    if r < lo:
        return lo
    if r > hi:
        return hi
    return r


def _requant_loops(acc, bias, mult, zp, lo, hi, out):
    """out[p, c, q] = saturate(rint(float32(acc[p, c, q] + bias[c]) * mult[c]) + zp).

    acc: int32 (or integer-valued float32, exact) [P, C, Q]; bias: int32 [C] or empty; mult:
    float32 [C] or [1]; zp: float64. The float32 product and rint as ``_requantize`` does them;
    the zero point is added in float64 (NumPy: float32 array + int32 array), then clipped."""
    P, C, Q = acc.shape
    per_channel = mult.shape[0] > 1
    has_bias = bias.shape[0] > 0
    for p in range(P):
        for c in range(C):
            m = mult[c] if per_channel else mult[0]
            b = bias[c] if has_bias else 0
            for q in range(Q):
                out[p, c, q] = _requant_value(acc[p, c, q], b, m, zp, lo, hi)


def _scale_loops(acc, mult, bias, out):
    """out[p, c, q] = float32(acc[p, c, q]) * mult[c] (+ bias[c]), all in float32."""
    P, C, Q = acc.shape
    per_channel = mult.shape[0] > 1
    has_bias = bias.shape[0] > 0
    for p in range(P):
        for c in range(C):
            m = mult[c] if per_channel else mult[0]
            for q in range(Q):
                v = np.float32(acc[p, c, q]) * m
                if has_bias:
                    v = v + bias[c]
                out[p, c, q] = v


def _quantize_value(v, s, z, lo, hi):
    """saturate(rint(v / s) + z) in float32 (s, z, lo, hi float32): one value of QuantizeLinear."""
    r = np.rint(v / s) + z
    if r < lo:
        return lo
    if r > hi:
        return hi
    return r


def _quantize_loop(x, scale, zp, lo, hi, out):
    """out = saturate(rint(x / scale) + zp): float32 division and rint, as the reference.
    scale: a Python float holding a float32 value (converted back here: the division is float32).

    The reference adds the zero point in float64; here it is added in float32, which vectorizes
    (2x faster) and gives the same result: rint(x / scale) is an integer r, and while
    |r| < 2**24 - 255, r + zp is exact in float32; beyond that both sums are far outside
    [lo, hi] and saturate to the same bound."""
    s = np.float32(scale)
    z = np.float32(zp)
    flo = np.float32(lo)
    fhi = np.float32(hi)
    for i in range(x.size):
        out[i] = np.int32(_quantize_value(x[i], s, z, flo, fhi))


def _dynamic_params(x, pair):
    """DynamicQuantizeLinear's scale and zero point of a float32 vector x, with the reference's
    float32 scalar arithmetic: (scale, zero point as float32), or (0, 0) for NaN / inf input
    or a scale that underflows to 0 (the caller then runs the reference). pair: int32 [2] scratch.

    The min/max pass runs on the float32 bit patterns as int32, mapped to integers that order as
    the floats do (negative values: the magnitude bits flipped), because integer min/max
    vectorizes and float min/max does not. NaN and +-inf map beyond every finite value, so one
    comparison of the extremes detects them."""
    bits = x.view(np.int32)
    kmin = np.int32(0)  # +0.0: min(0, x.min()) and max(0, x.max()), as the reference
    kmax = np.int32(0)
    for i in range(x.size):
        b = bits[i]
        k = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
        kmin = min(kmin, k)
        kmax = max(kmax, k)
    if kmax >= np.int32(0x7F800000) or kmin <= np.int32(-2139095041):  # +inf/NaN, -inf/-NaN
        return np.float32(0), np.float32(0)
    pair[0] = kmin ^ ((kmin >> 31) & np.int32(0x7FFFFFFF))
    pair[1] = kmax ^ ((kmax >> 31) & np.int32(0x7FFFFFFF))
    back = pair.view(np.float32)
    xmin = back[0] if back[0] < 0 else np.float32(0)  # (-0.0 -> 0.0)
    xmax = back[1]
    # lo = min(0, x.min()), hi = max(0, x.max()); scale = (hi - lo) / 255 in float32
    if xmax != xmin:
        scale = np.float32((xmax - xmin) / np.float32(255))
    else:
        scale = np.float32(1.0 / 255)
    if scale == 0:  # a range of a few subnormals: the reference divides by zero (its own rules)
        return np.float32(0), np.float32(0)
    zp = np.rint(np.float32(0) - xmin / scale)  # saturate(0 - lo / scale) to uint8
    if zp < 0:
        zp = np.float32(0)
    elif zp > 255:
        zp = np.float32(255)
    return scale, zp


def _dynamic_quantize(x, out, scale_out, zp_out):
    """DynamicQuantizeLinear of a float32 vector into out (uint8): ``_dynamic_params``, then one
    quantize pass. Writes the scale and zero point into the 0-d arrays scale_out (float32) and
    zp_out (uint8), the op's outputs (cheaper than returning NumPy scalars to wrap), and returns
    ok: False for NaN / inf input (then nothing is written: the caller runs the reference)."""
    scale, zp = _dynamic_params(x, np.empty(2, np.int32))
    if scale == 0:
        return False
    _quantize_u8_loop(x, scale, zp, out)
    scale_out[()] = scale
    zp_out[()] = np.uint8(zp)
    return True


def _dynamic_quantize_widen(x, out, scale_out, zp_out):
    """``_dynamic_quantize`` that writes q - zero point as float32 (exact) instead of q: the
    input of an exact float32 BLAS product, without a uint8 array and a widening pass between."""
    scale, zp = _dynamic_params(x, np.empty(2, np.int32))
    if scale == 0:
        return False
    lo, hi = np.float32(0), np.float32(255)
    for i in range(x.size):
        out[i] = _quantize_value(x[i], scale, zp, lo, hi) - zp
    scale_out[()] = scale
    zp_out[()] = np.uint8(zp)
    return True


def _quantize_u8_loop(x, scale, zp, out):
    """DynamicQuantizeLinear's y: saturate(rint(x / scale) + zp) in float32, to uint8."""
    lo, hi = np.float32(0), np.float32(255)
    for i in range(x.size):
        out[i] = np.uint8(_quantize_value(x[i], scale, zp, lo, hi))


def _widen_loop(q, zp, out):
    """out = float32(q) - zp (q an 8-bit vector, zp a float32 scalar): the widening in one pass."""
    for i in range(q.size):
        out[i] = np.float32(q[i]) - zp


def _small_gemm(a, a_zp, b, chunk, scale, bias, out):
    """out [M, N] = (a [M, K] - a_zp) @ b [K, N], for a small product in one call: a 8-bit,
    b the widened weight as float32. Exact: float32 sums over at most ``chunk`` terms are
    integers below 2**24 (module docstring), and the chunks are added in float64 (exact far
    beyond int32). Rows go four at a time (each load of b serves four rows).

    out: int32 or float32. With a non-empty ``scale`` (float32 [1] or [N]) out is
    MatMulIntegerToFloat's float32(acc) * scale (+ bias [N]): the reference's float32 operations."""
    M, K = a.shape
    N = b.shape[1]
    a_zp = np.float32(a_zp)  # a Python number (an 8-bit zero point): exact
    part = np.empty((4, N), np.float32)
    total = np.empty((4, N), np.float64)
    for m0 in range(0, M, 4):
        rows = min(4, M - m0)
        total[:, :] = 0
        for k0 in range(0, K, chunk):
            part[:, :] = 0
            for k in range(k0, min(k0 + chunk, K)):
                if rows == 4:
                    v0 = np.float32(a[m0, k]) - a_zp
                    v1 = np.float32(a[m0 + 1, k]) - a_zp
                    v2 = np.float32(a[m0 + 2, k]) - a_zp
                    v3 = np.float32(a[m0 + 3, k]) - a_zp
                    for n in range(N):
                        bn = b[k, n]
                        part[0, n] += v0 * bn
                        part[1, n] += v1 * bn
                        part[2, n] += v2 * bn
                        part[3, n] += v3 * bn
                else:
                    for r in range(rows):
                        v = np.float32(a[m0 + r, k]) - a_zp
                        for n in range(N):
                            part[r, n] += v * b[k, n]
            for r in range(rows):
                for n in range(N):
                    total[r, n] += part[r, n]
        for r in range(rows):
            if scale.shape[0] == 0:
                for n in range(N):
                    out[m0 + r, n] = total[r, n]
            else:
                for n in range(N):
                    v = np.float32(total[r, n]) * scale[n if scale.shape[0] > 1 else 0]
                    if bias.shape[0] > 0:
                        v = v + bias[n]
                    out[m0 + r, n] = v


def _widen_into(q, zp, out):
    """out = float32(q) - zp for 8-bit q (a flat contiguous vector): the widening in one pass.
    zp is a Python number (an 8-bit zero point): exact in float32."""
    z = np.float32(zp)
    for i in range(q.size):
        out[i] = np.float32(q[i]) - z


def _scale_rows(acc, a_scale, b_scale, ibias, fbias, out):
    """MatMulIntegerToFloat's / float QGemm's epilogue over rows, vectorized along N:
    out[p, n] = float32(int32(acc[p, n]) + ibias[n]) * float32(a_scale * b_scale[n]) + fbias[n].

    acc: int32 or integer-valued float32 (exact) [P, N]; a_scale: a Python float holding a
    float32 value; b_scale: float32 [N] or [1]; ibias: int32 [N] (added wrapping, as NumPy's
    int32 add) or empty; fbias: float32 [N] or empty. The reference's float32 operations in
    its order: scale = a_scale * b_scale first, then acc * scale, then + bias (Numba does not
    contract the product and the sum into one FMA without fastmath). Both biases are never
    given together."""
    P, N = acc.shape
    a32 = np.float32(a_scale)
    s = np.empty(N, np.float32)
    for n in range(N):
        s[n] = a32 * b_scale[n if b_scale.shape[0] > 1 else 0]
    if ibias.shape[0] > 0:  # (QGemm: an int32 bias, a float output, no float bias)
        for p in range(P):
            src = acc[p]
            dst = out[p]
            for n in range(N):
                a = np.int32(np.int64(np.int32(src[n])) + np.int64(ibias[n]))
                dst[n] = np.float32(a) * s[n]
    elif fbias.shape[0] > 0:  # one pass per row: (acc * scale) + bias, two float32 roundings
        for p in range(P):
            src = acc[p]
            dst = out[p]
            for n in range(N):
                dst[n] = np.float32(src[n]) * s[n] + fbias[n]
    else:
        for p in range(P):
            src = acc[p]
            dst = out[p]
            for n in range(N):
                dst[n] = np.float32(src[n]) * s[n]


def _scale_rows_in_place(y, a_scale, b_scale, fbias):
    """``_scale_rows`` on an integer-valued float32 product ``y`` [P, N], overwriting it:
    y[p, n] = y[p, n] * float32(a_scale * b_scale[n]) + fbias[n] (fbias: float32 [N] or empty),
    the same float32 operations. Its own loop because LLVM does not vectorize ``_scale_rows``
    when acc and out are the same array (it cannot rule out an overlap: 128x192 10.9 us, 2.5
    here)."""
    P, N = y.shape
    a32 = np.float32(a_scale)
    s = np.empty(N, np.float32)
    for n in range(N):
        s[n] = a32 * b_scale[n if b_scale.shape[0] > 1 else 0]
    has_bias = fbias.shape[0] > 0
    for p in range(P):
        row = y[p]
        if has_bias:
            for n in range(N):
                row[n] = row[n] * s[n] + fbias[n]
        else:
            for n in range(N):
                row[n] = row[n] * s[n]


def _epilogue_rows(acc, a_scale, b_scale, fbias, out):
    """MatMulIntegerToFloat's float epilogue into ``out`` [P, N]: in place where the product
    (``_int_product(..., out=out)``) was written into ``out`` already, else ``scale_rows``."""
    if acc is out:
        scale_rows_in_place(out, a_scale, b_scale, fbias)
    else:
        scale_rows(acc, a_scale, b_scale, _EMPTY_I32, fbias, out)


def _requant_rows(acc, bias, mult, zp, lo, hi, out):
    """out[p, n] = saturate(rint(float32(acc[p, n] + bias[n]) * mult[n]) + zp), vectorized along
    N: ``_requant_loops`` for a [P, N] accumulator whose channels are its columns (QGemm,
    QLinearMatMul). bias: int32 [N]; mult: float32 [N] (both expanded by the caller)."""
    P, N = acc.shape
    for p in range(P):
        src = acc[p]
        dst = out[p]
        for n in range(N):
            dst[n] = _requant_value(src[n], bias[n], mult[n], zp, lo, hi)


def _rows_acc(arow, z, b, acc):
    """acc[n] = sum_k (arow[k] - z) * b[k, n] in float32: exact while K <= chunk (module docstring)."""
    K, N = b.shape
    for n in range(N):
        acc[n] = 0
    for k in range(K):
        v = np.float32(arow[k]) - z
        brow = b[k]
        for n in range(N):
            acc[n] += v * brow[n]


def _small_to_float(a, zp, b, a_scale, b_scale, ibias, fbias, out):
    """out [P, N] = float32(int32((a - zp) @ b) + ibias) * float32(a_scale * b_scale) + fbias, in
    one call, for a small product whose K fits one exact chunk: MatMulIntegerToFloat and the
    float QGemm, the reference's float32 operations in its order (see ``_scale_rows``)."""
    P, K = a.shape
    N = b.shape[1]
    z = np.float32(zp)
    a32 = np.float32(a_scale)
    s = np.empty(N, np.float32)
    for n in range(N):
        s[n] = a32 * b_scale[n if b_scale.shape[0] > 1 else 0]
    acc = np.empty(N, np.float32)
    has_ibias = ibias.shape[0] > 0
    has_fbias = fbias.shape[0] > 0
    for p in range(P):
        _rows_acc(a[p], z, b, acc)
        dst = out[p]
        if has_ibias:
            for n in range(N):
                dst[n] = np.float32(np.int32(np.int64(np.int32(acc[n])) + np.int64(ibias[n]))) * s[n]
        else:
            for n in range(N):
                dst[n] = acc[n] * s[n]
        if has_fbias:
            for n in range(N):
                dst[n] = dst[n] + fbias[n]


def _small_requant(a, zp, b, bias, mult, yzp, lo, hi, out):
    """out [P, N] = saturate(rint(float32(int32((a - zp) @ b) + bias) * mult) + yzp), in one call,
    for a small product whose K fits one exact chunk (QGemm, int8 output; see ``_requant_rows``)."""
    P, K = a.shape
    N = b.shape[1]
    z = np.float32(zp)
    acc = np.empty(N, np.float32)
    for p in range(P):
        _rows_acc(a[p], z, b, acc)
        dst = out[p]
        for n in range(N):
            dst[n] = _requant_value(acc[n], bias[n], mult[n], yzp, lo, hi)


def _quantize_widen(x, scale, zp, lo, hi, out):
    """out = saturate(rint(x / scale) + zp) - zp as float32: QuantizeLinear then the widening of
    the integer product, in one pass (``_quantize_loop``'s arithmetic; the difference of two
    8-bit integers is exact in float32)."""
    s = np.float32(scale)
    z = np.float32(zp)
    flo = np.float32(lo)
    fhi = np.float32(hi)
    for i in range(x.size):
        out[i] = _quantize_value(x[i], s, z, flo, fhi) - z


def _dots(a, zp, bT, acc):
    """acc [P, N] = (a - zp) @ bT.T as float32 dot products along K, for narrow outputs (N < 32)
    where the row kernel cannot vectorize along N. Compiled with fastmath: the reassociated,
    vectorized sums are exact all the same, because every term and every partial sum is an
    integer of magnitude <= K * amax * bmax <= 2**24 (the caller checks K <= chunk), so float32
    holds each one exactly in any order. Only this loop is fastmath; the epilogues are not."""
    P, K = a.shape
    N = bT.shape[0]
    z = np.float32(zp)
    row = np.empty(K, np.float32)
    for p in range(P):
        ar = a[p]
        for k in range(K):
            row[k] = np.float32(ar[k]) - z
        dst = acc[p]
        for n in range(N):
            br = bT[n]
            t = np.float32(0)
            for k in range(K):
                t += row[k] * br[k]
            dst[n] = t


def _dots_to_float(a, zp, bT, a_scale, b_scale, ibias, fbias, out):
    """``_small_to_float`` for narrow outputs: ``dots`` then the ``scale_rows`` epilogue."""
    acc = np.empty(out.shape, np.float32)
    dots(a, zp, bT, acc)
    scale_rows(acc, a_scale, b_scale, ibias, fbias, out)


def _dots_requant(a, zp, bT, bias, mult, yzp, lo, hi, out):
    """``_small_requant`` for narrow outputs: ``dots`` then the ``requant_rows`` epilogue."""
    acc = np.empty(out.shape, np.float32)
    dots(a, zp, bT, acc)
    requant_rows(acc, bias, mult, yzp, lo, hi, out)


def _relu_inplace(y):
    """y = max(y, 0) in place for a float vector, as Relu's np.maximum: -0.0 -> +0.0, NaN kept."""
    zero = y.dtype.type(0)
    for i in range(y.size):
        if y[i] <= zero:  # (false for NaN)
            y[i] = zero


def _scale_channels(acc, a_scale, b_scale, bias, relu, out):
    """out[n, c, i] = float32(acc[n, c, i]) * float32(a_scale * b_scale[c]) (+ bias[c]): the
    chain Cast -> Mul -> Add in one pass, the same float32 operations in the same order.
    a_scale: a Python float holding a float32 value; b_scale, bias: float32 [C] or [1]
    (bias may be empty); acc: int32 or integer-valued float32 (exact). With ``relu``, each row
    then goes through Relu's max(v, 0) while in cache (-0.0 -> +0.0 and NaN kept, as np.maximum)."""
    Nb, C, Q = acc.shape
    a32 = np.float32(a_scale)
    for n in range(Nb):
        for c in range(C):
            s = a32 * b_scale[c if b_scale.shape[0] > 1 else 0]
            src = acc[n, c]
            dst = out[n, c]
            if bias.shape[0] > 0:
                bb = bias[c if bias.shape[0] > 1 else 0]
                for i in range(Q):
                    dst[i] = np.float32(src[i]) * s + bb
            else:
                for i in range(Q):
                    dst[i] = np.float32(src[i]) * s
            if relu:
                relu_inplace(dst)


def _padded_planes(x, n, z, pt, pl, Hp, Wp):
    """x[n] - z (x 8-bit [N, C, H, W]) as zero-padded int32 planes [C, Hp * Wp], x[n] placed at
    row pt, column pl (a padded cell is x's zero point: it adds 0 to every sum)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    xp = np.zeros((C, Hp * Wp), np.int32)
    for c in range(C):
        for i in range(max(0, -pt), min(H, Hp - pt)):
            row = xp[c, (pt + i) * Wp:]
            for j in range(max(0, -pl), min(W, Wp - pl)):
                row[pl + j] = np.int32(x[n, c, i, j]) - z
    return xp


def _channel_sums(xp, w, m, c0, dh, dw, Wp, acc):
    """acc[q] = sum over c, ky, kx of w[m, c, ky, kx] * xp[c0 + c, q + ky * dh * Wp + kx * dw]:
    output channel m of a stride-1 conv over the padded planes, as rows Wp wide (output (oy, ox)
    at q = oy * Wp + ox; the Wp - ow extra columns a row are computed and dropped). One long
    contiguous loop (which vectorizes) for every three taps of a kernel row: acc is loaded and
    stored once for three products (3x3 [8, 8, 8] -> 16 channels: 13.3 -> 7.7 us), the rest of
    a row's taps one loop each."""
    Cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    Q = acc.shape[0]
    acc[:] = 0
    for c in range(Cg):
        for ky in range(kh):
            row = xp[c0 + c, ky * dh * Wp:]  # the plane from kernel row ky on
            kx = 0
            while kx + 3 <= kw:
                w0, w1, w2 = w[m, c, ky, kx], w[m, c, ky, kx + 1], w[m, c, ky, kx + 2]
                s0 = row[kx * dw:kx * dw + Q]  # (slices: the loop below vectorizes)
                s1 = row[(kx + 1) * dw:(kx + 1) * dw + Q]
                s2 = row[(kx + 2) * dw:(kx + 2) * dw + Q]
                for q in range(Q):
                    acc[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                kx += 3
            while kx < kw:
                wv = w[m, c, ky, kx]
                src = row[kx * dw:kx * dw + Q]
                for q in range(Q):
                    acc[q] += wv * src[q]
                kx += 1


def _conv_int32_loops(x, z, w, pt, pl, dh, dw, y):
    """y[n, m] = sum over c, ky, kx of (x[n, g*C/G + c] - z) * w[m, c, ky, kx], int32 and exact:
    the direct loop kernel of a small stride-1 ConvInteger (m in group g). x: 8-bit [N, C, H, W];
    w: the weight minus its zero point, int32 [M, C/G, kh, kw]; y: int32 [N, M, oh, ow]; pt, pl:
    the top / left padding (the bottom / right follow from y's shape). |products| <= 255 * 255,
    so the int32 sums are exact up to 33 025 taps."""
    M, Cg, kh, kw = w.shape
    oh, ow = y.shape[2], y.shape[3]
    Hp, Wp = oh + (kh - 1) * dh, ow + (kw - 1) * dw  # the padded plane the outputs read
    Mg = M // (x.shape[1] // Cg)  # output channels a group
    acc = np.empty((oh - 1) * Wp + ow, np.int32)  # flat positions of outputs (0, 0) .. (oh-1, ow-1)
    for n in range(x.shape[0]):
        xp = _padded_planes(x, n, z, pt, pl, Hp, Wp)  # [C, H, W] -> [C, Hp * Wp]
        for m in range(M):
            _channel_sums(xp, w, m, (m // Mg) * Cg, dh, dw, Wp, acc)
            for oy in range(oh):  # the wide rows -> y [oh, ow]
                for ox in range(ow):
                    y[n, m, oy, ox] = acc[oy * Wp + ox]


def _qlinear_conv_loops(x, z, w, pt, pl, dh, dw, bias, mult, zp, lo, hi, y):
    """QLinearConv of a small stride-1 conv in one pass: ``_conv_int32_loops``' sums, each
    requantized as it leaves (``_requant_value``: requant_loops' arithmetic, bit-exact) into the
    8-bit y. bias: int32 [M] or empty; mult: float32 [M] or [1]."""
    M, Cg, kh, kw = w.shape
    oh, ow = y.shape[2], y.shape[3]
    Hp, Wp = oh + (kh - 1) * dh, ow + (kw - 1) * dw
    Mg = M // (x.shape[1] // Cg)
    acc = np.empty((oh - 1) * Wp + ow, np.int32)
    for n in range(x.shape[0]):
        xp = _padded_planes(x, n, z, pt, pl, Hp, Wp)  # [C, H, W] -> [C, Hp * Wp]
        for m in range(M):
            _channel_sums(xp, w, m, (m // Mg) * Cg, dh, dw, Wp, acc)
            b = bias[m] if bias.shape[0] > 0 else 0
            s = mult[m] if mult.shape[0] > 1 else mult[0]
            for oy in range(oh):  # the wide rows -> y [oh, ow], requantized
                for ox in range(ow):
                    y[n, m, oy, ox] = _requant_value(acc[oy * Wp + ox], b, s, zp, lo, hi)


def _conv_scale_loops(x, z, w, pt, pl, dh, dw, a_scale, b_scale, bias, relu, y):
    """DynamicQuantizeConv's product and scaling of a small stride-1 conv in one pass:
    ``_conv_int32_loops``' sums, each scaled as it leaves into the float32 y as
    ``_scale_channels`` does it (float32(acc) * float32(a_scale * b_scale[m]) (+ bias[m]), then
    Relu's max(v, 0) with ``relu``): the same float32 operations, bit-exact."""
    M, Cg, kh, kw = w.shape
    oh, ow = y.shape[2], y.shape[3]
    Hp, Wp = oh + (kh - 1) * dh, ow + (kw - 1) * dw
    Mg = M // (x.shape[1] // Cg)
    acc = np.empty((oh - 1) * Wp + ow, np.int32)
    a32 = np.float32(a_scale)
    zero = np.float32(0)
    for n in range(x.shape[0]):
        xp = _padded_planes(x, n, z, pt, pl, Hp, Wp)  # [C, H, W] -> [C, Hp * Wp]
        for m in range(M):
            _channel_sums(xp, w, m, (m // Mg) * Cg, dh, dw, Wp, acc)
            s = a32 * b_scale[m if b_scale.shape[0] > 1 else 0]
            bb = bias[m if bias.shape[0] > 1 else 0] if bias.shape[0] > 0 else zero
            for oy in range(oh):  # the wide rows -> y [oh, ow], scaled
                for ox in range(ow):
                    v = np.float32(acc[oy * Wp + ox]) * s
                    if bias.shape[0] > 0:
                        v = v + bb
                    if relu and v <= zero:  # (false for NaN, as np.maximum keeps it)
                        v = zero
                    y[n, m, oy, ox] = v


_quantize_value = numba.njit(cache=True, inline="always")(_quantize_value)
_requant_value = numba.njit(cache=True, inline="always")(_requant_value)
relu_inplace = numba.njit(cache=True, inline="always")(_relu_inplace)
requant_loops = numba.njit(cache=True)(_requant_loops)
scale_channels = numba.njit(cache=True)(_scale_channels)
quantize_widen = numba.njit(cache=True)(_quantize_widen)
_rows_acc = numba.njit(cache=True, inline="always")(_rows_acc)
small_to_float = numba.njit(cache=True)(_small_to_float)
small_requant = numba.njit(cache=True)(_small_requant)
widen_into = numba.njit(cache=True)(_widen_into)
scale_rows = numba.njit(cache=True)(_scale_rows)
scale_rows_in_place = numba.njit(cache=True)(_scale_rows_in_place)
requant_rows = numba.njit(cache=True)(_requant_rows)
dots = numba.njit(cache=True, fastmath=True)(_dots)
dots_to_float = numba.njit(cache=True)(_dots_to_float)
dots_requant = numba.njit(cache=True)(_dots_requant)
scale_loops = numba.njit(cache=True)(_scale_loops)
quantize_loop = numba.njit(cache=True)(_quantize_loop)
_quantize_u8_loop = numba.njit(cache=True, inline="always")(_quantize_u8_loop)
_dynamic_params = numba.njit(cache=True, inline="always")(_dynamic_params)
dynamic_quantize = numba.njit(cache=True)(_dynamic_quantize)
dynamic_quantize_widen = numba.njit(cache=True)(_dynamic_quantize_widen)
widen_loop = numba.njit(cache=True)(_widen_loop)
small_gemm = numba.njit(cache=True)(_small_gemm)
_padded_planes = numba.njit(cache=True, inline="always")(_padded_planes)
_channel_sums = numba.njit(cache=True, inline="always")(_channel_sums)
conv_int32_loops = numba.njit(cache=True)(_conv_int32_loops)
qlinear_conv_loops = numba.njit(cache=True)(_qlinear_conv_loops)
conv_scale_loops = numba.njit(cache=True)(_conv_scale_loops)
SMALL_MACS = 1 << 18  # the loop kernel (``small_gemm``) beats widening + BLAS up to this many
TINY_MACS = 1 << 14   # multiply-adds for 1-4 rows, and up to TINY_MACS for any number of rows
#                       (64 x 256 x 10: 37 us in the loop, 10 us widened + BLAS)


def _use_small(M, K, N):
    """True where one ``small_gemm`` call beats widening + a BLAS product."""
    macs = M * K * N
    return K <= 32768 and (macs <= TINY_MACS or (M <= 4 and macs <= SMALL_MACS))


DIRECT_MACS = 1 << 22  # multiply-adds an image up to which a stride-1 ConvInteger runs in the
#                        direct loops (``conv_int32_loops``, one thread, 6-17 G/s) rather than widen +
#                        im2col + BLAS (two threads): 3x3 convs of 74 K - 3.6 M multiply-adds an image
#                        took 0.32-0.80x the time, batch 1 to 64; from 7 M, 0.95-4x


ROWS, DOTS = 1, 2  # the one-call small paths (``_small_path``)


def _small_path(M, K, N, chunk):
    """ROWS, DOTS or 0 (widen + BLAS, or the loop kernel): which kernel runs a product of
    8-bit [M, K] by a widened [K, N] weight. The dot-product kernel is for narrow outputs
    (fraud MLP 64 x 16 x 1: 1.7 us against 3.2; 64 x 32 x 16: 4.0 against 5.0; 1 x 256 x 10:
    1.5 against 1.7), up to 64 K multiply-adds, where BLAS catches up."""
    if _use_rows(M, K, N, chunk) and N >= 16:
        return ROWS
    if K <= chunk and N < 32 and M * K * N <= 65536:
        return DOTS
    return 0


def _transposed(B, b, b_zero_point, transB=0):
    """The widened weight b [K, N] (B or B.T, as transB says, minus its zero point) as a
    contiguous [N, K] for ``dots``, cached with B."""
    return _prepared(B, ("widenT", transB), (b_zero_point,), lambda: np.ascontiguousarray(b.T))


def _use_rows(M, K, N, chunk):
    """True where the one-call row kernels (``small_to_float``, ``small_requant``: float32 row
    accumulators, exact while K <= chunk) beat widening + BLAS: a few rows, or a small product
    wide enough to vectorize (fraud MLP 1 x 10 x 32: 0.9 us against 3.6; 64 x 10 x 32: 3.3 against
    4.6; 64 x 32 x 16: 6.9 against 4.8, so narrow ones go to BLAS)."""
    macs = M * K * N
    return K <= chunk and ((M <= 4 and macs <= SMALL_MACS) or (macs <= 32768 and N >= 32))


def _product_rows(a2, z, b, chunk):
    """(a2 - z) @ b, exact, for 8-bit a2 [P, K], a Python-int zero point z and a widened weight
    b (float32 [K, N]): int32 or integer-valued float32 [P, N]. Tiny products run in one loop
    call; the rest widen a2 in one pass and run one float32 BLAS product (K in exact chunks)."""
    P, K = a2.shape
    N = b.shape[1]
    if _use_small(P, K, N):  # (K <= 32768: |sum| < 2**31, the int32 output holds it)
        acc = np.empty((P, N), np.int32)
        small_gemm(a2, z, b, chunk, _EMPTY_F32, _EMPTY_F32, acc)
        return acc
    af = np.empty((P, K), np.float32)
    widen_into(np.ascontiguousarray(a2).reshape(-1), z, af.reshape(-1))
    return _int_product(af, b, chunk)


def _item(a):
    """The one value of a size-1 array (or NumPy scalar) as a Python number."""
    return a.item() if hasattr(a, "item") else a

_EMPTY_I32 = np.zeros(0, np.int32)
_EMPTY_F32 = np.zeros(0, np.float32)


def _widen_fast(q, zero_point):
    """``_widen_f32`` for a scalar zero point (the per-call widening of activations)."""
    if zero_point is not None and np.size(zero_point) != 1:
        return _widen_f32(q, zero_point)
    x = q.astype(np.float32)
    if zero_point is not None:
        x -= np.float32(np.asarray(zero_point).reshape(-1)[0])
    return x


def _requantize_fast(acc, bias, multiplier, y_zero_point, dtype, axis):
    """``_requantize(acc + bias, multiplier, y_zero_point, dtype)`` in one pass.

    ``multiplier`` (float32) is a scalar or varies along one ``axis`` of acc (and so does
    ``bias``, int32, or None); anything else goes to the reference."""
    dtype = np.dtype(dtype)
    mult = np.asarray(multiplier)
    if (dtype not in _INT8 or mult.dtype != np.float32 or not np.isfinite(mult).all()
            or (y_zero_point is not None and np.size(y_zero_point) != 1)
            or (bias is not None and bias.dtype != np.int32)):
        if bias is not None:
            acc = acc + bias.reshape(bias.shape + (1,) * (acc.ndim - 1 - axis % acc.ndim))
        return _requantize(acc, multiplier, y_zero_point, dtype)
    axis %= acc.ndim
    C = acc.shape[axis]
    m = mult.reshape(-1)
    if m.size not in (1, C) or (bias is not None and bias.size not in (1, C)):
        if bias is not None:
            acc = acc + bias.reshape(bias.shape + (1,) * (acc.ndim - 1 - axis))
        return _requantize(acc, multiplier, y_zero_point, dtype)
    P = int(np.prod(acc.shape[:axis]))
    acc3 = np.ascontiguousarray(acc).reshape(P, C, -1)
    b = _EMPTY_I32 if bias is None else np.ascontiguousarray(np.broadcast_to(bias.reshape(-1), (C,)))
    zp = 0.0 if y_zero_point is None else float(np.asarray(y_zero_point).reshape(-1)[0])
    lo, hi = _LIMITS[dtype]
    out = np.empty(acc.shape, dtype)
    requant_loops(acc3, b, m, zp, float(lo), float(hi), out.reshape(acc3.shape))
    return out


def _int_product(a, b, chunk, out=None):
    """The exact integer a @ b of integer-valued float32 arrays: float32 when K fits one chunk
    (every value exact; into ``out`` when given, so that the epilogue can then run in place on
    it — one buffer fewer to touch: chargpt's int8 products ~10% faster in the model), else
    int32 (a new array)."""
    if a.shape[-1] <= chunk:
        return matmul(a, b, out=out)
    return _gemm_exact(a, b, chunk)


# ---------------------------------------------------------------------------- the kernels


@kernel("MatMulInteger", since=10)
def MatMulInteger(A, B, a_zero_point=None, b_zero_point=None):
    """Fast MatMulInteger: exact float32 BLAS in chunks (see the module docstring)."""
    if A.dtype not in _INT8 or B.dtype not in _INT8 or A.ndim < 2 or B.ndim < 2:
        return MatMulInteger_reference(A, B, a_zero_point, b_zero_point)
    acc = _matmul_integer(A, B, a_zero_point, b_zero_point, int_out=True)
    return acc if acc.dtype == np.int32 else acc.astype(np.int32)


def _matmul_integer(A, B, a_zero_point, b_zero_point, int_out=False, scale=None, bias=None):
    """(A - azp) @ (B - bzp), exact, as int32 or integer-valued float32; B's widening cached.

    With ``scale`` (and ``bias``): returns (y, True) when the small loop applied
    MatMulIntegerToFloat's epilogue already, else (acc, False)."""
    a_zp = None if a_zero_point is None else _row_zero_point(a_zero_point)
    b, bmax = _prepared(B, "widen", (b_zero_point,),
                        lambda: (_widen_f32(B, b_zero_point), _bound(B.dtype, b_zero_point)))
    if a_zp is None or a_zp.size == 1:
        lo, hi = _LIMITS[A.dtype]
        z = 0 if a_zp is None else int(a_zp.reshape(-1)[0])
        amax = max(hi - z, z - lo)
    else:
        amax = _bound(A.dtype, a_zero_point)
    chunk = _chunk(amax, bmax)
    if ((a_zp is None or a_zp.size == 1) and B.ndim == 2 and A.size > 0
            and _use_small(A.size // A.shape[-1], A.shape[-1], B.shape[1])):
        a2 = A.reshape(-1, A.shape[-1])
        out = np.empty(A.shape[:-1] + (B.shape[1],), np.int32 if int_out else np.float32)
        small_gemm(a2, z, b, chunk, _EMPTY_F32 if scale is None else scale,
                   _EMPTY_F32 if bias is None else bias, out.reshape(a2.shape[0], -1))
        return out if scale is None else (out, True)
    a = _widen_fast(A, a_zp) if a_zp is None or a_zp.size == 1 else _widen_f32(A, a_zp)  # [.., M, K]
    acc = _int_product(a, b, chunk)
    return acc if scale is None else (acc, False)


@kernel("ConvInteger", since=10)
def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET",
                dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Fast ConvInteger for 2-D (and 1-D) convs: im2col of x - x_zero_point, exact float32 GEMM."""
    args = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                pads=pads, strides=strides)
    y = _conv_integer(x, w, x_zero_point, w_zero_point, **args)
    if y is None:
        return ConvInteger_reference(x, w, x_zero_point, w_zero_point, **args)
    return y if y.dtype == np.int32 else y.astype(np.int32)  # integer-valued float32: exact


def _conv_integer(x, w, x_zero_point, w_zero_point, *, auto_pad, dilations, group, kernel_shape,
                  pads, strides):
    """The int32 conv of the fast path, or None where the reference must run."""
    tag = ("conv", x.dtype, x.shape, auto_pad, group, dilations and tuple(dilations),
           kernel_shape and tuple(kernel_shape), pads and tuple(pads), strides and tuple(strides))
    prep = _prepared(w, tag, (w_zero_point,), lambda: _conv_prep(x.shape, x.dtype, w, w_zero_point, auto_pad,
                                                                dilations, group, pads, strides))
    if prep is False or (x_zero_point is not None and np.size(x_zero_point) != 1):
        return None
    wf, st, begin, dl, out_shape, bmax, one_d, wi = prep
    lo, hi = _LIMITS[x.dtype]
    z = 0 if x_zero_point is None else int(_item(x_zero_point))
    if wi is not None:  # a small stride-1 conv: the direct int32 loops, one call
        y = np.empty((x.shape[0], wi.shape[0], *out_shape), np.int32)
        xs = x[:, :, None, :] if one_d else x  # [N, C, L] -> [N, C, 1, L]
        conv_int32_loops(xs if xs.flags.c_contiguous else np.ascontiguousarray(xs), z, wi, begin[0], begin[1],
                         dl[0], dl[1], y)
        return y[:, :, 0, :] if one_d else y
    chunk = _chunk(max(hi - z, z - lo), bmax)
    xs = x[:, :, None, :] if one_d else x
    # x - x_zp as float32 in one pass: zero padding now means "pad with x_zero_point"
    xf = np.empty(xs.shape, np.float32)
    widen_into(xs.reshape(-1) if xs.flags.c_contiguous else np.ascontiguousarray(xs).reshape(-1), z,
               xf.reshape(-1))
    y = _conv_exact(xf, wf, st, begin, dl, group, out_shape, chunk)
    return y[:, :, 0, :] if one_d else y


def _tuple(v):
    return None if v is None else tuple(v)


def _conv_prep(x_shape, x_dtype, w, w_zero_point, auto_pad, dilations, group, pads, strides):
    """ConvInteger's constant work for one input shape and dtype, or False where the reference
    must run: (w - w_zp as float32, strides, begin pads, dilations, output shape, bound of
    |w - w_zp|, 1-D?, w - w_zp as int32 where the direct loops take the conv else None)."""
    ndim = len(x_shape)
    if (ndim not in (3, 4) or x_dtype not in _INT8 or w.dtype not in _INT8 or x_shape[0] == 0
            or w.ndim != ndim or x_shape[1] != w.shape[1] * group):
        return False
    one_d = ndim == 3
    ws_shape = (w.shape[0], w.shape[1], 1, w.shape[2]) if one_d else w.shape
    xs_shape = (x_shape[0], x_shape[1], 1, x_shape[2]) if one_d else x_shape
    st = ([1] if one_d else []) + list(strides or [1] * (ndim - 2))
    dl = ([1] if one_d else []) + list(dilations or [1] * (ndim - 2))
    pd = None if pads is None else ([0, pads[0], 0, pads[1]] if one_d else list(pads))
    out_shape, begin, _, _ = _window_pads(xs_shape[2:], ws_shape[2:], st, dl, pd, auto_pad)
    if min(out_shape) <= 0:
        return False

    def widen_w():  # w - w_zp as contiguous float32 [M, C/G, kh, kw]: one copy for every x shape
        w_zp = None if w_zero_point is None else _channel_zero_point(w_zero_point, len(ws_shape))
        return np.ascontiguousarray(_widen_f32(w.reshape(ws_shape), w_zp))

    wf = _prepared(w, "wf", (w_zero_point,), widen_w)
    wi = None
    macs = w.shape[0] * wf[0].size * out_shape[0] * out_shape[1]  # an image's
    exact = wf[0].size * 255 * _bound(w.dtype, w_zero_point) < 2**31  # every int32 sum: |x - x_zp| <= 255
    if st == [1, 1] and macs <= DIRECT_MACS and exact:  # the direct loops take it: w - w_zp as int32
        wi = _prepared(w, "wi", (w_zero_point,), lambda: wf.astype(np.int32))
    return wf, st, begin, dl, out_shape, _bound(w.dtype, w_zero_point), one_d, wi


def _conv_exact(x, w, strides, pads, dilations, group, out_shape, chunk):
    """The conv of integer-valued float32 x [N, C, H, W] and w [M, C/G, kh, kw], exact: as
    integer-valued float32 when every dot product fits one chunk (no int32 copy), else int32."""
    N, C, H, W = x.shape
    M, Cg, kh, kw = w.shape
    (oh, ow), (sh, sw), (dh, dw), (ph, pw) = out_shape, strides, dilations, pads[:2]
    G, L, K = group, oh * ow, Cg * kh * kw
    if G == C and Cg == 1 and G > 1 and K <= chunk:  # depthwise: float32 loops, exact (K <= chunk)
        yf = np.empty((N, M, oh, ow), dtype=np.float32)
        depthwise_loops(x, w, np.zeros(M, np.float32), yf, sh, sw, ph, pw, dh, dw, min(N * M, numba.get_num_threads()),
                        *NO_EPILOGUE)
        return yf
    y = np.empty((N, M, oh, ow), dtype=np.float32 if K <= chunk else np.int32)
    wg = w.reshape(G, M // G, K)  # [M, C/G, kh, kw] -> [G, M/G, C/G*K]
    pointwise = kh == kw == 1 and sh == sw == 1 and not any(pads)
    cols = None if pointwise else np.empty((C * kh * kw, L), dtype=np.float32)
    for n in range(N):
        if pointwise:
            cols = x[n].reshape(C, L)  # [C, H, W] -> [C, H*W]
        else:
            im2col(x[n], cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)  # [C, H, W] -> [C*K, L]
        # [G, M/G, C/G*K] @ [G, C/G*K, L] -> [G, M/G, L], exact, into y[n]
        if K <= chunk and G == 1:  # one 2-D product: [M, K] @ [K, L] (no batch-dim overhead)
            matmul(wg[0], cols, out=y[n].reshape(M, L))
        elif K <= chunk:
            matmul(wg, cols.reshape(G, K, L), out=y[n].reshape(G, M // G, L))
        else:
            _gemm_exact(wg, cols.reshape(G, K, L), chunk, out=y[n].reshape(G, M // G, L))
    return y


def _qlinear_conv_runner(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                         B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                         pads=None, strides=None):
    """QLinearConv's runner for one node (``prepared_step``): small stride-1 convs only, as one
    call of the direct loops with the requantization in them — nothing else per run."""
    conv = _conv_prep(x.shape, x.dtype, w, w_zero_point, auto_pad, dilations, group, pads, strides)
    if conv is False or conv[7] is None or conv[6] or np.size(x_zero_point) > 1:
        return None  # (1-D convs, and the rest, go the general way)
    requant = _requant_prep(x_scale, w_scale, y_scale, y_zero_point, B, x.dtype)
    M = w.shape[0]
    if requant is False or requant[1].size not in (1, M) or requant[0].size not in (0, M):
        return None
    _, _, (pt, pl), (dh, dw), (oh, ow), _, _, wi = conv
    bias, mult, zp, lo, hi, dtype = requant
    z = 0 if x_zero_point is None else int(_item(x_zero_point))
    y_shape = (x.shape[0], M, oh, ow)

    def run(x):
        y = np.empty(y_shape, dtype)
        qlinear_conv_loops(x, z, wi, pt, pl, dh, dw, bias, mult, zp, lo, hi, y)  # [N, C, H, W] -> [N, M, oh, ow]
        return y

    return run


def prepare_qlinear_conv(**attrs):
    """QLinearConv's plan-time step (``prepared_step``)."""
    return prepared_step(_qlinear_conv_runner, QLinearConv, attrs)


@kernel("QLinearConv", since=10, prepare=prepare_qlinear_conv)
def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                pads=None, strides=None):
    """Fast QLinearConv: the fast ConvInteger, then one fused requantization pass (bit-exact)."""
    args = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                pads=pads, strides=strides)
    acc = None if x.ndim not in (3, 4) else _conv_integer(x, w, x_zero_point, w_zero_point, **args)
    if acc is None:
        return QLinearConv_reference(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
                                     y_zero_point, B, **args)

    prep = _prepared(w, ("qconv", x.dtype.str), (x_scale, w_scale, y_scale, y_zero_point, B),
                     lambda: _requant_prep(x_scale, w_scale, y_scale, y_zero_point, B, x.dtype))
    if prep is False:  # an unusual multiplier, bias or output type: the reference's requantization
        acc = acc.astype(np.int32, copy=False)
        w_s = np.asarray(w_scale, dtype=np.float32)
        spatial = (1,) * (x.ndim - 2)
        if B is not None:
            acc = acc + B.astype(np.int32).reshape(-1, *spatial)
        w_s = w_s.reshape(-1, *spatial) if w_s.size > 1 else w_s
        dtype = x.dtype if y_zero_point is None else np.asarray(y_zero_point).dtype
        return _requantize(acc, np.float32(x_scale) * w_s / np.float32(y_scale), y_zero_point, dtype)
    bias, mult, zp, lo, hi, dtype = prep
    acc3 = acc.reshape(acc.shape[0], acc.shape[1], -1)
    if mult.size not in (1, acc3.shape[1]) or bias.size not in (0, acc3.shape[1]):
        return QLinearConv_reference(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
                                     y_zero_point, B, **args)
    out = np.empty(acc.shape, dtype)
    requant_loops(acc3, bias, mult, zp, lo, hi, out.reshape(acc3.shape))
    return out


def _requant_prep(x_scale, w_scale, y_scale, y_zero_point, B, x_dtype):
    """QLinearConv's requantization constants (the reference's float32 multiplier), or False."""
    mult = (np.float32(x_scale) * np.asarray(w_scale, dtype=np.float32) / np.float32(y_scale)).reshape(-1)
    dtype = np.dtype(x_dtype if y_zero_point is None else np.asarray(y_zero_point).dtype)
    if (dtype not in _INT8 or mult.dtype != np.float32 or not np.isfinite(mult).all()
            or (y_zero_point is not None and np.size(y_zero_point) != 1)
            or (B is not None and B.dtype != np.int32)):
        return False
    bias = _EMPTY_I32 if B is None else np.ascontiguousarray(B.reshape(-1))
    zp = 0.0 if y_zero_point is None else float(np.asarray(y_zero_point).reshape(-1)[0])
    lo, hi = _LIMITS[dtype]
    return bias, mult, zp, float(lo), float(hi), dtype


@kernel("QLinearMatMul", since=10)
@kernel("QLinearMatMul", since=21)
def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Fast QLinearMatMul: the fast MatMulInteger, then one fused requantization pass (bit-exact)."""
    if a.ndim < 2 or b.ndim < 2 or a.dtype not in _INT8 or b.dtype not in _INT8:
        return QLinearMatMul_reference(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
                                       y_zero_point)
    acc = _matmul_integer(a, b, a_zero_point, b_zero_point)  # [.., M, N]
    a_s = np.asarray(a_scale, dtype=np.float32)
    b_s = np.asarray(b_scale, dtype=np.float32)
    if a_s.size > 1 and b_s.size > 1:  # per row and per column: the reference's broadcasting
        return _requantize(acc.astype(np.int32), a_s.reshape(-1, 1) * b_s / np.asarray(y_scale, np.float32),
                           y_zero_point, np.asarray(y_zero_point).dtype)
    multiplier = (a_s * b_s / np.asarray(y_scale, dtype=np.float32)).reshape(-1)
    axis = -2 if a_s.size > 1 else -1
    return _requantize_fast(acc, None, multiplier, y_zero_point, np.asarray(y_zero_point).dtype, axis)


def _quantize_runner(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0, output_dtype=0,
                     precision=0):
    """QuantizeLinear's runner for one node (``prepared_step``): the kernel's fast case."""
    prep = False
    if x.dtype == np.float32 and not (precision or block_size):
        prep = _quantize_prep(y_scale, y_zero_point)
    if prep is False:
        return None
    scale, zp, lo, hi, dtype = prep

    def run(x):
        out = np.empty(x.shape, dtype)
        quantize_loop(x.reshape(-1), scale, zp, lo, hi, out.reshape(-1))
        return out

    return run


def prepare_quantize_linear(**attrs):
    """QuantizeLinear's plan-time step (``prepared_step``)."""
    return prepared_step(_quantize_runner, QuantizeLinear, attrs)


@kernel("QuantizeLinear", since=10, prepare=prepare_quantize_linear)
@kernel("QuantizeLinear", since=13, prepare=prepare_quantize_linear)
@kernel("QuantizeLinear", since=19, prepare=prepare_quantize_linear)
@kernel("QuantizeLinear", since=21, prepare=prepare_quantize_linear)
def QuantizeLinear(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0,
                   output_dtype=0, precision=0):
    """Fast QuantizeLinear for float32 x, one float32 scale, an int8/uint8 zero point: one pass."""
    prep = False
    if x.dtype == np.float32 and not (precision or block_size):
        prep = _prepared(y_scale, "quantize", (y_zero_point,), lambda: _quantize_prep(y_scale, y_zero_point))
    if prep is False:
        return QuantizeLinear_reference(x, y_scale, y_zero_point, axis=axis, saturate=saturate,
                                        block_size=block_size, output_dtype=output_dtype,
                                        precision=precision)
    scale, zp, lo, hi, dtype = prep
    out = np.empty(x.shape, dtype)
    quantize_loop(x.reshape(-1), scale, zp, lo, hi, out.reshape(-1))
    return out


def _quantize_prep(y_scale, y_zero_point):
    """(scale, zero point, lo, hi, dtype) of a per-tensor float32 quantization, or False."""
    dtype = None if y_zero_point is None else np.asarray(y_zero_point).dtype
    scale = np.asarray(y_scale)
    if dtype not in _INT8 or scale.dtype != np.float32 or scale.size != 1 or np.size(y_zero_point) != 1:
        return False
    lo, hi = _LIMITS[dtype]
    return (float(scale.reshape(-1)[0]), float(np.asarray(y_zero_point).reshape(-1)[0]), float(lo),
            float(hi), dtype)  # Python floats: NumPy scalars slow Numba's dispatch


@kernel("DynamicQuantizeLinear", since=11)
def DynamicQuantizeLinear(x):
    """Fast DynamicQuantizeLinear for finite float32 x: one min/max pass, one quantize pass."""
    if x.dtype != np.float32 or x.size == 0:
        return DynamicQuantizeLinear_reference(x)
    y = np.empty(x.shape, np.uint8)
    scale = np.empty((), np.float32)
    zero_point = np.empty((), np.uint8)
    if not dynamic_quantize(x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1),
                            y.reshape(-1), scale, zero_point):
        return DynamicQuantizeLinear_reference(x)  # NaN / inf: the reference's own (odd) rules
    return y, scale, zero_point


def _qgemm_runner(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None,
                  y_zero_point=None, *, alpha=1.0, transA=0, transB=0):
    """QGemm's runner for one node (``prepared_step``): the constants and the path decided once."""
    prep = _qgemm_prep(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale, y_zero_point,
                       alpha, transA, transB)
    if prep is False or transA:
        return None
    path = _small_path(A.shape[0], A.shape[1], prep[0].shape[1], prep[2])
    bT = _transposed(B, prep[0], b_zero_point, transB) if path == DOTS else None
    return lambda A: _qgemm_run(prep, path, A, bT)


def prepare_qgemm(**attrs):
    """QGemm's plan-time step (``prepared_step``)."""
    return prepared_step(_qgemm_runner, QGemm, attrs)


@kernel("QGemm", since=1, domain="com.microsoft", prepare=prepare_qgemm)
def QGemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None,
          y_zero_point=None, *, alpha=1.0, transA=0, transB=0):
    """Fast QGemm: everything derived from the constant inputs prepared once (``_qgemm_prep``),
    then per call: widen A, one exact float32 BLAS product, one fused output pass (bit-exact)."""
    tag = ("qgemm", A.dtype, A.ndim == 2 and A.shape[1 - transA], transA, transB, alpha)
    prep = _prepared(B, tag, (a_scale, a_zero_point, b_scale, b_zero_point, C, y_scale, y_zero_point), lambda: _qgemm_prep(A, a_scale, a_zero_point, B, b_scale, b_zero_point,
                                                  C, y_scale, y_zero_point, alpha, transA, transB))
    if prep is False or A.ndim != 2:
        return QGemm_reference(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale,
                               y_zero_point, alpha=alpha, transA=transA, transB=transB)
    At = np.ascontiguousarray(A.T) if transA else A  # [M, K]
    path = _small_path(At.shape[0], At.shape[1], prep[0].shape[1], prep[2])
    return _qgemm_run(prep, path, At, _transposed(B, prep[0], b_zero_point, transB) if path == DOTS else None)


def _qgemm_run(prep, path, At, bT):
    """QGemm of 8-bit At [M, K] on what ``_qgemm_prep`` prepared, by ``_small_path``'s path
    (bT: the widened weight as [N, K], for the DOTS path)."""
    b, z, chunk, bias, mult, zp, lo, hi, dtype = prep
    M, N = At.shape[0], b.shape[1]
    if path == ROWS:  # one call: product and epilogue
        if dtype is None:
            out = np.empty((M, N), np.float32)
            small_to_float(At, z, b, 1.0, mult, bias, _EMPTY_F32, out)
        else:
            out = np.empty((M, N), dtype)
            small_requant(At, z, b, bias, mult, zp, lo, hi, out)
        return out
    if path == DOTS:
        out = np.empty((M, N), np.float32 if dtype is None else dtype)
        if dtype is None:
            dots_to_float(At, z, bT, 1.0, mult, bias, _EMPTY_F32, out)
        else:
            dots_requant(At, z, bT, bias, mult, zp, lo, hi, out)
        return out
    acc = _product_rows(At, z, b, chunk)  # [M, N]
    if dtype is None:  # float output: float32(acc + C) * scale
        out = np.empty(acc.shape, np.float32)
        scale_rows(acc, 1.0, mult, bias, _EMPTY_F32, out)
        return out
    out = np.empty(acc.shape, dtype)
    requant_rows(acc, bias, mult, zp, lo, hi, out)
    return out


def _qgemm_prep(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale, y_zero_point,
                alpha, transA, transB):
    """QGemm's constant work, or False where the reference must run."""
    b_zp = np.asarray(b_zero_point)
    K = A.shape[1 - transA] if A.ndim == 2 else -1
    if (A.dtype not in _INT8 or B.dtype not in _INT8 or A.ndim != 2 or B.ndim != 2
            or np.size(a_zero_point) != 1 or (C is not None and C.dtype != np.int32)
            or B.shape[transB] != K):
        return False
    N = B.shape[1 - transB]
    if C is not None and C.size != 1 and (C.size != N or C.shape[-1] != N):
        return False
    scale = np.float32(alpha) * np.float32(a_scale) * np.asarray(b_scale, dtype=np.float32)
    if np.size(scale) not in (1, N):
        return False
    zp = b_zp if b_zp.size == 1 or transB == 0 else b_zp.reshape(1, -1)
    b = np.ascontiguousarray(_widen_f32(B.T if transB else B, zp))  # B' - bzp, float32 [K, N]
    chunk = _chunk(_bound(A.dtype, a_zero_point), _bound(B.dtype, b_zero_point))
    z = 0 if a_zero_point is None else int(np.asarray(a_zero_point).reshape(-1)[0])
    if y_scale is None:
        bias = _EMPTY_I32 if C is None else np.ascontiguousarray(np.broadcast_to(C.reshape(-1), (N,)))
        return b, z, chunk, bias, np.asarray(scale, np.float32).reshape(-1), 0.0, 0.0, 0.0, None
    # requantized output: bias and multiplier expanded to [N], so the epilogue has no branch
    bias = np.zeros(N, np.int32) if C is None else np.ascontiguousarray(np.broadcast_to(C.reshape(-1), (N,)))
    mult = np.asarray(scale / np.float32(y_scale), dtype=np.float32).reshape(-1)
    dtype = np.asarray(y_zero_point).dtype
    if dtype not in _INT8 or np.size(y_zero_point) != 1 or not np.isfinite(mult).all():
        return False
    mult = np.ascontiguousarray(np.broadcast_to(mult, (N,)))
    lo, hi = _LIMITS[dtype]
    return (b, z, chunk, bias, mult, float(np.asarray(y_zero_point).reshape(-1)[0]),
            float(lo), float(hi), dtype)


@kernel("MatMulIntegerToFloat", since=1, domain="com.microsoft")
def MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
    """Fast MatMulIntegerToFloat: the fast integer product, then float32(acc) * scale + bias in
    one pass (the reference's float32 operations, in its order).

    The common case (a 2-D constant B, scalar a_scale and a_zero_point) runs on what
    ``_mmif_prep`` cached for B: one product call (``_product_rows``) and one epilogue call
    (``scale_rows``), with a_scale (a run-time value in dynamic quantization) passed as a number."""
    prep = _prepared(B, ("mmif", A.dtype, A.shape), (b_scale, b_zero_point, bias),
                     lambda: _mmif_shape_prep(A.shape, A.dtype, B, b_scale, b_zero_point, bias))
    if (prep is not False and type(a_scale) is np.ndarray and a_scale.dtype is _F32 and a_scale.size == 1
            and (a_zero_point is None or getattr(a_zero_point, "size", 0) == 1)):
        z = 0 if a_zero_point is None else int(a_zero_point.item())
        return _mmif_run(prep, A, z, a_scale.item())
    a_s, b_s = np.asarray(a_scale), np.asarray(b_scale)
    if (A.dtype not in _INT8 or B.dtype not in _INT8 or A.ndim < 2 or B.ndim < 2
            or a_s.dtype != np.float32 or b_s.dtype != np.float32 or a_s.size != 1
            or (bias is not None and (bias.dtype != np.float32 or bias.ndim != 1))):
        return MatMulIntegerToFloat_reference(A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)
    N = B.shape[-1]
    scale = (a_s * b_s).reshape(-1)
    if scale.size not in (1, N) or (bias is not None and bias.size not in (1, N)):
        return MatMulIntegerToFloat_reference(A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)
    b = _EMPTY_F32 if bias is None else np.ascontiguousarray(np.broadcast_to(bias, (N,)))
    acc, done = _matmul_integer(A, B, a_zero_point, b_zero_point, scale=scale, bias=b)  # [.., M, N]
    if done:  # the small loop applied scale and bias
        return acc
    out = np.empty(acc.shape, np.float32)
    P = acc.size // max(N, 1)
    scale_loops(np.ascontiguousarray(acc).reshape(P, N, 1), scale, b, out.reshape(P, N, 1))
    return out


_F32 = np.dtype(np.float32)
_U8 = np.dtype(np.uint8)


def _mmif_run(prep, A, z, a_scale):
    """MatMulIntegerToFloat's common case on what ``_mmif_shape_prep`` cached: 8-bit A, its
    zero point z and a_scale as Python numbers. One product call and one epilogue call."""
    b, b_s, fb, P, K, N, path, chunk, out_shape, bT = prep
    out = np.empty(out_shape, np.float32)
    if path == ROWS:  # one call: product and epilogue
        small_to_float(A.reshape(P, K), z, b, a_scale, b_s, _EMPTY_I32, fb, out.reshape(P, N))
        return out
    if path == DOTS:
        dots_to_float(A.reshape(P, K), z, bT, a_scale, b_s, _EMPTY_I32, fb, out.reshape(P, N))
        return out
    acc = _product_rows(A.reshape(P, K), z, b, chunk)
    scale_rows(acc, a_scale, b_s, _EMPTY_I32, fb, out.reshape(P, N))
    return out


def _dynamic_matmul_runner(A, B, b_scale, b_zero_point=None, bias=None, *, activation=""):
    """(Fused)DynamicQuantizeMatMul's runner for one node (``prepared_step``): the kernel's
    common case, its shape work done once."""
    if A.dtype is not _F32 or A.size == 0 or activation not in ("", "Relu"):
        return None
    prep = _mmif_shape_prep(A.shape, _U8, B, b_scale, b_zero_point, bias)
    if prep is False:
        return None
    relu = activation == "Relu"
    b, b_s, fb, P, K, N, path, chunk, out_shape, _ = prep
    blas = not path and not _use_small(P, K, N)  # widen + BLAS: quantize straight to float32

    def run(A):
        scale = np.empty((), np.float32)
        zero_point = np.empty((), np.uint8)
        if blas:
            af = np.empty((P, K), np.float32)  # q - zero point, exact
            if not dynamic_quantize_widen(A.reshape(-1), af.reshape(-1), scale, zero_point):
                return None  # NaN / inf: the general path
            y = np.empty(out_shape, np.float32)
            y2 = y.reshape(P, N)
            acc = _int_product(af, b, chunk, out=y2)  # [P, K] @ [K, N] -> [P, N], into y if exact in float32
            _epilogue_rows(acc, scale.item(), b_s, fb, y2)
        else:
            q = np.empty(A.shape, np.uint8)
            if not dynamic_quantize(A.reshape(-1), q.reshape(-1), scale, zero_point):
                return None
            y = _mmif_run(prep, q, int(zero_point), scale.item())
        if relu:
            relu_inplace(y.reshape(-1))
        return y

    return run


def prepare_dynamic_matmul(**attrs):
    """DynamicQuantizeMatMul's plan-time step (``prepared_step``)."""
    return prepared_step(_dynamic_matmul_runner, DynamicQuantizeMatMul, attrs)


def prepare_fused_dynamic_matmul(**attrs):
    """FusedDynamicQuantizeMatMul's plan-time step (``prepared_step``)."""
    return prepared_step(_dynamic_matmul_runner, FusedDynamicQuantizeMatMul, attrs)


@kernel("DynamicQuantizeMatMul", since=1, domain="com.microsoft", prepare=prepare_dynamic_matmul)
def DynamicQuantizeMatMul(A, B, b_scale, b_zero_point=None, bias=None):
    """Fast DynamicQuantizeMatMul (what fuse_dynamic_matmul makes of DynamicQuantizeLinear ->
    MatMulIntegerToFloat): ``dynamic_quantize`` into a uint8 buffer, then MatMulIntegerToFloat's
    common case (``_mmif_run``) with the scale and zero point as numbers — the two fast kernels'
    arithmetic, bit-identical, without a node (and its three outputs) between them."""
    if type(A) is np.ndarray and A.dtype is _F32 and A.size and A.flags.c_contiguous:
        prep = _prepared(B, ("mmif", _U8, A.shape), (b_scale, b_zero_point, bias),
                         lambda: _mmif_shape_prep(A.shape, _U8, B, b_scale, b_zero_point, bias))
        if prep is not False:
            q = np.empty(A.shape, np.uint8)
            scale = np.empty((), np.float32)
            zero_point = np.empty((), np.uint8)
            if dynamic_quantize(A.reshape(-1), q.reshape(-1), scale, zero_point):
                return _mmif_run(prep, q, int(zero_point), scale.item())
    qa, a_scale, a_zero_point = DynamicQuantizeLinear(A)  # NaN / inf, or an unusual B: the pair
    return MatMulIntegerToFloat(qa, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)


@kernel("FusedDynamicQuantizeMatMul", since=1, domain="minirt", prepare=prepare_fused_dynamic_matmul)
def FusedDynamicQuantizeMatMul(A, B, b_scale, b_zero_point=None, bias=None, *, activation=""):
    """Fast FusedDynamicQuantizeMatMul: the DynamicQuantizeMatMul kernel, then the Relu in place
    on its fresh output (one small loop call instead of a Relu node: fraud ~1.5 us a layer)."""
    if activation not in ("", "Relu"):
        return FusedDynamicQuantizeMatMul_reference(A, B, b_scale, b_zero_point, bias, activation=activation)
    y = DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias)
    if activation == "Relu":
        relu_inplace(y.reshape(-1))
    return y


def _mmif_shape_prep(shape, dtype, B, b_scale, b_zero_point, bias):
    """``_mmif_prep`` plus what A's ``shape`` and ``dtype`` decide (checked once per shape): rows
    [P, K], N, the path, and the exact chunk for *any* 8-bit zero point of A (|A - zp| <= 255),
    since a_zero_point is a run-time value in dynamic quantization. False: the general path."""
    size = int(np.prod(shape))
    if len(shape) < 2 or B.ndim != 2 or dtype not in _INT8 or size == 0 or shape[-1] != B.shape[0]:
        return False
    prep = _mmif_prep(B, b_scale, b_zero_point, bias)
    if prep is False:
        return False
    b, bmax, b_s, fb = prep
    K, N = B.shape
    P = size // K
    chunk = _chunk(255, bmax)
    path = _small_path(P, K, N, chunk)
    bT = _transposed(B, b, b_zero_point) if path == DOTS else None
    return b, b_s, fb, P, K, N, path, chunk, tuple(shape[:-1]) + (N,), bT


def _mmif_prep(B, b_scale, b_zero_point, bias):
    """MatMulIntegerToFloat's constant work for a 2-D B: (B - bzp as float32 [K, N], its bound,
    b_scale as float32 [N] or [1], bias as float32 [N] or empty), or False."""
    b_s = np.asarray(b_scale)
    K, N = B.shape
    if (B.dtype not in _INT8 or b_s.dtype != np.float32 or b_s.size not in (1, N)
            or (bias is not None and (bias.dtype != np.float32 or bias.ndim != 1 or bias.size not in (1, N)))
            or (b_zero_point is not None and np.size(b_zero_point) not in (1, N))):
        return False
    b = _prepared(B, "widen", (b_zero_point,),
                  lambda: (_widen_f32(B, b_zero_point), _bound(B.dtype, b_zero_point)))
    fb = _EMPTY_F32 if bias is None else np.ascontiguousarray(np.broadcast_to(bias, (N,)))
    return np.ascontiguousarray(b[0]), b[1], np.ascontiguousarray(b_s.reshape(-1)), fb


def _quantize_matmul_runner(A, a_scale, a_zero_point, B, b_scale, b_zero_point=None, bias=None):
    """QuantizeMatMul's runner for one node (``prepared_step``): the kernel's common case, with
    the quantization constants, the widened weight and the path worked out once."""
    if A.dtype != np.float32 or A.ndim < 2 or B.ndim != 2 or not A.size or A.shape[-1] != B.shape[0]:
        return None
    qprep = _quantize_prep(a_scale, a_zero_point)
    prep = False if qprep is False else _mmif_prep(B, b_scale, b_zero_point, bias)
    if prep is False:
        return None
    scale, zp, lo, hi, dtype = qprep
    b, bmax, b_s, fb = prep
    K, N = B.shape
    P, z = A.size // K, int(zp)
    chunk = _chunk(max(int(hi) - z, z - int(lo)), bmax)
    path = _small_path(P, K, N, chunk)
    if path or _use_small(P, K, N):
        return None  # the small products: the kernel's own loop paths
    out_shape = A.shape[:-1] + (N,)

    def run(A):
        af = np.empty((P, K), np.float32)
        quantize_widen(A.reshape(-1), scale, zp, lo, hi, af.reshape(-1))  # q - zp, exact
        out = np.empty(out_shape, np.float32)
        o2 = out.reshape(P, N)
        acc = _int_product(af, b, chunk, out=o2)  # [P, K] @ [K, N] -> [P, N], into out if exact in float32
        _epilogue_rows(acc, scale, b_s, fb, o2)
        return out

    return run


def prepare_quantize_matmul(**attrs):
    """QuantizeMatMul's plan-time step (``prepared_step``)."""
    return prepared_step(_quantize_matmul_runner, QuantizeMatMul, attrs)


@kernel("QuantizeMatMul", since=1, domain="minirt", prepare=prepare_quantize_matmul)
def QuantizeMatMul(A, a_scale, a_zero_point, B, b_scale, b_zero_point=None, bias=None):
    """Fast QuantizeMatMul (fuse_qdq's ``Q -> DQ -> MatMul [-> Add]``): the activation is
    quantized and widened to float32 in one pass, then one exact BLAS product and one epilogue
    (bit-exact: QuantizeLinear's and MatMulIntegerToFloat's arithmetic). Small products quantize
    to 8 bits and run the one-call row kernel."""
    qprep = False
    if A.dtype == np.float32 and A.ndim >= 2 and B.ndim == 2 and A.size and A.shape[-1] == B.shape[0]:
        qprep = _prepared(a_scale, "quantize", (a_zero_point,), lambda: _quantize_prep(a_scale, a_zero_point))
    if qprep is False:
        return MatMulIntegerToFloat(QuantizeLinear(A, a_scale, a_zero_point), B, a_scale, b_scale,
                                    a_zero_point, b_zero_point, bias)
    scale, zp, lo, hi, dtype = qprep
    prep = _prepared(B, ("mmif", dtype.str), (b_scale, b_zero_point, bias),
                     lambda: _mmif_prep(B, b_scale, b_zero_point, bias))
    if prep is False:
        return MatMulIntegerToFloat(QuantizeLinear(A, a_scale, a_zero_point), B, a_scale, b_scale,
                                    a_zero_point, b_zero_point, bias)
    b, bmax, b_s, fb = prep
    K, N = B.shape
    z = int(zp)
    chunk = _chunk(max(int(hi) - z, z - int(lo)), bmax)
    a2 = A.reshape(-1, K)
    if not a2.flags.c_contiguous:
        a2 = np.ascontiguousarray(a2)
    out = np.empty(A.shape[:-1] + (N,), np.float32)
    out2 = out.reshape(-1, N)  # [P, N], a view of out
    path = _small_path(a2.shape[0], K, N, chunk)
    if path or _use_small(a2.shape[0], K, N):
        q = np.empty(a2.shape, dtype)
        quantize_loop(a2.reshape(-1), scale, zp, lo, hi, q.reshape(-1))
        if path == ROWS:
            small_to_float(q, z, b, scale, b_s, _EMPTY_I32, fb, out2)
            return out
        if path == DOTS:
            dots_to_float(q, z, _transposed(B, b, b_zero_point), scale, b_s, _EMPTY_I32, fb, out2)
            return out
        acc = _product_rows(q, z, b, chunk)
    else:
        af = np.empty(a2.shape, np.float32)
        quantize_widen(a2.reshape(-1), scale, zp, lo, hi, af.reshape(-1))
        acc = _int_product(af, b, chunk, out=out2)  # [P, K] @ [K, N] -> [P, N], into out if exact in float32
    _epilogue_rows(acc, scale, b_s, fb, out2)
    return out


@kernel("ScaleIntegerToFloat", since=1, domain="minirt")
def ScaleIntegerToFloat(acc, a_scale, b_scale, bias=None):
    """Fast ScaleIntegerToFloat for an int32 [N, C, ...] accumulator, a float32 scalar a_scale,
    b_scale and bias float32 per channel ([C, 1, ...]) or scalar: one pass (bit-exact)."""
    if (type(acc) is np.ndarray and acc.dtype == np.int32 and acc.ndim >= 2 and acc.size
            and type(a_scale) is np.ndarray and a_scale.dtype is _F32 and a_scale.size == 1
            and a_scale.ndim <= acc.ndim):
        prep = _prepared(b_scale, ("scale_channels", acc.ndim, acc.shape[1]), (bias,),
                         lambda: _scale_channels_prep(acc, b_scale, bias))
        if prep is not False:
            b_s, fb = prep
            out = np.empty(acc.shape, np.float32)
            a3 = acc.reshape(acc.shape[0], acc.shape[1], -1)
            if not a3.flags.c_contiguous:
                a3 = np.ascontiguousarray(a3)
            scale_channels(a3, a_scale.item(), b_s, fb, False, out.reshape(a3.shape))
            return out
    return ScaleIntegerToFloat_reference(acc, a_scale, b_scale, bias)


def _dynamic_quantize_conv_runner(X, W, w_scale, w_zero_point=None, bias=None, *, activation="",
                                  auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                                  strides=None):
    """DynamicQuantizeConv's runner for one node (``prepared_step``): small stride-1 convs only,
    as the DynamicQuantizeLinear kernel then the direct loops with the scaling (and Relu) in them."""
    if activation not in ("", "Relu") or X.dtype is not _F32 or X.ndim != 4:
        return None
    conv = _conv_prep(X.shape, _U8, W, w_zero_point, auto_pad, dilations, group, pads, strides)
    M = W.shape[0]
    b_s = _per_channel(w_scale, 4, M)
    fb = _EMPTY_F32 if bias is None else _per_channel(bias, 4, M)
    if conv is False or conv[7] is None or b_s is None or fb is None:
        return None
    _, _, (pt, pl), (dh, dw), (oh, ow), _, _, wi = conv
    y_shape, relu = (X.shape[0], M, oh, ow), activation == "Relu"

    def run(X):
        q = np.empty(X.shape, np.uint8)
        scale = np.empty((), np.float32)
        zero_point = np.empty((), np.uint8)
        if not dynamic_quantize(X.reshape(-1), q.reshape(-1), scale, zero_point):
            return None  # NaN / inf: the general path (the reference's rules)
        y = np.empty(y_shape, np.float32)
        conv_scale_loops(q, int(zero_point), wi, pt, pl, dh, dw, scale.item(), b_s, fb, relu, y)
        return y

    return run


def prepare_dynamic_quantize_conv(**attrs):
    """DynamicQuantizeConv's plan-time step (``prepared_step``)."""
    return prepared_step(_dynamic_quantize_conv_runner, DynamicQuantizeConv, attrs)


@kernel("DynamicQuantizeConv", since=1, domain="minirt", prepare=prepare_dynamic_quantize_conv)
def DynamicQuantizeConv(X, W, w_scale, w_zero_point=None, bias=None, *, activation="", auto_pad="NOTSET",
                        dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Fast DynamicQuantizeConv (fuse_dynamic_matmul's DynamicQuantizeLinear -> ConvInteger ->
    ScaleIntegerToFloat [-> Relu]): the DynamicQuantizeLinear kernel, the fast ConvInteger's
    exact product (kept as integer-valued float32: no int32 copy), then ScaleIntegerToFloat's
    one pass with the Relu in it. The four kernels' arithmetic: bit-identical."""
    args = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                pads=pads, strides=strides)
    if activation in ("", "Relu") and type(X) is np.ndarray and X.dtype is _F32 and X.ndim in (3, 4):
        xq, x_scale, x_zero_point = DynamicQuantizeLinear(X)
        acc = _conv_integer(xq, W, x_zero_point, w_zero_point, **args)
        prep = False if acc is None else _prepared(
            w_scale, ("scale_channels", acc.ndim, acc.shape[1]), (bias,),
            lambda: _scale_channels_prep(acc, w_scale, bias))
        if prep is not False and np.size(x_scale) == 1:
            b_s, fb = prep
            out = np.empty(acc.shape, np.float32)
            a3 = acc.reshape(acc.shape[0], acc.shape[1], -1)  # (contiguous: _conv_integer's own)
            scale_channels(a3, float(x_scale), b_s, fb, activation == "Relu", out.reshape(a3.shape))
            return out
    return DynamicQuantizeConv_reference(X, W, w_scale, w_zero_point, bias, activation=activation, **args)


def _per_channel(p, ndim, C):
    """p as a contiguous float32 [C] or [1] when it broadcasts per channel of an [N, C, ...]
    tensor (shape [C, 1, ...] / [1, C, 1, ...] / size 1), else None."""
    p = np.asarray(p)
    if p.dtype != np.float32 or p.ndim > ndim:  # (more dims would grow the output's rank)
        return None
    if p.size == 1:
        return np.ascontiguousarray(p.reshape(1))
    if p.ndim == ndim:
        if p.shape[0] != 1:
            return None
        p = p.reshape(p.shape[1:])
    shape = (1,) * (ndim - 1 - p.ndim) + p.shape  # aligned to [C, ...] (the batch axis dropped)
    if shape[0] != C or any(d != 1 for d in shape[1:]):
        return None
    return np.ascontiguousarray(p.reshape(C))


def _scale_channels_prep(acc, b_scale, bias):
    b_s = _per_channel(b_scale, acc.ndim, acc.shape[1])
    fb = _EMPTY_F32 if bias is None else _per_channel(bias, acc.ndim, acc.shape[1])
    if b_s is None or fb is None:
        return False
    return b_s, fb
