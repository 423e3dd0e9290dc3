"""Shape and tensor-construction ops: Reshape, Transpose, Concat, Split, Pad, Expand, Range ...

These ops move data around without doing arithmetic on it, so they must keep the input's
dtype exactly. Most are one NumPy call; the comments say how ONNX differs from NumPy.
"""

from __future__ import annotations

import math

import numpy as np

from minirt.ops._common import as_ints, normalize_axis, np_dtype
from minirt.registry import op

# --------------------------------------------------------------------------------------------
# constants and shapes


@op("Constant", since=1)
def Constant(*, value=None, sparse_value=None, value_float=None, value_floats=None,
             value_int=None, value_ints=None, value_string=None, value_strings=None):
    """y = the one value attribute that is set — https://onnx.ai/onnx/operators/onnx__Constant.html"""
    if value is not None:
        return np.asarray(value)
    if sparse_value is not None:
        raise NotImplementedError("Constant: sparse_value (sparse tensors) is not supported by minirt")
    if value_float is not None:
        return np.asarray(value_float, dtype=np.float32)  # 0-d
    if value_floats is not None:
        return np.asarray(value_floats, dtype=np.float32)  # [n]
    if value_int is not None:
        return np.asarray(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.asarray(value_ints, dtype=np.int64)
    if value_string is not None:
        return np.asarray(value_string, dtype=object)
    if value_strings is not None:
        return np.asarray(list(value_strings), dtype=object)
    raise ValueError("Constant: exactly one of the value* attributes must be set, none was")


@op("Shape", since=1)
def Shape(data, *, start=0, end=None):
    """y = data.shape[start:end] as int64 (negative ends count from the back, clamped)
    — https://onnx.ai/onnx/operators/onnx__Shape.html"""
    return np.asarray(data.shape[start:end], dtype=np.int64)  # Python slicing clamps like ONNX


@op("Size", since=1)
def Size(data):
    """y = number of elements of data, an int64 scalar — https://onnx.ai/onnx/operators/onnx__Size.html"""
    return np.asarray(data.size, dtype=np.int64)


@op("ConstantOfShape", since=9)
def ConstantOfShape(input, *, value=None):
    """y = full(input, value), value defaults to float32 0
    — https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html"""
    if value is None:
        value = np.zeros(1, dtype=np.float32)
    value = np.asarray(value)
    return np.full(as_ints(input), value.reshape(()), dtype=value.dtype)


@op("EyeLike", since=9)
def EyeLike(input, *, dtype=None, k=0):
    """y[i, j] = 1 if j - i == k else 0, shaped like the 2-D input
    — https://onnx.ai/onnx/operators/onnx__EyeLike.html"""
    out_dtype = input.dtype if dtype is None else np_dtype(dtype)
    rows, cols = input.shape
    return np.eye(rows, cols, k=k, dtype=out_dtype)


@op("Range", since=27)
def Range(start, limit, delta, *, stash_type=1):
    """y[i] = start + i * delta for i < max(ceil((limit - start) / delta), 0)
    — https://onnx.ai/onnx/operators/onnx__Range.html"""
    dtype = np.asarray(start).dtype
    if stash_type == 1 and dtype in (np_dtype(10), np_dtype(16)):  # float16, bfloat16: count in float32
        y = Range_11(*(np.asarray(v, dtype=np.float32) for v in (start, limit, delta)))
        return y.astype(dtype)
    return Range_11(start, limit, delta)


@op("Range", since=11)
def Range_11(start, limit, delta):
    """y[i] = start + i * delta for i < max(ceil((limit - start) / delta), 0)
    — https://onnx.ai/onnx/operators/onnx__Range.html"""
    dtype = np.asarray(start).dtype
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if dtype.kind in "iu":
        start, limit, delta = int(start), int(limit), int(delta)
        n = max(-((start - limit) // delta), 0)  # exact integer ceil((limit - start) / delta)
    else:
        n = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    return (start + np.arange(n, dtype=dtype) * delta).astype(dtype)


# --------------------------------------------------------------------------------------------
# reshaping


@op("Reshape", since=5)
def Reshape(data, shape, *, allowzero=0):
    """y = data viewed with a new shape; a 0 copies data's dim (unless allowzero), -1 is inferred
    — https://onnx.ai/onnx/operators/onnx__Reshape.html"""
    new_shape = as_ints(shape)
    if not allowzero and 0 in new_shape:
        new_shape = [data.shape[i] if d == 0 else d for i, d in enumerate(new_shape)]
    return data.reshape(new_shape)  # the method: np.reshape's dispatch costs 0.6 us more


@op("Reshape", since=1)
def Reshape_1(data, *, shape=(), consumed_inputs=None):
    """y = data viewed with the `shape` attribute (0 copies a dim, -1 is inferred)
    — https://onnx.ai/onnx/operators/onnx__Reshape.html"""
    return Reshape(data, np.asarray(shape, dtype=np.int64))


@op("Flatten", since=1)
def Flatten(input, *, axis=1):
    """y = input as 2-D: [prod(shape[:axis]), prod(shape[axis:])]
    — https://onnx.ai/onnx/operators/onnx__Flatten.html"""
    axis = normalize_axis(axis, input.ndim)
    outer = math.prod(input.shape[:axis])
    inner = math.prod(input.shape[axis:])
    return input.reshape(outer, inner)  # [d0 .. dn] -> [d0*..*d(axis-1), d(axis)*..*dn]


@op("Squeeze", since=13)
def Squeeze(data, axes=None):
    """y = data without the size-1 dims listed in axes (all size-1 dims when absent)
    — https://onnx.ai/onnx/operators/onnx__Squeeze.html"""
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(as_ints(axes)))


@op("Squeeze", since=1)
def Squeeze_1(data, *, axes=None):
    """y = data without the size-1 dims listed in the axes attribute
    — https://onnx.ai/onnx/operators/onnx__Squeeze.html"""
    return Squeeze(data, axes)


@op("Unsqueeze", since=13)
def Unsqueeze(data, axes):
    """y = data with size-1 dims inserted at axes (axes index the output's dims)
    — https://onnx.ai/onnx/operators/onnx__Unsqueeze.html"""
    return np.expand_dims(data, axis=tuple(as_ints(axes)))


@op("Unsqueeze", since=1)
def Unsqueeze_1(data, *, axes):
    """y = data with size-1 dims inserted at the axes attribute
    — https://onnx.ai/onnx/operators/onnx__Unsqueeze.html"""
    return Unsqueeze(data, axes)


@op("Transpose", since=1)
def Transpose(data, *, perm=None):
    """y = data with dims permuted, y.shape[i] = data.shape[perm[i]] (reversed by default)
    — https://onnx.ai/onnx/operators/onnx__Transpose.html"""
    # a view: no data is copied until someone needs it (the method: np.transpose costs 0.35 us more)
    return data.transpose(perm) if perm is not None else data.transpose()


@op("DepthToSpace", since=1)
def DepthToSpace(input, *, blocksize, mode="DCR"):
    """Move channel blocks into b x b spatial blocks: [N, C*b*b, H, W] -> [N, C, H*b, W*b]
    — https://onnx.ai/onnx/operators/onnx__DepthToSpace.html"""
    n, c, h, w = input.shape
    b = blocksize
    if mode == "DCR":  # channel index = (row, col, depth)
        tmp = input.reshape(n, b, b, c // (b * b), h, w)
        tmp = tmp.transpose(0, 3, 4, 1, 5, 2)  # [N, C, H, b_row, W, b_col]
    elif mode == "CRD":  # channel index = (depth, row, col)
        tmp = input.reshape(n, c // (b * b), b, b, h, w)
        tmp = tmp.transpose(0, 1, 4, 2, 5, 3)  # [N, C, H, b_row, W, b_col]
    else:
        raise ValueError(f"DepthToSpace: mode must be 'DCR' or 'CRD', got {mode!r}")
    return tmp.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth", since=28)
def SpaceToDepth(input, *, blocksize, mode="DCR"):
    """Move b x b spatial blocks into channels: [N, C, H*b, W*b] -> [N, C*b*b, H, W]
    — https://onnx.ai/onnx/operators/onnx__SpaceToDepth.html"""
    n, c, h, w = input.shape
    b = blocksize
    tmp = input.reshape(n, c, h // b, b, w // b, b)  # [N, C, H/b, b_row, W/b, b_col]
    if mode == "DCR":  # channel index = (row, col, depth)
        tmp = tmp.transpose(0, 3, 5, 1, 2, 4)  # [N, b_row, b_col, C, H/b, W/b]
    elif mode == "CRD":  # channel index = (depth, row, col)
        tmp = tmp.transpose(0, 1, 3, 5, 2, 4)  # [N, C, b_row, b_col, H/b, W/b]
    else:
        raise ValueError(f"SpaceToDepth: mode must be 'DCR' or 'CRD', got {mode!r}")
    return tmp.reshape(n, c * b * b, h // b, w // b)


@op("SpaceToDepth", since=1)
def SpaceToDepth_1(input, *, blocksize):
    """Move b x b spatial blocks into channels (DCR order): [N, C, H*b, W*b] -> [N, C*b*b, H, W]
    — https://onnx.ai/onnx/operators/onnx__SpaceToDepth.html"""
    return SpaceToDepth(input, blocksize=blocksize)


# --------------------------------------------------------------------------------------------
# joining and splitting


@op("Concat", since=4)
def Concat(*inputs, axis):
    """y = inputs joined along axis — https://onnx.ai/onnx/operators/onnx__Concat.html"""
    return np.concatenate(inputs, axis=axis)


@op("Concat", since=1)
def Concat_1(*inputs, axis=1):
    """y = inputs joined along axis (1 by default) — https://onnx.ai/onnx/operators/onnx__Concat.html"""
    return np.concatenate(inputs, axis=axis)


def _split_sizes(dim: int, split, num_outputs) -> list[int]:
    """Sizes of the parts: the `split` list, or `num_outputs` parts of ceil(dim / n) (last smaller)."""
    if split is not None:
        return as_ints(split)
    if num_outputs is None:
        raise ValueError("Split: without a `split` input the number of outputs (num_outputs) is needed")
    chunk = -(-dim // num_outputs)  # ceil
    return [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]


def _split(input, sizes, axis):
    """The parts of input along axis, as a tuple of views."""
    axis = normalize_axis(axis, input.ndim)
    if sum(sizes) != input.shape[axis]:
        raise ValueError(f"Split: split sizes {sizes} do not add up to dim {input.shape[axis]} of axis {axis}")
    index = [slice(None)] * input.ndim
    parts = []
    start = 0  # a running sum of the sizes (np.cumsum cost 3 us for 3 parts)
    for size in sizes:
        index[axis] = slice(start, start + size)
        parts.append(input[tuple(index)])  # [.., dim, ..] -> [.., size_i, ..]
        start += size
    return tuple(parts)


@op("Split", since=18)
def Split(input, split=None, *, axis=0, num_outputs=None):
    """Cut input along axis into parts of sizes `split`, or into num_outputs near-equal parts
    — https://onnx.ai/onnx/operators/onnx__Split.html"""
    axis = normalize_axis(axis, input.ndim)
    return _split(input, _split_sizes(input.shape[axis], split, num_outputs), axis)


@op("Split", since=13)
def Split_13(input, split=None, *, axis=0, num_outputs=None):
    """Cut input along axis into parts of sizes `split` (input), or equal parts, one per node output
    — https://onnx.ai/onnx/operators/onnx__Split.html

    Without `split`, the part count is the node's output count: the session passes it as
    `num_outputs`. Equal parts must divide the dim exactly before opset 18."""
    return Split(input, split, axis=axis, num_outputs=num_outputs)


@op("Split", since=2)
def Split_2(input, *, axis=0, split=None, num_outputs=None):
    """Cut input along axis into parts of sizes `split` (attribute), or equal parts, one per output
    — https://onnx.ai/onnx/operators/onnx__Split.html"""
    return Split(input, split, axis=axis, num_outputs=num_outputs)


# --------------------------------------------------------------------------------------------
# growing: Expand, Tile, Pad, CenterCropPad


@op("Expand", since=8)
def Expand(input, shape):
    """y = input broadcast with shape (both ways, like numpy broadcasting)
    — https://onnx.ai/onnx/operators/onnx__Expand.html"""
    out_shape = np.broadcast_shapes(input.shape, tuple(as_ints(shape)))
    out = np.empty(out_shape, dtype=input.dtype)
    out[...] = input  # broadcast into a real array (np.broadcast_to(...).copy() cost 2.5 us more)
    return out


@op("Tile", since=6)
def Tile(input, repeats):
    """y = input repeated repeats[i] times along dim i — https://onnx.ai/onnx/operators/onnx__Tile.html"""
    return np.tile(input, as_ints(repeats))  # [d0, d1 ..] -> [d0*r0, d1*r1 ..]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad(data, pads, mode, value, axes=None):
    """Pad (or, for negative pads, crop) data; pads = [begin_0 .., begin_k, end_0 .., end_k]."""
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad: mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    axes = list(range(data.ndim)) if axes is None else [normalize_axis(a, data.ndim) for a in axes]
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad: {len(pads)} pads given for {len(axes)} axes; need 2 per axis")
    width = [(0, 0)] * data.ndim
    crop = [slice(None)] * data.ndim
    for i, axis in enumerate(axes):
        begin, end = pads[i], pads[i + len(axes)]
        # negative pads remove elements: crop first, then pad with the positive parts
        crop[axis] = slice(max(-begin, 0), data.shape[axis] - max(-end, 0))
        width[axis] = (max(begin, 0), max(end, 0))
    data = data[tuple(crop)]
    if mode == "constant":
        return np.pad(data, width, mode="constant", constant_values=value)  # [.., d, ..] -> [.., b+d+e, ..]
    return np.pad(data, width, mode=_PAD_MODES[mode])


def _pad_value(data, constant_value):
    """The constant to pad with, in data's dtype (0 / False / '' by default)."""
    if constant_value is None:
        return np.zeros((), dtype=data.dtype) if data.dtype != object else ""
    return np.asarray(constant_value).reshape(()).astype(data.dtype)


@op("Pad", since=11)
def Pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    """y = data with pads[i] values before and pads[i + n] after each (listed) axis; negative crops
    — https://onnx.ai/onnx/operators/onnx__Pad.html"""
    axes = None if axes is None else as_ints(axes)
    return _pad(data, as_ints(pads), mode, _pad_value(data, constant_value), axes)


@op("Pad", since=2)
def Pad_2(data, *, pads, mode="constant", value=0.0):
    """y = data padded by the `pads` attribute with the constant `value` (or reflect/edge)
    — https://onnx.ai/onnx/operators/onnx__Pad.html"""
    return _pad(data, list(pads), mode, _pad_value(data, value))


@op("Pad", since=1)
def Pad_1(data, *, paddings, mode="constant", value=0.0):
    """y = data padded by the `paddings` attribute (opset 1 name of `pads`)
    — https://onnx.ai/onnx/operators/onnx__Pad.html"""
    return _pad(data, list(paddings), mode, _pad_value(data, value))


@op("CenterCropPad", since=18)
def CenterCropPad(input_data, shape, *, axes=None):
    """Crop (window start rounded down) or zero-pad (extra pixel on the right) each axis to `shape`,
    centred — https://onnx.ai/onnx/operators/onnx__CenterCropPad.html"""
    target = as_ints(shape)
    axes = range(input_data.ndim) if axes is None else [normalize_axis(a, input_data.ndim) for a in axes]
    out_shape = list(input_data.shape)
    src = [slice(None)] * input_data.ndim  # the part of the input that is kept
    dst = [slice(None)] * input_data.ndim  # where it lands in the output
    for axis, size in zip(axes, target):
        dim = input_data.shape[axis]
        out_shape[axis] = size
        if dim >= size:
            start = (dim - size) // 2
            src[axis] = slice(start, start + size)
        else:
            start = (size - dim) // 2
            dst[axis] = slice(start, start + dim)
    out = np.zeros(out_shape, dtype=input_data.dtype)
    out[tuple(dst)] = input_data[tuple(src)]
    return out


# --------------------------------------------------------------------------------------------
# triangles


@op("Trilu", since=14)
def Trilu(input, k=None, *, upper=1):
    """Keep the upper (j - i >= k) or lower (j - i <= k) triangle of the last two dims, zero the rest
    — https://onnx.ai/onnx/operators/onnx__Trilu.html"""
    k = 0 if k is None else int(np.asarray(k).reshape(()))
    return np.triu(input, k) if upper else np.tril(input, k)

