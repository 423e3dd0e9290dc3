"""Shape and construction ops against onnxruntime: one-node models, random shapes and inputs.

These ops only move data, so results must match ORT exactly: same dtype, same shape, same values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops import shape as S
from minirt.testing import assert_same, ort_op

SETTINGS = settings(deadline=None, max_examples=25)


def ort_run(op_type, *args, opset=21, n_out=1, **attrs):
    """Run one ONNX node in ORT and return its first output (all outputs when n_out > 1);
    attributes as keywords (lists and NumPy arrays allowed)."""
    out = ort_op(op_type, args, attrs, opset=opset, n_outputs=n_out)
    return out if n_out > 1 else out[0]


def ort_outputs(op_type, *args, n_out, **kw):
    """All outputs of one ORT node, always as a list."""
    return ort_run(op_type, *args, n_out=n_out, **kw) if n_out > 1 else [ort_run(op_type, *args, **kw)]


def same(got, want):
    """Data-movement ops are exact: dtype, shape and every value (a NumPy scalar counts as 0-d:
    ArgMax and Gather still return scalars for 0-d results)."""
    assert_same(np.asarray(got), want)


DTYPES = [np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_]
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**32 - 1)
dims = st.integers(1, 4)
shapes = st.lists(dims, min_size=1, max_size=4).map(tuple)


def make(shape, dtype, seed, strided=False):
    """Random array; strided=True gives a non-contiguous view (every other element of the last dim)."""
    rng = np.random.default_rng(seed)
    full = list(shape)
    if strided and full:
        full[-1] *= 2
    x = (rng.standard_normal(full) * 10).astype(dtype) if dtype != np.bool_ else rng.random(full) < 0.5
    if strided and full:
        x = x[..., ::2]
        assert not x.flags.c_contiguous or x.size <= 1
    return x


def i64(v):
    return np.asarray(v, dtype=np.int64)


# --------------------------------------------------------------------------------------------


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_reshape(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    target = list(reversed(shape))
    i = data.draw(st.integers(0, len(target) - 1))
    target[i] = -1  # inferred
    for j in range(len(target)):
        if j != i and j < len(shape) and target[j] == shape[j] and data.draw(st.booleans()):
            target[j] = 0  # copies the input's dim
    same(S.Reshape(x, i64(target)), ort_run("Reshape", x, i64(target)))


def test_reshape_allowzero_keeps_zero_dims():
    x = np.zeros((0, 3), np.float32)
    same(S.Reshape(x, i64([3, 0]), allowzero=1), ort_run("Reshape", x, i64([3, 0]), allowzero=1))
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    same(S.Reshape(y, i64([0, 3])), np.arange(6, dtype=np.float32).reshape(2, 3))  # 0 copies dim 0


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_flatten(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    axis = data.draw(st.integers(-len(shape), len(shape)))
    same(S.Flatten(x, axis=axis), ort_run("Flatten", x, axis=axis))


@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=5).map(tuple), seeds, st.data())
def test_squeeze_unsqueeze(shape, seed, data):
    x = make(shape, np.float32, seed)
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    axes = [a - len(shape) if data.draw(st.booleans()) else a for a in axes]  # some negative
    if axes:
        same(S.Squeeze(x, i64(axes)), ort_run("Squeeze", x, i64(axes)))
    same(S.Squeeze(x), ort_run("Squeeze", x, None))  # no axes: every size-1 dim
    n_new = data.draw(st.integers(1, 2))
    out_rank = len(shape) + n_new  # Unsqueeze's axes index the output
    new = data.draw(st.lists(st.integers(-out_rank, out_rank - 1), min_size=n_new, max_size=n_new,
                             unique_by=lambda a: a % out_rank))
    want = ort_run("Unsqueeze", x, i64(new))
    same(S.Unsqueeze(x, i64(new)), want)
    same(S.Unsqueeze_1(x, axes=new), want)


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.randoms(use_true_random=False))
def test_transpose(shape, dtype, seed, strided, rnd):
    x = make(shape, dtype, seed, strided)
    perm = list(range(len(shape)))
    rnd.shuffle(perm)
    same(S.Transpose(x, perm=perm), ort_run("Transpose", x, perm=perm))
    same(S.Transpose(x), ort_run("Transpose", x))  # default: reverse the dims


@SETTINGS
@given(shapes, dtypes, seeds, st.data())
def test_concat(shape, dtype, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))  # 0: an empty part
    parts = []
    for k, n in enumerate(sizes):
        s = list(shape)
        s[axis] = n
        parts.append(make(s, dtype, seed + k))
    same(S.Concat(*parts, axis=axis), ort_run("Concat", *parts, axis=axis))


@SETTINGS
@given(shapes, seeds, st.booleans(), st.data())
def test_split(shape, seed, strided, data):
    x = make(shape, np.float32, seed, strided)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    cuts = sorted(data.draw(st.lists(st.integers(0, dim), max_size=2)))
    split = np.diff([0, *cuts, dim])
    got = S.Split(x, i64(split), axis=axis)
    want = ort_outputs("Split", x, i64(split), axis=axis, n_out=len(split), opset=18)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        same(g, w)
    n = data.draw(st.integers(1, dim))  # opset 18: num_outputs parts of ceil(dim / n), last smaller
    if -(-dim // n) * (n - 1) < dim:  # ORT requires the last part to be non-empty
        got = S.Split(x, axis=axis, num_outputs=n)
        want = ort_outputs("Split", x, axis=axis, num_outputs=n, n_out=n, opset=18)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w)


def test_split_13_equal_parts_from_output_count():
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    got = S.Split_13(x, axis=1, num_outputs=3)  # the session passes the node's output count
    assert [g.shape for g in got] == [(2, 2)] * 3
    same(np.concatenate(got, axis=1), x)


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_expand(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    # target: each dim either 1 (keep x's), x's dim, or grow a size-1 dim; maybe extra leading dims
    target = [data.draw(st.sampled_from([1, d] if d > 1 else [1, 3])) for d in shape]
    target = data.draw(st.lists(st.integers(1, 3), max_size=2)) + target
    got = S.Expand(x, i64(target))
    same(got, ort_run("Expand", x, i64(target)))
    assert got.flags.writeable  # a real array, not a read-only broadcast view


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_tile(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    reps = data.draw(st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape)))
    same(S.Tile(x, i64(reps)), ort_run("Tile", x, i64(reps)))


@SETTINGS
@given(shapes, st.sampled_from([np.float32, np.int32, np.uint8]), seeds,
       st.sampled_from(["constant", "reflect", "edge", "wrap"]), st.booleans(), st.data())
def test_pad(shape, dtype, seed, mode, use_axes, data):
    x = make(shape, dtype, seed)
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True)) if use_axes \
        else list(range(rank))

    def amount(axis):
        lo = -(shape[axis] // 2) if mode == "constant" else 0  # negative pads crop, at most half per side
        hi = shape[axis] - 1 if mode == "reflect" else 3  # reflect cannot pad past the opposite edge
        return data.draw(st.integers(lo, hi))

    pads = [amount(a) for a in axes] + [amount(a) for a in axes]
    value = np.asarray(7, dtype=dtype)
    args = (x, i64(pads), value if mode == "constant" else None, i64(axes) if use_axes else None)
    same(S.Pad(*args, mode=mode), ort_run("Pad", *args, mode=mode))


def test_pad_2_attributes():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    same(S.Pad_2(x, pads=[0, 1, 0, 2], value=1.5), ort_run("Pad", x, pads=[0, 1, 0, 2], value=1.5, opset=2))


@SETTINGS
@given(shapes, seeds, st.data())
def test_center_crop_pad(shape, seed, data):
    x = make(shape, np.float32, seed)
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=len(shape),
                              unique_by=lambda a: a % len(shape)))
    target = [data.draw(st.integers(1, 6)) for _ in axes]
    same(S.CenterCropPad(x, i64(target), axes=axes), ort_run("CenterCropPad", x, i64(target), axes=axes, opset=18))


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["DCR", "CRD"]), seeds)
def test_depth_to_space_round_trip(n, c, h, w, b, mode, seed):
    x = make((n, c * b * b, h, w), np.float32, seed)
    y = S.DepthToSpace(x, blocksize=b, mode=mode)
    same(y, ort_run("DepthToSpace", x, blocksize=b, mode=mode))
    same(S.SpaceToDepth_1(y, blocksize=b) if mode == "DCR" else S.SpaceToDepth(y, blocksize=b, mode="CRD"), x)
    same(S.SpaceToDepth_1(y, blocksize=b), ort_run("SpaceToDepth", y, blocksize=b))


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.integers(-5, 5), st.integers(-5, 5))
def test_shape_and_size(shape, dtype, seed, strided, start, end):
    x = make(shape, dtype, seed, strided)
    same(S.Shape(x, start=start, end=end), ort_run("Shape", x, start=start, end=end))
    same(S.Shape(x), ort_run("Shape", x))
    same(S.Size(x), ort_run("Size", x))


@SETTINGS
@given(st.lists(st.integers(0, 3), max_size=3), st.sampled_from([np.float32, np.int64, np.float16, np.bool_]))
def test_constant_of_shape(shape, dtype):
    value = np.ones(1, dtype=dtype)
    same(S.ConstantOfShape(i64(shape), value=value), ort_run("ConstantOfShape", i64(shape), value=value))
    same(S.ConstantOfShape(i64(shape)), ort_run("ConstantOfShape", i64(shape)))  # default float32 0


@SETTINGS
@given(st.sampled_from([np.int32, np.int64]), st.integers(-20, 20), st.integers(-20, 20),
       st.integers(-5, 5).filter(bool))
def test_range_int(dtype, start, limit, delta):
    args = [np.asarray(v, dtype=dtype) for v in (start, limit, delta)]
    same(S.Range(*args), ort_run("Range", *args))


@SETTINGS
@given(st.sampled_from([np.float32, np.float64]), st.floats(-10, 10), st.floats(-10, 10),
       st.floats(0.1, 3), st.booleans())
def test_range_float(dtype, start, limit, delta, negative):
    args = [np.asarray(v, dtype=dtype) for v in (start, limit, -delta if negative else delta)]
    got, want = S.Range(*args), ort_run("Range", *args)
    assert got.dtype == want.dtype and got.shape == want.shape
    # start + i*delta in one step vs ORT's running sum: a few ulps apart after up to ~200 steps
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_range_float16_stash_type():
    start, limit, delta = (np.asarray(v, np.float16) for v in (2048, 2060, 1))
    got = S.Range(start, limit, delta)  # float16 steps of 1 are exact only via float32 accumulation
    same(got, np.arange(2048, 2060, dtype=np.float32).astype(np.float16))


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 5), st.integers(-5, 5), st.sampled_from([None, 1, 6, 7, 11]),
       st.sampled_from([np.float32, np.float64, np.int32, np.int64]))  # the types ORT's EyeLike has
def test_eye_like(rows, cols, k, dtype_code, dtype):
    x = make((rows, cols), dtype, 0)
    attrs = {"k": k} if dtype_code is None else {"k": k, "dtype": dtype_code}
    same(S.EyeLike(x, **attrs), ort_run("EyeLike", x, **attrs))


@SETTINGS
@given(st.lists(st.integers(0, 4), min_size=2, max_size=4).map(tuple),
       st.sampled_from([np.float32, np.float64, np.int64]), seeds, st.integers(-5, 5),  # ORT's Trilu types
       st.sampled_from([0, 1]), st.booleans())
def test_trilu(shape, dtype, seed, k, upper, strided):
    x = make(shape, dtype, seed, strided)
    same(S.Trilu(x, i64(k), upper=upper), ort_run("Trilu", x, i64(k), upper=upper))


@pytest.mark.parametrize("attrs", [
    {"value_float": 1.5}, {"value_floats": [1.0, -2.0]}, {"value_int": 7}, {"value_ints": [3, -4, 5]},
    {"value": np.arange(6, dtype=np.float16).reshape(2, 3)}, {"value": np.array(True)},
])
def test_constant(attrs):
    same(S.Constant(**attrs), ort_run("Constant", **attrs))


def test_constant_strings():
    got = S.Constant(value_strings=["a", "bc"])
    assert got.dtype == object and got.tolist() == ["a", "bc"]
    assert S.Constant(value_string="x").shape == ()


def test_ops_do_not_modify_inputs():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    keep = x.copy()
    S.Pad(x, i64([1, 1, 1, 1, 1, 1]), mode="reflect")
    S.Expand(x, i64([2, 2, 3, 4]))[0, 0, 0, 0] = -1
    S.CenterCropPad(x, i64([5, 1]), axes=[1, 2])
    S.Split(x, i64([1, 2]), axis=1)
    np.testing.assert_array_equal(x, keep)


@SETTINGS
@given(st.lists(st.integers(-2**62, 2**62), max_size=6),
       st.sampled_from([np.int64, np.int32, np.uint8, np.float32, np.bool_, None]))
def test_as_ints_gives_python_ints(values, dtype):
    """as_ints (integer tensors through tolist, the rest int() per value) gives plain Python ints."""
    from minirt.ops._common import as_ints

    if dtype is None:
        x = values  # a Python list
    else:
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
        x = np.array([v if info is None else min(max(v, info.min), info.max) for v in values]).astype(dtype)
    got = as_ints(x)
    assert got == [int(v) for v in np.asarray(x).reshape(-1)]
    assert all(type(v) is int for v in got)
