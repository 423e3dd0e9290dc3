"""Plans specialized on concrete input shapes (minirt.passes.specialize + the session's plan cache).

The one property that matters: a specialized plan computes bitwise what the generic plan
computes, and never treats as constant something that depends on input *values*.
"""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt import registry
from minirt.ir import Node
from minirt.passes import specialize as spec
from minirt.passes.specialize import has_shape_nodes, output_shapes, specialize_shapes

ROOT = pathlib.Path(__file__).resolve().parent.parent
F = TensorProto.FLOAT
I64 = TensorProto.INT64


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def same(a, b):
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def token_feeds(names, batch, seq, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for n in names:
        if "mask" in n:
            feeds[n] = rng.integers(0, 2, (batch, seq)).astype(np.int64)
            feeds[n][:, 0] = 1
        elif "type" in n:
            feeds[n] = rng.integers(0, 2, (batch, seq)).astype(np.int64)
        else:
            feeds[n] = rng.integers(0, 100, (batch, seq)).astype(np.int64)
    return feeds


# --------------------------------------------------------------------------- real models
@pytest.mark.parametrize("name", ["gpt2_tiny", "bert_tiny"])
def test_real_models_bitwise_identical_and_smaller(name):
    path = ROOT / "models" / f"{name}.onnx"
    sess = minirt.InferenceSession(path)
    generic = minirt.InferenceSession(path, specialize=False)
    names = [a.name for a in sess.get_inputs()]
    shapes = [(1, 16), (1, 16), (2, 7), (1, 16), (2, 7), (2, 7), (1, 1), (3, 5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed check warns: it must not happen here
        for k, (b, s) in enumerate(shapes):
            feeds = token_feeds(names, b, s, seed=k)
            assert same(sess.run(None, feeds), generic.run(None, feeds)), (k, b, s)
    plans = sess.specialized_plans
    assert generic.specialized_plans == {}
    assert len(plans) == 2  # (1, 16) and (2, 7) came twice; (1, 1) and (3, 5) once
    for key, plan in plans.items():
        assert {n for n, _, _ in key} == set(names)
        assert plan is not sess._plan
        assert len(plan.steps) < len(sess._plan.steps) * 0.7
        assert not {n.op_type for n in plan.graph.nodes} & {"Shape", "Range", "ConstantOfShape", "Concat"}


def test_gpt2_specialized_folds_the_mask_and_shape_chains():
    g = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx").graph
    s = specialize_shapes(g, {"input_ids": (1, 16)})
    assert len(g.nodes) > 200 and len(s.nodes) < 100
    assert len(s.nodes) == sum(s.op_histogram().values())
    assert not any(n.op_type in ("Shape", "Unsqueeze", "Concat", "Range", "Where") for n in s.nodes)
    assert len(g.nodes) == len(minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx").graph.nodes)  # unchanged


def test_quantized_gpt2_specializes_as_far_as_its_fp32_original():
    """The quantized products (DynamicQuantizeMatMul, QuantizeMatMul after fuse_qdq) have shape
    rules: the shape chains after them fold as in the fp32 graph. (Without them chargpt's int8
    plans kept 7 shape nodes more than fp32's and ran 2-4% slower.)"""
    import onnx

    from minirt.tools.quantize import fuse_qdq, quantize

    proto = onnx.load(ROOT / "models" / "gpt2_tiny.onnx")
    shapes = {"input_ids": (1, 16)}
    cal = [token_feeds(["input_ids"], 1, 16, seed) for seed in range(4)]
    fp32 = specialize_shapes(minirt.InferenceSession(proto).graph, shapes)
    for q in (minirt.load(quantize(proto, mode="dynamic")), fuse_qdq(minirt.load(quantize(proto, cal)))):
        planned = minirt.InferenceSession(q).graph  # (its passes fuse the dynamic pairs)
        products = {n.op_type for n in planned.nodes} & {"DynamicQuantizeMatMul", "QuantizeMatMul"}
        assert products, "no quantized products to test"
        sq = specialize_shapes(planned, shapes)
        assert not any(n.op_type in ("Shape", "Unsqueeze", "Range") for n in sq.nodes)
        # (the products differ: a Gemm becomes a quantized product and an Add for its bias)
        shape_ops = ("Gather", "Concat", "Slice", "Squeeze", "Expand", "ConstantOfShape", "Equal", "Cast")
        assert [c for c in shape_ops for n in sq.nodes if n.op_type == c] == \
            [c for c in shape_ops for n in fp32.nodes if n.op_type == c]
        feeds = token_feeds(["input_ids"], 1, 16, 7)
        sess, plain = minirt.InferenceSession(q), minirt.InferenceSession(q, specialize=0)
        expected = plain.run(None, feeds)
        for _ in range(3):  # the third run is on the specialized plan
            assert same(sess.run(None, feeds), expected)
        assert len(sess.specialized_plans) == 1


def test_growing_shapes_never_build_a_plan():
    """A generation loop (KV cache growing every step) sees each shape once: no rebuilds."""
    sess = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx")
    for seq in range(1, 12):
        sess.run(None, {"input_ids": np.zeros((1, seq), np.int64)})
    assert sess.specialized_plans == {}


def test_lru_size_and_off_switch():
    path = ROOT / "models" / "gpt2_tiny.onnx"
    sess = minirt.InferenceSession(path, specialize=2)
    for seq in (3, 4, 5):
        for _ in range(2):
            sess.run(None, {"input_ids": np.zeros((1, seq), np.int64)})
    assert [k[0][1] for k in sess.specialized_plans] == [(1, 4), (1, 5)]
    sess.run(None, {"input_ids": np.zeros((1, 4), np.int64)})  # a hit moves it to the end
    assert [k[0][1] for k in sess.specialized_plans] == [(1, 5), (1, 4)]
    for off in (0, False):
        sess = minirt.InferenceSession(path, specialize=off)
        for _ in range(3):
            sess.run(None, {"input_ids": np.zeros((1, 4), np.int64)})
        assert sess._specialized is None and sess.specialized_plans == {}
    with pytest.raises(ValueError):
        minirt.InferenceSession(path, specialize=-1)


def test_static_model_skips_everything():
    sess = minirt.InferenceSession(ROOT / "minirt" / "data" / "digits_cnn.onnx")
    assert sess._specialized is None  # no per-run work at all
    x = np.zeros([d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape], np.float32)
    for _ in range(3):
        sess.run(None, {sess.get_inputs()[0].name: x})
    assert sess.specialized_plans == {}


def test_graph_without_shape_nodes_is_not_specialized():
    W = np.ones((3, 2), np.float32)
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", F, ["N", 3])], [vi("y", F, ["N", 2])],
              {"W": W})
    sess = minirt.InferenceSession(m)
    assert not has_shape_nodes(sess.graph) and sess._specialized is None


# --------------------------------------------------------------------------- data-dependent shapes
def nonzero_model():
    """out = zeros of Shape(NonZero(x)) (value-dependent), flat = Reshape(NonZero(x), [-1, 1]),
    and y = Reshape(x, Concat(Shape(x), [1])) (shape-dependent only: it folds)."""
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Shape", ["nz"], ["nz_shape"]),
        helper.make_node("ConstantOfShape", ["nz_shape"], ["out"],
                         value=numpy_helper.from_array(np.array([7], np.int64))),
        helper.make_node("Gather", ["nz_shape", "one"], ["k"], axis=0),
        helper.make_node("Unsqueeze", ["k", "zero"], ["k1"]),
        helper.make_node("Concat", ["k1", "one1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["nz", "flat_shape"], ["flat"]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Concat", ["xs", "one1"], ["xs1"], axis=0),
        helper.make_node("Reshape", ["x", "xs1"], ["y"]),
    ]
    inits = {"one": np.array(1, np.int64), "zero": np.array([0], np.int64), "one1": np.array([1], np.int64)}
    return model(nodes, [vi("x", F, ["N"])], [vi("out", I64, None), vi("flat", I64, None), vi("y", F, None)],
                 inits)


def test_nonzero_shapes_stay_dynamic():
    sess = minirt.InferenceSession(nonzero_model())
    generic = minirt.InferenceSession(nonzero_model(), specialize=False)
    xs = [np.array([0, 1, 0, 2, 3], np.float32), np.array([1, 0, 0, 0, 0], np.float32),
          np.array([1, 1, 1, 1, 1], np.float32)]
    for x in xs * 2:
        out, flat, y = sess.run(None, {"x": x})
        k = int(np.count_nonzero(x))
        assert out.shape == (1, k) and (out == 7).all()
        np.testing.assert_array_equal(flat.ravel(), np.nonzero(x)[0])
        assert flat.shape == (k, 1) and y.shape == (5, 1)
        assert same([out, flat, y], generic.run(None, {"x": x}))
    [(key, plan)] = sess.specialized_plans.items()
    ops = [n.op_type for n in plan.graph.nodes]
    assert "NonZero" in ops and ops.count("Shape") == 1  # Shape(x) folded, Shape(NonZero) kept
    assert len(plan.steps) < len(sess._plan.steps)


def loop_model():
    """Loop M times (M is data) with a scan output: its length is a value, not a shape.
    out = ConstantOfShape(Shape(scan)); y = Reshape(x, Shape(x)) folds."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["fi"], to=F)],
        "body",
        [vi("i", I64, []), vi("cond_in", TensorProto.BOOL, [])],
        [vi("cond_out", TensorProto.BOOL, []), vi("fi", F, [])],
    )
    nodes = [
        helper.make_node("Loop", ["M", ""], ["scan"], body=body),
        helper.make_node("Shape", ["scan"], ["ss"]),
        helper.make_node("ConstantOfShape", ["ss"], ["out"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Add", ["out", "scan"], ["z"]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Reshape", ["x", "xs"], ["y"]),
    ]
    return model(nodes, [vi("M", I64, []), vi("x", F, ["N", 2])], [vi("z", F, None), vi("y", F, ["N", 2])])


def test_loop_outputs_stay_dynamic():
    sess = minirt.InferenceSession(loop_model())
    generic = minirt.InferenceSession(loop_model(), specialize=False)
    x = np.ones((3, 2), np.float32)
    for m in [2, 5, 0, 3, 5, 1]:
        feeds = {"M": np.array(m, np.int64), "x": x}
        z, y = sess.run(None, feeds)
        np.testing.assert_array_equal(z, np.arange(m, dtype=np.float32) + 2)
        assert y.shape == (3, 2)
        assert same([z, y], generic.run(None, feeds))
    [plan] = sess.specialized_plans.values()
    ops = [n.op_type for n in plan.graph.nodes]
    assert ops.count("Shape") == 1 and "Loop" in ops and "Reshape" in ops


def test_value_dependent_reshape_target_stays_dynamic():
    """Reshape whose target is an input value: its output shape is not known, even with the
    input shapes fixed, so Shape(reshaped) is not folded."""
    nodes = [helper.make_node("Reshape", ["x", "target"], ["r"]),
             helper.make_node("Shape", ["r"], ["rs"]),
             helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Concat", ["rs", "xs"], ["both"], axis=0)]
    m = model(nodes, [vi("x", F, ["N"]), vi("target", I64, [2])], [vi("both", I64, None)])
    sess = minirt.InferenceSession(m)
    x = np.zeros(6, np.float32)
    for t in [(2, 3), (3, 2), (6, 1), (2, 3)]:
        [both] = sess.run(None, {"x": x, "target": np.array(t, np.int64)})
        np.testing.assert_array_equal(both, [*t, 6])
    [plan] = sess.specialized_plans.values()
    assert [n.op_type for n in plan.graph.nodes].count("Shape") == 1


# --------------------------------------------------------------------------- observed paths
def test_hooks_intermediates_and_cache_still_work():
    path = ROOT / "models" / "gpt2_tiny.onnx"
    sess = minirt.InferenceSession(path, cache_size=4)
    feeds = {"input_ids": np.arange(8, dtype=np.int64).reshape(1, 8)}
    first = sess.run(None, feeds)
    sess.run(None, {"input_ids": feeds["input_ids"] + 1})
    assert len(sess.specialized_plans) == 1
    seen = []
    hook = sess.add_hook(after=lambda node, i, o, t: seen.append(node))
    assert same(sess.run(None, {"input_ids": feeds["input_ids"] + 2}),
                minirt.InferenceSession(path, specialize=False).run(None, {"input_ids": feeds["input_ids"] + 2}))
    sess.remove_hook(hook)
    assert seen == sess.graph.nodes  # observed runs run the generic plan: every node of sess.graph
    env = sess.run_with_intermediates(feeds)
    produced = {o for n in sess.graph.nodes for o in n.outputs if o}
    assert produced <= set(env)  # every intermediate, the folded shape chains included
    assert same(sess.run(None, feeds), first)
    assert sess.cache_info().hits == 1


def test_profile_sees_the_graph_nodes():
    from minirt.tools.profile import profile

    sess = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx")
    feeds = {"input_ids": np.zeros((1, 8), np.int64)}
    for _ in range(3):
        sess.run(None, feeds)
    prof = profile(sess, feeds, runs=2)
    assert len(prof.nodes) == len(sess.graph.nodes)


def test_a_wrong_fold_is_caught_and_the_generic_plan_used(monkeypatch):
    """Belt and braces: the run that builds a specialized plan checks every folded value against
    the generic plan's; a disagreement (a bug in a shape rule) warns and keeps the generic plan."""
    real = spec._fold_shape_of

    def wrong(node, shape_of):
        out = real(node, shape_of)
        return None if out is None else (out[0] + 1,)

    monkeypatch.setattr(spec, "_fold_shape_of", wrong)
    sess = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx")
    feeds = {"input_ids": np.zeros((1, 4), np.int64)}
    expected = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx", specialize=False).run(None, feeds)
    sess.run(None, feeds)
    with pytest.warns(RuntimeWarning, match="generic plan"):
        assert same(sess.run(None, feeds), expected)
    assert list(sess.specialized_plans.values()) == [sess._plan]
    assert same(sess.run(None, feeds), expected)


# --------------------------------------------------------------------------- the shape rules
def R(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def C(values):
    return np.asarray(values, np.int64)


# (op, inputs (None: absent), which input indices are constants, attrs, opset)
RULE_CASES = [
    ("Add", [R((2, 1, 3)), R((4, 1))], (), {}, 17),
    ("Where", [R((2, 1)) > 0, R((1, 3)), R(())], (), {}, 17),
    ("MatMul", [R((3,)), R((2, 3, 4))], (), {}, 17),
    ("MatMul", [R((2, 5, 3)), R((3,))], (), {}, 17),
    ("MatMul", [R((1, 5, 3)), R((4, 3, 2))], (), {}, 17),
    ("Gemm", [R((3, 5)), R((4, 3))], (), {"transA": 1, "transB": 1}, 17),
    ("Transpose", [R((2, 3, 4))], (), {}, 17),
    ("Transpose", [R((2, 3, 4))], (), {"perm": [1, 2, 0]}, 17),
    ("Reshape", [R((2, 3, 4)), C([0, -1])], (1,), {}, 17),
    ("Reshape", [R((2, 3, 4)), C([4, 0, -1])], (1,), {}, 17),
    ("Reshape", [R((0, 3)), C([3, 0])], (1,), {"allowzero": 1}, 17),
    ("Flatten", [R((2, 3, 4))], (), {"axis": -1}, 17),
    ("Flatten", [R((2, 3, 4))], (), {"axis": 0}, 17),
    ("Unsqueeze", [R((2, 3)), C([-1, 0])], (1,), {}, 17),
    ("Unsqueeze", [R((2, 3))], (), {"axes": [1]}, 11),
    ("Squeeze", [R((1, 3, 1))], (), {}, 17),
    ("Squeeze", [R((1, 3, 1)), C([-1])], (1,), {}, 17),
    ("Concat", [R((2, 3)), R((2, 0)), R((2, 1))], (), {"axis": -1}, 17),
    ("Gather", [R((4, 5, 6)), C(2)], (1,), {"axis": 1}, 17),
    ("Gather", [R((4, 5, 6)), C([[0, 1], [2, 3]])], (), {"axis": -1}, 17),
    ("Slice", [R((10, 6)), C([-3]), C([10**10]), C([0]), C([1])], (1, 2, 3, 4), {}, 17),
    ("Slice", [R((10, 6)), C([-1, 5]), C([-10**10, 0]), C([0, 1]), C([-2, -1])], (1, 2, 3, 4), {}, 17),
    ("Slice", [R((10, 6)), C([20]), C([-20]), C([-1]), C([-3])], (1, 2, 3, 4), {}, 17),
    ("Slice", [R((10, 6)), C([1, 2]), C([4, 100])], (1, 2), {}, 17),
    ("Slice", [R((10, 6))], (), {"starts": [2], "ends": [-1], "axes": [1]}, 9),
    ("Split", [R((6, 4)), C([1, 5])], (1,), {"axis": 0}, 17),
    ("Split", [R((6, 4))], (), {"axis": 1}, 17),
    ("Split", [R((7, 4))], (), {"axis": 0, "num_outputs": 3}, 18),
    ("Expand", [R((3, 1)), C([2, 1, 4])], (1,), {}, 17),
    ("Tile", [R((3, 1)), C([2, 4])], (1,), {}, 17),
    ("ReduceMean", [R((2, 3, 4))], (), {"axes": [-1], "keepdims": 1}, 17),
    ("ReduceSum", [R((2, 3, 4)), C([0, 2])], (1,), {"keepdims": 0}, 17),
    ("ReduceMax", [R((2, 3, 4))], (), {"keepdims": 0}, 17),
    ("Softmax", [R((2, 3))], (), {"axis": -1}, 17),
    ("Cast", [R((2, 3))], (), {"to": int(TensorProto.INT64)}, 17),
    ("LayerNormalization", [R((2, 3, 4)), R((4,)), R((4,))], (), {"axis": -1}, 17),
]


@pytest.mark.parametrize("op, inputs, consts, attrs, opset", RULE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(RULE_CASES)])
def test_shape_rules_match_the_reference_ops(op, inputs, consts, attrs, opset):
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    outputs = ["out0", "out1"] if op == "Split" and "num_outputs" not in attrs and len(inputs) == 1 else None
    opdef = registry.lookup("", op, opset)
    ref_attrs = dict(attrs)
    n_out = 1
    if op == "Split":
        n_out = attrs.get("num_outputs", 2 if len(inputs) == 1 else len(inputs[1]))
        if "num_outputs" in opdef.attributes:
            ref_attrs.setdefault("num_outputs", n_out)
    outputs = [f"out{k}" for k in range(n_out)]
    node = Node(op, names, outputs, dict(attrs))
    const = {names[i]: inputs[i] for i in consts}
    shapes = {n: x.shape for n, x in zip(names, inputs) if x is not None}
    got = output_shapes(node, shapes.get, const, opset)
    result = opdef.fn(*inputs, **ref_attrs)
    results = result if isinstance(result, tuple) else (result,)
    assert got, "the rule did not apply"
    for g, r in zip(got, results[:len(outputs)]):
        assert g == np.asarray(r).shape


def U8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def I8(shape, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8)


S = np.float32(0.05)  # a scale
# the quantized ops' rules: (domain, op, inputs (None: absent), attrs, opset)
QUANT_RULE_CASES = [
    ("", "MatMulInteger", [U8((2, 5, 3)), I8((3, 4)), np.uint8(3), None], {}, 10),
    ("", "QLinearMatMul", [U8((5, 3)), S, np.uint8(3), I8((2, 3, 4)), S, np.int8(0), S, np.uint8(1)], {}, 10),
    ("", "QuantizeLinear", [R((2, 3)), S, np.uint8(128)], {}, 13),
    ("", "DequantizeLinear", [U8((2, 3)), S, np.uint8(128)], {}, 13),
    ("", "DynamicQuantizeLinear", [R((2, 3))], {}, 11),
    ("com.microsoft", "DynamicQuantizeMatMul", [R((1, 5, 3)), I8((3, 4)), np.full(4, S), None, R((4,))], {}, 1),
    ("com.microsoft", "MatMulIntegerToFloat", [U8((2, 5, 3)), I8((3, 4)), S, np.full(4, S), np.uint8(2),
                                               None, R((4,))], {}, 1),
    ("com.microsoft", "QGemm", [U8((5, 3)), S, np.uint8(3), I8((4, 3)), S, np.int8(0), np.zeros(4, np.int32),
                                S, np.uint8(2)], {"transB": 1}, 1),
    ("com.microsoft", "QGemm", [U8((3, 5)), S, np.uint8(3), I8((3, 4)), S, np.int8(0)], {"transA": 1}, 1),
    ("minirt", "QuantizeMatMul", [R((1, 5, 3)), S, np.uint8(128), I8((3, 4)), S, None, R((4,))], {}, 1),
    ("minirt", "QuantizeMatMul", [R((5, 3)), S, np.uint8(128), I8((3, 4)), S], {}, 1),
    ("minirt", "FusedDynamicQuantizeMatMul", [R((2, 5, 3)), I8((3, 4)), S], {}, 1),
]


@pytest.mark.parametrize("domain, op, inputs, attrs, opset", QUANT_RULE_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(QUANT_RULE_CASES)])
def test_quantized_shape_rules_match_the_reference_ops(domain, op, inputs, attrs, opset):
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    opdef = registry.lookup(domain, op, opset, False)
    result = opdef.fn(*inputs, **attrs)
    results = result if isinstance(result, tuple) else (result,)
    node = Node(op, names, [f"out{k}" for k in range(len(results))], attrs, domain=domain)
    shapes = {n: np.shape(x) for n, x in zip(names, inputs) if x is not None}
    got = output_shapes(node, shapes.get, {}, opset)
    assert got, "the rule did not apply"
    assert [tuple(g) for g in got] == [np.shape(r) for r in results]


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_recurrent_shape_rule_matches_the_reference_ops(op, direction, layout):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs, H, seq, batch, n_in = (2 if direction == "bidirectional" else 1), 5, 4, 3, 2
    X = R((batch, seq, n_in) if layout else (seq, batch, n_in))
    W, Rw = R((dirs, gates * H, n_in)), R((dirs, gates * H, H))
    attrs = {"direction": direction, "layout": layout, "hidden_size": H}
    outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    node = Node(op, ["X", "W", "R"], outputs, dict(attrs))
    got = output_shapes(node, {"X": X.shape, "W": W.shape, "R": Rw.shape}.get, {}, 17)
    for kernels in (False, True):
        results = registry.lookup("", op, 17, kernels).fn(X, W, Rw, **attrs)
        assert [tuple(g) for g in got[:len(outputs)]] == [r.shape for r in results[:len(outputs)]]
    wrong = Node(op, ["X", "W", "R"], outputs, {**attrs, "direction": "forward" if dirs == 2 else "bidirectional"})
    assert output_shapes(wrong, {"X": X.shape, "R": Rw.shape}.get, {}, 17) == []  # R says otherwise


def test_lstm_gru_model_specializes_its_state_shape_chain():
    """lstm_gru builds its GRU's initial state from Shape(LSTM output): with the LSTM rule, the
    chain folds, and the specialized plan computes bitwise what the generic one does."""
    path = ROOT / "models" / "lstm_gru.onnx"
    sess, generic = minirt.InferenceSession(path), minirt.InferenceSession(path, specialize=False)
    x = np.random.default_rng(0).random((1, 16, 6), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            assert same(sess.run(None, {"input": x}), generic.run(None, {"input": x}))
    [plan] = sess.specialized_plans.values()
    assert not {n.op_type for n in plan.graph.nodes} & {"Shape", "ConstantOfShape", "Concat"}
    assert len(plan.steps) < len(generic._plan.steps)


def test_rules_refuse_what_is_not_provable():
    shapes = {"x": (2, 3), "t": (2,)}.get
    # a Reshape target, Unsqueeze axes or Slice bound that is data: unknown
    assert output_shapes(Node("Reshape", ["x", "t"], ["y"]), shapes, {}, 17) == []
    assert output_shapes(Node("Unsqueeze", ["x", "t"], ["y"]), shapes, {}, 17) == []
    assert output_shapes(Node("Slice", ["x", "t", "t"], ["y"]), shapes, {}, 17) == [None]
    for op in ("NonZero", "Compress", "Unique", "TopK", "Range", "ConstantOfShape", "Loop", "If", "Resize"):
        assert not [s for s in output_shapes(Node(op, ["x", "t"], ["y"]), shapes, {}, 17) if s is not None], op
    assert output_shapes(Node("Foo", ["x"], ["y"], domain="com.example"), shapes, {}, 17) == []


def test_a_thrashing_cycle_stops_building():
    """More signatures in a cycle than the LRU holds (a long generation, request after request):
    plans would be evicted before paying back, so building stops after a few wasted builds."""
    sess = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx", specialize=2)
    built = []
    real = sess._specialize

    def counting(key, feeds):
        built.append(key)
        return real(key, feeds)

    sess._specialize = counting
    generic = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx", specialize=False)
    for request in range(8):
        for seq in range(1, 7):
            feeds = {"input_ids": np.full((1, seq), request, np.int64)}
            if request in (0, 7):
                assert same(sess.run(None, feeds), generic.run(None, feeds))
            else:
                sess.run(None, feeds)
    assert 0 < len(built) <= 2 * 3 + 2  # a few wasted builds, then none
    assert not sess._specialized.building
    assert len(sess.specialized_plans) == 2  # the plans held are still used


def test_a_steady_workload_keeps_building():
    sess = minirt.InferenceSession(ROOT / "models" / "gpt2_tiny.onnx", specialize=2)
    for seq in (2, 3, 4, 5):  # each shape for a while: every plan pays back before eviction
        for _ in range(20):
            sess.run(None, {"input_ids": np.zeros((1, seq), np.int64)})
    assert sess._specialized.building and sess._specialized.wasted == 0
    assert [k[0][1] for k in sess.specialized_plans] == [(1, 4), (1, 5)]
