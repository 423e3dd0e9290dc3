"""minirt.tools.compare: it names the node where a planted bug first shows, and passes clean models."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt import registry
from minirt.cli import main
from minirt.tools.compare import compare, summarize

pytest.importorskip("onnxruntime")


@pytest.fixture
def five_nodes(tmp_path):
    """x -> MatMul -> Add -> Relu -> Mul -> Sigmoid: five nodes, one Relu in the middle."""
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    s = numpy_helper.from_array(np.full(5, 0.5, np.float32), "s")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="act"),
        helper.make_node("Mul", ["r", "s"], ["m"], name="scale"),
        helper.make_node("Sigmoid", ["m"], ["y"], name="squash"),
    ]
    g = helper.make_graph(nodes, "five", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], initializer=[W, b, s])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "five.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.fixture
def broken_relu():
    """Register a wrong Relu (leaks negatives at 0.1x) as opset 14; restore the registry afterwards."""
    registry._ensure_loaded()
    key = ("", "Relu")
    saved = list(registry._REGISTRY[key])

    def Relu_broken(X):
        return np.where(X > 0, X, 0.1 * X).astype(X.dtype)

    minirt.register_op("Relu", Relu_broken, since=14)
    try:
        yield
    finally:
        registry._REGISTRY[key] = saved


def feeds(n=4):
    return {"x": np.random.default_rng(1).standard_normal((n, 6)).astype(np.float32)}


def test_clean_model_is_ok(five_nodes):
    report = compare(five_nodes, feeds())
    assert report.ok and report.first_divergence is None
    assert report.compared == 5
    assert [n.status for n in report.nodes] == ["ok"] * 5
    assert "agrees within tolerance" in str(report)


def test_planted_divergence_is_named(five_nodes, broken_relu):
    report = compare(five_nodes, feeds())
    assert not report.ok
    d = report.first_divergence
    assert (d.node, d.op_type, d.output) == ("act", "Relu", "r")
    assert d.max_abs > 0.01
    # its input still agreed: the bug is in this node, not before it
    assert [i["name"] for i in d.inputs] == ["hb"] and d.inputs[0]["max_abs"] < 1e-5
    assert d.minirt["min"] < 0 <= d.other["min"]  # the broken Relu lets negatives through
    status = {n.name: n.status for n in report.nodes}
    assert status["fc"] == status["bias"] == "ok" and status["act"] == "diverges"
    text = str(report)
    assert "first divergence: node 'act' (Relu)" in text and "input 'hb'" in text
    assert "act" in report.table() and "diverges" in report.table()
    json.dumps(report.to_dict(), default=str)


def test_registry_restored_after_fixture(five_nodes):
    # runs after the planted test in file order: the real Relu is back
    assert compare(five_nodes, feeds()).ok


def test_against_reference_evaluator(five_nodes, broken_relu):
    report = compare(five_nodes, feeds(), against="reference")
    assert report.first_divergence.node == "act"


def test_bundled_model_and_random_inputs():
    from minirt.cli import demo_files

    model, _, _ = demo_files()
    report = compare(str(model), shapes={"image": (2, 1, 8, 8)})
    assert report.ok, str(report)
    assert report.compared == len(report.nodes) == 7


def test_shape_mismatch_diverges(five_nodes):
    registry._ensure_loaded()
    key = ("", "Sigmoid")
    saved = list(registry._REGISTRY[key])
    minirt.register_op("Sigmoid", lambda X: (1 / (1 + np.exp(-X)))[:1], since=13)
    try:
        d = compare(five_nodes, feeds()).first_divergence
    finally:
        registry._REGISTRY[key] = saved
    assert d.node == "squash" and "shapes differ" in d.reason


def test_summarize():
    s = summarize(np.array([[1.0, np.nan], [3.0, -1.0]], np.float32))
    assert s["shape"] == [2, 2] and s["min"] == -1 and s["max"] == 3 and s["non_finite"] == 1


def test_cli_exit_codes(five_nodes, tmp_path, capsys, broken_relu):
    x = tmp_path / "x.npy"
    np.save(x, feeds()["x"])
    out = tmp_path / "r.json"
    assert main(["compare", five_nodes, "--input", f"x={x}", "--json", str(out)]) == 1
    assert "first divergence: node 'act'" in capsys.readouterr().out
    assert json.loads(out.read_text())["first_divergence"]["node"] == "act"


def test_cli_clean_and_errors(five_nodes, tmp_path, capsys):
    assert main(["compare", five_nodes, "--shape", "x:3x6"]) == 0
    assert main(["compare", str(tmp_path / "missing.onnx")]) == 2
    assert main(["compare", five_nodes, "--shape", "x3x6"]) == 2
    err = capsys.readouterr().err
    assert "--shape expects NAME:D1xD2" in err
    assert all(len(line) < 300 for line in err.splitlines())


def test_optimized_graph_compares_on_kept_names():
    from minirt.cli import demo_files

    model = str(demo_files()[0])
    plain = compare(model, shapes={"image": (2, 1, 8, 8)})
    optimized = compare(model, shapes={"image": (2, 1, 8, 8)}, optimize=2)
    assert plain.ok and optimized.ok, str(optimized)
    assert len(optimized.nodes) <= len(plain.nodes)
    assert optimized.nodes[-1].outputs == ["logits"] and optimized.nodes[-1].status == "ok"
