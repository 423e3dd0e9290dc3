"""int8 kernels on the shapes the models run (batch 1 and batch 64, the loop and the BLAS
paths), bit-exact against the reference ops; the fast min/max of DynamicQuantizeLinear on
non-finite and signed-zero inputs; fuse_qdq's bias absorption."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.kernels import quant as kquant
from minirt.ops import quant as rquant

SETTINGS = settings(deadline=None, max_examples=25)


def _q(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False  # as minirt's initializers are: the kernels cache their preparations
    return a


SHAPES = [(1, 10, 32), (1, 256, 10), (4, 300, 70), (5, 16, 1), (64, 10, 32), (64, 256, 10),
          (64, 32, 16), (64, 16, 1), (128, 64, 192), (130, 1100, 9)]  # row, dot, loop kernels, BLAS, K chunks


@SETTINGS
@given(st.sampled_from(SHAPES), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(),
       st.booleans(), st.integers(0, 2**31))
def test_matmul_integer_to_float_rows(shape, ta, per_column, bias, batched, seed):
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = _q(rng, (2, M, K) if batched else (M, K), ta)
    B = _readonly(_q(rng, (K, N), np.int8))
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    fb = _readonly(rng.normal(size=N).astype(np.float32)) if bias else None
    for _ in range(2):  # a run-time a_scale / a_zero_point, as DynamicQuantizeLinear gives them
        args = (A, B, np.asarray(rng.uniform(1e-3, 1), np.float32), b_scale, _q(rng, (), ta), b_zp, fb)
        got, want = kquant.MatMulIntegerToFloat(*args), rquant.MatMulIntegerToFloat(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.sampled_from(SHAPES), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(),
       st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_qgemm_rows(shape, ta, transA, per_column, bias, float_out, seed):
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = _q(rng, (K, M) if transA else (M, K), ta)
    B = _readonly(_q(rng, (N, K), np.int8))  # transB=1, as exporters write Gemm weights
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    C = _readonly(rng.integers(-2**31, 2**31, N).astype(np.int32)) if bias else None
    y = (None, None) if float_out else (_readonly(np.float32(rng.uniform(0.01, 2))), _readonly(_q(rng, (), ta)))
    args = (A, _readonly(np.float32(0.03)), _readonly(_q(rng, (), ta)), B, b_scale, b_zp, C, *y)
    attrs = dict(alpha=1.0, transA=int(transA), transB=1)
    for _ in range(2):  # the second call runs on the cached preparation
        got, want = kquant.QGemm(*args, **attrs), rquant.QGemm(*args, **attrs)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.sampled_from(SHAPES), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([None, 0.0, np.nan, np.inf]), st.integers(0, 2**31))
def test_dynamic_quantize_matmul_is_the_pair(shape, per_column, bias, batched, const_b, special, seed):
    """com.microsoft.DynamicQuantizeMatMul (fuse_dynamic_matmul's DynamicQuantizeLinear ->
    MatMulIntegerToFloat) equals the pair of kernels and the reference bit for bit: constant or
    writeable weights, all-zero input, NaN / inf (the reference's rules)."""
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = (rng.normal(size=(2, M, K) if batched else (M, K)) * 3).astype(np.float32)
    if special is not None:
        A.reshape(-1)[rng.integers(A.size)] = special
        if special == 0.0:
            A[...] = 0
    const = _readonly if const_b else np.array
    B = const(_q(rng, (K, N), np.int8))
    b_scale = const(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    b_zp = const(_q(rng, (N,) if per_column else (), np.int8))
    fb = const(rng.normal(size=N).astype(np.float32)) if bias else None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        want = rquant.DynamicQuantizeMatMul(A, B, b_scale, b_zp, fb)
        qa, a_scale, a_zp = kquant.DynamicQuantizeLinear(A)
        np.testing.assert_array_equal(kquant.MatMulIntegerToFloat(qa, B, a_scale, b_scale, a_zp, b_zp, fb), want)
        for _ in range(2):  # the second call runs on the cached preparation
            got = kquant.DynamicQuantizeMatMul(A, B, b_scale, b_zp, fb)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        # with the Relu after it (minirt.FusedDynamicQuantizeMatMul): Relu's bits, +0.0 included
        want = rquant.FusedDynamicQuantizeMatMul(A, B, b_scale, b_zp, fb, activation="Relu")
        np.testing.assert_array_equal(want, np.maximum(got, np.float32(0)))
        got = kquant.FusedDynamicQuantizeMatMul(A, B, b_scale, b_zp, fb, activation="Relu")
        assert got.dtype == want.dtype and not np.signbit(got[got == 0]).any()
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan, -np.nan, -0.0, 0.0, 1e-45, -1e-45,
                                     3.4e38, -3.4e38])
@pytest.mark.parametrize("sign", [-1, 0, 1])
def test_dynamic_quantize_linear_edges(special, sign):
    """The integer min/max pass: non-finite values go to the reference, extremes and signed
    zeros give the reference's scale and zero point."""
    rng = np.random.default_rng(3)
    x = (np.abs(rng.normal(size=(3, 50))) * sign).astype(np.float32)
    x[1, 7] = special
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for got, want in zip(kquant.DynamicQuantizeLinear(x), rquant.DynamicQuantizeLinear(x)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
       st.floats(0.0001220703125, 10, width=32), st.sampled_from([np.uint8, np.int8]), st.integers(0, 2**31))
def test_quantize_linear_float32_zero_point_add(values, scale, dtype, seed):
    """The zero point added in float32 saturates as the reference's float64 add, huge values included."""
    rng = np.random.default_rng(seed)
    x = np.asarray(values, np.float32)
    zp = _readonly(_q(rng, (), dtype))
    s = _readonly(np.float32(scale))
    with np.errstate(over="ignore"):
        want = rquant.QuantizeLinear(x, s, zp)
        np.testing.assert_array_equal(kquant.QuantizeLinear(x, s, zp), want)


@SETTINGS
@given(st.sampled_from(SHAPES + [(64, 16, 1), (64, 32, 16)]), st.sampled_from([np.uint8, np.int8]),
       st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_quantize_matmul_is_exact(shape, ta, per_column, bias, seed):
    """minirt.QuantizeMatMul (fuse_qdq's Q -> DQ -> MatMul [-> Add]) is QuantizeLinear then
    MatMulIntegerToFloat, bit for bit, on every path: row kernel, loop kernel, BLAS, K chunks."""
    M, K, N = shape
    rng = np.random.default_rng(seed)
    A = rng.normal(0, 2, (1, M, K)).astype(np.float32)
    a_scale, a_zp = _readonly(np.float32(rng.uniform(0.005, 0.05))), _readonly(_q(rng, (), ta))
    B = _readonly(_q(rng, (K, N), np.int8))
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, N if per_column else ()).astype(np.float32))
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    fb = _readonly(rng.normal(size=N).astype(np.float32)) if bias else None
    args = (A, a_scale, a_zp, B, b_scale, b_zp, fb)
    want = rquant.MatMulIntegerToFloat(rquant.QuantizeLinear(A, a_scale, a_zp), B, a_scale, b_scale,
                                       a_zp, b_zp, fb)
    np.testing.assert_array_equal(rquant.QuantizeMatMul(*args), want)
    for _ in range(2):
        got = kquant.QuantizeMatMul(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _qdq_matmul_graph(with_bias, shared_q=False):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    inits = {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8),
             "Wq": rng.integers(-127, 128, (6, 5)).astype(np.int8), "ws": np.array(0.01, np.float32),
             "wz": np.array(0, np.int8), "b": rng.normal(size=5).astype(np.float32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["W"]),
             helper.make_node("MatMul", ["xd", "W"], ["m" if with_bias else "y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if with_bias:
        nodes.append(helper.make_node("Add", ["b", "m"], ["y"]))
    if shared_q:  # the 8-bit tensor is a graph output too: Q stays
        outs.append(helper.make_tensor_value_info("xq", TensorProto.UINT8, None))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])], outs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), inits


@pytest.mark.parametrize("with_bias", [True, False])
def test_fuse_qdq_quantize_matmul(with_bias):
    import minirt
    from minirt.passes.quant import fuse_qdq

    model, c = _qdq_matmul_graph(with_bias)
    g = fuse_qdq(minirt.load(model))
    assert [n.op_type for n in g.nodes] == ["QuantizeMatMul"]
    assert len(g.nodes[0].inputs) == (7 if with_bias else 6)  # the bias Add absorbed
    x = np.random.default_rng(6).normal(size=(3, 6)).astype(np.float32)
    xq = rquant.QuantizeLinear(x, c["xs"], c["xz"])
    want = rquant.MatMulIntegerToFloat(xq, c["Wq"], c["xs"], c["ws"], c["xz"], c["wz"])
    if with_bias:
        want = c["b"] + want
    for kernels in (True, False):
        (got,) = minirt.InferenceSession(g, kernels=kernels).run(None, {"x": x})
        np.testing.assert_array_equal(got, want)


def test_fuse_qdq_keeps_a_shared_quantize():
    import minirt
    from minirt.passes.quant import fuse_qdq

    model, _ = _qdq_matmul_graph(True, shared_q=True)
    ops = [n.op_type for n in fuse_qdq(minirt.load(model)).nodes]
    assert ops == ["QuantizeLinear", "MatMulIntegerToFloat"]


@pytest.mark.parametrize("b_shape,bias_shape", [((8, 1, 1), (8, 1, 1)), ((8, 1, 1), None), ((), (8, 1, 1)),
                                                ((1, 8, 1, 1), (8, 1, 1)), ((8, 1, 1), (1,)),
                                                ((1, 1, 4), None), ((1, 1, 1, 1, 1), None)])
def test_scale_integer_to_float_is_exact(b_shape, bias_shape):
    rng = np.random.default_rng(7)
    acc = rng.integers(-2**20, 2**20, (3, 8, 5, 4)).astype(np.int32)
    a_scale = np.asarray(rng.uniform(1e-3, 1e-1), np.float32)
    b_scale = _readonly(rng.uniform(1e-3, 1e-1, b_shape).astype(np.float32))
    bias = None if bias_shape is None else _readonly(rng.normal(size=bias_shape).astype(np.float32))
    # the chain fuse_dynamic_matmul folds: Cast -> Mul(Mul(xs, ws)) -> Add(bias)
    want = acc.astype(np.float32) * (a_scale * b_scale)
    if bias is not None:
        want = want + bias
    for _ in range(2):
        for got in (kquant.ScaleIntegerToFloat(acc, a_scale, b_scale, bias),
                    rquant.ScaleIntegerToFloat(acc, a_scale, b_scale, bias)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_fuse_dynamic_conv_chain_is_bit_identical():
    """digits, quantized dynamically: each DynamicQuantizeLinear -> ConvInteger -> Cast / Mul /
    Mul / Add -> Relu becomes one DynamicQuantizeConv; outputs equal the chain's bit for bit."""
    from pathlib import Path

    import minirt
    from minirt.passes.quant import fuse_dynamic_matmul

    model = minirt.quantize(str(Path(minirt.__file__).parent / "data" / "digits_cnn.onnx"), mode="dynamic")
    g = minirt.load(model.SerializeToString())
    g2 = fuse_dynamic_matmul(g)
    ops = [n.op_type for n in g2.nodes]
    assert ops.count("DynamicQuantizeConv") == 2 and ops.count("DynamicQuantizeMatMul") == 1
    assert not {"ConvInteger", "ScaleIntegerToFloat", "Relu", "Cast", "DynamicQuantizeLinear"} & set(ops)
    with np.load(Path(minirt.__file__).parent / "data" / "digits_test.npz") as z:
        x = z["images"][:64]
    (want,) = minirt.InferenceSession(g, optimize=0).run(None, {"image": x})
    for sess in (minirt.InferenceSession(g2, optimize=0), minirt.InferenceSession(g),
                 minirt.InferenceSession(g2, optimize=0, kernels=False)):
        np.testing.assert_array_equal(sess.run(None, {"image": x})[0], want)


CONVS = [((1, 1, 28, 28), (8, 1, 3, 3), dict(pads=[1, 1, 1, 1])),  # digits
         ((2, 8, 14, 14), (16, 8, 3, 3), dict(pads=[1, 1, 1, 1], strides=[2, 2])),
         ((1, 8, 9, 9), (8, 1, 3, 3), dict(group=8)),  # depthwise
         ((2, 16, 7, 7), (4, 16, 1, 1), {}),  # pointwise
         ((1, 64, 6, 6), (8, 64, 5, 5), {}),  # K = 1600 > one exact chunk: int32 accumulator
         ((2, 4, 20), (6, 4, 3), dict(pads=[1, 1]))]  # 1-D


@SETTINGS
@given(st.sampled_from(CONVS), st.booleans(), st.booleans(), st.sampled_from(["", "Relu"]),
       st.sampled_from([None, 0.0, np.nan]), st.integers(0, 2**31))
def test_dynamic_quantize_conv_is_the_chain(conv, per_channel, bias, activation, special, seed):
    """minirt.DynamicQuantizeConv's kernel equals its reference (DynamicQuantizeLinear ->
    ConvInteger -> ScaleIntegerToFloat [-> Relu]) bit for bit, and so does the chain of kernels."""
    x_shape, w_shape, attrs = conv
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=x_shape) * 2).astype(np.float32)
    if special is not None:
        X.reshape(-1)[rng.integers(X.size)] = special
        if special == 0.0:
            X[...] = 0
    M, spatial = w_shape[0], (1,) * (len(x_shape) - 2)
    W = _readonly(_q(rng, w_shape, np.int8))
    w_scale = _readonly(rng.uniform(1e-3, 1e-1, (M, *spatial) if per_channel else ()).astype(np.float32))
    w_zp = _readonly(_q(rng, (M,) if per_channel else (), np.int8))
    B = _readonly(rng.normal(size=(M, *spatial)).astype(np.float32)) if bias else None
    attrs = dict(attrs, kernel_shape=list(w_shape[2:]))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        want = rquant.DynamicQuantizeConv(X, W, w_scale, w_zp, B, activation=activation, **attrs)
        xq, xs, xz = kquant.DynamicQuantizeLinear(X)
        chain = kquant.ScaleIntegerToFloat(kquant.ConvInteger(xq, W, xz, w_zp, **attrs), xs, w_scale, B)
        np.testing.assert_array_equal(np.maximum(chain, np.float32(0)) if activation else chain, want)
        for _ in range(2):  # the second call runs on the cached preparations
            got = kquant.DynamicQuantizeConv(X, W, w_scale, w_zp, B, activation=activation, **attrs)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            assert not np.signbit(got[got == 0]).any() or not activation  # Relu's +0.0


# ---------------------------------------------------------------- the plan-time steps (prepared_step)


@st.composite
def small_convs(draw):
    """2-D convs small enough for the direct int32 loops (stride 1), and a few that are not."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H, W = draw(st.integers((kh - 1) * dh + 1, 9)), draw(st.integers((kw - 1) * dw + 1, 9))
    pads = [draw(st.integers(0, (k - 1) * d)) for k, d in ((kh, dh), (kw, dw)) for _ in range(2)]
    pads = [pads[0], pads[2], pads[1], pads[3]]  # [top, left, bottom, right]: asymmetric too
    G = draw(st.sampled_from([1, 2]))
    C, M = G * draw(st.integers(1, 3)), G * draw(st.integers(1, 4))
    stride = draw(st.sampled_from([1, 1, 1, 2]))  # stride 2: not the direct loops, the general path
    attrs = dict(kernel_shape=[kh, kw], dilations=[dh, dw], pads=pads, group=G, strides=[stride, stride])
    return (draw(st.integers(1, 2)), C, H, W), (M, C // G, kh, kw), attrs


@SETTINGS
@given(small_convs(), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_prepared_qlinear_conv_is_exact(conv, xt, per_channel, bias, seed):
    """QLinearConv's plan-time step (the direct loops with the requantization in them) equals the
    reference bit for bit, run after run with new data; a writeable (changing) weight, new
    constants and a non-contiguous x all give the reference's result too."""
    x_shape, w_shape, attrs = conv
    rng = np.random.default_rng(seed)
    M = w_shape[0]
    w = _readonly(_q(rng, w_shape, np.int8))
    consts = [_readonly(np.float32(0.02)), _readonly(_q(rng, (), xt)), w,
              _readonly(rng.uniform(1e-3, 1e-2, M if per_channel else ()).astype(np.float32)),
              _readonly(_q(rng, (M,) if per_channel else (), np.int8)), _readonly(np.float32(0.7)),
              _readonly(_q(rng, (), xt)), _readonly(rng.integers(-5000, 5000, M).astype(np.int32)) if bias else None]
    step = kquant.prepare_qlinear_conv(**attrs)
    for _ in range(2):  # the first run builds the runner, the second reuses it
        x = _q(rng, x_shape, xt)
        want = rquant.QLinearConv(x, *consts, **attrs)
        got = step(x, *consts)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    x2 = _q(rng, (x_shape[0], x_shape[1], x_shape[2], 2 * x_shape[3]), xt)[..., ::2]  # non-contiguous
    np.testing.assert_array_equal(step(x2, *consts), rquant.QLinearConv(x2, *consts, **attrs))
    w2 = np.array(w)  # writeable: never kept; changed in place, the next run reads it as it is
    consts2 = consts[:2] + [w2] + consts[3:]
    np.testing.assert_array_equal(step(x, *consts2), rquant.QLinearConv(x, *consts2, **attrs))
    w2[...] = _q(rng, w_shape, np.int8)
    np.testing.assert_array_equal(step(x, *consts2), rquant.QLinearConv(x, *consts2, **attrs))


@SETTINGS
@given(small_convs(), st.booleans(), st.booleans(), st.sampled_from(["", "Relu"]),
       st.sampled_from([None, 0.0, np.nan]), st.integers(0, 2**31))
def test_prepared_dynamic_quantize_conv_is_exact(conv, per_channel, bias, activation, special, seed):
    """DynamicQuantizeConv's plan-time step (DynamicQuantizeLinear, then the direct loops with
    the scaling and Relu in them) equals the reference bit for bit; NaN input takes the
    reference's rules (the general path)."""
    x_shape, w_shape, attrs = conv
    rng = np.random.default_rng(seed)
    M = w_shape[0]
    W = _readonly(_q(rng, w_shape, np.int8))
    w_scale = _readonly(rng.uniform(1e-3, 1e-1, (M, 1, 1) if per_channel else ()).astype(np.float32))
    w_zp = _readonly(_q(rng, (M,) if per_channel else (), np.int8))
    B = _readonly(rng.normal(size=(M, 1, 1)).astype(np.float32)) if bias else None
    step = kquant.prepare_dynamic_quantize_conv(activation=activation, **attrs)
    for _ in range(2):
        X = (rng.normal(size=x_shape) * 2).astype(np.float32)
        if special is not None:
            X.reshape(-1)[rng.integers(X.size)] = special
            if special == 0.0:
                X[...] = 0
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            want = rquant.DynamicQuantizeConv(X, W, w_scale, w_zp, B, activation=activation, **attrs)
            got = step(X, W, w_scale, w_zp, B)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not activation or not np.signbit(got[got == 0]).any()  # Relu's +0.0


@SETTINGS
@given(st.sampled_from(SHAPES), st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans(),
       st.booleans(), st.integers(0, 2**31))
def test_prepared_matmul_steps_are_exact(shape, ta, per_column, bias, float_out, seed):
    """The plan-time steps of QGemm, QuantizeLinear, QuantizeMatMul and (Fused)DynamicQuantizeMatMul
    equal the reference ops bit for bit, on their first run and on the kept runner's next ones
    (the BLAS shapes quantize straight to float32: ``dynamic_quantize_widen``)."""
    M, K, N = shape
    rng = np.random.default_rng(seed)
    B = _readonly(_q(rng, (N, K), np.int8))
    b_s = _readonly(rng.uniform(1e-3, 1e-2, N if per_column else ()).astype(np.float32))
    b_zp = _readonly(_q(rng, (N,) if per_column else (), np.int8))
    a_s, a_zp = _readonly(np.float32(0.05)), _readonly(_q(rng, (), ta))
    C = _readonly(rng.integers(-5000, 5000, N).astype(np.int32)) if bias else None
    y = (None, None) if float_out else (_readonly(np.float32(0.3)), _readonly(_q(rng, (), ta)))
    qgemm = kquant.prepare_qgemm(transB=1)
    quantize = kquant.prepare_quantize_linear()
    Bt = _readonly(np.ascontiguousarray(B.T))  # [K, N] for the MatMul forms
    fb = _readonly(rng.normal(size=N).astype(np.float32)) if bias else None
    dyn = kquant.prepare_dynamic_matmul()
    fused = kquant.prepare_fused_dynamic_matmul(activation="Relu")
    qmm = kquant.prepare_quantize_matmul()
    for _ in range(2):
        A = _q(rng, (M, K), ta)
        np.testing.assert_array_equal(qgemm(A, a_s, a_zp, B, b_s, b_zp, C, *y),
                                      rquant.QGemm(A, a_s, a_zp, B, b_s, b_zp, C, *y, transB=1))
        X = (rng.normal(size=(M, K)) * 3).astype(np.float32)
        got, want = quantize(X, a_s, a_zp), rquant.QuantizeLinear(X, a_s, a_zp)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        want = rquant.DynamicQuantizeMatMul(X, Bt, b_s, b_zp, fb)
        np.testing.assert_array_equal(dyn(X, Bt, b_s, b_zp, fb), want)
        np.testing.assert_array_equal(fused(X, Bt, b_s, b_zp, fb), np.maximum(want, np.float32(0)))
        np.testing.assert_array_equal(qmm(X, a_s, a_zp, Bt, b_s, b_zp, fb),
                                      rquant.QuantizeMatMul(X, a_s, a_zp, Bt, b_s, b_zp, fb))
    X[0, 0] = np.nan  # non-finite input: the run gives way to the general path (the reference's rules)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        np.testing.assert_array_equal(dyn(X, Bt, b_s, b_zp, fb), rquant.DynamicQuantizeMatMul(X, Bt, b_s, b_zp, fb))


def test_prepared_step_is_named_as_its_kernel():
    step = kquant.prepare_qlinear_conv(kernel_shape=[3, 3])
    assert step.__name__ == "QLinearConv" and step.__wrapped__ is kquant.QLinearConv


def test_conv_integer_long_dot_products_stay_exact():
    """A dot product too long for the direct loops' int32 sums to be safe (40 000 taps of up to
    255 * 255) goes the chunked way; the result is exact where it fits int32."""
    x = np.zeros((1, 40000, 1, 1), np.uint8)
    x[0, ::2] = 255  # x - 128: +127 and -128 in turn, the sum stays small
    w = np.full((1, 40000, 1, 1), 127, np.int8)
    got = kquant.ConvInteger(x, w, np.uint8(128), np.int8(-128))
    want = rquant.ConvInteger(x, w, np.uint8(128), np.int8(-128))
    assert got.dtype == np.int32 and got[0, 0, 0, 0] == (127 - 128) * 20000 * 255
    np.testing.assert_array_equal(got, want)
