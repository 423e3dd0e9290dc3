"""onnxruntime's com.microsoft contrib ops that real optimized models contain.

onnxruntime's own tools write these into a model: its offline graph optimizer (FusedConv,
FusedGemm), its transformer optimizer (Attention, MultiHeadAttention, EmbedLayerNormalization)
and its dynamic quantizer (DynamicQuantizeLSTM). Each one is a fusion of ONNX ops minirt already
has, so each one here is written with them: the semantics follow onnxruntime's CPU kernels,
which are the spec — https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md

The other contrib ops live beside their families: Gelu/BiasGelu/FastGelu/QuickGelu in
activation.py, SkipLayerNormalization in norm.py, FusedMatMul in linalg.py, the QLinear* ops and
MatMulIntegerToFloat in quant.py.
"""

from __future__ import annotations

import numpy as np

from minirt.ops.activation import Selu, Softplus, Softsign, ThresholdedRelu
from minirt.ops.indexing import ReverseSequence
from minirt.ops.linalg import _matmul, _wide
from minirt.ops.norm import LayerNormalization
from minirt.ops.quant import DynamicQuantizeLinear, _matmul_int32, _widen
from minirt.ops.recurrent import _activation_functions, _clipped, _recurrent, _zeros_state
from minirt.passes import fused_ops
from minirt.registry import kernel, op

MS = "com.microsoft"


# ----------------------------------------------------------------------------- FusedConv


@op("FusedConv", since=1, domain=MS)
def FusedConv(X, W, B=None, Z=None, *, activation="", activation_params=None, auto_pad="NOTSET",
              dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Y = activation(Conv(X, W, B) + Z), Z optional; activation_params as in minirt.FusedConv
    (LeakyRelu [alpha], HardSigmoid [alpha, beta], Clip [min, max]) —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.FusedConv"""
    return fused_ops.FusedConv(X, W, B, Z, activation=activation, activation_params=activation_params,
                               auto_pad=auto_pad, dilations=dilations, group=group,
                               kernel_shape=kernel_shape, pads=pads, strides=strides)


@kernel("FusedConv", since=1, domain=MS)
def FusedConv_fast(X, W, B=None, Z=None, *, activation="", activation_params=None, auto_pad="NOTSET",
                   dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """com.microsoft.FusedConv with the fastest registered Conv (minirt.FusedConv's kernel)."""
    return fused_ops.FusedConv_fast(X, W, B, Z, activation=activation,
                                    activation_params=activation_params, auto_pad=auto_pad,
                                    dilations=dilations, group=group, kernel_shape=kernel_shape,
                                    pads=pads, strides=strides)


# ----------------------------------------------------------------------------- FusedGemm

# FusedGemm names the activation's float attributes activation_alpha/_beta/_gamma (the
# activation node's own attributes, prefixed), where the fused_ops helper takes a list: the
# helper's parameters of each activation, as (attribute, ONNX default) pairs.
_GEMM_ACTIVATION_PARAMS = {
    "LeakyRelu": (("alpha", 0.01),),
    "Elu": (("alpha", 1.0),),
    "HardSigmoid": (("alpha", 0.2), ("beta", 0.5)),
}
# the elementwise activations onnxruntime's FusedGemm accepts that the fused_ops helper lacks
_GEMM_EXTRA_ACTIVATIONS = {
    "Selu": lambda y, a: Selu(y, **a),  # alpha, gamma
    "ThresholdedRelu": lambda y, a: ThresholdedRelu(y, **{k: v for k, v in a.items() if k == "alpha"}),
    "Softplus": lambda y, a: Softplus(y),
    "Softsign": lambda y, a: Softsign(y),
}


def _gemm_activation(y, activation, alpha, beta, gamma):
    given = {k: v for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)) if v is not None}
    if activation in _GEMM_EXTRA_ACTIVATIONS:
        return _GEMM_EXTRA_ACTIVATIONS[activation](y, given)
    params = [given.get(name, default) for name, default in _GEMM_ACTIVATION_PARAMS.get(activation, ())]
    return fused_ops.activate(y, activation, params)


@op("FusedGemm", since=1, domain=MS)
def FusedGemm(A, B, C=None, *, activation="", activation_alpha=None, activation_beta=None,
              activation_gamma=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Y = activation(alpha * A' @ B' + beta * C), the activation's attributes given as
    activation_alpha/beta/gamma —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.FusedGemm"""
    y = fused_ops.FusedGemm(A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)  # [M, N]
    return _gemm_activation(y, activation, activation_alpha, activation_beta, activation_gamma)


# ----------------------------------------------------------------------------- attention


def _heads(x, num_heads):
    """[B, S, N*H] -> [B, N, S, H]"""
    B, S, hidden = x.shape
    return x.reshape(B, S, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _mask_bias(mask_index, batch, q_len, past_len, kv_len, unidirectional, mask_filter_value, dtype):
    """The additive mask [B or 1, 1, S, T] of onnxruntime's attention kernels, T = past + kv:
    mask_filter_value where key j is masked out, else 0; with unidirectional, the lowest float
    where key j comes after query i (so a query whose keys are all padded still sees only its
    past, as in onnxruntime). mask_index forms:

    [B] key lengths (right padding)       [2B] end positions then start positions (left padding)
    [B, T] 0/1 raw mask                   [B, S, T] 0/1 raw mask per query
    [B, 1, M, M] 0/1 (Megatron), rows past..past+S and columns :T taken
    """
    total = past_len + kv_len
    j = np.arange(total)  # [T]
    blocked = np.zeros((1, 1, 1, total), dtype=bool)
    if mask_index is not None:
        m = np.asarray(mask_index)
        if m.ndim == 1 and m.shape[0] in (batch, 2 * batch):
            blocked = j >= m[:batch].reshape(-1, 1)  # [B, T]: at or after the end
            if m.shape[0] == 2 * batch:
                blocked = blocked | (j < m[batch:].reshape(-1, 1))  # before the start
            blocked = blocked[:, None, None, :]  # [B, 1, 1, T]
        elif m.ndim == 2:
            blocked = (m == 0)[:, None, None, :]  # [B, T] -> [B, 1, 1, T]
        elif m.ndim == 3:
            blocked = (m == 0)[:, None, :, :]  # [B, S, T] -> [B, 1, S, T]
        elif m.ndim == 4:
            blocked = m[:, :, past_len:past_len + q_len, :total] == 0  # [B, 1, S, T]
        else:
            raise ValueError(f"attention mask_index of shape {m.shape} is not one of [B], [2B], [B, T], "
                             f"[B, S, T], [B, 1, M, M] (B={batch}, S={q_len}, T={total})")
    bias = np.where(blocked, dtype.type(mask_filter_value), dtype.type(0))
    if unidirectional and q_len > 1:  # onnxruntime: one query token (a decoding step) sees every key
        i = np.arange(q_len).reshape(-1, 1)  # [S, 1]
        future = j > past_len + i  # [S, T]: key j comes after query i
        bias = np.where(future, np.finfo(dtype).min, bias)  # never attended, even in a padded row
    return bias


def _attend(Q, K, V, bias, attention_bias, scale):
    """softmax(scale * Q @ K^T + bias + attention_bias) @ V, [B, N, S, H] -> [B, S, N*Hv]."""
    scores = _matmul(Q, np.swapaxes(K, -1, -2)) * Q.dtype.type(scale)  # [B, N, S, H] @ [B, N, H, T] -> [B, N, S, T]
    if attention_bias is not None:
        scores = scores + attention_bias  # [B or 1, N or 1, S, T]
    scores = _wide(scores + bias)  # the mask last, as onnxruntime (it matters in a fully masked row)
    scores = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    probs = (e / e.sum(axis=-1, keepdims=True)).astype(Q.dtype)
    out = _matmul(probs, V)  # [B, N, S, T] @ [B, N, T, Hv] -> [B, N, S, Hv]
    B, N, S, Hv = out.shape
    return out.transpose(0, 2, 1, 3).reshape(B, S, N * Hv)  # -> [B, S, N*Hv]


@op("Attention", since=1, domain=MS)
def Attention(input, weights, bias=None, mask_index=None, past=None, attention_bias=None,
              past_sequence_length=None, *, num_heads, do_rotary=0, mask_filter_value=-10000.0,
              past_present_share_buffer=0, qkv_hidden_sizes=None, rotary_embedding_dim=0, scale=0.0,
              unidirectional=0):
    """Q, K, V = split(input @ weights + bias); per head, out = softmax(scale * Q K^T + mask) V,
    the mask made of mask_index and, if unidirectional, the causal mask; past/present hold K and V
    stacked, [2, B, N, T, H] —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.Attention"""
    if do_rotary or past_present_share_buffer:
        raise NotImplementedError("com.microsoft.Attention: do_rotary and past_present_share_buffer "
                                  "are not supported by minirt")
    qkv = _matmul(input, weights)  # [B, S, D_in] @ [D_in, D + D + Dv] -> [B, S, D + D + Dv]
    if bias is not None:
        qkv = qkv + bias
    d = qkv_hidden_sizes or [weights.shape[1] // 3] * 3
    q, k, v = np.split(qkv, [d[0], d[0] + d[1]], axis=-1)  # [B, S, D], [B, S, D], [B, S, Dv]
    Q, K, V = (_heads(x, num_heads) for x in (q, k, v))  # each -> [B, N, S, H]
    past_len = 0
    if past is not None:
        past_len = past.shape[3]
        K = np.concatenate([past[0], K], axis=2)  # [B, N, P, H] + [B, N, S, H] -> [B, N, T, H]
        V = np.concatenate([past[1], V], axis=2)
    present = np.stack([K, V]) if K.shape == V.shape else None  # [2, B, N, T, H]
    bias_mask = _mask_bias(mask_index, input.shape[0], input.shape[1], past_len, q.shape[1],
                           unidirectional, mask_filter_value, input.dtype)
    scale = scale or 1 / np.sqrt(Q.shape[-1])
    return _attend(Q, K, V, bias_mask, attention_bias, scale), present


@op("MultiHeadAttention", since=1, domain=MS)
def MultiHeadAttention(query, key=None, value=None, bias=None, key_padding_mask=None,
                       attention_bias=None, past_key=None, past_value=None, past_sequence_length=None,
                       cache_indirection=None, *, num_heads, mask_filter_value=-10000.0, scale=0.0,
                       unidirectional=0):
    """Attention of already projected Q, K, V (+ bias): per head, out = softmax(scale * Q K^T +
    mask) V; key/value may be the cross-attention cache [B, N, L, H] itself, or packed (query
    [B, S, N, 3, H] or key [B, L, N, 2, H]: as documented; onnxruntime's CPU kernel refuses them,
    so they are not checked against it) —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.MultiHeadAttention"""
    if past_sequence_length is not None or cache_indirection is not None:
        raise NotImplementedError("com.microsoft.MultiHeadAttention: past_sequence_length / "
                                  "cache_indirection (buffer sharing, beam search) are not supported by minirt")
    if query.ndim == 5:  # packed QKV: [B, S, N, 3, H]
        B, S, N, _, H = query.shape
        query, key, value = (query[:, :, :, i].reshape(B, S, N * H) for i in range(3))  # each [B, S, N*H]
    elif key is not None and key.ndim == 5:  # packed KV: [B, L, N, 2, H]
        B, L, N, _, H = key.shape
        key, value = (key[:, :, :, i].reshape(B, L, N * H) for i in range(2))  # each [B, L, N*H]
    d = query.shape[-1]
    if bias is not None:
        query = query + bias[:d]
    Q = _heads(query, num_heads)  # [B, S, D] -> [B, N, S, H]
    if key.ndim == 4:  # the cross-attention cache itself, [B, N, L, H]: used as is, no bias
        K, V = key, value
    else:
        if bias is not None:
            key, value = key + bias[d:2 * d], value + bias[2 * d:]
        K, V = _heads(key, num_heads), _heads(value, num_heads)  # [B, L, D] -> [B, N, L, H]
    kv_len, past_len = K.shape[2], 0
    if past_key is not None:
        past_len = past_key.shape[2]
        K = np.concatenate([past_key, K], axis=2)  # [B, N, P, H] + [B, N, L, H] -> [B, N, T, H]
        V = np.concatenate([past_value, V], axis=2)
    bias_mask = _mask_bias(key_padding_mask, query.shape[0], query.shape[1], past_len, kv_len,
                           unidirectional, mask_filter_value, query.dtype)
    scale = scale or 1 / np.sqrt(Q.shape[-1])
    return _attend(Q, K, V, bias_mask, attention_bias, scale), K, V


# ----------------------------------------------------------------------------- EmbedLayerNormalization


@op("EmbedLayerNormalization", since=1, domain=MS)
def EmbedLayerNormalization(input_ids, segment_ids, word_embedding, position_embedding,
                            segment_embedding=None, gamma=None, beta=None, mask=None, position_ids=None,
                            *, epsilon=1e-12, mask_index_type=1):
    """s = word_embedding[input_ids] + position_embedding[position_ids] + segment_embedding[segment_ids];
    output = LayerNormalization(s) * gamma + beta; mask_index[b] = number of 1s in mask[b] —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.EmbedLayerNormalization"""
    # segment_ids and segment_embedding are optional (None), gamma and beta are not: Python wants
    # defaults after the first one, so gamma/beta carry one they never use
    batch, seq = input_ids.shape
    if position_ids is None:
        position_ids = np.arange(seq)  # [S], the same positions for every row
    for name, ids, table in (("input_ids", input_ids, word_embedding),
                             ("position_ids", position_ids, position_embedding),
                             ("segment_ids", segment_ids, segment_embedding)):
        if ids is not None and table is not None and ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise IndexError(f"EmbedLayerNormalization: {name} out of range [0, {table.shape[0]})")
    s = word_embedding[input_ids] + position_embedding[np.broadcast_to(position_ids, (batch, seq))]  # [B, S, D]
    if segment_embedding is not None and segment_ids is not None:
        s = s + segment_embedding[segment_ids]
    y = LayerNormalization(s, gamma, beta, axis=-1, epsilon=epsilon)[0]
    if mask is None:
        mask_index = np.zeros(batch, dtype=np.int32)
    else:
        mask_index = np.count_nonzero(mask == 1, axis=1).astype(np.int32)  # [B, S] -> [B]
    return y, mask_index, s


# ----------------------------------------------------------------------------- DynamicQuantizeLSTM


def _dynamic_quantized_matmul(a, w_q, w_scale, w_zero_point):
    """a @ dequantize(w) as onnxruntime's quantized LSTM computes it: a [M, K] float is quantized
    to uint8 with its own scale and zero point (DynamicQuantizeLinear over the whole matrix), the
    product accumulates in int32, then scales by a_scale * w_scale (w_scale per column or one)."""
    qa, a_scale, a_zero_point = DynamicQuantizeLinear(a)
    acc = _matmul_int32(_widen(qa, a_zero_point), _widen(w_q, w_zero_point))  # [M, K] @ [K, N] -> [M, N] int32
    return acc.astype(np.float32) * (np.float32(a_scale) * w_scale)


@op("DynamicQuantizeLSTM", since=1, domain=MS)
def DynamicQuantizeLSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,
                        W_scale=None, W_zero_point=None, R_scale=None, R_zero_point=None, *,
                        activation_alpha=None, activation_beta=None,
                        activations=("Sigmoid", "Tanh", "Tanh"), clip=None, direction="forward",
                        hidden_size=None, input_forget=0):
    """LSTM (gates i, o, f, c) whose W [dirs, input, 4H] and R [dirs, H, 4H] — transposed from
    LSTM's layout — are int8/uint8 with scale and zero point per direction ([dirs]) or per gate
    column ([dirs, 4H]); X and each H_t-1 are quantized on the fly (DynamicQuantizeLinear) before
    their products, as onnxruntime's kernel does —
    https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.DynamicQuantizeLSTM

    The quantization ranges follow onnxruntime's single-threaded kernel, so results match it to
    float32 rounding: X is quantized as one matrix over the first max(sequence_lens) steps, each
    H_t-1 as one [batch, H] matrix in which a sequence that has ended counts as zeros, and a
    reverse direction runs forward over each sequence reversed within its length.
    """
    num_directions, hidden = W.shape[0], R.shape[1]
    seq, batch, input_size = X.shape
    lengths = np.full(batch, seq, np.int64) if sequence_lens is None else np.asarray(sequence_lens, np.int64)
    steps = int(lengths.max()) if batch else 0
    if B is None:
        B = np.zeros((num_directions, 8 * hidden), dtype=X.dtype)
    if P is None:
        P = np.zeros((num_directions, 3 * hidden), dtype=X.dtype)
    if initial_h is None:
        initial_h = _zeros_state(X, num_directions, hidden, 0)
    if initial_c is None:
        initial_c = _zeros_state(X, num_directions, hidden, 0)
    acts = _activation_functions(activations, activation_alpha, activation_beta, X.dtype,
                                 num_directions, per_direction=3)

    def param(p, d):  # scale / zero point of direction d: one value, or one per gate column [4H]
        p = np.asarray(p).reshape(num_directions, -1)[d]
        return p if p.size > 1 else p.reshape(())

    def make_cell(d):
        R_scale_d, R_zero_point_d = param(R_scale, d), param(R_zero_point, d)
        bias = B[d, :4 * hidden] + B[d, 4 * hidden:]  # Wb + Rb: [4*hidden]
        P_i, P_o, P_f = P[d, :hidden], P[d, hidden:2 * hidden], P[d, 2 * hidden:]  # peepholes
        f, g, h_act = acts[d]

        def cell(x_step, h, c):
            # x_step: [batch, 4*hidden + 1], Xt*(W^T) then 1/0: has the sequence not ended before t?
            x_w, live = x_step[:, :-1], x_step[:, -1:] > 0
            h_q = _dynamic_quantized_matmul(np.where(live, h, 0), R[d], R_scale_d, R_zero_point_d)
            gates = x_w + h_q + bias  # [batch, 4*hidden]
            gi, go, gf, gc = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            # the LSTM equations, as in minirt.ops.recurrent.LSTM
            i = f(_clipped(gi + P_i * c, clip))
            ft = 1 - i if input_forget else f(_clipped(gf + P_f * c, clip))
            c_new = ft * c + i * g(_clipped(gc, clip))
            o = f(_clipped(go + P_o * c_new, clip))
            return (o * h_act(c_new)).astype(X.dtype), c_new.astype(X.dtype)

        return cell

    Ys, hs, cs = [], [], []
    for d in range(num_directions):
        reverse = direction == "reverse" or d == 1
        X_d = ReverseSequence(X, lengths) if reverse else X  # each sequence reversed within its length
        x_rows = X_d[:steps].reshape(steps * batch, input_size)  # [steps*batch, input]
        X_proj = _dynamic_quantized_matmul(x_rows, W[d], param(W_scale, d), param(W_zero_point, d))
        live = (np.arange(steps)[:, None] <= lengths).astype(X_proj.dtype)  # [steps, batch]
        X_in = np.concatenate([X_proj.reshape(steps, batch, 4 * hidden), live[..., None]], axis=-1)
        Y_d, h_d, c_d = _recurrent(lambda _, d=d: make_cell(d), X_in, [initial_h[d:d + 1], initial_c[d:d + 1]],
                                   lengths, "forward", 0)  # Y_d [steps, 1, batch, hidden]
        Y_d = np.concatenate([Y_d, np.zeros((seq - steps,) + Y_d.shape[1:], Y_d.dtype)])  # -> [seq, 1, batch, hidden]
        Ys.append(ReverseSequence(Y_d, lengths, batch_axis=2) if reverse else Y_d)
        hs.append(h_d)
        cs.append(c_d)
    return np.concatenate(Ys, axis=1), np.concatenate(hs), np.concatenate(cs)
