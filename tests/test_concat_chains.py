"""Concat chains (minirt/passes/concat.py, minirt/kernels/concat.py): the pass finds DenseNet's
chains of Concats and only those; the kernel appends each link to one buffer and its results are
np.concatenate's in every case (Concat only copies: the comparisons are exact).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import minirt
from minirt.kernels.concat import chain_concat
from minirt.passes import chain_concats, optimize, specialize_shapes
from test_passes import F, graph, ops, same_outputs, unchanged, vi  # tests/ is on sys.path (conftest.py)


def _chain_graph(n_links=3, c0=4, growth=2, hw=5, batch=1, extra_nodes=(), outputs=("c3",), dtype=F):
    """x [batch, c0, hw, hw] and f1..fn [batch, growth, hw, hw]: c1 = Concat(x, f1), c_k =
    Concat(c_{k-1}, f_k); every c_k also feeds a Relu (r_k), as DenseNet's next layer reads it."""
    nodes, inputs = [], [vi("x", dtype, [batch, c0, hw, hw])]
    prev = "x"
    for k in range(1, n_links + 1):
        inputs.append(vi(f"f{k}", dtype, [batch, growth, hw, hw]))
        nodes.append(helper.make_node("Concat", [prev, f"f{k}"], [f"c{k}"], axis=1))
        if dtype == F:
            nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"]))
        prev = f"c{k}"
    nodes += list(extra_nodes)
    return graph(nodes, inputs, [vi(o, dtype, None) for o in outputs])


def _feeds(g, seed=0):
    r = np.random.default_rng(seed)
    shape = lambda v: [d if isinstance(d, int) else 3 for d in v.shape]  # noqa: E731  (a symbolic dim: 3)
    return {v.name: r.standard_normal(shape(v)).astype(v.dtype) for v in g.feed_inputs()}


def test_pass_turns_a_chain_into_chain_concats_with_its_final_capacity():
    g = _chain_graph(outputs=("c3", "r1"))
    text = g.to_text()
    g2 = chain_concats(g)
    unchanged(g, text)
    links = [n for n in g2.nodes if n.op_type == "ChainConcat"]
    assert len(links) == 3 and all(n.domain == "minirt" for n in links)
    assert all(n.attrs == {"axis": 1, "capacity": 4 + 3 * 2} for n in links)
    assert g2.opsets["minirt"] == 1
    same_outputs(g, g2, _feeds(g))  # exact: Concat only copies
    assert "ChainConcat" in ops(optimize(g))  # part of level 2


@pytest.mark.parametrize("why", ["front_is_output", "front_extended_twice", "int64", "unknown_size"])
def test_pass_leaves_what_must_not_share_memory(why):
    """A front that is a graph output (the user would hold memory later links write next to),
    a front two Concats extend, shape vectors (int64), and a chain whose final size is unknown."""
    if why == "front_is_output":
        g = _chain_graph(n_links=2, outputs=("c2", "c1"))
    elif why == "front_extended_twice":
        g = _chain_graph(n_links=2, extra_nodes=[helper.make_node("Concat", ["c1", "x"], ["d"], axis=1)],
                         outputs=("c2", "d"))
    elif why == "int64":
        g = _chain_graph(n_links=2, outputs=("c2",), dtype=TensorProto.INT64)
    else:
        g = graph([helper.make_node("Concat", ["x", "f1"], ["c1"], axis=1),
                   helper.make_node("Concat", ["c1", "f2"], ["c2"], axis=1)],
                  [vi("x", F, [1, "c", 3]), vi("f1", F, [1, 2, 3]), vi("f2", F, [1, 2, 3])], [vi("c2", F, None)])
    g2 = chain_concats(g)
    assert "ChainConcat" not in ops(g2)
    same_outputs(g, g2, _feeds(g))


def test_kernel_appends_in_place_and_never_changes_a_front():
    r = np.random.default_rng(1)
    x, f1, f2, f3 = (r.standard_normal((1, c, 3, 4)).astype(np.float32) for c in (4, 2, 2, 3))
    c1 = chain_concat([x, f1], 1, 11)
    c1_copy = c1.copy()
    c2 = chain_concat([c1, f2], 1, 11)
    c3 = chain_concat([c2, f3], 1, 11)
    np.testing.assert_array_equal(c3, np.concatenate([x, f1, f2, f3], axis=1))
    assert np.shares_memory(c1, c3) and c1.base is c3.base  # one buffer: c2 and c3 copied only f2, f3
    np.testing.assert_array_equal(c1, c1_copy)
    # c1 again (a second extension of a front that was extended): a buffer of its own, c2 untouched
    c2_copy = c2.copy()
    d = chain_concat([c1, f3], 1, 11)
    np.testing.assert_array_equal(d, np.concatenate([x, f1, f3], axis=1))
    np.testing.assert_array_equal(c2, c2_copy)
    assert not np.shares_memory(d, c1)
    # a view of the last front that is not the array handed out (a reshape) is not extended
    e = chain_concat([c3.reshape(c3.shape), f1], 1, 13)
    np.testing.assert_array_equal(e, np.concatenate([c3, f1], axis=1))
    assert not np.shares_memory(e, c3)


@pytest.mark.parametrize("case", ["batch2", "too_small", "negative_axis", "promote"])
def test_kernel_falls_back_to_a_plain_concat(case):
    r = np.random.default_rng(2)
    shape, axis, capacity = (1, 3, 2), 1, 8
    if case == "batch2":
        shape = (2, 3, 2)
    if case == "too_small":
        capacity = 4
    if case == "negative_axis":
        axis = -2
    a, b = r.standard_normal(shape).astype(np.float32), r.standard_normal(shape).astype(np.float32)
    if case == "promote":  # np.concatenate's own rule (the reference Concat is np.concatenate)
        b = b.astype(np.float64)
    got = chain_concat([a, b], axis, capacity)
    want = np.concatenate([a, b], axis=axis)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 3), st.lists(st.integers(0, 4), min_size=1, max_size=6), st.integers(0, 2),
       st.integers(1, 2), st.lists(st.integers(0, 5), max_size=4), st.integers(0, 2**31))
def test_kernel_matches_concatenate_on_any_chain(rank_after, sizes, axis_pad, batch, reuse, seed):
    """Random chains (empty inputs included), batch 1 or 2, the axis anywhere after leading
    size-1 dims, and links that go back to an older front: each result equals np.concatenate
    of its inputs, and every front keeps its values."""
    r = np.random.default_rng(seed)
    lead = (batch,) + (1,) * axis_pad
    axis = len(lead)
    tail = tuple(int(v) for v in r.integers(1, 4, rank_after - 1))
    total = 3 + sum(sizes)
    x = r.standard_normal(lead + (3,) + tail).astype(np.float32)
    fronts, wants = [x], [x.copy()]
    for k, n in enumerate(sizes):
        f = r.standard_normal(lead + (n,) + tail).astype(np.float32)
        pick = reuse[k] % len(fronts) if k < len(reuse) else len(fronts) - 1  # often the last front
        got = chain_concat([fronts[pick], f], axis, total)
        want = np.concatenate([wants[pick], f], axis=axis)
        np.testing.assert_array_equal(got, want)
        fronts.append(got)
        wants.append(want)
    for got, want in zip(fronts, wants):  # nothing written into a front that was handed out
        np.testing.assert_array_equal(got, want)


def _dense_block_model(layers=3, c0=8, growth=4, hw=6, batch="N"):
    """A DenseNet block: each layer BN -> Relu -> 3x3 Conv on the chain so far, its output
    appended to the chain."""
    r = np.random.default_rng(3)
    nodes, inits, prev, c = [], [], "x", c0
    for k in range(layers):
        names = [f"s{k}", f"b{k}", f"m{k}", f"v{k}", f"w{k}"]
        vals = [r.uniform(0.5, 1.5, c), r.standard_normal(c), r.standard_normal(c), r.uniform(0.5, 1.5, c),
                r.standard_normal((growth, c, 3, 3)) * 0.2]
        inits += [numpy_helper.from_array(v.astype(np.float32), n) for n, v in zip(names, vals)]
        nodes += [helper.make_node("BatchNormalization", [prev] + names[:4], [f"bn{k}"]),
                  helper.make_node("Relu", [f"bn{k}"], [f"a{k}"]),
                  helper.make_node("Conv", [f"a{k}", names[4]], [f"f{k}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Concat", [prev, f"f{k}"], [f"c{k}"], axis=1)]
        prev, c = f"c{k}", c + growth
    g = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c0, hw, hw])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_dense_block_through_a_session_matches_onnxruntime():
    model = _dense_block_model()
    x = np.random.default_rng(4).standard_normal((1, 8, 6, 6)).astype(np.float32)
    sess = minirt.InferenceSession(model)
    assert [n.op_type for n in sess.graph.nodes].count("ChainConcat") == 3
    got = sess.run(None, {"x": x})[0]
    again = sess.run(None, {"x": x})[0]  # a second run: a buffer of its own
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # float32 convs of 72-144 products after a BatchNormalization: ~1e-6 relative
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, again)
    assert not np.shares_memory(got, again)
    batch2 = np.concatenate([x, x[:, ::-1]], axis=0)  # batch 2: the fronts would not be contiguous, plain Concat
    got2 = sess.run(None, {"x": batch2})[0]
    want2 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": batch2})[0]
    np.testing.assert_allclose(got2, want2, rtol=1e-5, atol=1e-5)


def test_specialize_knows_chain_concat_shapes():
    """The shape rules of :mod:`minirt.passes.specialize` treat ChainConcat as Concat."""
    g = chain_concats(_chain_graph(n_links=2, outputs=("c2",)))
    g2 = specialize_shapes(g, {"x": (1, 4, 5, 5), "f1": (1, 2, 5, 5), "f2": (1, 2, 5, 5)})
    assert g2.value("c2").shape == (1, 8, 5, 5)
