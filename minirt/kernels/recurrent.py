"""LSTM and GRU: the input projection of every time step in one GEMM, then one Numba loop over
the time steps.

The reference (``minirt.ops.recurrent``) runs a Python loop over time, and each step makes a
dozen NumPy calls on [batch, hidden] arrays: on a small model that is all call overhead. Here:

1. ``XW = X @ W^T`` for all ``seq * batch`` rows and every direction at once (one BLAS call);
2. ``_lstm_loops`` / ``_gru_loops`` (one call for all directions) walk the time steps (forward
   or reverse), one batch entry at a time (entries are independent), adding the biases and
   ``h @ R^T`` and applying the gates with scalar loops.

W^T, R^T and the biases are laid out once per weight and cached (read-only initializers only:
``minirt.kernels.quant._prepared`` says why that is safe). A batch entry past its ``sequence_lens`` keeps its state frozen and outputs zeros
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
from minirt.kernels.quant import _prepared
from minirt.ops.recurrent import GRU as GRU_reference
from minirt.ops.recurrent import LSTM as LSTM_reference
from minirt.registry import kernel

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _sigmoid(x, one):
    return one / (one + np.exp(-x))  # `one` of x's dtype: float32 stays float32


def _clip(x, clip):
    """x bounded to [-clip, clip] (clip = inf: no bound)."""
    if x > clip:
        return clip
    if x < -clip:
        return -clip
    return x


def _lstm_loops(xw, bias, Rt, P, lengths, h0, c0, reverse, clip, input_forget, one, Y, h_out, c_out):
    """LSTM over xw [seq, batch, dirs*4H] = X W^T (gate order i, o, f, c per direction).

    bias: Wb + Rb [dirs, 4H]; Rt: R^T [dirs, H, 4H]; P: peepholes [dirs, 3H] (i, o, f);
    h0, c0 [dirs, batch, H] -> h_out, c_out; Y [seq, dirs, batch, H] (zeros on entry).
    Direction d runs backwards when d == 1 or ``reverse``."""
    seq, batch, _ = xw.shape
    D, H, H4 = Rt.shape
    gates = np.empty(H4, xw.dtype)
    h = np.empty(H, xw.dtype)
    c = np.empty(H, xw.dtype)
    for d in range(D):
        back = reverse or d == 1
        off = d * H4
        for b in range(batch):
            for j in range(H):
                h[j] = h0[d, b, j]
                c[j] = c0[d, b, j]
            for step in range(seq):
                t = seq - 1 - step if back else step
                if t >= lengths[b]:
                    continue  # past this entry's end: state frozen, output zero
                for j in range(H4):
                    gates[j] = xw[t, b, off + j] + bias[d, j]
                for k in range(H):  # gates += h @ R^T
                    hk = h[k]
                    for j in range(H4):
                        gates[j] += hk * Rt[d, k, j]
                for j in range(H):
                    i = _sigmoid(_clip(gates[j] + P[d, j] * c[j], clip), one)
                    if input_forget:
                        f = one - i
                    else:
                        f = _sigmoid(_clip(gates[2 * H + j] + P[d, 2 * H + j] * c[j], clip), one)
                    c_tilde = np.tanh(_clip(gates[3 * H + j], clip))
                    c_new = f * c[j] + i * c_tilde
                    o = _sigmoid(_clip(gates[H + j] + P[d, H + j] * c_new, clip), one)
                    c[j] = c_new
                    h[j] = o * np.tanh(c_new)  # the old h is no longer needed: gates are done
                for j in range(H):
                    Y[t, d, b, j] = h[j]
            for j in range(H):
                h_out[d, b, j] = h[j]
                c_out[d, b, j] = c[j]


def _gru_loops(xw, Wb, Rb, Rt, lengths, h0, reverse, clip, linear_before_reset, one, Y, h_out):
    """GRU over xw [seq, batch, dirs*3H] = X W^T (gate order z, r, h per direction).

    Wb, Rb [dirs, 3H]; Rt: R^T [dirs, H, 3H]; h0 [dirs, batch, H] -> h_out;
    Y [seq, dirs, batch, H] (zeros on entry)."""
    seq, batch, _ = xw.shape
    D, H, H3 = Rt.shape
    zr = np.empty(2 * H, xw.dtype)
    hr = np.empty(H, xw.dtype)
    rh = np.empty(H, xw.dtype)
    h = np.empty(H, xw.dtype)
    for d in range(D):
        back = reverse or d == 1
        off = d * H3
        for b in range(batch):
            for j in range(H):
                h[j] = h0[d, b, j]
            for step in range(seq):
                t = seq - 1 - step if back else step
                if t >= lengths[b]:
                    continue
                for j in range(2 * H):  # z, r: f(Xt W^T + Ht-1 R^T + Wb + Rb)
                    zr[j] = xw[t, b, off + j] + Wb[d, j] + Rb[d, j]
                for k in range(H):
                    hk = h[k]
                    for j in range(2 * H):
                        zr[j] += hk * Rt[d, k, j]
                for j in range(2 * H):
                    zr[j] = _sigmoid(_clip(zr[j], clip), one)
                if linear_before_reset:  # ht = g(Xt Wh^T + rt (.) (Ht-1 Rh^T + Rbh) + Wbh)
                    for j in range(H):
                        hr[j] = Rb[d, 2 * H + j]
                    for k in range(H):
                        hk = h[k]
                        for j in range(H):
                            hr[j] += hk * Rt[d, k, 2 * H + j]
                    for j in range(H):
                        hr[j] = xw[t, b, off + 2 * H + j] + Wb[d, 2 * H + j] + zr[H + j] * hr[j]
                else:  # ht = g(Xt Wh^T + (rt (.) Ht-1) Rh^T + Rbh + Wbh)
                    for k in range(H):
                        rh[k] = zr[H + k] * h[k]
                    for j in range(H):
                        hr[j] = 0
                    for k in range(H):
                        rk = rh[k]
                        for j in range(H):
                            hr[j] += rk * Rt[d, k, 2 * H + j]
                    for j in range(H):
                        hr[j] = xw[t, b, off + 2 * H + j] + Wb[d, 2 * H + j] + hr[j] + Rb[d, 2 * H + j]
                for j in range(H):  # Ht = (1 - zt) (.) ht + zt (.) Ht-1
                    h_tilde = np.tanh(_clip(hr[j], clip))
                    z = zr[j]
                    h[j] = (one - z) * h_tilde + z * h[j]
                for j in range(H):
                    Y[t, d, b, j] = h[j]
            for j in range(H):
                h_out[d, b, j] = h[j]


_sigmoid = numba.njit(cache=True, inline="always")(_sigmoid)
_clip = numba.njit(cache=True, inline="always")(_clip)
lstm_loops = numba.njit(cache=True, nogil=True)(_lstm_loops)
gru_loops = numba.njit(cache=True, nogil=True)(_gru_loops)


def _default_activations(activations, defaults, num_directions):
    names = [a.decode() if isinstance(a, bytes) else a for a in activations]
    names = [a.lower() for a in names]
    return names == list(defaults) or names == list(defaults) * num_directions


def _prepare(X, W, R, B, initial_states, sequence_lens, layout, gates, P=None):
    """Common checks and layout: (X [seq, batch, input], states [dirs, batch, H], lengths), or
    None for the reference (which raises its own errors). The shapes are checked here: the
    loops do not check their indices."""
    dtype = X.dtype
    if dtype not in _FLOATS or X.ndim != 3 or W.ndim != 3 or R.ndim != 3:
        return None
    if any(a is not None and a.dtype != dtype for a in (W, R, B, P, *initial_states)):
        return None
    D, H = W.shape[0], R.shape[-1]
    if (W.shape[1] != gates * H or R.shape != (D, gates * H, H) or W.shape[2] != X.shape[2]
            or (B is not None and B.shape != (D, 2 * gates * H))
            or (P is not None and P.shape != (D, 3 * H))):
        return None
    if layout == 1:
        X = X.swapaxes(0, 1)
        initial_states = [None if s is None else s.swapaxes(0, 1) for s in initial_states]
    seq, batch = X.shape[:2]
    if any(s is not None and s.shape != (D, batch, H) for s in initial_states):
        return None
    if sequence_lens is None:
        lengths = np.full(batch, seq, dtype=np.int64)
    else:
        lengths = np.asarray(sequence_lens, dtype=np.int64).reshape(-1)
        if lengths.size != batch:
            return None
    return X, initial_states, lengths


def _weights(W, R, B, P, gates):
    """The per-weight work, cached for read-only weights (minirt.kernels.quant._prepared):
    W^T of every direction side by side [input, dirs*G*H], R^T [dirs, H, G*H], Wb and Rb
    [dirs, G*H], peepholes [dirs, 3H]."""

    def make():
        D, GH, n_in = W.shape
        dtype = W.dtype
        Wt = np.ascontiguousarray(W.reshape(D * GH, n_in).T)
        Rt = np.ascontiguousarray(R.transpose(0, 2, 1))
        Bz = np.zeros((D, 2 * GH), dtype) if B is None else B
        Wb, Rb = np.ascontiguousarray(Bz[:, :GH]), np.ascontiguousarray(Bz[:, GH:])
        Pp = np.zeros((D, 3 * (GH // gates)), dtype) if P is None else np.ascontiguousarray(P)
        return Wt, Rt, Wb, Rb, Pp

    return _prepared(W, ("recurrent", gates), (R, B, P), make)


def _input_projection(X, Wt):
    """X [seq, batch, input] @ W^T of every direction -> [seq, batch, dirs*G*H] (one GEMM)."""
    seq, batch, n_in = X.shape
    return matmul(np.ascontiguousarray(X).reshape(seq * batch, n_in), Wt).reshape(seq, batch, -1)


def _outputs(Y, states, layout):
    if layout == 1:
        return (Y.transpose(2, 0, 1, 3), *[s.swapaxes(0, 1) for s in states])
    return (Y, *states)


def _state(s, shape, dtype):
    return np.zeros(shape, dtype) if s is None else np.ascontiguousarray(s)


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
        prep = _prepare(X, W, R, B, [initial_h, initial_c], sequence_lens, layout, 4, P)
    if prep is None:
        return LSTM_reference(X, W, R, B, sequence_lens, initial_h, initial_c, P,
                              activation_alpha=activation_alpha, activation_beta=activation_beta,
                              activations=activations, clip=clip, direction=direction,
                              hidden_size=hidden_size, input_forget=input_forget, layout=layout)
    X, (h0, c0), lengths = prep
    dtype, H = X.dtype, R.shape[-1]
    seq, batch = X.shape[:2]
    Wt, Rt, Wb, Rb, Pp = _weights(W, R, B, P, 4)
    xw = _input_projection(X, Wt)
    shape = (num_directions, batch, H)
    Y = np.zeros((seq, num_directions, batch, H), dtype)
    h_out, c_out = np.empty(shape, dtype), np.empty(shape, dtype)
    lstm_loops(xw, Wb + Rb, Rt, Pp, lengths, _state(h0, shape, dtype), _state(c0, shape, dtype),
               direction == "reverse", dtype.type(np.inf if clip is None else clip),
               bool(input_forget), dtype.type(1), Y, h_out, c_out)
    return _outputs(Y, [h_out, c_out], layout)


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
        prep = _prepare(X, W, R, B, [initial_h], sequence_lens, layout, 3)
    if prep is None:
        return GRU_reference(X, W, R, B, sequence_lens, initial_h,
                             activation_alpha=activation_alpha, activation_beta=activation_beta,
                             activations=activations, clip=clip, direction=direction,
                             hidden_size=hidden_size, layout=layout,
                             linear_before_reset=linear_before_reset)
    X, (h0,), lengths = prep
    dtype, H = X.dtype, R.shape[-1]
    seq, batch = X.shape[:2]
    Wt, Rt, Wb, Rb, _ = _weights(W, R, B, None, 3)
    xw = _input_projection(X, Wt)
    shape = (num_directions, batch, H)
    Y = np.zeros((seq, num_directions, batch, H), dtype)
    h_out = np.empty(shape, dtype)
    gru_loops(xw, Wb, Rb, Rt, lengths, _state(h0, shape, dtype), direction == "reverse",
              dtype.type(np.inf if clip is None else clip), bool(linear_before_reset),
              dtype.type(1), Y, h_out)
    return _outputs(Y, [h_out], layout)
