"""Linear algebra: MatMul, Gemm, Einsum, Det, and the com.microsoft FusedMatMul.

MatMul and Gemm are plain ``np.matmul`` (BLAS does the work). float16 products are computed in
float32 and cast back, as accelerators accumulate half-precision products in float32.
"""

from __future__ import annotations

import numpy as np

from minirt.ops._common import np_dtype
from minirt.registry import op



def _wide(x):
    """float16 / bfloat16 -> float32 for accumulation; other dtypes unchanged."""
    if x.dtype.name in ("float16", "bfloat16"):
        return x.astype(np.float32)
    return x


def _matmul(A, B):
    """np.matmul that accumulates narrow floats in float32 and keeps A's dtype."""
    return np.asarray(np.matmul(_wide(A), _wide(B))).astype(A.dtype, copy=False)


@op("MatMul", since=1)
def MatMul(A, B):
    """Y = A @ B, numpy.matmul semantics (batched, 1-D operands promoted) —
    https://onnx.ai/onnx/operators/onnx__MatMul.html"""
    return _matmul(A, B)  # [..., M, K] @ [..., K, N] -> [..., M, N]


@op("Gemm", since=7)
def Gemm(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Y = alpha * A' @ B' + beta * C, A' = A.T if transA, C broadcast to [M, N] —
    https://onnx.ai/onnx/operators/onnx__Gemm.html"""
    a = A.T if transA else A  # [K, M] -> [M, K]
    b = B.T if transB else B  # [N, K] -> [K, N]
    y = np.matmul(_wide(a), _wide(b))  # [M, K] @ [K, N] -> [M, N]
    if alpha != 1.0:
        y = y * alpha
    if C is not None:
        c = _wide(C)
        y = y + (c * beta if beta != 1.0 else c)  # C broadcasts to [M, N]
    return np.asarray(y).astype(A.dtype, copy=False)


@op("Gemm", since=1)
def Gemm_1(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    """Gemm before opset 7: the same math; ``broadcast`` only allowed C to broadcast —
    https://onnx.ai/onnx/operators/onnx__Gemm.html"""
    return Gemm(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)


@op("Einsum", since=12)
def Einsum(*Inputs, equation):
    """Einstein summation, e.g. 'bij,bjk->bik' — https://onnx.ai/onnx/operators/onnx__Einsum.html"""
    out = np.einsum(equation, *[_wide(x) for x in Inputs])
    return np.asarray(out).astype(Inputs[0].dtype, copy=False)


@op("Det", since=11)
def Det(X):
    """Y = det(X) over the last two dims — https://onnx.ai/onnx/operators/onnx__Det.html"""
    out = np.linalg.det(_wide(X))  # [..., M, M] -> [...]
    return np.asarray(out).astype(X.dtype, copy=False)


@op("FusedMatMul", since=1, domain="com.microsoft")
def FusedMatMul(A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """Y = alpha * A' @ B', A' = A with its last two dims swapped if transA (onnxruntime contrib) —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.FusedMatMul"""
    if transBatchA or transBatchB:
        raise NotImplementedError("FusedMatMul: transBatchA/transBatchB are not supported by minirt")
    a = np.swapaxes(A, -1, -2) if transA else A  # [..., K, M] -> [..., M, K]
    b = np.swapaxes(B, -1, -2) if transB else B  # [..., N, K] -> [..., K, N]
    y = np.matmul(_wide(a), _wide(b))  # [..., M, K] @ [..., K, N] -> [..., M, N]
    if alpha != 1.0:
        y = y * alpha
    return np.asarray(y).astype(A.dtype, copy=False)


# --------------------------------------------------------------------------- attention


def _split_heads(x, num_heads):
    """[B, S, H*D] -> [B, H, S, D]"""
    B, S, hidden = x.shape
    return x.reshape(B, S, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _attention_bias(attn_mask, q_len, kv_len, offset, is_causal, left_window_size,
                    right_window_size, nonpad_kv_seqlen, dtype):
    """The additive bias [.., q_len, kv_len]: 0 where query i may attend key j, -inf elsewhere,
    plus a float attn_mask. Query i sits at absolute position i + offset."""
    i = np.arange(q_len).reshape(-1, 1)  # [q, 1]
    j = np.arange(kv_len)  # [kv]
    pos = i + offset  # [q, 1], or [B, 1, q, 1] for a per-batch offset
    allowed = np.ones((q_len, kv_len), dtype=bool)
    if is_causal:
        allowed = allowed & (j <= pos)
    if left_window_size >= 0:
        allowed = allowed & (pos - j <= left_window_size)
    if right_window_size >= 0:
        allowed = allowed & (j - pos <= right_window_size)
    if nonpad_kv_seqlen is not None:
        allowed = allowed & (j < nonpad_kv_seqlen.reshape(-1, 1, 1, 1))  # padded keys of batch b
    float_mask = 0
    if attn_mask is not None:
        pad = [(0, 0)] * (attn_mask.ndim - 1) + [(0, kv_len - attn_mask.shape[-1])]
        if attn_mask.dtype == np.bool_:  # True = attend; missing keys are not attended
            allowed = allowed & np.pad(attn_mask, pad, constant_values=False)
        else:  # added to the scores; missing keys get -inf
            float_mask = np.pad(attn_mask.astype(dtype), pad, constant_values=-np.inf)
    return np.where(allowed, 0, -np.inf).astype(dtype) + float_mask


def _masked_softmax(scores, bias):
    """Softmax over the last axis of scores + bias; keys with bias -inf get probability 0 whatever
    their score (even nan/inf), and a row with no key left is all zeros."""
    blocked = np.isneginf(bias)
    x = np.where(blocked, scores.dtype.type(-np.inf), scores + bias)
    row_max = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - np.where(np.isneginf(row_max), 0, row_max))
    total = np.sum(e, axis=-1, keepdims=True)
    probs = e / np.where(total == 0, 1, total)
    return np.where(np.all(blocked, axis=-1, keepdims=True), 0, probs)


@op("Attention", since=23)
def Attention(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
              is_causal=0, kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0,
              scale=None, softcap=0.0, softmax_precision=None, left_window_size=-1,
              right_window_size=-1):
    """Y = softmax(scale * Q @ K^T + mask) @ V per head, with GQA, a KV cache, causal and window
    masks, softcap (opset 24 added nonpad_kv_seqlen, 25 the window sizes) —
    https://onnx.ai/onnx/operators/onnx__Attention.html"""
    three_d = Q.ndim == 3
    if three_d:
        Q = _split_heads(Q, q_num_heads)  # [B, Sq, Hq*D] -> [B, Hq, Sq, D]
        K = _split_heads(K, kv_num_heads)  # [B, Skv, Hkv*D] -> [B, Hkv, Skv, D]
        V = _split_heads(V, kv_num_heads)  # [B, Skv, Hkv*Dv] -> [B, Hkv, Skv, Dv]
    if past_key is not None:
        K = np.concatenate([past_key, K], axis=2)  # [B, Hkv, P, D] + [B, Hkv, Skv, D] -> [B, Hkv, P+Skv, D]
        V = np.concatenate([past_value, V], axis=2)
    present_key, present_value = K, V
    q_heads, kv_heads, q_len, kv_len = Q.shape[1], K.shape[1], Q.shape[2], K.shape[2]
    if q_heads != kv_heads:  # grouped-query attention: each KV head serves q_heads/kv_heads heads
        K = np.repeat(K, q_heads // kv_heads, axis=1)  # [B, Hkv, T, D] -> [B, Hq, T, D]
        V = np.repeat(V, q_heads // kv_heads, axis=1)

    if past_key is not None:
        offset = past_key.shape[2]
    elif nonpad_kv_seqlen is not None:  # an external cache: per batch, [B] -> [B, 1, 1, 1]
        offset = nonpad_kv_seqlen.reshape(-1, 1, 1, 1) - q_len
    else:
        offset = 0
    if scale is None:
        scale = 1 / np.sqrt(Q.shape[-1])
    # As the spec's pattern: Q and K each scaled by sqrt(scale), rounded to the input type at
    # each step (products accumulate in float32 for float16/bfloat16, see _matmul).
    root = Q.dtype.type(np.sqrt(scale))
    scores = _matmul(Q * root, np.swapaxes(K * root, -1, -2))  # [B, Hq, Sq, D] @ [B, Hq, D, T] -> [B, Hq, Sq, T]
    raw_scores = scores
    if softcap > 0:
        scores = (softcap * np.tanh(_wide(scores) / softcap)).astype(Q.dtype)
    bias = _attention_bias(attn_mask, q_len, kv_len, offset, is_causal, left_window_size,
                           right_window_size, nonpad_kv_seqlen, Q.dtype)
    soft_dtype = Q.dtype if softmax_precision is None else np_dtype(softmax_precision)
    probs = _masked_softmax(scores.astype(soft_dtype), bias.astype(soft_dtype)).astype(Q.dtype)
    Y = _matmul(probs, V)  # [B, Hq, Sq, T] @ [B, Hq, T, Dv] -> [B, Hq, Sq, Dv]
    if three_d:
        Y = Y.transpose(0, 2, 1, 3).reshape(Y.shape[0], q_len, -1)  # [B, Hq, Sq, Dv] -> [B, Sq, Hq*Dv]
    qk = {0: raw_scores, 1: scores, 2: scores + bias, 3: probs}[qk_matmul_output_mode]
    qk = np.broadcast_to(qk, scores.shape).astype(Q.dtype)
    return Y, present_key, present_value, qk


@op("RotaryEmbedding", since=23)
def RotaryEmbedding(X, cos_cache, sin_cache, position_ids=None, *, interleaved=0, num_heads=0,
                    rotary_embedding_dim=0):
    """Rotate pairs (x1, x2) of the first rotary_embedding_dim features of each head by the
    position's angle: (x1 cos - x2 sin, x1 sin + x2 cos) —
    https://onnx.ai/onnx/operators/onnx__RotaryEmbedding.html"""
    if X.ndim == 4:
        x = X.transpose(0, 2, 1, 3)  # [B, H, S, D] -> [B, S, H, D]
    else:
        B, S, hidden = X.shape
        x = X.reshape(B, S, num_heads, hidden // num_heads)  # [B, S, H*D] -> [B, S, H, D]
    dim = rotary_embedding_dim or x.shape[-1]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]  # [P, dim/2] -> [B, S, dim/2]
    cos, sin = cos_cache[:, :, None, :], sin_cache[:, :, None, :]  # [B, S, dim/2] -> [B, S, 1, dim/2]
    rot, rest = x[..., :dim], x[..., dim:]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : dim // 2], rot[..., dim // 2:]
    real, imag = x1 * cos - x2 * sin, x1 * sin + x2 * cos
    if interleaved:
        rotated = np.stack([real, imag], axis=-1).reshape(rot.shape)  # [.., dim/2, 2] -> [.., dim]
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    y = np.concatenate([rotated, rest], axis=-1).astype(X.dtype, copy=False)
    if X.ndim == 4:
        return y.transpose(0, 2, 1, 3)  # [B, S, H, D] -> [B, H, S, D]
    return y.reshape(X.shape)  # [B, S, H, D] -> [B, S, H*D]


@op("SwiGLU", since=28)
def SwiGLU(A, B, *, alpha=1.0):
    """Y = A * sigmoid(alpha * A) * B — https://onnx.ai/onnx/operators/onnx__SwiGLU.html"""
    a = _wide(A)
    return (a / (1 + np.exp(-alpha * a)) * _wide(B)).astype(A.dtype, copy=False)


@op("LinearAttention", since=27)
def LinearAttention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size=64,
                    kv_num_heads, q_num_heads, scale=0.0, update_rule="gated_delta"):
    """Recurrent linear attention, per head a [d_k, d_v] state S updated each step t:
    S = exp(g_t) S (gated), v_t = beta_t (v_t - S^T k_t) (delta), S += k_t v_t^T; o_t = scale S^T q_t —
    https://onnx.ai/onnx/operators/onnx__LinearAttention.html  (chunk_size is only a tuning hint)"""
    B, T, _ = query.shape
    q = _split_heads(query, q_num_heads).astype(np.float32)  # [B, T, Hq*dk] -> [B, Hq, T, dk]
    k = _split_heads(key, kv_num_heads).astype(np.float32)  # [B, T, Hkv*dk] -> [B, Hkv, T, dk]
    v = _split_heads(value, kv_num_heads).astype(np.float32)  # [B, T, Hkv*dv] -> [B, Hkv, T, dv]
    d_k, d_v = q.shape[-1], v.shape[-1]
    if decay is not None:  # per head [B, T, Hkv] or per key feature [B, T, Hkv*dk] -> [B, Hkv, T, 1|dk]
        per_head = decay.shape[-1] == kv_num_heads
        g = _split_heads(decay, kv_num_heads) if not per_head else decay.transpose(0, 2, 1)[..., None]
        g = g.astype(np.float32)
    if beta is not None:
        b = beta.transpose(0, 2, 1)[..., None].astype(np.float32)  # [B, T, Hkv|1] -> [B, Hkv|1, T, 1]
    if past_state is None:
        state = np.zeros((B, kv_num_heads, d_k, d_v), np.float32)
    else:
        state = past_state.astype(np.float32)
    scale = scale or 1 / np.sqrt(d_k)
    group = q_num_heads // kv_num_heads
    out = np.zeros((B, q_num_heads, T, d_v), np.float32)
    for t in range(T):
        k_t, v_t = k[:, :, t], v[:, :, t]  # [B, Hkv, dk], [B, Hkv, dv]
        if update_rule in ("gated", "gated_delta"):
            state = state * np.exp(g[:, :, t])[..., None]  # decay the memory
        if update_rule in ("delta", "gated_delta"):
            v_t = b[:, :, t] * (v_t - np.einsum("bhkv,bhk->bhv", state, k_t))  # write only what is new
        state = state + k_t[..., :, None] * v_t[..., None, :]  # += k_t v_t^T
        read = np.repeat(state, group, axis=1) if group > 1 else state  # [B, Hkv, ...] -> [B, Hq, ...]
        out[:, :, t] = scale * np.einsum("bhk,bhkv->bhv", q[:, :, t], read)
    output = out.transpose(0, 2, 1, 3).reshape(B, T, -1).astype(query.dtype)  # [B, Hq, T, dv] -> [B, T, Hq*dv]
    state_dtype = query.dtype if past_state is None else past_state.dtype
    return output, state.astype(state_dtype)
