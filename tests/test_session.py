"""The spine: frontend, IR, registry dispatch, plan and session, input validation."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt import registry
from minirt.errors import InputError, ModelLoadError, NodeError, UnsupportedOpError
from minirt.ir import Graph


def make_model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(g, opset_imports=ops)


def vi(name, dtype=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, dtype, shape)


@pytest.fixture
def affine():
    """y = relu(x @ W + b), x: float32[N, 3]."""
    W = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) - 2, "W")
    b = numpy_helper.from_array(np.array([0.5, -1], dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["z"], name="add"),
        helper.make_node("Relu", ["z"], ["y"], name="relu"),
    ]
    return make_model(nodes, [vi("x", shape=["N", 3])], [vi("y", shape=["N", 2])], [W, b])


def reference_affine(x):
    W = np.arange(6, dtype=np.float32).reshape(3, 2) - 2
    return np.maximum(x @ W + np.array([0.5, -1], np.float32), 0)


def test_run_accepts_proto_bytes_and_path(affine, tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    path = tmp_path / "m.onnx"
    onnx.save(affine, path)
    for model in (affine, affine.SerializeToString(), str(path), path):
        out = minirt.run(model, {"x": x})
        assert list(out) == ["y"]
        np.testing.assert_allclose(out["y"], reference_affine(x), rtol=1e-6)
        assert out["y"].dtype == np.float32


def test_session_matches_onnxruntime_api(affine):
    sess = minirt.InferenceSession(affine)
    [inp] = sess.get_inputs()
    assert (inp.name, inp.shape, inp.type) == ("x", ["N", 3], "tensor(float)")
    [out] = sess.get_outputs()
    assert (out.name, out.shape, out.type) == ("y", ["N", 2], "tensor(float)")
    x = np.ones((2, 3), np.float32)
    assert len(sess.run(None, {"x": x})) == 1
    [y] = sess.run(["y"], {"x": x})
    np.testing.assert_allclose(y, reference_affine(x), rtol=1e-6)
    with pytest.raises(InputError, match="unknown output 'z'"):
        sess.run(["z"], {"x": x})


def test_intermediate_values(affine):
    x = np.ones((2, 3), np.float32)
    out = minirt.run(affine, {"x": x}, intermediate=True)
    assert list(out) == ["x", "h", "z", "y"]  # feeds, then in computation order, no weights
    np.testing.assert_allclose(out["z"], x @ (np.arange(6, dtype=np.float32).reshape(3, 2) - 2) + [0.5, -1])


def test_caller_arrays_untouched_and_outputs_owned(affine):
    x = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
    before = x.copy()
    sess = minirt.InferenceSession(affine)
    [y] = sess.run(None, {"x": x})
    np.testing.assert_array_equal(x, before)
    y[:] = 123  # the caller owns its outputs: a second run is unaffected
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], reference_affine(x), rtol=1e-6)


def test_identity_of_weight_returns_a_copy():
    W = numpy_helper.from_array(np.ones(3, np.float32), "W")
    m = make_model([helper.make_node("Identity", ["W"], ["y"])], [], [vi("y", shape=[3])], [W])
    sess = minirt.InferenceSession(m)
    [y] = sess.run(None, {})
    y[0] = 7  # must not reach minirt's weights
    np.testing.assert_array_equal(sess.run(None, {})[0], np.ones(3, np.float32))


@pytest.mark.parametrize("op", ["Identity", "Flatten", "Transpose"])
def test_outputs_aliasing_a_feed_are_copies(op):
    """The feed itself (Identity), or a view of it: the caller gets an array of its own; an
    output made in the run that owns its memory is returned as it is (the fast path)."""
    nodes = [helper.make_node(op, ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])]
    m = make_model(nodes, [vi("x", shape=[2, 3])], [vi("y"), vi("z")])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    sess = minirt.InferenceSession(m, optimize=0)
    y, z = sess.run(None, {"x": x})
    assert not np.may_share_memory(y, x) and not np.may_share_memory(z, x)
    y[...] = -1
    np.testing.assert_array_equal(x, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_a_symbolic_dim_must_agree_within_one_input():
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=["n", "n"])], [vi("y")])
    assert minirt.run(m, {"x": np.ones((2, 2), np.float32)})["y"].shape == (2, 2)
    with pytest.raises(InputError, match="dim 1 is 3, but the symbolic dim 'n' is 2 in input 'x' dim 0"):
        minirt.run(m, {"x": np.ones((2, 3), np.float32)})


def test_input_errors_teach(affine):
    sess = minirt.InferenceSession(affine)
    with pytest.raises(InputError, match=r"float64 given, float32 expected: pass x.astype\(np.float32\)"):
        sess.run(None, {"x": np.ones((2, 3))})
    with pytest.raises(InputError, match=r"missing input\(s\) \['x'\]"):
        sess.run(None, {})
    with pytest.raises(InputError, match=r"unknown input\(s\) \['X'\].*did you mean 'x'"):
        sess.run(None, {"X": np.ones((2, 3), np.float32)})
    with pytest.raises(InputError, match="dim 1 must be 3, got 4"):
        sess.run(None, {"x": np.ones((2, 4), np.float32)})
    with pytest.raises(InputError, match=r"rank 1 given.*np.expand_dims\(x, 0\)"):
        sess.run(None, {"x": np.ones(3, np.float32)})
    with pytest.raises(InputError, match="dict of name -> array"):
        sess.run(None, [np.ones((2, 3), np.float32)])


def test_input_checks_after_an_accepted_run(affine):
    """Feeds of the names, dtypes and shapes of the last accepted run skip the checks; anything
    else is checked in full, and the caller's dict is never the one the run uses."""
    sess = minirt.InferenceSession(affine)
    with pytest.raises(InputError, match=r"missing input\(s\) \['x'\]"):  # before any accepted run
        sess.run(None, {})
    x = np.ones((2, 3), np.float32)
    feeds = {"x": x}
    for _ in range(2):
        np.testing.assert_allclose(sess.run(None, feeds)[0], reference_affine(x))
    assert sess._validate(feeds) is not feeds and sess._validate(feeds)["x"] is x
    with pytest.raises(InputError, match="float64 given"):
        sess.run(None, {"x": np.ones((2, 3))})
    with pytest.raises(InputError, match="dim 1 must be 3, got 4"):
        sess.run(None, {"x": np.ones((2, 4), np.float32)})
    with pytest.raises(InputError, match=r"unknown input\(s\) \['X'\]"):
        sess.run(None, {"X": x})
    with pytest.raises(InputError, match=r"missing input\(s\) \['x'\]"):
        sess.run(None, {})
    np.testing.assert_allclose(sess.run(None, {"x": [[1, 2, 3]]})[0], reference_affine(np.array([[1, 2, 3]], np.float32)))
    m = make_model(  # two inputs sharing a symbolic dim: a mismatch is caught after an accepted run
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [vi("a", shape=["batch", 2]), vi("b", shape=["batch", 2])],
        [vi("y", shape=["batch", 2])],
    )
    sess = minirt.InferenceSession(m)
    sess.run(None, {"a": np.ones((3, 2), np.float32), "b": np.ones((3, 2), np.float32)})
    with pytest.raises(InputError, match="symbolic dim 'batch' is 3"):
        sess.run(None, {"a": np.ones((3, 2), np.float32), "b": np.ones((4, 2), np.float32)})
    sess.run(None, {"a": np.ones((3, 2), np.float32), "b": [[1, 2]] * 3})  # b converted: not remembered
    with pytest.raises(InputError, match=r"missing input\(s\) \['b'\]"):
        sess.run(None, {"a": np.ones((3, 2), np.float32)})


def test_fixed_batch_dim_explains_export():
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=[1, 4])], [vi("y", shape=[1, 4])])
    with pytest.raises(InputError, match="dim 0 is fixed to 1 in this model, likely at export"):
        minirt.run(m, {"x": np.ones((8, 4), np.float32)})


def test_symbolic_dims_must_agree():
    m = make_model(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [vi("a", shape=["batch", 2]), vi("b", shape=["batch", 2])],
        [vi("y", shape=["batch", 2])],
    )
    with pytest.raises(InputError, match="symbolic dim 'batch' is 3"):
        minirt.run(m, {"a": np.ones((3, 2), np.float32), "b": np.ones((4, 2), np.float32)})


def test_lists_are_converted_to_the_model_dtype(affine):
    out = minirt.run(affine, {"x": [[1, 2, 3]]})
    np.testing.assert_allclose(out["y"], reference_affine(np.array([[1, 2, 3]], np.float32)))


def test_unsupported_ops_listed_together():
    nodes = [
        helper.make_node("FancyOp", ["x"], ["a"], name="f1", domain="my.domain"),
        helper.make_node("FancyOp", ["a"], ["b"], name="f2", domain="my.domain"),
        helper.make_node("OtherOp", ["b"], ["y"], name="o1", domain="my.domain"),
    ]
    m = make_model(nodes, [vi("x", shape=[2])], [vi("y", shape=[2])], extra_opsets=[("my.domain", 1)])
    with pytest.raises(UnsupportedOpError) as e:
        minirt.InferenceSession(m)
    msg = str(e.value)
    assert "my.domain.FancyOp (opset 1): not implemented — nodes f1, f2" in msg
    assert "my.domain.OtherOp" in msg and "support table" in msg


def test_unknown_attribute_reported_at_load():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r", bogus=3)], [vi("x", shape=[2])], [vi("y")])
    with pytest.raises(UnsupportedOpError, match=r"attribute\(s\) \['bogus'\] not accepted"):
        minirt.InferenceSession(m)


def test_dispatch_picks_newest_version_not_above_opset():
    # Softmax changed meaning at opset 13 (axis=-1 alone) from opset 1/11 (flatten at axis=1)
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    for opset, expected_sum_axes in ((11, (1, 2)), (13, (2,))):
        m = make_model([helper.make_node("Softmax", ["x"], ["y"])], [vi("x", shape=[2, 3, 4])], [vi("y")], opset=opset)
        y = minirt.run(m, {"x": x})["y"]
        np.testing.assert_allclose(y.sum(axis=expected_sum_axes), 1, rtol=1e-6)
    assert registry.lookup("", "Softmax", 12).since < 13 <= registry.lookup("", "Softmax", 13).since


def test_node_error_names_node_and_inputs():
    m = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="the_matmul")],
        [vi("a", shape=None), vi("b", shape=None)],
        [vi("y")],
    )
    with pytest.raises(NodeError) as e:
        minirt.run(m, {"a": np.ones((2, 3), np.float32), "b": np.ones((4, 5), np.float32)})
    msg = str(e.value)
    assert "'the_matmul' (MatMul" in msg and "a: float32[2, 3]" in msg and "b: float32[4, 5]" in msg


def test_if_subgraph_reads_outer_scope():
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [], [vi("t")])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e")])
    m = make_model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
        [vi("c", TensorProto.BOOL, []), vi("x", shape=[3])],
        [vi("y")],
    )
    x = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(minirt.run(m, {"c": np.array(True), "x": x})["y"], 2 * x)
    np.testing.assert_array_equal(minirt.run(m, {"c": np.array(False), "x": x})["y"], -x)


def test_hooks_see_every_node(affine):
    sess = minirt.InferenceSession(affine, optimize=0)  # the nodes as written, unfused
    seen = []
    hook = sess.add_hook(after=lambda node, ins, outs, sec: seen.append((node.name, outs[0].shape, sec >= 0)))
    sess.run(None, {"x": np.ones((5, 3), np.float32)})
    assert seen == [("mm", (5, 2), True), ("add", (5, 2), True), ("relu", (5, 2), True)]
    sess.remove_hook(hook)
    sess.run(None, {"x": np.ones((5, 3), np.float32)})
    assert len(seen) == 3


def test_verbose_prints_each_node(affine, capsys):
    sess = minirt.InferenceSession(affine, verbose=2, optimize=0)
    sess.run(None, {"x": np.ones((1, 3), np.float32)})
    err = capsys.readouterr().err
    assert err.count("[minirt]") == 3 and "MatMul" in err and "float32[1, 2]" in err


def test_ir_printer_and_summary(affine):
    g = minirt.load(affine)
    assert isinstance(g, Graph)
    text = str(g)
    assert "input  x: float32[N, 3]" in text
    assert "%h = MatMul(x, W)" in text and "-> float32[N, 2]" in text  # shape inference ran
    assert g.op_histogram() == {"Add": 1, "MatMul": 1, "Relu": 1}
    assert g.parameter_count() == (8, 32)


def test_toposort_reorders_nodes():
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="second"), helper.make_node("Neg", ["x"], ["h"], name="first")]
    g = minirt.load(make_model(nodes, [vi("x", shape=[2])], [vi("y", shape=[2])]))
    assert [n.name for n in g.nodes] == ["first", "second"]
    np.testing.assert_array_equal(minirt.run(g, {"x": np.array([1, -1], np.float32)})["y"], [0, 1])


def test_every_attribute_type_is_read():
    from minirt.frontend.onnx import _attribute

    t = numpy_helper.from_array(np.arange(3, dtype=np.int64), "t")
    cases = [
        (helper.make_attribute("f", 1.5), 1.5),
        (helper.make_attribute("i", 7), 7),
        (helper.make_attribute("s", "hello"), "hello"),
        (helper.make_attribute("fs", [1.0, 2.0]), [1.0, 2.0]),
        (helper.make_attribute("is", [1, 2]), [1, 2]),
        (helper.make_attribute("ss", ["a", "b"]), ["a", "b"]),
    ]
    for attr, expected in cases:
        assert _attribute(attr, {}, None) == expected
    np.testing.assert_array_equal(_attribute(helper.make_attribute("t", t), {}, None), [0, 1, 2])
    ts = _attribute(helper.make_attribute("ts", [t, t]), {}, None)
    assert len(ts) == 2
    g = helper.make_graph([helper.make_node("Neg", ["a"], ["b"])], "body", [vi("a")], [vi("b")])
    body = _attribute(helper.make_attribute("g", g), {"": 17}, None)
    assert isinstance(body, Graph) and body.nodes[0].op_type == "Neg"
    tp = _attribute(helper.make_attribute("tp", helper.make_tensor_type_proto(TensorProto.INT64, [2])), {}, None)
    assert tp.dtype == np.int64 and tp.shape == (2,)


def test_initializers_are_read_only(affine):
    g = minirt.load(affine)
    with pytest.raises(ValueError):
        g.initializers["W"][0, 0] = 1


def _external_model(tmp_path, location):
    W = numpy_helper.from_array(np.arange(4, dtype=np.float32), "W")
    m = make_model([helper.make_node("Add", ["x", "W"], ["y"])], [vi("x", shape=[4])], [vi("y", shape=[4])], [W])
    onnx.external_data_helper.convert_model_to_external_data(m, all_tensors_to_one_file=True,
                                                             location="weights.bin", size_threshold=0)
    onnx.save(m, tmp_path / "m.onnx")  # writes weights.bin beside it
    if location != "weights.bin":
        m = onnx.load(tmp_path / "m.onnx", load_external_data=False)
        for e in m.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = location
        onnx.save(m, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_external_data_is_read_beside_the_model(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    assert (tmp_path / "weights.bin").exists()
    y = minirt.run(path, {"x": np.ones(4, np.float32)})["y"]
    np.testing.assert_array_equal(y, [1, 2, 3, 4])


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    _external_model(inner, "weights.bin")
    os.replace(inner / "weights.bin", tmp_path / "weights.bin")
    for escape in ("../weights.bin", str(tmp_path / "weights.bin")):
        path = _external_model(inner, escape)
        with pytest.raises(ModelLoadError, match="outside the model's folder"):
            minirt.load(path)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        minirt.load(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 certainly not a protobuf \xff" * 3)
    with pytest.raises(ModelLoadError):
        minirt.load(bad)
    with pytest.raises(ModelLoadError, match="folder"):
        minirt.load(tmp_path)


def test_model_local_functions_are_inlined():
    fn = helper.make_function(
        "local", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )
    g = helper.make_graph([helper.make_node("Double", ["x"], ["y"], domain="local")], "g",
                          [vi("x", shape=[2])], [vi("y", shape=[2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=[fn])
    np.testing.assert_array_equal(minirt.run(m, {"x": np.array([1, 2], np.float32)})["y"], [2, 4])


def test_per_node_overhead_plan_is_lean():
    """The executor keeps per-node work to list indexing: a chain of Identity nodes frees as it goes."""
    n = 50
    nodes = [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"]) for i in range(n)]
    m = make_model(nodes, [vi("v0", shape=[1])], [vi(f"v{n}", shape=[1])])
    sess = minirt.InferenceSession(m, optimize=0)  # level 1+ would remove the Identity chain
    plan = sess._plan
    assert len(plan.steps) == n
    # every intermediate is freed by the step that reads it last (the feed by the first step)
    assert all(step.free == [step.inputs[0]] for step in plan.steps)
    np.testing.assert_array_equal(sess.run(None, {"v0": np.ones(1, np.float32)})[0], [1])


def test_run_batches_over_array_dict_and_generator(affine):
    sess = minirt.InferenceSession(affine)
    x = np.random.default_rng(2).standard_normal((10, 3)).astype(np.float32)
    ys = [y for [y] in sess.run_batches(x, batch_size=4, progress=False)]
    assert [len(y) for y in ys] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate(ys), reference_affine(x), rtol=1e-6)
    ys = [y for [y] in sess.run_batches({"x": x}, batch_size=10)]
    assert len(ys) == 1
    gen = (x[i:i + 5] for i in range(0, 10, 5))
    assert sum(len(y) for [y] in sess.run_batches(gen)) == 10
    with pytest.raises(InputError, match="batch_size"):
        list(sess.run_batches(x, batch_size=0))


def test_progress_bar_draws_only_when_enabled():
    import io

    from minirt.tools.progress import Progress

    buf = io.StringIO()
    with Progress(3, "work", enabled=True, file=buf) as p:
        for _ in range(3):
            p.update()
    assert "3/3" in buf.getvalue()
    quiet = io.StringIO()
    with Progress(3, "work", file=quiet) as p:  # StringIO is not a terminal: silent
        p.update(3)
    assert quiet.getvalue() == ""


def test_loop_with_zero_iterations_returns_typed_empty_scan_outputs():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["scan"], to=TensorProto.FLOAT)],
        "body",
        [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, [])],
        [vi("cond_out", TensorProto.BOOL, []), vi("scan", TensorProto.FLOAT, [])],
    )
    m = make_model(
        [helper.make_node("Loop", ["M", ""], ["ys"], body=body)],
        [vi("M", TensorProto.INT64, [])],
        [vi("ys", TensorProto.FLOAT, None)],
    )
    ys = minirt.run(m, {"M": np.array(0, np.int64)})["ys"]
    assert ys.shape == (0,) and ys.dtype == np.float32
    ys = minirt.run(m, {"M": np.array(3, np.int64)})["ys"]
    np.testing.assert_array_equal(ys, [0, 1, 2])


def test_op_returning_too_few_outputs_is_an_error():
    @minirt.op("TwoOut", since=1, domain="test.too_few")
    def TwoOut(x):
        return x  # the node names two outputs

    m = make_model([helper.make_node("TwoOut", ["x"], ["a", "b"], name="t", domain="test.too_few")],
                   [vi("x", shape=[1])], [vi("a"), vi("b")], extra_opsets=[("test.too_few", 1)])
    with pytest.raises(NodeError, match="returned 1 output"):
        minirt.run(m, {"x": np.ones(1, np.float32)})


def test_result_cache_hits_and_isolation(affine):
    sess = minirt.InferenceSession(affine, cache_size=2)
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    [y1] = sess.run(None, {"x": x})
    [y2] = sess.run(None, {"x": x.copy()})  # same content, another array: a hit
    assert sess.cache_info().hits == 1 and sess.cache_info().misses == 1
    np.testing.assert_array_equal(y1, y2)
    y2[:] = -1  # mutating what a hit returned must not reach the cache
    x_alias = x.copy()
    [y3] = sess.run(None, {"x": x_alias})
    np.testing.assert_allclose(y3, reference_affine(x), rtol=1e-6)
    for i in range(3):  # evicts x (LRU, 2 entries)
        sess.run(None, {"x": x + i + 1})
    sess.run(None, {"x": x})
    info = sess.cache_info()
    assert (info.hits, info.misses, info.size, info.max_size) == (2, 5, 2, 2)
    assert 0 < info.hit_rate < 1
    sess.clear_cache()
    assert sess.cache_info().size == 0
    assert minirt.InferenceSession(affine).cache_info().max_size == 0


def test_threads_option_limits_blas_during_a_run(affine):
    from threadpoolctl import threadpool_info

    seen = []
    sess = minirt.InferenceSession(affine, threads=1)
    sess.add_hook(after=lambda *a: seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]))
    [y] = sess.run(None, {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(y, reference_affine(np.ones((2, 3), np.float32)))
    assert seen and all(n == [1] * len(n) for n in seen)
    with pytest.raises(ValueError, match="threads"):
        minirt.InferenceSession(affine, threads=0)


def test_sessions_optimize_by_default(affine):
    x = np.random.default_rng(4).standard_normal((3, 3)).astype(np.float32)
    fused = minirt.InferenceSession(affine)
    assert [n.op_type for n in fused.graph.nodes] == ["FusedGemm"]  # MatMul+Add+Relu, one node
    assert [n.op_type for n in fused.original_graph.nodes] == ["MatMul", "Add", "Relu"]
    plain = minirt.InferenceSession(affine, optimize=0)
    # Gemm computes the same products and sums as MatMul then Add: equal up to float32 rounding
    np.testing.assert_allclose(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0], rtol=1e-6, atol=1e-6)
