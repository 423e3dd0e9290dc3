"""Graph passes: each one on a small hand-built graph where it must fire, then the real models.

Every check runs the graph before and after the pass in minirt and compares the outputs, and
(where names survive) every intermediate value the two runs share.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt.passes import (
    OptimizeReport,
    eliminate_common_subexpressions,
    fold_constants,
    fold_conv_batchnorm,
    fuse_elementwise,
    fuse_matmul_add,
    optimize,
    optimize_with_report,
    remove_dead_nodes,
    remove_identity,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIGHT = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
F = TensorProto.FLOAT
I64 = TensorProto.INT64


# --------------------------------------------------------------------------- helpers

def graph(nodes, inputs, outputs, inits=(), opset=17, value_info=()):
    """A minirt Graph from onnx.helper pieces (via the real frontend, shape inference included)."""
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
                          value_info=list(value_info))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return minirt.load(model)


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def ops(g):
    return [n.op_type for n in g.nodes]


def rng(seed=0):
    return np.random.default_rng(seed)


def same_outputs(before, after, feeds, rtol=0.0, atol=0.0, intermediates=False):
    """Run both graphs; outputs (and shared intermediates) must agree within the tolerance."""
    assert [v.name for v in after.outputs] == [v.name for v in before.outputs]  # names never change
    s0, s1 = minirt.InferenceSession(before), minirt.InferenceSession(after)
    if intermediates:
        want, got = s0.run_with_intermediates(feeds), s1.run_with_intermediates(feeds)
        names = [n for n in want if n in got]
    else:
        names = [v.name for v in before.outputs]
        want = dict(zip(names, s0.run(None, feeds)))
        got = dict(zip(names, s1.run(None, feeds)))
    for name in names:
        w, g = want[name], got[name]
        if not isinstance(w, np.ndarray):
            continue
        assert g.shape == w.shape and g.dtype == w.dtype, name
        if w.dtype.kind == "f":
            scale = float(np.max(np.abs(w))) if w.size else 0.0
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
    return got


def unchanged(g, before_text):
    """The pass must not have touched its input graph."""
    assert g.to_text() == before_text


# --------------------------------------------------------------------------- fold_constants

def test_fold_constants_arithmetic_and_constant_nodes():
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32([1, 2, 3]))),
        helper.make_node("Mul", ["c", "w"], ["cw"]),
        helper.make_node("Add", ["x", "cw"], ["y"]),
    ]
    g = graph(nodes, [vi("x", F, ["N", 3])], [vi("y", F, ["N", 3])], {"w": np.float32([4, 5, 6])})
    text = g.to_text()
    g2 = fold_constants(g)
    unchanged(g, text)
    assert ops(g2) == ["Add"]
    np.testing.assert_array_equal(g2.initializers["cw"], [4, 10, 18])
    # folding is exact: the same reference op computed the same float32 product
    same_outputs(g, g2, {"x": rng().standard_normal((2, 3), dtype=np.float32)})


def test_fold_constants_static_shape_chain():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as PyTorch exports a flatten."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        helper.make_node("Shape", ["x"], ["tail"], start=-2),  # Shape with start (opset 15+)
        helper.make_node("Size", ["x"], ["size"]),
    ]
    inits = {"zero": np.int64(0), "axes0": np.int64([0]), "minus1": np.int64([-1])}
    g = graph(nodes, [vi("x", F, [2, 3, 4])],
              [vi("y", F, None), vi("tail", I64, None), vi("size", I64, None)], inits)
    g2 = fold_constants(g)
    assert ops(g2) == ["Reshape"]
    np.testing.assert_array_equal(g2.initializers["shape"], [2, -1])
    # graph outputs folded into initializers keep their names
    np.testing.assert_array_equal(g2.initializers["tail"], [3, 4])
    assert int(g2.initializers["size"]) == 24
    out = same_outputs(g, g2, {"x": rng().standard_normal((2, 3, 4), dtype=np.float32)})
    np.testing.assert_array_equal(out["tail"], [3, 4])


def test_fold_constants_partial_shape():
    """[batch, seq, 8]: the hidden size folds, the batch dim stays dynamic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "two"], ["h"], axis=0),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Slice", ["s", "one", "big"], ["tail"]),
        helper.make_node("Mul", ["h", "b"], ["hb"]),
    ]
    inits = {"two": np.int64(2), "zero": np.int64(0), "one": np.int64([1]), "big": np.int64([99])}
    g = graph(nodes, [vi("x", F, ["batch", "seq", 8])], [vi("hb", I64, None), vi("tail", I64, None)], inits)
    g2 = fold_constants(g)
    assert sorted(ops(g2)) == ["Gather", "Mul", "Shape", "Slice"]  # only the Gather of dim 2 folded
    assert int(g2.initializers["h"]) == 8
    same_outputs(g, g2, {"x": rng().standard_normal((3, 5, 8), dtype=np.float32)})


def test_fold_constants_leaves_random_subgraph_and_huge_results():
    then_g = helper.make_graph([helper.make_node("Identity", ["k"], ["t"])], "then", [], [vi("t", F, None)])
    nodes = [
        helper.make_node("RandomNormal", [], ["r"], shape=[2]),
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=then_g),
        helper.make_node("Expand", ["one", "big_shape"], ["big"]),
        helper.make_node("ConstantOfShape", ["small_shape"], ["small"],
                         value=numpy_helper.from_array(np.float32([1]))),
        helper.make_node("ReduceSum", ["big"], ["bigsum"], keepdims=0),
        helper.make_node("ReduceSum", ["small"], ["smallsum"], keepdims=0),
    ]
    inits = {"cond": np.bool_(True), "k": np.float32([7]), "one": np.float32([1]),
             "big_shape": np.int64([2048, 1024]), "small_shape": np.int64([4, 4])}
    g = graph(nodes, [], [vi("r", F, None), vi("branch", F, None), vi("bigsum", F, None),
                          vi("smallsum", F, None)], inits)
    g2 = fold_constants(g)
    # random and subgraph nodes stay; 2M elements from 20 bytes is over the 1M limit
    assert sorted(ops(g2)) == ["Expand", "If", "RandomNormal", "ReduceSum"]
    assert float(g2.initializers["smallsum"]) == 16.0
    g3 = fold_constants(g, max_elements=1 << 22)
    assert sorted(ops(g3)) == ["If", "RandomNormal"]
    out = minirt.InferenceSession(g2).run(["branch", "bigsum"], {})
    assert float(out[0][0]) == 7 and float(out[1]) == 2048 * 1024


def test_fold_constants_folds_constant_of_shape_of_any_size():
    """Every run would rebuild the same fill whole (the light ONNX models make their weights so)."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], value=numpy_helper.from_array(np.float32([2]))),
             helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0)]
    g = graph(nodes, [], [vi("s", F, None)], {"shape": np.int64([2048, 1024])})
    g2 = fold_constants(g)
    assert ops(g2) == [] and float(g2.initializers["s"]) == 2 * 2048 * 1024


# --------------------------------------------------------------------------- remove_identity

def test_remove_identity_dropout_and_noop_cast():
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Dropout", ["b"], ["c"]),
        helper.make_node("Cast", ["c"], ["d"], to=F),  # float32 -> float32: no-op
        helper.make_node("Cast", ["d"], ["e"], to=TensorProto.DOUBLE),  # a real cast stays
        helper.make_node("Identity", ["e"], ["y"]),  # produces the graph output
    ]
    g = graph(nodes, [vi("x", F, ["N", 4])], [vi("y", TensorProto.DOUBLE, ["N", 4])])
    text = g.to_text()
    g2 = remove_identity(g)
    unchanged(g, text)
    assert ops(g2) == ["Relu", "Cast"]
    assert g2.nodes[-1].outputs == ["y"]  # the producer now writes the output's name
    same_outputs(g, g2, {"x": rng().standard_normal((3, 4), dtype=np.float32)})


def test_remove_identity_keeps_what_it_must():
    nodes = [
        helper.make_node("Identity", ["x"], ["y1"]),  # input -> output: must stay
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Identity", ["r"], ["y2"]),  # r is an output too: must stay
        helper.make_node("Dropout", ["r", "ratio", "train"], ["d", "mask"]),  # mask is read
        helper.make_node("Cast", ["mask"], ["y3"], to=F),
        helper.make_node("Identity", ["w"], ["y4"]),  # a weight -> output: must stay
    ]
    inits = {"ratio": np.float32(0.5), "train": np.bool_(False), "w": np.float32([1, 2])}
    g = graph(nodes, [vi("x", F, [2])],
              [vi("y1", F, None), vi("r", F, None), vi("y2", F, None), vi("y3", F, None),
               vi("y4", F, None)], inits, opset=13)
    g2 = remove_identity(g)
    assert ops(g2) == ops(g)
    same_outputs(g, g2, {"x": np.float32([-1, 2])})


def test_remove_identity_rewires_subgraph_reads():
    branch = helper.make_graph([helper.make_node("Neg", ["a"], ["t"])], "b", [], [vi("t", F, None)])
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
    ]
    g = graph(nodes, [vi("x", F, [2]), vi("cond", TensorProto.BOOL, [])], [vi("y", F, None)])
    g2 = remove_identity(g)
    assert ops(g2) == ["If"]
    assert g2.nodes[0].attrs["then_branch"].nodes[0].inputs == ["x"]
    same_outputs(g, g2, {"x": np.float32([1, 2]), "cond": np.bool_(True)})


# --------------------------------------------------------------------------- remove_dead_nodes

def test_remove_dead_nodes():
    branch = helper.make_graph([helper.make_node("Neg", ["used_by_if"], ["t"])], "b", [], [vi("t", F, None)])
    nodes = [
        helper.make_node("Relu", ["x"], ["unused"]),
        helper.make_node("Exp", ["unused"], ["unused2"]),
        helper.make_node("Sigmoid", ["x"], ["used_by_if"]),  # read only inside the If
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["x", "w_dead"], ["dead_too"]),
    ]
    g = graph(nodes, [vi("x", F, [2]), vi("cond", TensorProto.BOOL, [])], [vi("y", F, None)],
              {"w_dead": np.float32([1, 1])})
    g2 = remove_dead_nodes(g)
    assert ops(g2) == ["Sigmoid", "If"]
    assert "w_dead" not in g2.initializers and "w_dead" in g.initializers
    same_outputs(g, g2, {"x": np.float32([1, -2]), "cond": np.bool_(False)})


# --------------------------------------------------------------------------- Conv + BN

@pytest.mark.parametrize("conv_op,bias,group", [("Conv", True, 1), ("Conv", False, 2),
                                                 ("ConvTranspose", True, 2)])
def test_fold_conv_batchnorm(conv_op, bias, group):
    r = rng(1)
    C, M = 4, 6
    W = r.standard_normal((M, C // group, 3, 3) if conv_op == "Conv" else (C, M // group, 3, 3)).astype(np.float32)
    inits = {"W": W, "B": r.standard_normal(M).astype(np.float32),
             "scale": r.uniform(0.5, 2, M).astype(np.float32), "beta": r.standard_normal(M).astype(np.float32),
             "mean": r.standard_normal(M).astype(np.float32), "var": r.uniform(0.1, 3, M).astype(np.float32)}
    nodes = [
        helper.make_node(conv_op, ["x", "W"] + (["B"] if bias else []), ["c"], pads=[1, 1, 1, 1], group=group),
        helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["y"], epsilon=1e-3),
    ]
    g = graph(nodes, [vi("x", F, ["N", C, 5, 5])], [vi("y", F, None)], inits)
    g2 = remove_dead_nodes(fold_conv_batchnorm(g))
    assert ops(g2) == [conv_op]
    assert "W" not in g2.initializers  # the folded weights are new tensors; W itself is untouched
    # float32 conv over 36 products, weights rescaled in float64 then rounded: ~1e-6 relative
    same_outputs(g, g2, {"x": r.standard_normal((2, C, 5, 5), dtype=np.float32)}, rtol=1e-5, atol=1e-5)


def test_fold_conv_batchnorm_needs_a_single_reader():
    inits = {"W": np.ones((2, 2, 1, 1), np.float32), **{k: np.ones(2, np.float32) for k in "sbmv"}}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    g = graph(nodes, [vi("x", F, [1, 2, 2, 2])], [vi("y", F, None), vi("c", F, None)], inits)
    assert ops(fold_conv_batchnorm(g)) == ["Conv", "BatchNormalization"]  # c is an output too


def test_fold_conv_then_channel_mul_add():
    """Caffe2-style Conv -> BN -> Mul(scale) -> Add(bias): all three fold into the Conv."""
    r = rng(7)
    M = 3
    inits = {"W": r.standard_normal((M, 2, 3, 3)).astype(np.float32),
             **{k: r.uniform(0.5, 2, M).astype(np.float32) for k in "sbmv"},
             "mul": r.standard_normal((M, 1, 1)).astype(np.float32),
             "add": r.standard_normal((1, M, 1, 1)).astype(np.float32),
             "not_per_channel": r.standard_normal((1, 1, 1, 4)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Mul", ["bn", "mul"], ["sc"]),
             helper.make_node("Add", ["add", "sc"], ["ad"]),
             helper.make_node("Add", ["ad", "not_per_channel"], ["y"])]
    g = graph(nodes, [vi("x", F, ["N", 2, 6, 6])], [vi("y", F, None)], inits)
    g2 = remove_dead_nodes(fold_conv_batchnorm(g))
    assert ops(g2) == ["Conv", "Add"]
    # three float32 roundings replaced by one float64 rescale: ~1e-6 relative
    same_outputs(g, g2, {"x": r.standard_normal((2, 2, 6, 6), dtype=np.float32)}, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- CSE

def test_eliminate_common_subexpressions():
    nodes = [
        helper.make_node("Shape", ["x"], ["s1"]),
        helper.make_node("Shape", ["x"], ["s2"]),  # the same computation
        helper.make_node("Gather", ["s1", "zero_a"], ["g1"], axis=0),
        helper.make_node("Gather", ["s2", "zero_b"], ["g2"], axis=0),  # equal constant, other name
        helper.make_node("Gather", ["s2", "one"], ["g3"], axis=0),  # a different index: stays
        helper.make_node("Add", ["g1", "g2"], ["n"]),
        helper.make_node("Add", ["n", "g3"], ["y"]),
        helper.make_node("RandomUniform", [], ["r1"], shape=[2]),
        helper.make_node("RandomUniform", [], ["r2"], shape=[2]),  # two draws: two values
    ]
    inits = {"zero_a": np.int64(0), "zero_b": np.int64(0), "one": np.int64(1)}
    g = graph(nodes, [vi("x", F, ["A", "B"])], [vi("y", I64, None), vi("r1", F, None), vi("r2", F, None)], inits)
    g2 = eliminate_common_subexpressions(g)
    assert ops(g2) == ["Shape", "Gather", "Gather", "Add", "Add", "RandomUniform", "RandomUniform"]
    assert g2.nodes[3].inputs == ["g1", "g1"]
    out = minirt.InferenceSession(g2).run(["y"], {"x": np.zeros((4, 5), np.float32)})
    assert int(out[0]) == 4 + 4 + 5


# --------------------------------------------------------------------------- MatMul + Add

@pytest.mark.parametrize("shape,expect", [(["N", 4], ["Gemm"]), (["B", "S", 4], ["MatMul", "Add"])])
def test_fuse_matmul_add(shape, expect):
    r = rng(2)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["b", "m"], ["y"])]
    g = graph(nodes, [vi("x", F, shape)], [vi("y", F, None)],
              {"W": r.standard_normal((4, 3)).astype(np.float32), "b": r.standard_normal(3).astype(np.float32)})
    g2 = fuse_matmul_add(g)
    assert ops(g2) == expect
    x = r.standard_normal([2, 5, 4][-len(shape):], dtype=np.float32)
    # Gemm is the same float32 BLAS product plus the same float32 add: equal to rounding order
    same_outputs(g, g2, {"x": x}, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- elementwise

def test_fuse_elementwise_conv_residual_relu_and_clip():
    r = rng(3)
    inits = {"W1": r.standard_normal((4, 4, 3, 3)).astype(np.float32), "B1": r.standard_normal(4).astype(np.float32),
             "W2": r.standard_normal((4, 4, 1, 1)).astype(np.float32),
             "lo": np.float32(0), "hi": np.float32(6)}
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["x", "c1"], ["s"]),  # residual: Z = x
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("Conv", ["r", "W2"], ["c2"]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["y"]),  # ReLU6
    ]
    g = graph(nodes, [vi("x", F, ["N", 4, 6, 6])], [vi("y", F, None)], inits)
    g2 = fuse_elementwise(g)
    assert ops(g2) == ["FusedConv", "FusedConv"]
    assert g2.nodes[0].domain == "minirt" and g2.opsets["minirt"] == 1 and "minirt" not in g.opsets
    assert g2.nodes[0].inputs == ["x", "W1", "B1", "x"] and g2.nodes[0].attrs["activation"] == "Relu"
    assert g2.nodes[1].attrs["activation_params"] == [0.0, 6.0]
    # the fused reference op calls the same reference ops in the same order: bit-identical
    same_outputs(g, g2, {"x": r.standard_normal((2, 4, 6, 6), dtype=np.float32)}, intermediates=True)
    got_ref = minirt.InferenceSession(g2, kernels=False).run(None, {"x": np.ones((1, 4, 6, 6), np.float32)})
    got_fast = minirt.InferenceSession(g2).run(None, {"x": np.ones((1, 4, 6, 6), np.float32)})
    np.testing.assert_allclose(got_fast[0], got_ref[0], rtol=1e-5, atol=1e-5)  # kernels: float32 rounding


def test_fuse_elementwise_matmul_and_gemm():
    r = rng(4)
    inits = {"W": r.standard_normal((4, 4)).astype(np.float32), "b": r.standard_normal(4).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("LeakyRelu", ["a"], ["l"], alpha=0.2),
        helper.make_node("Reshape", ["l", "shape2d"], ["l2"]),
        helper.make_node("Gemm", ["l2", "W", "b"], ["gm"], transB=1),
        helper.make_node("HardSigmoid", ["gm"], ["y"]),
    ]
    inits["shape2d"] = np.int64([-1, 4])
    g = graph(nodes, [vi("x", F, ["B", "S", 4])], [vi("y", F, None)], inits)
    g2 = fuse_elementwise(g)
    assert ops(g2) == ["FusedMatMul", "Reshape", "FusedGemm"]
    assert g2.nodes[2].attrs["transB"] == 1 and g2.nodes[2].attrs["activation_params"] == [0.2, 0.5]
    same_outputs(g, g2, {"x": r.standard_normal((2, 3, 4), dtype=np.float32)}, intermediates=True)


@pytest.mark.parametrize("z_shape", [(4,), (3, 4), (2, 3, 4), (2, 1, 1)])
def test_fused_matmul_kernel_adds_z_in_place_or_broadcasts_out(z_shape):
    """The kernel adds Z into the product in place when Z broadcasts into it, and makes the
    bigger array when Z has more (or longer) axes: both equal the reference MatMul then Add."""
    from minirt.passes import fused_ops

    r = rng(8)
    a, b = r.standard_normal((3, 5), dtype=np.float32), r.standard_normal((5, 4), dtype=np.float32)
    z = r.standard_normal(z_shape, dtype=np.float32)
    z_before = z.copy()
    got = fused_ops.FusedMatMul_fast(a, b, z, activation="Relu")
    want = np.maximum(np.matmul(a, b) + z, 0)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(z, z_before)  # the caller's Z is left alone


def test_fuse_elementwise_needs_a_single_reader():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Relu", ["m"], ["y"]),
             helper.make_node("Neg", ["m"], ["z"])]
    g = graph(nodes, [vi("x", F, [2, 2])], [vi("y", F, None), vi("z", F, None)], {"W": np.eye(2, dtype=np.float32)})
    assert ops(fuse_elementwise(g)) == ["MatMul", "Relu", "Neg"]


# --------------------------------------------------------------------------- optimize

def test_optimize_levels_and_report():
    r = rng(5)
    inits = {"W": r.standard_normal((3, 3, 1, 1)).astype(np.float32), **{k: r.uniform(0.5, 1, 3).astype(np.float32) for k in "sbmv"}}
    nodes = [helper.make_node("Identity", ["x"], ["xi"]), helper.make_node("Conv", ["xi", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["y"])]
    g = graph(nodes, [vi("x", F, [1, 3, 4, 4])], [vi("y", F, None)], inits)
    text = g.to_text()
    assert ops(optimize(g, level=0)) == ops(g)
    assert ops(optimize(g, level=1)) == ["Conv", "BatchNormalization", "Relu"]
    g2, report = optimize_with_report(g)
    unchanged(g, text)
    assert ops(g2) == ["FusedConv"]
    assert set(g2.initializers) == set(g2.nodes[0].inputs[1:])  # old W and BN stats are gone
    assert isinstance(report, OptimizeReport) and (report.nodes_before, report.nodes_after) == (4, 1)
    assert "fold_conv_batchnorm" in str(report) and "FusedConv" in str(report)
    assert ops(optimize(g, passes=["remove_identity", remove_dead_nodes])) == ["Conv", "BatchNormalization", "Relu"]
    with pytest.raises(ValueError, match="unknown pass"):
        optimize(g, passes=["fold_everything"])
    with pytest.raises(ValueError, match="level"):
        optimize(g, level=7)
    # Conv+BN folding rescales float32 weights: ~1e-6 relative
    same_outputs(g, g2, {"x": r.standard_normal((1, 3, 4, 4), dtype=np.float32)}, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- real models

import test_real_models as real  # noqa: E402  (the seeded input generators of the real-model tests)

# name -> node count after optimize() must be at most this (before: gpt2 497, bert 257, ...)
REAL = {"gpt2_tiny": 240, "bert_tiny": 120, "resnet_mini": 26, "mobilenet_mini": 20, "lstm_gru": 30,
        "sklearn_mlp": 8}


@pytest.mark.parametrize("name", list(REAL))
def test_real_model_optimized_matches(name):
    make_inputs, rtol, atol, exact = real.CASES[name]
    g = minirt.load(ROOT / "models" / f"{name}.onnx")
    g2, report = optimize_with_report(g)
    assert report.nodes_before == sum(g.op_histogram().values())
    assert report.nodes_after < report.nodes_before and report.nodes_after <= REAL[name], str(report)
    # tolerances of test_real_models (float32 rounding); Conv+BN folding stays well inside them
    same_outputs(g, g2, make_inputs(name, 3), rtol=rtol, atol=atol)


def _light_feeds(g):
    (v,) = g.feed_inputs()
    return {v.name: rng(6).standard_normal(v.shape, dtype=np.float32)}


LIGHT_MODELS = sorted(p.stem for p in LIGHT.glob("light_*.onnx"))
FAST_LIGHT = {"light_shufflenet", "light_squeezenet"}
RUN_ALL = os.environ.get("MINIRT_SLOW_TESTS") == "1"


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_optimized(name):
    """ONNX's 'light' zoo models (every weight 0.02, built by ConstantOfShape). The softmax
    output is uniform, so every intermediate the two graphs share is compared too. The slow
    ones (> 2 s per run on 2 cores) run with MINIRT_SLOW_TESTS=1; all are optimized and planned."""
    g = minirt.load(LIGHT / f"{name}.onnx")
    g2, report = optimize_with_report(g)
    assert report.nodes_after <= 0.6 * report.nodes_before, str(report)
    assert "Dropout" not in report.after and "Identity" not in report.after
    sess = minirt.InferenceSession(g2)  # plans: every op of the optimized graph is supported
    if name not in FAST_LIGHT and not RUN_ALL:
        return
    feeds = _light_feeds(g)
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"{name}_output_0.pb")))
    (got,) = sess.run(None, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)  # uniform softmax: 1/1000 each
    try:
        minirt.session.check_supported(g)
    except minirt.UnsupportedOpError:  # Dropout (opset 9) is not a minirt op: drop it alone first
        g = remove_identity(g)
    # float32 convs over up to ~5000 products, BN folded into weights: ~1e-5 relative
    same_outputs(g, g2, feeds, rtol=1e-4, atol=1e-5, intermediates=True)


# --------------------------------------------------------------------------- dynamic-quantization chain

from minirt.passes import fuse_dynamic_matmul  # noqa: E402

FRAUD = ROOT / "minirt" / "data" / "fraud_mlp.onnx"


def _fraud_dynamic(tmp_path, tool):
    if tool == "minirt":
        return minirt.load(minirt.quantize(str(FRAUD), mode="dynamic").SerializeToString())
    oq = pytest.importorskip("onnxruntime.quantization")
    out = tmp_path / "fraud_dyn.onnx"
    oq.quantize_dynamic(str(FRAUD), str(out), weight_type=oq.QuantType.QInt8)
    return minirt.load(out)


@pytest.mark.parametrize("tool", ["minirt", "onnxruntime"])
def test_fuse_dynamic_matmul_fraud(tmp_path, tool):
    g = _fraud_dynamic(tmp_path, tool)
    text = g.to_text()
    g2 = fuse_dynamic_matmul(g)
    unchanged(g, text)
    hist, hist2 = g.op_histogram(), g2.op_histogram()
    n_mm = hist["MatMulInteger"]
    assert n_mm == 3 and "MatMulInteger" not in hist2 and "Cast" not in hist2
    # the hidden layers' Relus join their products
    assert hist2["DynamicQuantizeMatMul"] == 1 and hist2["FusedDynamicQuantizeMatMul"] == 2 == hist["Relu"]
    assert "DynamicQuantizeLinear" not in hist2 and "Relu" not in hist2
    # per layer: DynamicQuantizeLinear, scale Mul, MatMulInteger, Cast, Mul, Add(bias) -> one node
    assert sum(hist2.values()) == sum(hist.values()) - 5 * n_mm - 2
    assert all(len(n.inputs) == 5 for n in g2.nodes if "DynamicQuantizeMatMul" in n.op_type)  # bias absorbed
    assert "fuse_dynamic_matmul" in str(optimize_with_report(g)[1])
    x = rng(11).standard_normal((64, 10), dtype=np.float32) * 3
    # the fused op does the chain's float32 operations in the chain's order: bit-identical,
    # against the unoptimized graph (optimize=0), with the fast kernels and with the reference ops
    (want,) = minirt.InferenceSession(g, optimize=0).run(None, {"features": x})
    for sess in (minirt.InferenceSession(g2, optimize=0), minirt.InferenceSession(g),
                 minirt.InferenceSession(g2, optimize=0, kernels=False)):
        (got,) = sess.run(None, {"features": x})
        np.testing.assert_array_equal(got, want)
    (ref,) = minirt.InferenceSession(g, optimize=0, kernels=False).run(None, {"features": x})
    np.testing.assert_array_equal(want, ref)


def _same_as_unfused(g, g2, feeds):
    """g2 (and g at the default level) give bit-identical outputs to g run as written (optimize=0)."""
    want = minirt.InferenceSession(g, optimize=0).run(None, feeds)
    for sess in (minirt.InferenceSession(g2, optimize=0), minirt.InferenceSession(g)):
        for w, got in zip(want, sess.run(None, feeds)):
            assert got.dtype == w.dtype
            np.testing.assert_array_equal(got, w)


def _dyn_chain(bias_first=False, scale_first=False, extra_reader=None, with_bias=True):
    r = rng(12)
    inits = {"Wq": r.integers(-127, 128, (6, 5)).astype(np.int8), "wz": np.array(0, np.int8),
             "ws": r.uniform(0.01, 0.02, 5).astype(np.float32), "b": r.standard_normal(5).astype(np.float32)}
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("Mul", ["ws", "xs"] if scale_first else ["xs", "ws"], ["s"]),
             helper.make_node("MatMulInteger", ["xq", "Wq", "xz", "wz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["f"], to=F),
             helper.make_node("Mul", ["s", "f"] if scale_first else ["f", "s"], ["m"])]
    outs = [vi("y", F, None)]
    if with_bias:
        nodes.append(helper.make_node("Add", ["b", "m"] if bias_first else ["m", "b"], ["y"]))
    else:
        nodes[-1].output[0] = "y"
    if extra_reader:
        nodes.append(helper.make_node("Neg", [extra_reader], ["extra"]))
        outs.append(vi("extra", TensorProto.INT32 if extra_reader == "acc" else F, None))
    return graph(nodes, [vi("x", F, [3, 6])], outs, inits)


@pytest.mark.parametrize("bias_first,scale_first,with_bias",
                         [(False, False, True), (True, True, True), (False, True, False)])
def test_fuse_dynamic_matmul_orders(bias_first, scale_first, with_bias):
    g = _dyn_chain(bias_first, scale_first, with_bias=with_bias)
    g2 = fuse_dynamic_matmul(g)
    assert ops(g2) == ["DynamicQuantizeMatMul"]
    assert (len(g2.nodes[0].inputs) == 5) == with_bias
    _same_as_unfused(g, g2, {"x": rng(13).standard_normal((3, 6), dtype=np.float32)})


@pytest.mark.parametrize("reader", ["acc", "f", "s", "m"])
def test_fuse_dynamic_matmul_needs_single_readers(reader):
    g = _dyn_chain(extra_reader=reader)
    g2 = fuse_dynamic_matmul(g)
    if reader == "m":  # only the bias Add is left out: y = DynamicQuantizeMatMul, then Add
        assert ops(g2) == ["DynamicQuantizeMatMul", "Add", "Neg"]
    else:
        assert ops(g2) == ops(g)
    _same_as_unfused(g, g2, {"x": rng(14).standard_normal((3, 6), dtype=np.float32)})


def _dql_mmif(extra=None):
    """x -> DynamicQuantizeLinear -> MatMulIntegerToFloat(bias) [-> more readers of x's quantization]."""
    r = rng(15)
    inits = {"Wq": r.integers(-127, 128, (6, 5)).astype(np.int8), "wz": np.array(0, np.int8),
             "ws": r.uniform(0.01, 0.02, 5).astype(np.float32), "b": r.standard_normal(5).astype(np.float32),
             "W2": r.integers(-127, 128, (6, 4)).astype(np.int8), "ws2": np.array(0.015, np.float32)}
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulIntegerToFloat", ["xq", "Wq", "xs", "ws", "xz", "wz", "b"], ["y"],
                              domain="com.microsoft")]
    outs = [vi("y", F, None)]
    if extra == "second product":  # a shared quantization (a transformer's Q, K, V projections)
        nodes.append(helper.make_node("MatMulIntegerToFloat", ["xq", "W2", "xs", "ws2", "xz"], ["y2"],
                                      domain="com.microsoft"))
        outs.append(vi("y2", F, None))
    elif extra in ("xq", "xs", "xz"):  # one output read twice: by a Cast, or as a graph output
        nodes.append(helper.make_node("Cast", [extra], ["c"], to=F))
        outs.append(vi("c", F, None))
    elif extra == "output":
        outs.append(vi("xs", F, None))
    elif extra in ("relu", "relu read twice"):
        nodes.append(helper.make_node("Relu", ["y"], ["r"]))
        outs = [vi("r", F, None)] + ([vi("y", F, None)] if extra == "relu read twice" else [])
    g = graph(nodes, [vi("x", F, [3, 6])], outs, inits)
    g.opsets["com.microsoft"] = 1
    return g


def test_fuse_dynamic_matmul_absorbs_dynamic_quantize():
    g = _dql_mmif()
    g2 = fuse_dynamic_matmul(g)
    assert ops(g2) == ["DynamicQuantizeMatMul"] and g2.nodes[0].inputs == ["x", "Wq", "ws", "wz", "b"]
    x = rng(16).standard_normal((3, 6), dtype=np.float32)
    _same_as_unfused(g, g2, {"x": x})
    (ref,) = minirt.InferenceSession(g2, optimize=0, kernels=False).run(None, {"x": x})  # the reference op
    np.testing.assert_array_equal(ref, minirt.InferenceSession(g, optimize=0).run(None, {"x": x})[0])


@pytest.mark.parametrize("extra", ["second product", "xq", "xs", "xz", "output"])
def test_fuse_dynamic_matmul_keeps_a_shared_dynamic_quantize(extra):
    g = _dql_mmif(extra)
    g2 = fuse_dynamic_matmul(g)
    assert ops(g2) == ops(g)
    _same_as_unfused(g, g2, {"x": rng(17).standard_normal((3, 6), dtype=np.float32)})


def _dyn_conv_chain(extra=None, weight_input=False):
    """DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul(Mul(xs, ws)) -> Add(bias) -> Relu, as
    dynamic quantization writes a conv [with one more reader of an intermediate]."""
    r = rng(18)
    inits = {"Wq": r.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8), "wz": np.array(0, np.int8),
             "ws": r.uniform(0.01, 0.02, (4, 1, 1)).astype(np.float32),
             "b": r.standard_normal((4, 1, 1)).astype(np.float32)}
    inputs = [vi("x", F, [1, 2, 6, 6])]
    if weight_input:
        inputs.append(vi("Wq", TensorProto.INT8, [4, 2, 3, 3]))
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("ConvInteger", ["xq", "Wq", "xz", "wz"], ["acc"], kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Mul", ["xs", "ws"], ["s"]),
             helper.make_node("Cast", ["acc"], ["f"], to=F),
             helper.make_node("Mul", ["f", "s"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["y0"]),
             helper.make_node("Relu", ["y0"], ["y"])]
    outs = [vi("y", F, None)]
    if extra:
        nodes.append(helper.make_node("Cast", [extra], ["c"], to=F))
        outs.append(vi("c", F, None))
    feeds = {"x": rng(19).standard_normal((1, 2, 6, 6), dtype=np.float32)}
    if weight_input:
        feeds["Wq"] = inits.pop("Wq")
    return graph(nodes, inputs, outs, inits), feeds


def test_fuse_dynamic_conv_absorbs_dynamic_quantize_and_relu():
    g, feeds = _dyn_conv_chain()
    g2 = fuse_dynamic_matmul(g)
    assert ops(g2) == ["DynamicQuantizeConv"]
    assert g2.nodes[0].inputs == ["x", "Wq", "ws", "wz", "b"] and g2.nodes[0].attrs["activation"] == "Relu"
    _same_as_unfused(g, g2, feeds)
    (ref,) = minirt.InferenceSession(g2, optimize=0, kernels=False).run(None, feeds)  # the reference op
    np.testing.assert_array_equal(ref, minirt.InferenceSession(g, optimize=0).run(None, feeds)[0])


@pytest.mark.parametrize("extra,weight_input,want", [
    ("y0", False, ["DynamicQuantizeConv", "Relu", "Cast"]),  # the Relu's input is read twice: it stays
    ("xq", False, ["DynamicQuantizeLinear", "ConvInteger", "ScaleIntegerToFloat", "Relu", "Cast"]),
    ("xs", False, ["DynamicQuantizeLinear", "ConvInteger", "ScaleIntegerToFloat", "Relu", "Cast"]),
    ("acc", False, ["DynamicQuantizeLinear", "ConvInteger", "Mul", "Cast", "Mul", "Add", "Relu", "Cast"]),
    (None, True, ["DynamicQuantizeLinear", "ConvInteger", "ScaleIntegerToFloat", "Relu"]),  # W not constant
])
def test_fuse_dynamic_conv_keeps_shared_values(extra, weight_input, want):
    g, feeds = _dyn_conv_chain(extra, weight_input)
    g2 = fuse_dynamic_matmul(g)
    assert sorted(ops(g2)) == sorted(want)
    _same_as_unfused(g, g2, feeds)


@pytest.mark.parametrize("extra", ["relu", "relu read twice"])
def test_fuse_dynamic_matmul_absorbs_relu(extra):
    g = _dql_mmif(extra)
    g2 = fuse_dynamic_matmul(g)
    if extra == "relu":
        assert ops(g2) == ["FusedDynamicQuantizeMatMul"] and g2.nodes[0].attrs == {"activation": "Relu"}
        assert g2.nodes[0].domain == "minirt" and g2.nodes[0].outputs == ["r"]
    else:  # the product's output is also a graph output: the Relu stays
        assert ops(g2) == ["DynamicQuantizeMatMul", "Relu"]
    x = rng(20).standard_normal((3, 6), dtype=np.float32)
    _same_as_unfused(g, g2, {"x": x})
    ref = minirt.InferenceSession(g2, optimize=0, kernels=False).run(None, {"x": x})[0]  # the reference op
    np.testing.assert_array_equal(ref, minirt.InferenceSession(g, optimize=0).run(None, {"x": x})[0])
