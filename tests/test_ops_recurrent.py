"""RNN, GRU and LSTM against onnxruntime, on random sizes, directions and optional inputs."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from minirt.ops.recurrent import GRU, LSTM, RNN

ort = pytest.importorskip("onnxruntime")

FUNCS = {"RNN": RNN, "GRU": GRU, "LSTM": LSTM}
NUM_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
NUM_OUTPUTS = {"RNN": 2, "GRU": 2, "LSTM": 3}
NUM_ACTIVATIONS = {"RNN": 1, "GRU": 2, "LSTM": 3}  # per direction: f; f, g; f, g, h
INPUT_NAMES = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
RANKS = {"X": 3, "W": 3, "R": 3, "B": 2, "sequence_lens": 1, "initial_h": 3, "initial_c": 3, "P": 2,
         "Y": 4, "Y_h": 3, "Y_c": 3}

# float32 sums over input/hidden and a few time steps, in a different order than ORT's MLAS
RTOL = ATOL = 1e-5


@functools.lru_cache(maxsize=None)
def _ort_session(op_type, present, attrs):
    """One-node model for `op_type` with the inputs named in `present`; shapes left symbolic."""
    node_inputs = [n if n in present else "" for n in INPUT_NAMES[: max(INPUT_NAMES.index(p) for p in present) + 1]]
    outputs = ["Y", "Y_h", "Y_c"][: NUM_OUTPUTS[op_type]]
    node = helper.make_node(op_type, node_inputs, outputs, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs})

    def value_info(name):  # known rank, symbolic sizes
        elem = TensorProto.INT32 if name == "sequence_lens" else TensorProto.FLOAT
        return helper.make_tensor_value_info(name, elem, [f"{name}_{i}" for i in range(RANKS[name])])

    graph = helper.make_graph([node], "g", [value_info(n) for n in node_inputs if n],
                              [value_info(n) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _random_inputs(op_type, seed, seq, batch, input_size, hidden, num_directions, optional):
    """X, W, R and the optional inputs named in `optional`, as a dict."""
    rng = np.random.default_rng(seed)
    gates = NUM_GATES[op_type]

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    inputs = {
        "X": normal(seq, batch, input_size),
        "W": normal(num_directions, gates * hidden, input_size, scale=0.5),
        "R": normal(num_directions, gates * hidden, hidden, scale=0.5),
    }
    if "B" in optional:
        inputs["B"] = normal(num_directions, 2 * gates * hidden)
    if "sequence_lens" in optional:
        inputs["sequence_lens"] = rng.integers(1, seq + 1, size=batch).astype(np.int32)
    if "initial_h" in optional:
        inputs["initial_h"] = normal(num_directions, batch, hidden)
    if "initial_c" in optional and op_type == "LSTM":
        inputs["initial_c"] = normal(num_directions, batch, hidden)
    if "P" in optional and op_type == "LSTM":
        inputs["P"] = normal(num_directions, 3 * hidden)
    return inputs


def _check_against_ort(op_type, inputs, attrs, tol=RTOL):
    present = tuple(n for n in INPUT_NAMES if n in inputs)
    expected = _ort_session(op_type, present, tuple(sorted(attrs.items())))
    expected = expected.run(None, inputs)
    # unbounded activation choices (Softplus as a gate ...) can overflow, where inf/nan differ
    assume(all(np.isfinite(e).all() for e in expected))
    copies = {k: v.copy() for k, v in inputs.items()}
    got = FUNCS[op_type](*[inputs.get(n) for n in INPUT_NAMES[: len(INPUT_NAMES) if op_type == "LSTM" else 6]],
                         **{k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()})
    assert len(got) == NUM_OUTPUTS[op_type]
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)
    for k, v in inputs.items():  # nothing was modified in place
        np.testing.assert_array_equal(v, copies[k])


sizes = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
directions = st.sampled_from(["forward", "reverse", "bidirectional"])
optionals = st.sets(st.sampled_from(["B", "sequence_lens", "initial_h", "initial_c", "P"]))


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**16), sizes=sizes, direction=directions, optional=optionals,
       clip=st.sampled_from([None, 0.7]))
def test_rnn_matches_onnxruntime(seed, sizes, direction, optional, clip):
    num_directions = 2 if direction == "bidirectional" else 1
    inputs = _random_inputs("RNN", seed, *sizes, num_directions, optional)
    attrs = {"hidden_size": sizes[3], "direction": direction}
    if clip is not None:
        attrs["clip"] = clip
    _check_against_ort("RNN", inputs, attrs)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**16), sizes=sizes, direction=directions, optional=optionals,
       linear_before_reset=st.sampled_from([0, 1]), clip=st.sampled_from([None, 0.7]))
def test_gru_matches_onnxruntime(seed, sizes, direction, optional, linear_before_reset, clip):
    num_directions = 2 if direction == "bidirectional" else 1
    inputs = _random_inputs("GRU", seed, *sizes, num_directions, optional)
    attrs = {"hidden_size": sizes[3], "direction": direction, "linear_before_reset": linear_before_reset}
    if clip is not None:
        attrs["clip"] = clip
    _check_against_ort("GRU", inputs, attrs)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**16), sizes=sizes, direction=directions, optional=optionals,
       input_forget=st.sampled_from([0, 1]), clip=st.sampled_from([None, 0.7]))
def test_lstm_matches_onnxruntime(seed, sizes, direction, optional, input_forget, clip):
    num_directions = 2 if direction == "bidirectional" else 1
    inputs = _random_inputs("LSTM", seed, *sizes, num_directions, optional)
    attrs = {"hidden_size": sizes[3], "direction": direction, "input_forget": input_forget}
    if clip is not None:
        attrs["clip"] = clip
    _check_against_ort("LSTM", inputs, attrs)


# activation name -> how many of (alpha, beta) it takes
ACTIVATIONS = {"Relu": 0, "Tanh": 0, "Sigmoid": 0, "Affine": 2, "LeakyRelu": 1, "ThresholdedRelu": 1,
               "ScaledTanh": 2, "HardSigmoid": 2, "Elu": 1, "Softsign": 0, "Softplus": 0}


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**16), op_type=st.sampled_from(["RNN", "GRU", "LSTM"]),
       direction=directions, data=st.data())
def test_activation_lists_match_onnxruntime(seed, op_type, direction, data):
    """alphas/betas are consumed in order by the functions that take them, as in ORT."""
    num_directions = 2 if direction == "bidirectional" else 1
    per_direction = NUM_ACTIVATIONS[op_type]
    names = data.draw(st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=per_direction * num_directions,
                               max_size=per_direction * num_directions))
    num_alphas = sum(ACTIVATIONS[n] >= 1 for n in names)
    num_betas = sum(ACTIVATIONS[n] == 2 for n in names)
    params = st.floats(0.125, 1.5, width=32)  # exact in float32, as ORT stores them
    alphas = data.draw(st.lists(params, min_size=num_alphas, max_size=num_alphas))
    betas = data.draw(st.lists(params, min_size=num_betas, max_size=num_betas))
    inputs = _random_inputs(op_type, seed, 3, 2, 3, 3, num_directions, {"B", "initial_h"})
    attrs = {"hidden_size": 3, "direction": direction, "activations": tuple(names)}
    if alphas:
        attrs["activation_alpha"] = tuple(alphas)
    if betas:
        attrs["activation_beta"] = tuple(betas)
    # unbounded gate functions (Affine, LeakyRelu, Elu ...) pass each step's float32 rounding on
    # to the next, growing instead of squashing it: hypothesis found an LSTM 1.4e-4 apart
    _check_against_ort(op_type, inputs, attrs, tol=5e-4)


@pytest.mark.parametrize("op_type", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_layout_1_is_layout_0_batch_first(op_type, direction):
    """ORT's CPU kernels refuse layout=1, so check it against layout=0 on transposed data."""
    num_directions = 2 if direction == "bidirectional" else 1
    inputs = _random_inputs(op_type, 7, 4, 3, 2, 3, num_directions, {"B", "sequence_lens", "initial_h", "initial_c", "P"})
    fn = FUNCS[op_type]
    names = INPUT_NAMES if op_type == "LSTM" else INPUT_NAMES[:6]
    time_major = fn(*[inputs.get(n) for n in names], direction=direction)
    batch_first_inputs = {k: (v.swapaxes(0, 1) if k in ("X", "initial_h", "initial_c") else v) for k, v in inputs.items()}
    batch_first = fn(*[batch_first_inputs.get(n) for n in names], direction=direction, layout=1)
    # [seq, dirs, batch, hidden] -> [batch, seq, dirs, hidden]
    np.testing.assert_array_equal(batch_first[0], time_major[0].transpose(2, 0, 1, 3))
    for got, want in zip(batch_first[1:], time_major[1:]):
        np.testing.assert_array_equal(got, want.swapaxes(0, 1))  # [dirs, batch, hidden] -> [batch, dirs, hidden]


@pytest.mark.parametrize("op_type", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_output_dtype_follows_input(op_type, dtype):
    inputs = _random_inputs(op_type, 3, 3, 2, 3, 2, 1, {"B", "initial_h"})
    names = INPUT_NAMES if op_type == "LSTM" else INPUT_NAMES[:6]
    reference = FUNCS[op_type](*[inputs.get(n) for n in names])
    outputs = FUNCS[op_type](*[None if inputs.get(n) is None else inputs[n].astype(dtype) for n in names])
    for got, want in zip(outputs, reference):
        assert got.dtype == dtype
        # float16 keeps ~3 decimal digits, and errors add up over 3 time steps
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, atol=1e-2)


def test_sequence_lens_freezes_state_and_zeroes_padding():
    """Past its length a sequence outputs zeros and Y_h is the state at its last valid step."""
    inputs = _random_inputs("GRU", 11, 5, 2, 3, 4, 1, {"B"})
    lengths = np.array([2, 5], dtype=np.int32)
    Y, Y_h = GRU(inputs["X"], inputs["W"], inputs["R"], inputs["B"], lengths)
    assert np.all(Y[2:, 0, 0] == 0)
    np.testing.assert_array_equal(Y_h[0, 0], Y[1, 0, 0])
    np.testing.assert_array_equal(Y_h[0, 1], Y[4, 0, 1])
    # the short sequence alone gives the same numbers
    Y_short, _ = GRU(inputs["X"][:2, :1], inputs["W"], inputs["R"], inputs["B"])
    # BLAS may round a batch-of-1 matmul differently from a batch-of-2 one
    np.testing.assert_allclose(Y[:2, :, :1], Y_short, rtol=1e-6, atol=1e-6)
