"""LSTM and GRU: the input projection of every time step in one GEMM, then one Numba loop over
the time steps.

The reference (``minirt.ops.recurrent``) runs a Python loop over time, and each step makes a
dozen NumPy calls on [batch, hidden] arrays: on a small model that is all call overhead. Here:

1. ``XW = X @ W^T + Wb`` for all ``seq * batch`` rows at once (one BLAS call per direction);
2. ``_lstm_loops`` / ``_gru_loops`` walk the time steps (forward or reverse), one batch entry at
   a time (entries are independent), adding ``h @ R^T`` and applying the gates with scalar
   loops. A batch entry past its ``sequence_lens`` keeps its state frozen and outputs zeros
   there; in reverse it starts at its own last step — as the reference does.

Handled: both layouts, forward / reverse / bidirectional, sequence_lens, initial states, clip,
LSTM peepholes and input_forget, GRU linear_before_reset, float32 or float64. Non-default
activations (anything but Sigmoid, Tanh, Tanh for LSTM / Sigmoid, Tanh for GRU) and mixed dtypes
run the reference.

Results agree with the reference to float32 rounding, not bit for bit: the sums of ``h @ R^T``
are added in another order than BLAS adds them, the input bias is added to ``X @ W^T`` before
``h @ R^T`` rather than after, and Numba's ``exp``/``tanh`` may differ from NumPy's by an ulp. The
gates squash their inputs (|sigmoid'|, |tanh'| <= 1) and the cell state is a convex-ish mix, so
these differences do not grow along the sequence (the tests check 1e-5 over 30 steps).
"""

from __future__ import annotations

import numba
import numpy as np

from minirt.kernels.gemm import matmul
from minirt.ops.recurrent import GRU as GRU_reference
from minirt.ops.recurrent import LSTM as LSTM_reference
from minirt.registry import kernel

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _clip(x, clip):
    """x bounded to [-clip, clip] (clip = inf: no bound)."""
    if x > clip:
        return clip
    if x < -clip:
        return -clip
    return x


def _lstm_loops(xw, Rt, P, lengths, h0, c0, reverse, clip, input_forget, Y, h_out, c_out):
    """One direction of LSTM over xw [seq, batch, 4H] = X W^T + Wb + Rb (gate order i, o, f, c).

    Rt: R^T [H, 4H]; P: peepholes [3H] (i, o, f); h0, c0 [batch, H] -> h_out, c_out;
    Y [seq, batch, H] (zeros on entry)."""
    seq, batch, H4 = xw.shape
    H = H4 // 4
    gates = np.empty(H4, xw.dtype)
    for b in range(batch):
        h = h0[b].copy()
        c = c0[b].copy()
        for step in range(seq):
            t = seq - 1 - step if reverse else step
            if t >= lengths[b]:
                continue  # past this entry's end: state frozen, output zero
            for j in range(H4):
                gates[j] = xw[t, b, j]
            for k in range(H):  # gates += h @ R^T
                hk = h[k]
                for j in range(H4):
                    gates[j] += hk * Rt[k, j]
            for j in range(H):
                i = _sigmoid(_clip(gates[j] + P[j] * c[j], clip))
                if input_forget:
                    f = 1 - i
                else:
                    f = _sigmoid(_clip(gates[2 * H + j] + P[2 * H + j] * c[j], clip))
                c_tilde = np.tanh(_clip(gates[3 * H + j], clip))
                c_new = f * c[j] + i * c_tilde
                o = _sigmoid(_clip(gates[H + j] + P[H + j] * c_new, clip))
                c[j] = c_new
                h[j] = o * np.tanh(c_new)  # h's old values are no longer needed: gates are done
            for j in range(H):
                Y[t, b, j] = h[j]
        h_out[b] = h
        c_out[b] = c


def _gru_loops(xw, Rt, Rb, h0, lengths, reverse, clip, linear_before_reset, Y, h_out):
    """One direction of GRU over xw [seq, batch, 3H] = X W^T + Wb (gate order z, r, h).

    Rt: R^T [H, 3H]; Rb [3H]; h0 [batch, H] -> h_out; Y [seq, batch, H] (zeros on entry)."""
    seq, batch, H3 = xw.shape
    H = H3 // 3
    zr = np.empty(2 * H, xw.dtype)
    hr = np.empty(H, xw.dtype)
    rh = np.empty(H, xw.dtype)
    for b in range(batch):
        h = h0[b].copy()
        for step in range(seq):
            t = seq - 1 - step if reverse else step
            if t >= lengths[b]:
                continue
            for j in range(2 * H):  # z, r: f(Xt W^T + Ht-1 R^T + Wb + Rb)
                zr[j] = xw[t, b, j] + Rb[j]
            for k in range(H):
                hk = h[k]
                for j in range(2 * H):
                    zr[j] += hk * Rt[k, j]
            for j in range(2 * H):
                zr[j] = _sigmoid(_clip(zr[j], clip))
            if linear_before_reset:  # ht = g(Xt Wh^T + rt (.) (Ht-1 Rh^T + Rbh) + Wbh)
                for j in range(H):
                    hr[j] = Rb[2 * H + j]
                for k in range(H):
                    hk = h[k]
                    for j in range(H):
                        hr[j] += hk * Rt[k, 2 * H + j]
                for j in range(H):
                    hr[j] = xw[t, b, 2 * H + j] + zr[H + j] * hr[j]
            else:  # ht = g(Xt Wh^T + (rt (.) Ht-1) Rh^T + Rbh + Wbh)
                for k in range(H):
                    rh[k] = zr[H + k] * h[k]
                for j in range(H):
                    hr[j] = 0
                for k in range(H):
                    rk = rh[k]
                    for j in range(H):
                        hr[j] += rk * Rt[k, 2 * H + j]
                for j in range(H):
                    hr[j] = xw[t, b, 2 * H + j] + hr[j] + Rb[2 * H + j]
            for j in range(H):  # Ht = (1 - zt) (.) ht + zt (.) Ht-1
                h_tilde = np.tanh(_clip(hr[j], clip))
                z = zr[j]
                h[j] = (1 - z) * h_tilde + z * h[j]
            for j in range(H):
                Y[t, b, j] = h[j]
        h_out[b] = h


_sigmoid = numba.njit(cache=True, inline="always")(_sigmoid)
_clip = numba.njit(cache=True, inline="always")(_clip)
lstm_loops = numba.njit(cache=True, nogil=True)(_lstm_loops)
gru_loops = numba.njit(cache=True, nogil=True)(_gru_loops)


def _default_activations(activations, defaults, num_directions):
    names = [a.decode() if isinstance(a, bytes) else a for a in activations]
    names = [a.lower() for a in names]
    return names == list(defaults) or names == list(defaults) * num_directions


def _prepare(X, W, R, B, initial_states, sequence_lens, layout, extra=()):
    """Common checks and layout: (X [seq, batch, input], states [dirs, batch, H], lengths) or None."""
    dtype = X.dtype
    if dtype not in _FLOATS or X.ndim != 3 or W.ndim != 3 or R.ndim != 3:
        return None
    if any(a is not None and a.dtype != dtype for a in (W, R, B, *initial_states, *extra)):
        return None
    if layout == 1:
        X = X.swapaxes(0, 1)
        initial_states = [None if s is None else s.swapaxes(0, 1) for s in initial_states]
    seq, batch = X.shape[:2]
    if sequence_lens is None:
        lengths = np.full(batch, seq, dtype=np.int64)
    else:
        lengths = np.asarray(sequence_lens, dtype=np.int64).reshape(-1)
        if lengths.size != batch:
            return None
    return X, initial_states, lengths


def _input_projection(X, W_d, bias):
    """X [seq, batch, input] @ W_d^T + bias -> [seq, batch, gates*H] (one GEMM)."""
    seq, batch, n_in = X.shape
    xw = matmul(np.ascontiguousarray(X).reshape(seq * batch, n_in), np.ascontiguousarray(W_d.T))
    xw += bias
    return xw.reshape(seq, batch, -1)


def _outputs(Ys, states, layout):
    Y = np.stack(Ys, axis=1)  # [seq, dirs, batch, H]
    if layout == 1:
        return (Y.transpose(2, 0, 1, 3), *[s.swapaxes(0, 1) for s in states])
    return (Y, *states)


@kernel("LSTM", since=7)
@kernel("LSTM", since=14)
def LSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha=None, activation_beta=None, activations=("Sigmoid", "Tanh", "Tanh"),
         clip=None, direction="forward", hidden_size=None, input_forget=0, layout=0):
    """Fast LSTM: one GEMM for the inputs, one Numba loop over time per direction."""
    num_directions = 2 if direction == "bidirectional" else 1
    prep = None
    if _default_activations(activations, ("sigmoid", "tanh", "tanh"), num_directions) \
            and W.shape[0] == num_directions:
        prep = _prepare(X, W, R, B, [initial_h, initial_c], sequence_lens, layout, extra=(P,))
    if prep is None:
        return LSTM_reference(X, W, R, B, sequence_lens, initial_h, initial_c, P,
                              activation_alpha=activation_alpha, activation_beta=activation_beta,
                              activations=activations, clip=clip, direction=direction,
                              hidden_size=hidden_size, input_forget=input_forget, layout=layout)
    X, (h0, c0), lengths = prep
    dtype, H = X.dtype, R.shape[-1]
    seq, batch = X.shape[:2]
    zeros = np.zeros((num_directions, batch, H), dtype)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    clip_v = dtype.type(np.inf if clip is None else clip)
    Ys, hs, cs = [], np.empty((num_directions, batch, H), dtype), np.empty((num_directions, batch, H), dtype)
    for d in range(num_directions):
        bias = np.zeros(4 * H, dtype) if B is None else B[d, :4 * H] + B[d, 4 * H:]  # Wb + Rb
        xw = _input_projection(X, W[d], bias)
        Pd = np.zeros(3 * H, dtype) if P is None else np.ascontiguousarray(P[d])
        Y = np.zeros((seq, batch, H), dtype)
        lstm_loops(xw, np.ascontiguousarray(R[d].T), Pd, lengths, np.ascontiguousarray(h0[d]),
                   np.ascontiguousarray(c0[d]), direction == "reverse" or d == 1, clip_v,
                   bool(input_forget), Y, hs[d], cs[d])
        Ys.append(Y)
    return _outputs(Ys, [hs, cs], layout)


@kernel("GRU", since=7)
@kernel("GRU", since=14)
def GRU(X, W, R, B=None, sequence_lens=None, initial_h=None, *,
        activation_alpha=None, activation_beta=None, activations=("Sigmoid", "Tanh"),
        clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    """Fast GRU: one GEMM for the inputs, one Numba loop over time per direction."""
    num_directions = 2 if direction == "bidirectional" else 1
    prep = None
    if _default_activations(activations, ("sigmoid", "tanh"), num_directions) \
            and W.shape[0] == num_directions:
        prep = _prepare(X, W, R, B, [initial_h], sequence_lens, layout)
    if prep is None:
        return GRU_reference(X, W, R, B, sequence_lens, initial_h,
                             activation_alpha=activation_alpha, activation_beta=activation_beta,
                             activations=activations, clip=clip, direction=direction,
                             hidden_size=hidden_size, layout=layout,
                             linear_before_reset=linear_before_reset)
    X, (h0,), lengths = prep
    dtype, H = X.dtype, R.shape[-1]
    seq, batch = X.shape[:2]
    h0 = np.zeros((num_directions, batch, H), dtype) if h0 is None else h0
    clip_v = dtype.type(np.inf if clip is None else clip)
    Ys, hs = [], np.empty((num_directions, batch, H), dtype)
    for d in range(num_directions):
        Wb = np.zeros(3 * H, dtype) if B is None else B[d, :3 * H]
        Rb = np.zeros(3 * H, dtype) if B is None else np.ascontiguousarray(B[d, 3 * H:])
        xw = _input_projection(X, W[d], Wb)
        Y = np.zeros((seq, batch, H), dtype)
        gru_loops(xw, np.ascontiguousarray(R[d].T), Rb, np.ascontiguousarray(h0[d]), lengths,
                  direction == "reverse" or d == 1, clip_v, bool(linear_before_reset), Y, hs[d])
        Ys.append(Y)
    return _outputs(Ys, [hs], layout)
