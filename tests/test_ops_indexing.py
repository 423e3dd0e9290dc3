"""Indexing ops against onnxruntime: one-node models, random shapes, negative indices and axes.

Gather/Scatter/TopK/... select or place values without arithmetic (except the Scatter reductions
and the running totals, tested on integers), so results must match ORT exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops import indexing as I
from test_ops_shape import i64, make, ort_outputs, ort_run, same  # one-node ORT helpers

SETTINGS = settings(deadline=None, max_examples=25)
INT_MAX = 2**63 - 1

seeds = st.integers(0, 2**32 - 1)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)
dtypes = st.sampled_from([np.float32, np.float16, np.int64, np.int32, np.bool_])


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_slice(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank, unique_by=lambda a: a % rank))
    bound = st.one_of(st.integers(-6, 6), st.sampled_from([INT_MAX, -INT_MAX]))  # out of range: clamped
    starts = [data.draw(bound) for _ in axes]
    ends = [data.draw(bound) for _ in axes]
    steps = [data.draw(st.sampled_from([-3, -2, -1, 1, 2, 3])) for _ in axes]
    args = (x, i64(starts), i64(ends), i64(axes), i64(steps))
    same(I.Slice(*args), ort_run("Slice", *args))
    if all(s == 1 for s in steps):
        same(I.Slice_1(x, starts=starts, ends=ends, axes=axes), ort_run("Slice", x, starts=starts, ends=ends,
                                                                        axes=axes, opset=1))


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.lists(st.integers(0, 3), max_size=2), st.data())
def test_gather(shape, dtype, seed, strided, idx_shape, data):
    x = make(shape, dtype, seed, strided)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    idx = np.random.default_rng(seed).integers(-dim, dim, idx_shape)  # negatives wrap; [] is a 0-d index
    for itype in (np.int64, np.int32):
        same(I.Gather(x, idx.astype(itype), axis=axis), ort_run("Gather", x, idx.astype(itype), axis=axis))


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_gather_elements(shape, dtype, seed, strided, data):
    x = make(shape, dtype, seed, strided)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    # indices: same rank, any size along axis, no larger than data elsewhere
    idx_shape = [data.draw(st.integers(1, 3)) if a == axis % len(shape) else data.draw(st.integers(1, d))
                 for a, d in enumerate(shape)]
    idx = np.random.default_rng(seed).integers(-shape[axis], shape[axis], idx_shape)
    same(I.GatherElements(x, idx, axis=axis), ort_run("GatherElements", x, idx, axis=axis))


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), dtypes, seeds, st.data())
def test_gather_nd(shape, dtype, seed, data):
    x = make(shape, dtype, seed)
    batch_dims = data.draw(st.integers(0, 1))
    k = data.draw(st.integers(1, len(shape) - batch_dims))
    middle = data.draw(st.lists(st.integers(0, 3), max_size=2))  # 0: no lookups at all
    rng = np.random.default_rng(seed)
    columns = [rng.integers(-d, d, [*shape[:batch_dims], *middle, 1]) for d in shape[batch_dims:batch_dims + k]]
    idx = np.concatenate(columns, axis=-1).astype(np.int64)  # [B.., M.., k]
    same(I.GatherND(x, idx, batch_dims=batch_dims), ort_run("GatherND", x, idx, batch_dims=batch_dims))


def _distinct_positions(rng, dim, count, other_shape, axis):
    """Indices along axis with no repeats within a line (so plain assignment has one answer)."""
    perms = np.argsort(rng.random((*other_shape, dim)), axis=-1)[..., :count]  # [.., count] distinct
    return np.moveaxis(perms, -1, axis)


@SETTINGS
@given(shapes, seeds, st.sampled_from(["none", "add", "mul", "max", "min"]), st.data())
def test_scatter_elements(shape, seed, reduction, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ax = axis % len(shape)
    dim = shape[ax]
    x = rng.integers(-5, 6, shape).astype(np.int32)  # integers: reductions are exact in any order
    upd_shape = [data.draw(st.integers(1, d)) for d in shape]
    if reduction == "none":
        upd_shape[ax] = data.draw(st.integers(1, dim))
        other = [d for a, d in enumerate(upd_shape) if a != ax]
        idx = _distinct_positions(rng, dim, upd_shape[ax], other, ax)
    else:
        upd_shape[ax] = data.draw(st.integers(1, 4))  # repeats allowed: each one is applied
        idx = rng.integers(0, dim, upd_shape)
    idx = np.where(rng.random(idx.shape) < 0.5, idx - dim, idx).astype(np.int64)  # half of them negative
    upd = rng.integers(-3, 4, upd_shape).astype(np.int32)
    keep = x.copy()
    got = I.ScatterElements(x, idx, upd, axis=axis, reduction=reduction)
    same(got, ort_run("ScatterElements", x, idx, upd, axis=axis, reduction=reduction, opset=18))
    np.testing.assert_array_equal(x, keep)  # the input is left alone
    if reduction == "none":
        same(I.Scatter(x, idx, upd, axis=axis), got)


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seeds,
       st.sampled_from(["none", "add", "mul", "max", "min"]), st.data())
def test_scatter_nd(shape, seed, reduction, data):
    rng = np.random.default_rng(seed)
    x = rng.integers(-5, 6, shape).astype(np.int64)
    k = data.draw(st.integers(1, len(shape)))
    cells = int(np.prod(shape[:k]))
    if reduction == "none":  # distinct target cells
        flat = rng.permutation(cells)[:data.draw(st.integers(1, cells))]
    else:
        flat = rng.integers(0, cells, data.draw(st.integers(1, 6)))
    idx = np.stack(np.unravel_index(flat, shape[:k]), axis=-1)  # [m, k]
    idx = np.where(rng.random(idx.shape) < 0.5, idx - np.array(shape[:k]), idx).astype(np.int64)
    upd = rng.integers(-3, 4, (len(flat), *shape[k:])).astype(np.int64)
    same(I.ScatterND(x, idx, upd, reduction=reduction), ort_run("ScatterND", x, idx, upd, reduction=reduction,
                                                                 opset=18))


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 6), st.integers(1, 4),
       st.sampled_from(["linear", "circular"]), st.booleans(), seeds, st.data())
def test_tensor_scatter(batch, heads, max_len, dim, mode, with_indices, seed, data):
    rng = np.random.default_rng(seed)
    past = rng.standard_normal((batch, heads, max_len, dim)).astype(np.float32)
    seq = data.draw(st.integers(1, max_len))
    update = rng.standard_normal((batch, heads, seq, dim)).astype(np.float32)
    high = max_len if mode == "circular" else max_len - seq + 1  # linear writes must stay inside
    write = rng.integers(0, high, batch).astype(np.int64) if with_indices else None
    same(I.TensorScatter(past, update, write, mode=mode),
         ort_run("TensorScatter", past, update, write, mode=mode, opset=24))


@SETTINGS
@given(shapes, st.sampled_from([np.float32, np.int32, np.int64, np.uint8]), seeds, st.sampled_from([0, 1]),
       st.booleans(), st.data())
def test_topk(shape, dtype, seed, largest, strided, data):
    x = np.random.default_rng(seed).integers(0, 4, shape).astype(dtype)  # few values: many ties
    if strided:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = i64([data.draw(st.integers(0, shape[axis]))])
    values, indices = I.TopK(x, k, axis=axis, largest=largest)
    want_v, want_i = ort_outputs("TopK", x, k, axis=axis, largest=largest, n_out=2)
    same(values, want_v)
    same(indices, want_i)  # ties: the lower index first, as ORT


def test_topk_1_attribute_k():
    x = np.array([[1, 3, 3, 2]], np.float32)
    values, indices = I.TopK_1(x, k=2)
    same(values, np.array([[3, 3]], np.float32))
    same(indices, i64([[1, 2]]))


@SETTINGS
@given(shapes, st.sampled_from([np.float32, np.int32, np.int64, np.uint8]), seeds, st.sampled_from([0, 1]),
       st.sampled_from([0, 1]), st.sampled_from(["ArgMax", "ArgMin"]), st.data())
def test_argmax_argmin(shape, dtype, seed, keepdims, last, name, data):
    x = np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)  # ties decide the index
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    fn = getattr(I, name)
    same(fn(x, axis=axis, keepdims=keepdims, select_last_index=last),
         ort_run(name, x, axis=axis, keepdims=keepdims, select_last_index=last))


@SETTINGS
@given(shapes, st.sampled_from([np.float32, np.int64, np.int8]), seeds, st.sampled_from([0, 1]), st.data())
def test_unique(shape, dtype, seed, sorted_, data):
    x = np.random.default_rng(seed).integers(-2, 3, shape).astype(dtype)
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    attrs = {"sorted": sorted_} if axis is None else {"sorted": sorted_, "axis": axis}
    got = I.Unique(x, **attrs)
    want = ort_outputs("Unique", x, n_out=4, **attrs)
    for g, w in zip(got, want):  # Y, indices, inverse_indices, counts
        same(g, w)


@SETTINGS
@given(shapes, st.sampled_from([np.int32, np.int64, np.float64]), seeds, st.sampled_from([0, 1]),
       st.sampled_from([0, 1]), st.booleans(), st.data())
def test_cumsum(shape, dtype, seed, exclusive, reverse, strided, data):
    x = make(shape, np.int32, seed, strided).astype(dtype)  # integral values: sums are exact, even in float64
    axis = np.asarray(data.draw(st.integers(-len(shape), len(shape) - 1)), dtype=np.int64)
    same(I.CumSum(x, axis, exclusive=exclusive, reverse=reverse),
         ort_run("CumSum", x, axis, exclusive=exclusive, reverse=reverse))


@SETTINGS
@given(shapes, st.sampled_from([np.int32, np.int64, np.float32]), seeds, st.sampled_from([0, 1]),
       st.sampled_from([0, 1]), st.data())
def test_cumprod(shape, dtype, seed, exclusive, reverse, data):
    x = np.random.default_rng(seed).integers(-2, 3, shape).astype(dtype)  # small ints: exact products
    axis = np.asarray(data.draw(st.integers(-len(shape), len(shape) - 1)), dtype=np.int64)
    same(I.CumProd(x, axis, exclusive=exclusive, reverse=reverse),
         ort_run("CumProd", x, axis, exclusive=exclusive, reverse=reverse, opset=26))


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.integers(1, 5), seeds,
       st.sampled_from([np.int64, np.float32]), st.data())
def test_one_hot(shape, depth, seed, itype, data):
    # ORT needs rank >= 1 and implements int64/float32 indices with float32 values
    idx = np.random.default_rng(seed).integers(-depth - 2, depth + 2, shape).astype(itype)  # some out of range
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    values = np.array([-1.5, 4.0], np.float32)  # [off, on]
    d = np.asarray(depth, np.float32 if itype == np.float32 else np.int64)  # a float depth works too
    same(I.OneHot(idx, d, values, axis=axis), ort_run("OneHot", idx, d, values, axis=axis))


@SETTINGS
@given(shapes, dtypes, seeds, st.booleans(), st.data())
def test_compress(shape, dtype, seed, use_axis, data):
    x = make(shape, dtype, seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1)) if use_axis else None
    n = shape[axis] if use_axis else x.size
    cond = np.random.default_rng(seed).random(data.draw(st.integers(1, n))) < 0.5  # may be shorter than n
    attrs = {"axis": axis} if use_axis else {}
    same(I.Compress(x, cond, **attrs), ort_run("Compress", x, cond, **attrs))


@SETTINGS
@given(st.lists(st.integers(0, 4), max_size=4).map(tuple), st.sampled_from([np.float32, np.int64, np.bool_]),
       seeds, st.booleans())
def test_nonzero(shape, dtype, seed, strided):
    x = (np.random.default_rng(seed).random(shape) < 0.3).astype(dtype)
    if strided and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    same(I.NonZero(x), ort_run("NonZero", x))  # 0-d and empty inputs included


def test_one_hot_scalar_index():
    same(I.OneHot(np.asarray(-1, np.int64), np.asarray(3), np.array([0, 1], np.int32)), np.array([0, 0, 1], np.int32))


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.booleans(), seeds, st.data())
def test_reverse_sequence(batch, time, feat, batch_first, seed, data):
    rng = np.random.default_rng(seed)
    shape = (batch, time, feat) if batch_first else (time, batch, feat)
    x = rng.standard_normal(shape).astype(np.float32)
    lens = rng.integers(1, time + 1, batch).astype(np.int64)
    axes = {"batch_axis": 0, "time_axis": 1} if batch_first else {"batch_axis": 1, "time_axis": 0}
    same(I.ReverseSequence(x, lens, **axes), ort_run("ReverseSequence", x, lens, **axes))


def test_slice_clamping_by_the_spec():
    x = np.arange(5, dtype=np.float32)
    big = 2**63 - 1
    same(I.Slice(x, i64([-big]), i64([-big]), i64([0]), i64([-1])), x[:1])  # start clamps to 0, end to "-1"
    same(I.Slice(x, i64([3]), i64([big]), i64([0]), i64([-1])), x[3::-1])  # INT_MAX: no bound, as ORT
    same(I.Slice(x, i64([-1]), i64([-big]), i64([0]), i64([-1])), x[::-1])  # how PyTorch exports flip
    assert I.Slice(np.zeros((0, 2), np.float32), i64([-1]), i64([-big]), i64([0]), i64([-1])).shape == (0, 2)
