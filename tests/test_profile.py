"""The profiler: FLOP/MAC counts checked by hand, tables, trace, memory, CLI."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt.cli import main
from minirt.tools.cost import node_cost


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_conv_flops_by_hand():
    x = np.zeros((2, 4, 10, 10), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)  # group=2: each output channel sees 2 input channels
    y = np.zeros((2, 6, 8, 8), np.float32)
    cost = node_cost("Conv", {"group": 2}, [x, w, None], [y])
    # MACs = N * C_out * oh * ow * (C_in / group) * kh * kw = 2 * 6 * 8 * 8 * 2 * 3 * 3
    assert cost["macs"] == 2 * 6 * 8 * 8 * 2 * 3 * 3
    assert cost["flops"] == 2 * cost["macs"]
    assert cost["bytes_read"] == x.nbytes + w.nbytes and cost["bytes_written"] == y.nbytes


def test_matmul_and_gemm_flops_by_hand():
    a, b = np.zeros((3, 5, 7), np.float32), np.zeros((7, 4), np.float32)
    y = np.zeros((3, 5, 4), np.float32)
    assert node_cost("MatMul", {}, [a, b], [y])["macs"] == 3 * 5 * 4 * 7
    a2, b2, c = np.zeros((7, 5), np.float32), np.zeros((4, 7), np.float32), np.zeros(4, np.float32)
    y2 = np.zeros((5, 4), np.float32)
    # transA: A is [K, M] = [7, 5], so K = 7
    assert node_cost("Gemm", {"transA": 1, "transB": 1}, [a2, b2, c], [y2])["macs"] == 5 * 4 * 7


def test_elementwise_and_movement_costs():
    x = np.zeros((4, 8), np.float32)
    assert node_cost("Relu", {}, [x], [x])["flops"] == 32
    assert node_cost("Reshape", {}, [x, np.array([32])], [x.reshape(32)])["flops"] == 0


@pytest.fixture
def mlp():
    rng = np.random.default_rng(0)
    W1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "W1")
    W2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "W2")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc2"),
    ]
    return _model(nodes, [vi("x", ["N", 16])], [vi("y", ["N", 4])], [W1, W2])


def test_profile_model(mlp, tmp_path):
    x = np.ones((8, 16), np.float32)
    prof = minirt.profile(mlp, {"x": x}, runs=3, optimize=0)  # the nodes as written
    assert [n.name for n in prof.nodes] == ["fc1", "relu", "fc2"]
    fc1 = prof.nodes[0]
    assert fc1.macs == 8 * 32 * 16 and fc1.output_shapes == ["float32[8,32]"]
    assert prof.total_flops == 2 * 8 * 32 * 16 + 8 * 32 + 2 * 8 * 4 * 32
    assert prof.runs == 3 and prof.first_run_ms > 0 and prof.warm_ms > 0
    assert prof.weight_bytes == (16 * 32 + 32 * 4) * 4
    # peak: x (512 B) + h (1 KB) live together, then h + r; never more than x + h + r
    assert x.nbytes + 8 * 32 * 4 <= prof.peak_activation_bytes <= x.nbytes + 2 * 8 * 32 * 4 + 8 * 4 * 4
    assert "fc1" in prof.table() and "MatMul" in prof.by_op_table()
    assert "GEMM peak" in prof.summary()
    ops = {g["op_type"]: g for g in prof.by_op()}
    assert ops["MatMul"]["count"] == 2 and abs(sum(g["percent"] for g in ops.values()) - 100) < 1e-6
    trace = prof.chrome_trace()["traceEvents"]
    assert [e["name"] for e in trace] == ["fc1", "relu", "fc2"] and all(e["ph"] == "X" for e in trace)


def test_profile_random_inputs_and_cli(mlp, tmp_path, capsys):
    import onnx

    path = tmp_path / "mlp.onnx"
    onnx.save(mlp, path)
    prof = minirt.profile(str(path), shapes={"x": (5, 16)}, runs=1)  # optimized: MatMul+Relu fused
    assert [n.op_type for n in prof.nodes] == ["FusedMatMul", "MatMul"]
    assert prof.nodes[0].output_shapes == ["float32[5,32]"]
    assert prof.nodes[0].macs == 5 * 32 * 16  # a fused node still counts its MatMul
    trace, js = tmp_path / "t.json", tmp_path / "p.json"
    assert main(["profile", str(path), "--shape", "x:2x16", "--runs", "2", "--trace", str(trace),
                 "--json", str(js), "-O", "0"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "GFLOP/s" in out
    assert len(json.loads(trace.read_text())["traceEvents"]) == 3
    assert json.loads(js.read_text())["total_flops"] == 2 * 2 * 32 * 16 + 2 * 32 + 2 * 2 * 4 * 32
    assert main(["profile", str(path), "--shape", "x=2x16"]) == 2  # bad --shape: one clear line
    assert "NAME:D1xD2" in capsys.readouterr().err
