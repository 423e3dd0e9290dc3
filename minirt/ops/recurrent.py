"""Recurrent networks: RNN, GRU, LSTM.

Each op is a plain time loop over the sequence, with the gate equations as comments. Shapes
(layout=0): X [seq, batch, input], W [dirs, gates*hidden, input], R [dirs, gates*hidden, hidden],
B [dirs, 2*gates*hidden] (Wb then Rb), states [dirs, batch, hidden], Y [seq, dirs, batch, hidden].
layout=1 puts batch first: X [batch, seq, input], states [batch, dirs, hidden],
Y [batch, seq, dirs, hidden].

The three ops share the plumbing (directions, layout, sequence_lens, activation lists) and
differ only in their ``cell``: one time step, ``(x_t, *state) -> new state``.
"""

from __future__ import annotations

import numpy as np

from minirt.registry import op


# --- activation functions, by the names the spec uses in the `activations` attribute ---


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (function of (x, alpha, beta), default alpha, default beta);
# a default of None means the function takes no such parameter.
_ACTIVATIONS = {
    "sigmoid": (lambda x, a, b: _sigmoid(x), None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),  # log(1 + e^x), no overflow
}


def _activation_functions(names, alphas, betas, dtype, num_directions, per_direction):
    """The activation callables, one list of ``per_direction`` functions per direction.

    ``activation_alpha``/``activation_beta`` are consumed in order, only by the functions that
    take that parameter (as onnxruntime does); the others use their op's default.
    """
    if len(names) == per_direction and num_directions == 2:
        names = list(names) * 2  # one list given for a bidirectional op: same for both
    alphas, betas = list(alphas or []), list(betas or [])
    funcs = []
    for name in names:
        fn, alpha, beta = _ACTIVATIONS[name.lower()]
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        a = dtype.type(alpha if alpha is not None else 0)
        b = dtype.type(beta if beta is not None else 0)
        funcs.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b).astype(dtype, copy=False))
    return [funcs[d * per_direction:(d + 1) * per_direction] for d in range(num_directions)]


def _clipped(x, clip):
    """Bound a gate's pre-activation to [-clip, clip] (no bound when clip is None)."""
    return x if clip is None else np.clip(x, -clip, clip)


# --- the shared time loop ---


def _run_one_direction(cell, X, state, lengths, reverse):
    """Run ``cell`` over the time steps of X [seq, batch, input] from ``state``.

    A batch entry whose sequence is shorter than seq keeps its state frozen past its end and
    outputs zeros there; in reverse it starts at its own last step, lengths[b] - 1.
    Returns Y [seq, batch, hidden] and the final state (a tuple of [batch, hidden] arrays).
    """
    seq_length = X.shape[0]
    Y = np.zeros((seq_length,) + state[0].shape, dtype=X.dtype)
    steps = range(seq_length - 1, -1, -1) if reverse else range(seq_length)
    for t in steps:
        new_state = cell(X[t], *state)
        valid = (t < lengths)[:, None]  # [batch, 1]: is step t inside each sequence?
        state = tuple(np.where(valid, new, old) for new, old in zip(new_state, state))
        Y[t] = np.where(valid, state[0], 0)  # [batch, hidden]
    return Y, state


def _recurrent(make_cell, X, initial_states, sequence_lens, direction, layout):
    """Run a recurrent op in every direction; returns Y and the final states.

    ``make_cell(d)`` gives the step function of direction d; ``initial_states`` are
    [dirs, batch, hidden] arrays (or [batch, dirs, hidden] with layout=1).
    """
    if layout == 1:
        X = X.swapaxes(0, 1)  # [batch, seq, input] -> [seq, batch, input]
        initial_states = [s.swapaxes(0, 1) for s in initial_states]  # -> [dirs, batch, hidden]
    seq_length, batch = X.shape[:2]
    if sequence_lens is None:
        lengths = np.full(batch, seq_length, dtype=np.int64)
    else:
        lengths = np.asarray(sequence_lens, dtype=np.int64)
    num_directions = 2 if direction == "bidirectional" else 1
    Ys, finals = [], []
    for d in range(num_directions):
        reverse = direction == "reverse" or d == 1
        state = tuple(s[d] for s in initial_states)  # each [batch, hidden]
        Y_d, final = _run_one_direction(make_cell(d), X, state, lengths, reverse)
        Ys.append(Y_d)
        finals.append(final)
    Y = np.stack(Ys, axis=1)  # [seq, dirs, batch, hidden]
    states = [np.stack(f, axis=0) for f in zip(*finals)]  # each [dirs, batch, hidden]
    if layout == 1:
        Y = Y.transpose(2, 0, 1, 3)  # -> [batch, seq, dirs, hidden]
        states = [s.swapaxes(0, 1) for s in states]  # -> [batch, dirs, hidden]
    return (Y, *states)


def _zeros_state(X, num_directions, hidden_size, layout):
    batch = X.shape[1] if layout == 0 else X.shape[0]
    shape = (num_directions, batch, hidden_size) if layout == 0 else (batch, num_directions, hidden_size)
    return np.zeros(shape, dtype=X.dtype)


# --- the ops ---


@op("RNN", since=7)
@op("RNN", since=14)  # 14 adds `layout`
def RNN(X, W, R, B=None, sequence_lens=None, initial_h=None, *,
        activation_alpha=None, activation_beta=None, activations=("Tanh", "Tanh"),
        clip=None, direction="forward", hidden_size=None, layout=0):
    """Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb) — https://onnx.ai/onnx/operators/onnx__RNN.html"""
    num_directions, hidden = W.shape[0], R.shape[-1]
    if B is None:
        B = np.zeros((num_directions, 2 * hidden), dtype=X.dtype)
    if initial_h is None:
        initial_h = _zeros_state(X, num_directions, hidden, layout)
    acts = _activation_functions(activations, activation_alpha, activation_beta, X.dtype,
                                 num_directions, per_direction=1)

    def make_cell(d):
        W_t, R_t = W[d].T, R[d].T  # [input, hidden], [hidden, hidden]
        bias = B[d, :hidden] + B[d, hidden:]  # Wb + Rb: [hidden]
        (f,) = acts[d]

        def cell(x, h):
            # Ht = f(Xt*(Wi^T) + Ht-1*(Ri^T) + Wbi + Rbi)
            return (f(_clipped(x @ W_t + h @ R_t + bias, clip)),)

        return cell

    return _recurrent(make_cell, X, [initial_h], sequence_lens, direction, layout)


@op("GRU", since=7)
@op("GRU", since=14)  # 14 adds `layout`
def GRU(X, W, R, B=None, sequence_lens=None, initial_h=None, *,
        activation_alpha=None, activation_beta=None, activations=("Sigmoid", "Tanh"),
        clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    """Gated recurrent unit (gates z, r, h) — https://onnx.ai/onnx/operators/onnx__GRU.html"""
    num_directions, hidden = W.shape[0], R.shape[-1]
    if B is None:
        B = np.zeros((num_directions, 6 * hidden), dtype=X.dtype)
    if initial_h is None:
        initial_h = _zeros_state(X, num_directions, hidden, layout)
    acts = _activation_functions(activations, activation_alpha, activation_beta, X.dtype,
                                 num_directions, per_direction=2)

    def make_cell(d):
        W_zr, W_h = W[d, :2 * hidden].T, W[d, 2 * hidden:].T  # [input, 2*hidden], [input, hidden]
        R_zr, R_h = R[d, :2 * hidden].T, R[d, 2 * hidden:].T  # [hidden, 2*hidden], [hidden, hidden]
        Wb, Rb = B[d, :3 * hidden], B[d, 3 * hidden:]  # [3*hidden] each, order z, r, h
        b_zr = Wb[:2 * hidden] + Rb[:2 * hidden]
        Wb_h, Rb_h = Wb[2 * hidden:], Rb[2 * hidden:]
        f, g = acts[d]

        def cell(x, h):
            # zt = f(Xt*(Wz^T) + Ht-1*(Rz^T) + Wbz + Rbz)
            # rt = f(Xt*(Wr^T) + Ht-1*(Rr^T) + Wbr + Rbr)
            zr = f(_clipped(x @ W_zr + h @ R_zr + b_zr, clip))  # [batch, 2*hidden]
            z, r = zr[:, :hidden], zr[:, hidden:]
            if linear_before_reset:
                # ht = g(Xt*(Wh^T) + (rt (.) (Ht-1*(Rh^T) + Rbh)) + Wbh)
                h_tilde = g(_clipped(x @ W_h + r * (h @ R_h + Rb_h) + Wb_h, clip))
            else:
                # ht = g(Xt*(Wh^T) + (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)
                h_tilde = g(_clipped(x @ W_h + (r * h) @ R_h + Rb_h + Wb_h, clip))
            # Ht = (1 - zt) (.) ht + zt (.) Ht-1
            return ((1 - z) * h_tilde + z * h,)

        return cell

    return _recurrent(make_cell, X, [initial_h], sequence_lens, direction, layout)


@op("LSTM", since=7)
@op("LSTM", since=14)  # 14 adds `layout`
def LSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha=None, activation_beta=None, activations=("Sigmoid", "Tanh", "Tanh"),
         clip=None, direction="forward", hidden_size=None, input_forget=0, layout=0):
    """Long short-term memory, gates i, o, f, c — https://onnx.ai/onnx/operators/onnx__LSTM.html"""
    num_directions, hidden = W.shape[0], R.shape[-1]
    if B is None:
        B = np.zeros((num_directions, 8 * hidden), dtype=X.dtype)
    if P is None:
        P = np.zeros((num_directions, 3 * hidden), dtype=X.dtype)
    if initial_h is None:
        initial_h = _zeros_state(X, num_directions, hidden, layout)
    if initial_c is None:
        initial_c = _zeros_state(X, num_directions, hidden, layout)
    acts = _activation_functions(activations, activation_alpha, activation_beta, X.dtype,
                                 num_directions, per_direction=3)

    def make_cell(d):
        W_t, R_t = W[d].T, R[d].T  # [input, 4*hidden], [hidden, 4*hidden], gate order i, o, f, c
        bias = B[d, :4 * hidden] + B[d, 4 * hidden:]  # Wb + Rb: [4*hidden]
        P_i, P_o, P_f = P[d, :hidden], P[d, hidden:2 * hidden], P[d, 2 * hidden:]  # peepholes
        f, g, h_act = acts[d]

        def cell(x, h, c):
            gates = x @ W_t + h @ R_t + bias  # [batch, 4*hidden]
            gi, go, gf, gc = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            # it = f(Xt*(Wi^T) + Ht-1*(Ri^T) + Pi (.) Ct-1 + Wbi + Rbi)
            i = f(_clipped(gi + P_i * c, clip))
            if input_forget:
                ft = 1 - i  # input and forget gates coupled
            else:
                # ft = f(Xt*(Wf^T) + Ht-1*(Rf^T) + Pf (.) Ct-1 + Wbf + Rbf)
                ft = f(_clipped(gf + P_f * c, clip))
            # ct = g(Xt*(Wc^T) + Ht-1*(Rc^T) + Wbc + Rbc)
            c_tilde = g(_clipped(gc, clip))
            # Ct = ft (.) Ct-1 + it (.) ct
            c_new = ft * c + i * c_tilde
            # ot = f(Xt*(Wo^T) + Ht-1*(Ro^T) + Po (.) Ct + Wbo + Rbo)
            o = f(_clipped(go + P_o * c_new, clip))
            # Ht = ot (.) h(Ct)
            return o * h_act(c_new), c_new

        return cell

    return _recurrent(make_cell, X, [initial_h, initial_c], sequence_lens, direction, layout)


# --- opset 1 (and GRU 3): the same ops with an extra `output_sequence` attribute, which only
# said whether Y is produced; here Y is always computed and the session keeps what it needs ---


@op("RNN", since=1)
def RNN_1(X, W, R, B=None, sequence_lens=None, initial_h=None, *, output_sequence=0, **attributes):
    """RNN before opset 7 — https://onnx.ai/onnx/operators/onnx__RNN.html#rnn-1"""
    return RNN(X, W, R, B, sequence_lens, initial_h, **attributes)


@op("GRU", since=1)
def GRU_1(X, W, R, B=None, sequence_lens=None, initial_h=None, *, output_sequence=0, **attributes):
    """GRU before opset 7 (linear_before_reset from 3) — https://onnx.ai/onnx/operators/onnx__GRU.html#gru-3"""
    return GRU(X, W, R, B, sequence_lens, initial_h, **attributes)


@op("LSTM", since=1)
def LSTM_1(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
           output_sequence=0, **attributes):
    """LSTM before opset 7 — https://onnx.ai/onnx/operators/onnx__LSTM.html#lstm-1"""
    return LSTM(X, W, R, B, sequence_lens, initial_h, initial_c, P, **attributes)
