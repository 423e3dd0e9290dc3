"""Graphs quantized by onnxruntime's own tools run in minirt, on integer ops, and agree with ORT.

- ``quantize_static`` in QDQ format (per-channel or not; uint8/int8 activations and weights):
  minirt runs it after :func:`minirt.tools.quantize.fuse_qdq` turns the DQ -> Conv -> Q islands
  into QLinearConv & co.;
- ``quantize_static`` in QOperator format: QLinearConv, QLinearMatMul and the com.microsoft
  QLinearAdd / QLinearGlobalAveragePool / QGemm ... ops, run as they are;
- ``quantize_dynamic``: DynamicQuantizeLinear + MatMulInteger (or DynamicQuantizeMatMul).

A hook records the op types that ran and their output dtypes, to prove the int8 path ran and
not a float fallback. The quantized models are written to pytest's tmp_path only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")

import minirt  # noqa: E402
from minirt.tools.quantize import fuse_qdq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "minirt" / "data" / "digits_cnn.onnx"
MODELS = ROOT / "models"


def digits_split():
    """(calibration images, test images, test labels): the held-out split of models/train_digits_cnn.py."""
    test_file = ROOT / "minirt" / "data" / "digits_test.npz"
    sk = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    d = sk.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8], 0..1 as the model expects
    x_tr, x_te, _, y_te = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    if test_file.exists():
        with np.load(test_file) as z:
            if "images" in z.files and "labels" in z.files:
                x_te, y_te = z["images"].astype(np.float32), z["labels"]
    return x_tr[:64], x_te, y_te


@pytest.fixture(scope="module")
def digits():
    return digits_split()


class Reader(oq.CalibrationDataReader):
    """onnxruntime's calibration interface over a list of feeds."""

    def __init__(self, feeds):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def ort_run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def minirt_run(path, feeds, *, fuse=False):
    """Run with minirt; returns (outputs, {op type: set of output dtypes}) from a hook."""
    graph = minirt.load(str(path))
    if fuse:
        graph = fuse_qdq(graph)
    sess = minirt.InferenceSession(graph)
    ran: dict[str, set] = {}

    def after(node, inputs, outputs, seconds):
        ran.setdefault(node.op_type, set()).update(str(np.asarray(o).dtype) for o in outputs[:1] if o is not None)

    sess.add_hook(after=after)
    return sess.run(None, feeds), ran


def output_step(path) -> float:
    """The quantization step (scale) of the DequantizeLinear that makes the first output, else 0."""
    m = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.output[0] == m.graph.output[0].name and n.op_type == "DequantizeLinear":
            return float(np.max(inits[n.input[1]]))
    return 0.0


def assert_close_quantized(got, want, step):
    # minirt and onnxruntime both compute the exact int32 accumulators; they can differ only in
    # how the float requantization multiplier x_scale*w_scale/y_scale rounds a value that lies
    # on a .5 boundary, which moves that element by one step of its output's scale: so the
    # dequantized outputs agree within one output step (plus float32 noise).
    tol = step * 1.0001 + 1e-5 * max(1.0, float(np.abs(want).max()))
    assert np.abs(got.astype(np.float64) - want).max() <= tol, (np.abs(got - want).max(), step)


def digits_static(tmp_path, digits, fmt, per_channel, act, wt):
    cal, x_te, y_te = digits
    out = tmp_path / "digits_q.onnx"
    oq.quantize_static(str(DIGITS), str(out), Reader([{"image": cal[i:i + 16]} for i in range(0, 64, 16)]),
                       quant_format=fmt, per_channel=per_channel, activation_type=act, weight_type=wt)
    return out, x_te, y_te


QDQ_TYPES = [("QUInt8", "QInt8"), ("QInt8", "QInt8"), ("QUInt8", "QUInt8")]


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("act,wt", QDQ_TYPES)
def test_ort_static_qdq_digits(tmp_path, digits, per_channel, act, wt):
    T = oq.QuantType
    path, x_te, y_te = digits_static(tmp_path, digits, oq.QuantFormat.QDQ, per_channel, T[act], T[wt])
    [want] = ort_run(path, {"image": x_te})
    [got], ran = minirt_run(path, {"image": x_te}, fuse=True)
    assert_close_quantized(got, want, output_step(path))
    assert (got.argmax(1) == want.argmax(1)).all()
    qtype = {"QUInt8": "uint8", "QInt8": "int8"}[act]
    assert ran["QLinearConv"] == {qtype}, ran  # the convolutions ran as integer ops
    assert "Conv" not in ran and "Gemm" not in ran, ran  # no float fallback left
    assert (got.argmax(1) == y_te).mean() >= 0.96


@pytest.mark.parametrize("per_channel", [True, False])
def test_ort_static_qoperator_digits(tmp_path, digits, per_channel):
    T = oq.QuantType
    path, x_te, y_te = digits_static(tmp_path, digits, oq.QuantFormat.QOperator, per_channel, T.QUInt8, T.QInt8)
    [want] = ort_run(path, {"image": x_te})
    [got], ran = minirt_run(path, {"image": x_te})
    assert_close_quantized(got, want, output_step(path))
    assert (got.argmax(1) == want.argmax(1)).all()
    assert ran["QLinearConv"] == {"uint8"}, ran
    assert "Conv" not in ran, ran


@pytest.mark.parametrize("name", ["resnet_mini", "mobilenet_mini"])
@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_ort_static_cnn(tmp_path, name, fmt):
    rng = np.random.default_rng(0)
    src = MODELS / f"{name}.onnx"
    pre = tmp_path / f"{name}_pre.onnx"
    oq.shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    out = tmp_path / f"{name}_q.onnx"
    cal = [{"input": rng.standard_normal((4, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    oq.quantize_static(str(pre), str(out), Reader(cal), quant_format=oq.QuantFormat[fmt], per_channel=True,
                       activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8)
    x = {"input": rng.standard_normal((3, 3, 32, 32)).astype(np.float32)}
    [want] = ort_run(out, x)
    [got], ran = minirt_run(out, x, fuse=fmt == "QDQ")
    assert_close_quantized(got, want, output_step(out))
    assert ran["QLinearConv"] and ran["QLinearConv"] <= {"uint8", "int8"}, ran
    if fmt == "QOperator":
        contrib = {n.op_type for n in onnx.load(str(out)).graph.node if n.domain == "com.microsoft"}
        # every contrib op onnxruntime wrote for the non-conv parts ran in minirt
        assert contrib and contrib <= set(ran), (contrib, ran)
        assert {"resnet_mini": "QLinearAdd", "mobilenet_mini": "QLinearGlobalAveragePool"}[name] in contrib


def test_ort_static_qoperator_concat(tmp_path):
    """Two conv branches concatenated: onnxruntime writes com.microsoft.QLinearConcat."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = {k: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), k)
         for k, s in [("w1", (4, 3, 3, 3)), ("w2", (5, 3, 1, 1)), ("w3", (6, 9, 3, 3))]}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Conv", ["c", "w3"], ["y"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "concat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8, 8])], list(w.values()))
    src = tmp_path / "concat.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    out = tmp_path / "concat_q.onnx"
    cal = [{"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    oq.quantize_static(str(src), str(out), Reader(cal), quant_format=oq.QuantFormat.QOperator,
                       activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8)
    x = {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    [want] = ort_run(out, x)
    [got], ran = minirt_run(out, x)
    assert ran["QLinearConcat"] == {"uint8"} and ran["QLinearConv"] == {"uint8"}, ran
    assert_close_quantized(got, want, output_step(out))


def _token_feeds(sess, rng):
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "attention_mask":
            feeds[i.name] = np.ones((2, 7), np.int64)
        elif i.name == "token_type_ids":
            feeds[i.name] = np.zeros((2, 7), np.int64)
        else:
            feeds[i.name] = rng.integers(0, 100, (2, 7)).astype(np.int64)
    return feeds


@pytest.mark.parametrize("name", ["gpt2_tiny", "bert_tiny", "sklearn_mlp", "fraud_mlp"])
def test_ort_dynamic(tmp_path, name):
    src = MODELS / f"{name}.onnx"
    if name == "fraud_mlp":
        src = ROOT / "minirt" / "data" / "fraud_mlp.onnx"
        if not src.exists():
            pytest.skip("minirt/data/fraud_mlp.onnx is not there yet")
    out = tmp_path / f"{name}_dyn.onnx"
    oq.quantize_dynamic(str(src), str(out), weight_type=oq.QuantType.QInt8)
    rng = np.random.default_rng(0)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(int64)":
        feeds = _token_feeds(sess, rng)
    else:
        width = [d for d in inp.shape if isinstance(d, int)][-1]
        feeds = {inp.name: rng.random((16, width)).astype(np.float32)}
    want = ort_run(out, feeds)
    got, ran = minirt_run(out, feeds)
    for g, w in zip(got, want):
        if g.dtype.kind == "f":
            # dynamic quantization keeps float outputs; both runtimes quantize each batch with the
            # same DynamicQuantizeLinear and accumulate exactly, so only float rounding differs
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())))
        else:
            np.testing.assert_array_equal(g, w)
    int_ops = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"} & set(ran)
    assert int_ops, ran
    if "MatMulInteger" in ran:
        assert ran["MatMulInteger"] == {"int32"}, ran
    assert ran.get("DynamicQuantizeLinear", {"uint8"}) == {"uint8"}, ran
