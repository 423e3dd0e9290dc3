"""If, Loop, Scan, sequence and optional ops.

Control-flow ops receive their subgraph as a Python callable; here each body is written twice,
as an ONNX graph for onnxruntime and as the equivalent Python function for minirt's op.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from minirt.ops.control import If, Loop, Scan, Scan_8
from minirt.ops.sequence import (
    ConcatFromSequence, Optional, OptionalGetElement, OptionalHasElement, SequenceAt,
    SequenceConstruct, SequenceEmpty, SequenceErase, SequenceInsert, SequenceLength, SequenceMap,
    SplitToSequence,
)

ort = pytest.importorskip("onnxruntime")

F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _tensor(name, elem=F32, rank=None):
    """A graph input/output with a known rank and symbolic sizes (or unknown rank)."""
    shape = None if rank is None else [f"{name}_{i}" for i in range(rank)]
    return helper.make_tensor_value_info(name, elem, shape)


def _session(nodes, inputs, outputs, opset):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# --- If ---


def test_if_runs_only_the_chosen_branch():
    calls = []

    def then_branch():
        calls.append("then")
        return [np.array([1.0], np.float32), [np.zeros(2)]]

    def else_branch():
        calls.append("else")
        return [np.array([2.0], np.float32), []]

    out = If(np.array(True), then_branch=then_branch, else_branch=else_branch)
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_array_equal(out[0], [1.0])
    out = If(np.array([False]), then_branch=then_branch, else_branch=else_branch)  # a 1-element cond
    np.testing.assert_array_equal(out[0], [2.0])
    assert out[1] == []
    assert calls == ["then", "else"]


# --- Loop ---


@functools.lru_cache(maxsize=None)
def _loop_session(with_M, with_cond):
    """acc += x each iteration, scan output acc * i, body cond: i < limit (x and limit: outer scope)."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "x"], ["acc_out"]),
            helper.make_node("Cast", ["i"], ["i_f"], to=F32),
            helper.make_node("Mul", ["acc_out", "i_f"], ["scan"]),
            helper.make_node("Less", ["i", "limit"], ["cond_out"]),
        ],
        "body",
        [_tensor("i", I64, 0), _tensor("cond_in", BOOL, 0), _tensor("acc_in", F32, 1)],
        [_tensor("cond_out", BOOL, 0), _tensor("acc_out", F32, 1), _tensor("scan", F32, 1)],
    )
    node = helper.make_node("Loop", ["M" if with_M else "", "cond" if with_cond else "", "acc0"],
                            ["acc", "scans"], body=body)
    inputs = [_tensor("x", F32, 1), _tensor("limit", I64, 0), _tensor("acc0", F32, 1)]
    inputs += [_tensor("M", I64, 0)] if with_M else []
    inputs += [_tensor("cond", BOOL, 0)] if with_cond else []
    return _session([node], inputs, [_tensor("acc", F32, 1), _tensor("scans", F32, 2)], opset=16)


@settings(deadline=None, max_examples=15)
@given(M=st.one_of(st.none(), st.integers(1, 6)), with_cond=st.booleans(), limit=st.integers(0, 6),
       size=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_loop_matches_onnxruntime(M, with_cond, limit, size, seed):
    if M is None and not with_cond:
        with_cond = True  # a loop with neither M nor cond never ends
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal(size).astype(np.float32), "limit": np.array(limit, np.int64),
             "acc0": rng.standard_normal(size).astype(np.float32)}
    if M is not None:
        feeds["M"] = np.array(M, np.int64)
    if with_cond:
        feeds["cond"] = np.array(True)
    x = feeds["x"]

    def body(i, cond, acc):
        assert i.dtype == np.int64 and i.shape == () and cond.dtype == np.bool_
        acc = acc + x
        return [i < limit, acc, acc * i.astype(np.float32)]

    expected = _loop_session(M is not None, with_cond).run(None, feeds)
    got = Loop(feeds.get("M"), feeds.get("cond"), feeds["acc0"], body=body)
    assert len(got) == 2
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-6)  # the same float32 sums, in the same order


def test_loop_without_iterations_returns_initial_values():
    acc0 = np.arange(3, dtype=np.float32)
    out = Loop(np.array(0, np.int64), None, acc0, body=lambda i, c, a: [c, a + 1])
    assert len(out) == 1
    np.testing.assert_array_equal(out[0], acc0)
    out = Loop(None, np.array(False), acc0, body=lambda i, c, a: [c, a + 1])
    np.testing.assert_array_equal(out[0], acc0)


def test_loop_carries_sequences_and_stops_on_cond():
    def body(i, cond, seq):
        return [i < 2, seq + [i]]  # runs for i = 0, 1, 2

    (seq,) = Loop(np.array(10, np.int64), np.array(True), [], body=body)
    assert [int(v) for v in seq] == [0, 1, 2]


# --- Scan ---


@functools.lru_cache(maxsize=None)
def _scan_session(item_rank, in_axes, in_dirs, out_axes, out_dirs):
    """state += x1 * x2; scan outputs: the running state, and x1."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x1", "x2"], ["prod"]), helper.make_node("Add", ["s_in", "prod"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y1"]), helper.make_node("Identity", ["x1"], ["y2"])],
        "body",
        [_tensor(n, F32, item_rank) for n in ("s_in", "x1", "x2")],
        [_tensor(n, F32, item_rank) for n in ("s_out", "y1", "y2")],
    )
    node = helper.make_node("Scan", ["s0", "a", "b"], ["s", "ya", "yb"], body=body, num_scan_inputs=2,
                            scan_input_axes=list(in_axes), scan_input_directions=list(in_dirs),
                            scan_output_axes=list(out_axes), scan_output_directions=list(out_dirs))
    inputs = [_tensor("s0", F32, item_rank), _tensor("a", F32, item_rank + 1), _tensor("b", F32, item_rank + 1)]
    outputs = [_tensor("s", F32, item_rank), _tensor("ya", F32, item_rank + 1), _tensor("yb", F32, item_rank + 1)]
    return _session([node], inputs, outputs, opset=16)


@settings(deadline=None, max_examples=15)
@given(data=st.data(), item_shape=st.lists(st.integers(1, 3), max_size=2), length=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_scan_matches_onnxruntime(data, item_shape, length, seed):
    rank = len(item_shape) + 1
    axis = st.integers(-rank, rank - 1)
    in_axes = (data.draw(axis), data.draw(axis))
    out_axes = (data.draw(axis), data.draw(axis))
    in_dirs = (data.draw(st.sampled_from([0, 1])), data.draw(st.sampled_from([0, 1])))
    out_dirs = (data.draw(st.sampled_from([0, 1])), data.draw(st.sampled_from([0, 1])))
    rng = np.random.default_rng(seed)

    def scanned(ax):  # the item shape with the scan axis `ax` inserted
        shape = list(item_shape)
        shape.insert(ax % rank, length)
        return rng.standard_normal(shape).astype(np.float32)

    s0 = rng.standard_normal(item_shape).astype(np.float32)
    a, b = scanned(in_axes[0]), scanned(in_axes[1])
    expected = _scan_session(len(item_shape), in_axes, in_dirs, out_axes, out_dirs).run(None, {"s0": s0, "a": a, "b": b})

    def body(s, x1, x2):
        s = s + x1 * x2
        return [s, s, x1]

    got = Scan(s0, a, b, body=body, num_scan_inputs=2, scan_input_axes=list(in_axes),
               scan_input_directions=list(in_dirs), scan_output_axes=list(out_axes),
               scan_output_directions=list(out_dirs))
    assert len(got) == 3
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)  # same float32 ops, same order


def test_scan_8_batches_and_pads_short_sequences():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # [batch, T, item]
    s0 = np.zeros((2, 2), np.float32)  # [batch, item]

    def body(s, x_t):
        s = s + x_t
        return [s, s]

    state, running = Scan_8(np.array([3, 2], np.int64), s0, x, body=body, num_scan_inputs=1)
    np.testing.assert_array_equal(state, [x[0].sum(0), x[1, :2].sum(0)])
    np.testing.assert_array_equal(running[0], np.cumsum(x[0], axis=0))
    np.testing.assert_array_equal(running[1], [x[1, 0], x[1, 0] + x[1, 1], [0, 0]])  # padded
    state, running = Scan_8(None, s0, x, body=body, num_scan_inputs=1, directions=[1])
    np.testing.assert_array_equal(running[:, -1], x.sum(axis=1))  # reversed: last step saw all
    np.testing.assert_array_equal(state, x.sum(axis=1))


# --- sequences ---


@functools.lru_cache(maxsize=None)
def _split_session(rank, split_kind, axis, keepdims):
    inputs = [_tensor("x", F32, rank)]
    node_inputs = ["x"]
    if split_kind != "none":
        inputs.append(_tensor("split", I64, 0 if split_kind == "scalar" else 1))
        node_inputs.append("split")
    node = helper.make_node("SplitToSequence", node_inputs, ["seq"], axis=axis, keepdims=keepdims)
    return _session([node], inputs, [helper.make_tensor_sequence_value_info("seq", F32, None)], opset=11)


@settings(deadline=None, max_examples=15)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data())
def test_split_to_sequence_matches_onnxruntime(shape, data):
    rank = len(shape)
    axis = data.draw(st.integers(-rank, rank - 1))
    split_kind = data.draw(st.sampled_from(["none", "scalar", "list"]))
    # the spec ignores keepdims when `split` is given; ORT applies it there (and fails for
    # chunks longer than 1), so it is compared only without `split`
    keepdims = data.draw(st.sampled_from([0, 1])) if split_kind == "none" else 1
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    feeds = {"x": x}
    length = shape[axis]
    if split_kind == "scalar":
        feeds["split"] = np.array(data.draw(st.integers(1, length)), np.int64)
    elif split_kind == "list":
        cuts = sorted(data.draw(st.sets(st.integers(1, length - 1), max_size=3))) if length > 1 else []
        feeds["split"] = np.diff([0, *cuts, length]).astype(np.int64)
    expected = _split_session(rank, split_kind, axis, keepdims).run(None, feeds)[0]
    got = SplitToSequence(x, feeds.get("split"), axis=axis, keepdims=keepdims)
    assert isinstance(got, list) and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


def test_split_to_sequence_ignores_keepdims_when_split_is_given():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    chunks = SplitToSequence(x, np.array(1, np.int64), axis=0, keepdims=0)
    assert [c.shape for c in chunks] == [(1, 2)] * 3
    chunks = SplitToSequence(x, None, axis=1, keepdims=0)
    assert [c.tolist() for c in chunks] == [[0, 2, 4], [1, 3, 5]]


@functools.lru_cache(maxsize=None)
def _concat_session(item_rank, axis, new_axis):
    node = helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=axis, new_axis=new_axis)
    seq = helper.make_tensor_sequence_value_info("seq", F32, [f"d{i}" for i in range(item_rank)])
    return _session([node], [seq], [_tensor("y", F32, item_rank + new_axis)], opset=11)


@settings(deadline=None, max_examples=15)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), count=st.integers(1, 4),
       new_axis=st.sampled_from([0, 1]), data=st.data())
def test_concat_from_sequence_matches_onnxruntime(shape, count, new_axis, data):
    rank = len(shape) + new_axis  # new_axis=1 may insert the axis at the very end
    axis = data.draw(st.integers(-rank, rank - 1))
    seq = [np.full(shape, k, dtype=np.float32) for k in range(count)]
    expected = _concat_session(len(shape), axis, new_axis).run(None, {"seq": seq})[0]
    got = ConcatFromSequence(seq, axis=axis, new_axis=new_axis)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@functools.lru_cache(maxsize=None)
def _edit_session(op_type, with_position):
    seq_in = helper.make_tensor_sequence_value_info("seq", F32, None)
    seq_out = helper.make_tensor_sequence_value_info("out", F32, None)
    pos = [_tensor("pos", I64, 0)] if with_position else []
    if op_type == "SequenceInsert":
        node = helper.make_node(op_type, ["seq", "t"] + (["pos"] if with_position else []), ["out"])
        return _session([node], [seq_in, _tensor("t", F32, 1)] + pos, [seq_out], opset=11)
    if op_type == "SequenceErase":
        node = helper.make_node(op_type, ["seq"] + (["pos"] if with_position else []), ["out"])
        return _session([node], [seq_in] + pos, [seq_out], opset=11)
    node = helper.make_node(op_type, ["seq", "pos"], ["out"])  # SequenceAt
    return _session([node], [seq_in] + pos, [_tensor("out", F32, 1)], opset=11)


@settings(deadline=None, max_examples=15)
@given(op_type=st.sampled_from(["SequenceInsert", "SequenceErase", "SequenceAt"]),
       length=st.integers(1, 4), data=st.data())
def test_sequence_edits_match_onnxruntime(op_type, length, data):
    seq = [np.full(2, k, dtype=np.float32) for k in range(length)]
    reach = length if op_type == "SequenceInsert" else length - 1  # insert may append
    position = data.draw(st.one_of(st.none(), st.integers(-length, reach)))
    if op_type == "SequenceAt" and position is None:
        position = 0
    feeds = {"seq": seq}
    if position is not None:
        feeds["pos"] = np.array(position, np.int64)
    expected = _edit_session(op_type, position is not None).run(None, {**feeds, **(
        {"t": np.full(2, 9, np.float32)} if op_type == "SequenceInsert" else {})})[0]
    before = [s.copy() for s in seq]
    if op_type == "SequenceInsert":
        got = SequenceInsert(seq, np.full(2, 9, np.float32), feeds.get("pos"))
    elif op_type == "SequenceErase":
        got = SequenceErase(seq, feeds.get("pos"))
    else:
        got = SequenceAt(seq, feeds["pos"])
    if op_type == "SequenceAt":
        np.testing.assert_array_equal(got, expected)
    else:
        assert [g.tolist() for g in got] == [e.tolist() for e in expected]
    assert len(seq) == len(before) and all(np.array_equal(s, b) for s, b in zip(seq, before))  # untouched


def test_sequence_construct_length_empty():
    a, b = np.zeros(2), np.ones(3)
    seq = SequenceConstruct(a, b)
    assert isinstance(seq, list) and seq[0] is a and seq[1] is b
    n = SequenceLength(seq)
    assert isinstance(n, np.ndarray) and n.shape == () and n.dtype == np.int64 and n == 2
    assert SequenceEmpty(dtype=7) == []
    assert SequenceLength([]) == 0


def test_sequence_map_zips_sequences_and_broadcasts_tensors():
    seq = [np.arange(k + 1, dtype=np.float32) for k in range(3)]
    other = [np.full(k + 1, 10, dtype=np.float32) for k in range(3)]
    bias = np.float32(100)
    sums, shapes = SequenceMap(seq, other, np.asarray(bias),
                               body=lambda x, y, b: [x + y + b, np.array(x.shape, np.int64)])
    assert len(sums) == 3
    for k in range(3):
        np.testing.assert_array_equal(sums[k], seq[k] + 110)
        np.testing.assert_array_equal(shapes[k], [k + 1])


# --- optionals ---


def test_optional_ops():
    x = np.arange(3)
    assert Optional(x) is x
    assert Optional(None, type=None) is None
    for value, present in [(x, True), ([x], True), ([], True), (None, False)]:
        has = OptionalHasElement(value)
        assert isinstance(has, np.ndarray) and has.dtype == np.bool_ and has.shape == () and bool(has) is present
    assert OptionalGetElement(x) is x
    assert OptionalGetElement([]) == []
    with pytest.raises(ValueError, match="empty"):
        OptionalGetElement(None)
