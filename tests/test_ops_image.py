"""Resize, Upsample, GridSample, AffineGrid against onnxruntime: one-node models, random configurations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops.image import AffineGrid, GridSample, Resize, Resize_10, Upsample
from minirt.testing import ort_op

SETTINGS = settings(deadline=None, max_examples=25)


def ort_run(op_type, args, *, opset=22, n_out=1, **attrs):
    """Every output of one ONNX node, run by onnxruntime (None = absent optional input)."""
    return ort_op(op_type, args, attrs, opset=opset, n_outputs=n_out)


COORD_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


@st.composite
def resize_configs(draw):
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    attrs = dict(mode=mode, coordinate_transformation_mode=draw(st.sampled_from(COORD_MODES)))
    if mode == "nearest":
        attrs["nearest_mode"] = draw(st.sampled_from(NEAREST_MODES))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = draw(st.sampled_from([-0.75, -0.5]))
        attrs["exclude_outside"] = int(draw(st.booleans()))
    in_hw = [draw(st.integers(1, 6)), draw(st.integers(1, 6))]
    out_hw = [draw(st.integers(1, 9)), draw(st.integers(1, 9))]
    shape = [draw(st.integers(1, 2)), draw(st.integers(1, 2)), *in_hw]
    return shape, out_hw, attrs, draw(st.booleans()), draw(st.integers(0, 2**31 - 1))


@SETTINGS
@given(resize_configs())
def test_resize_matches_onnxruntime(cfg):
    shape, out_hw, attrs, use_sizes, seed = cfg
    X = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    if use_sizes:
        scales, sizes = None, np.array(shape[:2] + out_hw, dtype=np.int64)
    else:  # scales with an integral in * scale: ORT and the spec differ on fractional output lengths
        picks = [[0.5, 1.0, 2.0, 3.0][o % 4] for o in out_hw]
        picks = [p if (i * p).is_integer() else 2.0 for i, p in zip(shape[2:], picks)]
        scales, sizes = np.array([1, 1] + picks, dtype=np.float32), None
    got = Resize(X, None, scales, sizes, **attrs)
    (want,) = ort_run("Resize", [X, None, scales, sizes], opset=19, **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # float32 weighted sums of at most 16 samples, computed in float64 here
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(st.sampled_from(["linear", "cubic"]), st.integers(2, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_resize_antialias_downsampling_matches_onnxruntime(mode, n_in, n_out, seed):
    X = np.random.default_rng(seed).uniform(-1, 1, (1, 1, n_in, n_in + 1)).astype(np.float32)
    sizes = np.array([1, 1, n_out, n_out], dtype=np.int64)
    got = Resize(X, None, None, sizes, mode=mode, antialias=1)
    (want,) = ort_run("Resize", [X, None, None, sizes], opset=19, mode=mode, antialias=1)
    assert got.shape == want.shape == (1, 1, n_out, n_out)
    # normalised filters with up to 2*12 taps, float64 here and float32 in ORT
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(st.sampled_from(["nearest", "linear"]), st.floats(-0.3, 0.6), st.floats(0.5, 1.3),
       st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_resize_tf_crop_and_resize_matches_onnxruntime(mode, lo, hi, n_out, seed):
    X = np.random.default_rng(seed).uniform(-1, 1, (1, 2, 5, 4)).astype(np.float32)
    lo += 0.01234  # keeps nearest away from exact .5 ties, which float32 (ORT) and float64 round apart
    hi += 0.00567  # keeps the last sample off the image's edge (an ROI end of exactly 1 puts it there),
    #                where float32 (ORT) and float64 can disagree on inside / outside
    roi = np.array([0, 0, lo, lo / 2, 1, 1, hi, hi], dtype=np.float32)
    # output sizes differ from the input's: ORT skips (and so ignores the ROI of) same-size axes
    sizes = np.array([1, 2, n_out, n_out + 4], dtype=np.int64)
    attrs = dict(mode=mode, coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-7.0)
    got = Resize(X, roi, None, sizes, **attrs)
    (want,) = ort_run("Resize", [X, roi, None, sizes], opset=19, **attrs)
    assert got.shape == want.shape
    # bilinear float32 sums; ROI coordinates computed in float64 here
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(st.sampled_from(["not_larger", "not_smaller"]), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_resize_keep_aspect_ratio_with_axes(policy, h, w, seed):
    X = np.random.default_rng(seed).uniform(-1, 1, (1, 3, 4, 6)).astype(np.float32)
    sizes = np.array([h, w], dtype=np.int64)
    attrs = dict(axes=[2, 3], keep_aspect_ratio_policy=policy)
    got = Resize(X, None, None, sizes, **attrs)
    (want,) = ort_run("Resize", [X, None, None, sizes], opset=19, **attrs)
    np.testing.assert_array_equal(got, want)  # nearest: a pure gather, exact


def test_resize_uint8_linear_rounds():
    X = np.array([[[[0, 255], [100, 7]]]], dtype=np.uint8)
    sizes = np.array([1, 1, 3, 5], dtype=np.int64)
    got = Resize(X, None, None, sizes, mode="linear")
    (want,) = ort_run("Resize", [X, None, None, sizes], opset=19, mode="linear")
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # rounding of .5 cases may differ by one


def test_upsample_and_resize_10_nearest_repeat():
    X = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    scales = np.array([1, 1, 2, 3], dtype=np.float32)
    want = X.repeat(2, axis=2).repeat(3, axis=3)
    np.testing.assert_array_equal(Upsample(X, scales), want)
    np.testing.assert_array_equal(Resize_10(X, scales), want)
    (ort_want,) = ort_run("Resize", [X, scales], opset=10, mode="linear")
    # asymmetric linear interpolation of small integers in float32
    np.testing.assert_allclose(Resize_10(X, scales, mode="linear"), ort_want, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(st.sampled_from(["nearest", "linear", "cubic"]), st.sampled_from(["zeros", "border", "reflection"]),
       st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_gridsample_2d_matches_onnxruntime(mode, padding_mode, align_corners, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (2, 3, 6, 2)).astype(np.float32)  # some points outside the image
    attrs = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    got = GridSample(X, grid, **attrs)
    (want,) = ort_run("GridSample", [X, grid], **attrs)
    assert got.shape == (2, 3, 3, 6) and got.dtype == np.float32
    # float32 sums of at most 16 weighted samples, float64 here
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@settings(deadline=None, max_examples=10)
@given(st.sampled_from(["nearest", "linear"]), st.sampled_from(["zeros", "border", "reflection"]),
       st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_gridsample_3d_matches_onnxruntime(mode, padding_mode, align_corners, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (1, 2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, (1, 2, 3, 2, 3)).astype(np.float32)
    attrs = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    got = GridSample(X, grid, **attrs)
    (want,) = ort_run("GridSample", [X, grid], **attrs)
    assert got.shape == (1, 2, 2, 3, 2)
    # float32 sums of at most 8 weighted samples
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(st.integers(2, 3), st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_affine_grid_matches_onnxruntime(nd, align_corners, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, (2, nd, nd + 1)).astype(np.float32)
    # a size-1 axis with align_corners is degenerate (ORT puts its point at +1, the spec's reference at -1)
    size = np.array([2, 3] + list(rng.integers(1 + align_corners, 5, nd)), dtype=np.int64)
    got = AffineGrid(theta, size, align_corners=align_corners)
    (want,) = ort_run("AffineGrid", [theta, size], opset=20, align_corners=align_corners)
    assert got.shape == (2, *size[2:], nd) and got.dtype == np.float32
    # a 3-4 term dot product per point, float64 here
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_identity_affine_grid_samples_the_image_back():
    X = np.random.default_rng(3).uniform(-1, 1, (1, 2, 4, 5)).astype(np.float32)
    theta = np.array([[[1, 0, 0], [0, 1, 0]]], dtype=np.float32)
    grid = AffineGrid(theta, np.array(X.shape, dtype=np.int64), align_corners=1)
    # exact pixel centres, up to float32 rounding of the grid coordinates
    np.testing.assert_allclose(GridSample(X, grid, align_corners=1), X, rtol=1e-5, atol=1e-6)
