"""Control flow: If, Loop, Scan.

A GRAPH attribute arrives as a Python callable ``body(*inputs) -> list`` that runs the subgraph
with the outer scope already bound; these ops only decide how often, and with what, to call it.
"""

from __future__ import annotations

import numpy as np

from minirt.registry import op


def _truth(x) -> bool:
    """A one-element bool tensor as a Python bool."""
    return bool(np.asarray(x).item())


@op("If", since=1)
def If(cond, *, then_branch, else_branch):
    """outputs = then_branch() if cond else else_branch() — https://onnx.ai/onnx/operators/onnx__If.html"""
    branch = then_branch if _truth(cond) else else_branch
    return tuple(branch())


@op("Loop", since=1)
def Loop(M=None, cond=None, *v_initial, body):
    """for i in range(M) while cond: cond, v, scan = body(i, cond, v) — https://onnx.ai/onnx/operators/onnx__Loop.html"""
    max_trip_count = None if M is None else int(np.asarray(M).item())
    keep_going = True if cond is None else _truth(cond)
    carried = list(v_initial)
    scanned = []  # one list of scan-output values per iteration
    i = 0
    while keep_going and (max_trip_count is None or i < max_trip_count):
        outputs = body(np.array(i, dtype=np.int64), np.array(keep_going), *carried)
        # the spec's pseudo-code ignores the body's cond when the cond input is absent;
        # onnxruntime (and onnx's reference) stop on it anyway, and so do we
        keep_going = _truth(outputs[0])
        carried = list(outputs[1:1 + len(carried)])
        scanned.append(outputs[1 + len(carried):])
        i += 1
    if scanned:
        scan_outputs = [np.stack(values) for values in zip(*scanned)]  # each [iterations, ...]
    else:  # zero iterations: empty scan outputs, typed as the body declares them
        declared = getattr(body, "outputs", [])[1 + len(carried):]
        scan_outputs = [np.empty((0, *_known_dims(v.shape)), dtype=v.dtype or np.float32) for v in declared]
    return (*carried, *scan_outputs)


def _known_dims(shape) -> tuple[int, ...]:
    """The per-iteration shape of a scan output when the body declares it fully, else ()."""
    if shape and all(isinstance(d, int) for d in shape):
        return tuple(shape)
    return ()


@op("Scan", since=9)
def Scan(*initial_state_and_scan_inputs, body, num_scan_inputs, scan_input_axes=None,
         scan_input_directions=None, scan_output_axes=None, scan_output_directions=None):
    """state, y_t = body(state, x_t) over the scan axis of each x — https://onnx.ai/onnx/operators/onnx__Scan.html"""
    num_states = len(initial_state_and_scan_inputs) - num_scan_inputs
    states = list(initial_state_and_scan_inputs[:num_states])
    scan_inputs = initial_state_and_scan_inputs[num_states:]
    in_axes = scan_input_axes or [0] * num_scan_inputs
    in_directions = scan_input_directions or [0] * num_scan_inputs
    sequences = []
    for x, axis, reverse in zip(scan_inputs, in_axes, in_directions):
        x = np.moveaxis(x, axis, 0)  # scan axis first: [..., T, ...] -> [T, ...]
        sequences.append(x[::-1] if reverse else x)
    scanned = []  # one list of scan-output values per iteration
    for t in range(sequences[0].shape[0]):
        outputs = body(*states, *(x[t] for x in sequences))
        states = list(outputs[:num_states])
        scanned.append(outputs[num_states:])
    scan_outputs = []
    for j, values in enumerate(zip(*scanned)):
        y = np.stack(values)  # [T, ...]
        if scan_output_directions and scan_output_directions[j]:
            y = y[::-1]  # reverse: the last iteration's value comes first
        axis = scan_output_axes[j] if scan_output_axes else 0
        scan_outputs.append(np.moveaxis(y, 0, axis))  # [T, ...] -> [..., T at axis, ...]
    return (*states, *scan_outputs)


@op("Scan", since=8)
def Scan_8(sequence_lens, *initial_state_and_scan_inputs, body, num_scan_inputs, directions=None):
    """Scan with a leading batch axis: inputs [batch, ...], scans [batch, T, ...] —
    https://onnx.ai/onnx/operators/onnx__Scan.html#scan-8"""
    num_states = len(initial_state_and_scan_inputs) - num_scan_inputs
    states = initial_state_and_scan_inputs[:num_states]
    scan_inputs = initial_state_and_scan_inputs[num_states:]
    batch, max_len = scan_inputs[0].shape[:2]
    lengths = [max_len] * batch if sequence_lens is None else [int(n) for n in sequence_lens]
    per_item = []
    for b in range(batch):
        item_inputs = [s[b] for s in states] + [x[b, :lengths[b]] for x in scan_inputs]
        per_item.append(Scan(*item_inputs, body=body, num_scan_inputs=num_scan_inputs,
                             scan_input_directions=directions))
    outputs = []
    for j, values in enumerate(zip(*per_item)):
        if j >= num_states:  # scan outputs of shorter sequences are padded with zeros to max_len
            values = [np.pad(v, [(0, max_len - len(v))] + [(0, 0)] * (v.ndim - 1)) for v in values]
        outputs.append(np.stack(values))  # [batch, ...]
    return tuple(outputs)
