"""Property tests: minirt's MatMul, Gemm, Einsum, Det, FusedMatMul and Attention against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops import linalg as L
from minirt.testing import ort_op


def _ort(op_type, attrs, inputs, n_out=1, opset=13, domain=""):
    """Every output of one ONNX node run by onnxruntime; outputs typed as the first input."""
    return ort_op(op_type, inputs, attrs, opset=opset, domain=domain, n_outputs=n_out,
                  output_dtypes=[inputs[0].dtype] * n_out)


def _rand(rng, shape, dtype):
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-4, 5, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _close(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)  # integer products are exact
    elif got.dtype == np.float16:
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)  # float16 rounding of sums of K<=6 products
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 BLAS vs ORT's MLAS order


dtypes = st.sampled_from([np.float32, np.float16, np.int32, np.int64])


@st.composite
def matmul_shapes(draw):
    """Shapes [..., M, K] @ [..., K, N] with broadcast batch dims, or 1-D operands."""
    m, k, n = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    a_batch = [d if draw(st.booleans()) else 1 for d in batch]
    b_batch = [d if draw(st.booleans()) else 1 for d in batch][draw(st.integers(0, len(batch))):]
    a = [k] if draw(st.integers(0, 4)) == 0 else [*a_batch, m, k]
    b = [k] if draw(st.integers(0, 4)) == 0 else [*b_batch, k, n]
    return tuple(a), tuple(b)


@settings(deadline=None, max_examples=50)
@given(matmul_shapes(), dtypes, st.integers(0, 2**16))
def test_matmul(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, shapes[0], dtype), _rand(rng, shapes[1], dtype)
    (want,) = _ort("MatMul", {}, [a, b])
    _close(np.asarray(L.MatMul(a, b)), want)


def test_matmul_non_contiguous_and_inputs_untouched():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    np.testing.assert_allclose(L.MatMul(a[:, ::2], b.T[::2]), a[:, ::2] @ b.T[::2], rtol=1e-6)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_matmul_1d_by_1d_is_a_0d_array():
    y = L.MatMul(np.ones(3, np.float32), np.ones(3, np.float32))
    assert isinstance(y, np.ndarray) and y.shape == () and y == 3


@settings(deadline=None, max_examples=50)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.booleans(), st.booleans(),
       st.sampled_from([1.0, 0.5, -2.0]), st.sampled_from([1.0, 0.25]),
       st.sampled_from(["none", "scalar", "row", "col", "full"]), st.sampled_from([np.float32, np.float16]),
       st.integers(0, 2**16))
def test_gemm(m, k, n, trans_a, trans_b, alpha, beta, c_kind, dtype, seed):
    rng = np.random.default_rng(seed)
    a = _rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = _rand(rng, (n, k) if trans_b else (k, n), dtype)
    c_shape = {"none": None, "scalar": (), "row": (n,), "col": (m, 1), "full": (m, n)}[c_kind]
    c = None if c_shape is None else _rand(rng, c_shape, dtype)
    attrs = dict(alpha=alpha, beta=beta, transA=int(trans_a), transB=int(trans_b))
    (want,) = _ort("Gemm", attrs, [a, b, c])
    _close(L.Gemm(a, b, c, **attrs), want)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_gemm_integers_stay_exact(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    b = np.arange(6, dtype=dtype).reshape(3, 2)
    c = np.array([100, 200], dtype=dtype)
    y = L.Gemm(a, b, c, alpha=2.0)  # ORT has no integer Gemm kernel: check the arithmetic directly
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, 2 * (a @ b) + c)


@settings(deadline=None, max_examples=30)
@given(st.sampled_from(["ij,jk->ik", "bij,bjk->bik", "ii->i", "ij->ji", "i,i", "bhqd,bhkd->bhqk", "...ij->...ji", "ij->"]),
       st.integers(1, 4), st.integers(0, 2**16))
def test_einsum(equation, d, seed):
    rng = np.random.default_rng(seed)
    lhs = equation.split("->")[0]
    dims = {}
    inputs = []
    for term in lhs.split(","):
        shape = []
        for ch in term.replace("...", "E"):
            dims.setdefault(ch, d if ch in "ij" else rng.integers(1, 4))
            shape.append(int(dims[ch]))
        inputs.append(rng.standard_normal(shape).astype(np.float32))
    (want,) = _ort("Einsum", {"equation": equation}, inputs, opset=12)
    _close(np.asarray(L.Einsum(*inputs, equation=equation)), want)


@settings(deadline=None, max_examples=20)
@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 4), st.integers(0, 2**16))
def test_det(batch, n, seed):
    x = np.random.default_rng(seed).standard_normal((*batch, n, n)).astype(np.float32)
    (want,) = _ort("Det", {}, [x], opset=11)
    got = L.Det(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # LU pivoting order differs


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.booleans(),
       st.booleans(), st.sampled_from([1.0, 0.125]), st.integers(0, 2**16))
def test_fused_matmul(batch, m, k, n, trans_a, trans_b, alpha, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, k, m) if trans_a else (batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n)).astype(np.float32)
    attrs = dict(alpha=alpha, transA=int(trans_a), transB=int(trans_b))
    (want,) = _ort("FusedMatMul", attrs, [a, b], domain="com.microsoft")
    _close(L.FusedMatMul(a, b, **attrs), want)


# --------------------------------------------------------------------------- attention


def _ref_attention(q, k, v, mask=None, causal=False, scale=None):
    """A direct float64 sdpa for [B, H, S, D] with equal head counts."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * (scale if scale is not None else 1 / np.sqrt(q.shape[-1]))
    if mask is not None:
        s = s + mask
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 2), st.sampled_from([(1, 1), (2, 2), (4, 2), (4, 1)]), st.integers(1, 5),
       st.integers(1, 5), st.sampled_from([2, 4]), st.booleans(), st.sampled_from([None, 0.5]),
       st.sampled_from(["none", "bool", "float"]), st.booleans(), st.integers(0, 2**16))
def test_attention_4d_matches_ort(b, heads, sq, skv, d, causal, scale, mask_kind, three_d, seed):
    hq, hkv = heads
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, hq, sq, d)).astype(np.float32)
    k = rng.standard_normal((b, hkv, skv, d)).astype(np.float32)
    v = rng.standard_normal((b, hkv, skv, d)).astype(np.float32)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((sq, skv)) < 0.7
        mask[:, 0] = True  # every query keeps a key (ORT and the spec differ on empty rows)
    elif mask_kind == "float":
        mask = rng.standard_normal((sq, skv)).astype(np.float32)
    attrs = {"is_causal": int(causal)}
    if scale is not None:
        attrs["scale"] = scale
    inputs = [q, k, v, mask]
    if three_d:  # [B, H, S, D] -> [B, S, H*D]
        inputs[:3] = [t.transpose(0, 2, 1, 3).reshape(b, t.shape[2], -1) for t in (q, k, v)]
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
    (want,) = _ort("Attention", attrs, inputs, opset=23)
    got = L.Attention(*inputs, **attrs)[0]
    _close(got, want)


def test_attention_matches_plain_sdpa_and_returns_cache():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 3, 4, 8)).astype(np.float32)
    past_k, past_v = (rng.standard_normal((2, 3, 2, 8)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((2, 3, 4, 8)).astype(np.float32) for _ in range(2))
    y, present_k, present_v, _ = L.Attention(q, k, v, None, past_k, past_v)
    full_k, full_v = np.concatenate([past_k, k], 2), np.concatenate([past_v, v], 2)
    np.testing.assert_array_equal(present_k, full_k)
    np.testing.assert_array_equal(present_v, full_v)
    np.testing.assert_allclose(y, _ref_attention(q, full_k, full_v), rtol=1e-5, atol=1e-6)  # float32 vs float64


def test_attention_causal_with_past_is_offset_aligned():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((1, 1, 1, 4)).astype(np.float32)  # one new token, decoding
    past = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    k = v = rng.standard_normal((1, 1, 1, 4)).astype(np.float32)
    y = L.Attention(q, k, v, None, past, past, is_causal=1)[0]
    full = np.concatenate([past, k], 2)
    np.testing.assert_allclose(y, _ref_attention(q, full, full), rtol=1e-5, atol=1e-6)  # sees all 4 keys


def test_attention_fully_masked_row_is_zero_not_nan():
    q = k = v = np.ones((1, 1, 2, 2), np.float32)
    mask = np.array([[False, False], [True, True]])
    y, _, _, probs = L.Attention(q, k, v, mask, qk_matmul_output_mode=3)
    np.testing.assert_array_equal(y[0, 0, 0], [0, 0])
    np.testing.assert_array_equal(probs[0, 0, 0], [0, 0])
    np.testing.assert_allclose(probs[0, 0, 1], [0.5, 0.5])


def test_attention_float16_keeps_dtype():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 2, 3, 4)).astype(np.float16) for _ in range(3))
    y = L.Attention(q, k, v, is_causal=1)[0]
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, _ref_attention(q, k, v, causal=True), rtol=2e-2, atol=2e-2)  # float16 steps


def test_rotary_embedding_rotates_pairs():
    x = np.array([[[[1.0, 0.0, 2.0, 5.0]]]], dtype=np.float32)  # [B=1, H=1, S=1, D=4]
    theta = np.array([[np.pi / 2, 0.0]], dtype=np.float32)  # [positions, D/2]
    cos, sin = np.cos(theta), np.sin(theta)
    pos = np.zeros((1, 1), dtype=np.int64)
    # non-interleaved: pairs are (x[0], x[2]) and (x[1], x[3])
    y = L.RotaryEmbedding(x, cos, sin, pos)
    np.testing.assert_allclose(y[0, 0, 0], [-2.0, 0.0, 1.0, 5.0], atol=1e-6)
    # interleaved: pairs are (x[0], x[1]) and (x[2], x[3])
    y = L.RotaryEmbedding(x, cos, sin, pos, interleaved=1)
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 1.0, 2.0, 5.0], atol=1e-6)


def test_swiglu():
    a = np.array([-1.0, 0.0, 2.0], np.float32)
    b = np.array([3.0, 1.0, 0.5], np.float32)
    np.testing.assert_allclose(L.SwiGLU(a, b), a / (1 + np.exp(-a)) * b, rtol=1e-6)


@pytest.mark.parametrize("heads", [(2, 2), (4, 2)])
def test_linear_attention_linear_rule_is_causal_unnormalized_attention(heads):
    hq, hkv = heads
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 5, hq * 3)).astype(np.float32)
    k = rng.standard_normal((2, 5, hkv * 3)).astype(np.float32)
    v = rng.standard_normal((2, 5, hkv * 2)).astype(np.float32)
    y, state = L.LinearAttention(q, k, v, q_num_heads=hq, kv_num_heads=hkv, update_rule="linear")
    q4, k4, v4 = (L._split_heads(t, h) for t, h in ((q, hq), (k, hkv), (v, hkv)))
    k4, v4 = np.repeat(k4, hq // hkv, axis=1), np.repeat(v4, hq // hkv, axis=1)
    scores = np.tril(q4 @ np.swapaxes(k4, -1, -2)) / np.sqrt(3)  # no softmax, causal
    want = (scores @ v4).transpose(0, 2, 1, 3).reshape(2, 5, -1)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)  # float32, different summation order
    assert state.shape == (2, hkv, 3, 2) and state.dtype == np.float32
