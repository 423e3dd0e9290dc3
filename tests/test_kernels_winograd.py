"""Winograd's F(2x2, 3x3) path of the fast Conv (minirt/kernels/winograd.py) against the reference.

Tolerance: float32 sums of up to ~600 products of values in [-1, 1] (as tests/test_kernels_conv.py),
through transforms that add and subtract up to 16 terms: 1e-4 relative / absolute, as the other
conv paths; float64 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from minirt.kernels import conv as kconv
from minirt.kernels import winograd
from minirt.ops import conv as rconv
from test_kernels import _close, _rand  # tests/ is on sys.path (conftest.py)

SETTINGS = settings(deadline=None, max_examples=30)


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False  # as minirt's initializers are: the runner may keep U
    return a


def _any_size(monkeypatch):
    """The Winograd path for every 3x3 stride-1 group-1 conv (no size or channel floor, no direct loops)."""
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(kconv, "DIRECT_MACS", 0)


def test_weight_transform_is_G_g_Gt():
    g = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    U = winograd.weight_transform(g)
    assert U.shape == (16, 1, 1) and U.dtype == np.float64
    np.testing.assert_array_equal(U[:, 0, 0].reshape(4, 4), G @ g[0, 0] @ G.T)


def test_one_tile_by_hand():
    """One 4x4 input tile, one 3x3 filter: A^T [(G g G^T) * (B^T d B)] A is the 2x2 'valid' conv."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    xp = np.zeros((1, 5 * 4))  # [C, (Ht+1)*Wt]: one tile row and column, plus the spare row
    xp[0, :16] = d.reshape(-1)
    V = np.empty((16, 1, 1))
    winograd.input_transform(xp, 4, V, 0, 1, 1)
    P = winograd.weight_transform(g[None, None]) * V  # [16, 1, 1]: the element-by-element product
    y = np.empty((1, 2, 2))
    inf = np.float64(np.inf)
    winograd.output_transform(P, y, 0, 1, 1, np.zeros(1), np.empty((0, 0, 0)), -inf, inf, 0, 0.0, 0.0)
    want = [[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)]
    np.testing.assert_allclose(y[0], want, rtol=1e-12, atol=1e-12)


@st.composite
def cases(draw):
    N, C, M = draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    H, W = draw(st.integers(1, 13)), draw(st.integers(1, 13))  # odd and even sizes: partial tiles
    pads = [draw(st.integers(0, 2)) for _ in range(4)]  # asymmetric
    assume(H + pads[0] + pads[2] >= 3 and W + pads[1] + pads[3] >= 3)  # at least one output
    return N, C, M, H, W, pads, draw(st.integers(0, 2**31))


@SETTINGS
@given(cases(), st.booleans(), st.sampled_from(["none", "z", "relu", "z_relu", "clip"]),
       st.sampled_from([np.float32, np.float64]), st.booleans())
def test_winograd_matches_reference(case, bias, epilogue, dtype, channels_last):
    """Any size (odd heights and widths end in half tiles), asymmetric pads, batch 2, bias, the
    fused epilogue (residual Z, Relu, Clip), float32 and float64, both layouts of the transforms."""
    N, C, M, H, W, pads, seed = case
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (N, C, H, W), dtype), _readonly(_rand(rng, (M, C, 3, 3), dtype))
    b = _readonly(_rand(rng, (M,), dtype)) if bias else None
    want = rconv.Conv(x, w, b, pads=pads)
    z = _rand(rng, want.shape, dtype) if "z" in epilogue else None
    lo, hi = {"relu": (0.0, None), "z_relu": (0.0, None), "clip": (-0.5, 0.25)}.get(epilogue, (None, None))
    if z is not None:
        want = want + z
    if lo is not None:
        want = np.clip(want, lo, hi)
    with pytest.MonkeyPatch.context() as mp:
        _any_size(mp)
        mp.setattr(winograd, "CHANNELS_LAST_MAX_WIDTH", 10**6 if channels_last else 0)
        node = kconv.PreparedConv(pads=pads, lo=lo, hi=hi)
        got = node(x, w, b, z)
        assert node.runners[x.shape][4].__name__ == "run_winograd"
    _close(got, want, tol=1e-4 if dtype == np.float32 else 1e-10)


def test_the_path_is_taken_for_big_read_only_3x3_convs_only():
    """Read-only weights (initializers), 3x3, stride 1, group 1, >= 7x7 outputs, >= 32 input
    channels; a writeable W (a graph input, which may change in place) keeps the column paths,
    as do 6x6 maps, 16 input channels, strides, dilations and the direct loops' small convs."""
    def path(C, M, S, writeable=False, **attrs):
        w = np.zeros((M, C, 3, 3), np.float32)
        w.flags.writeable = writeable
        node = kconv.PreparedConv(pads=[1, 1, 1, 1], **attrs)
        x = np.zeros((1, C, S, S), np.float32)
        node(x, w)
        return node.runners[x.shape][4].__name__

    assert path(64, 64, 56) == "run_winograd"  # ResNet-50's first 3x3
    assert path(128, 32, 28) == "run_winograd"  # DenseNet's 128->32 (the shifted GEMM before)
    assert path(64, 64, 56, writeable=True) != "run_winograd"
    assert path(512, 512, 7) == "run_winograd"
    assert path(512, 512, 6) != "run_winograd"
    assert path(16, 64, 55) != "run_winograd"
    assert path(64, 64, 56, strides=[2, 2]) != "run_winograd"
    assert path(64, 64, 56, dilations=[2, 2]) != "run_winograd"
    assert path(16, 16, 32) == "run_direct"  # resnet_mini's small convs keep the direct loops


@pytest.mark.parametrize("channels_last", [False, True])
def test_bands_on_threads_and_shared_products_match_the_reference(monkeypatch, channels_last):
    """A map big enough for bands of tile rows (run on the BLAS threads), and the same conv as one
    band whose 16 products the threads share out, and on one thread, in both layouts."""
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, (1, 64, 58, 41)), _readonly(_rand(rng, (32, 64, 3, 3))), _readonly(_rand(rng, (32,)))
    want = rconv.Conv(x, w, b, pads=[1, 1, 1, 1])
    monkeypatch.setattr(winograd, "CHANNELS_LAST_MAX_WIDTH", 10**6 if channels_last else 0)
    monkeypatch.setattr(kconv, "BAND_BYTES", 1)  # bands of BAND_MIN_COLUMNS tiles
    _close(kconv.PreparedConv(pads=[1, 1, 1, 1])(x, w, b), want)
    monkeypatch.setattr(kconv, "WINOGRAD_BAND_MIN_TILES", 10**6)  # one band, shared products
    _close(kconv.PreparedConv(pads=[1, 1, 1, 1])(x, w, b), want)
    with threadpool_limits(1, user_api="blas"):  # one thread: np.matmul on the whole stack
        _close(kconv.PreparedConv(pads=[1, 1, 1, 1])(x, w, b), want)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_input_runs_the_columns_path(bad):
    """In the transforms an inf would meet another inf (inf - inf = NaN) in outputs whose window
    never saw it: such an input runs the column path, and the outputs are the reference's."""
    rng = np.random.default_rng(4)
    x, w = _rand(rng, (1, 64, 10, 10)), _readonly(_rand(rng, (8, 64, 3, 3)))
    x[0, 3, 4, 4] = bad
    node = kconv.PreparedConv(pads=[1, 1, 1, 1])
    got = node(x, w)
    assert node.runners[x.shape][4].__name__ == "run_winograd"
    with np.errstate(invalid="ignore"):
        want = rconv.Conv(x, w, pads=[1, 1, 1, 1])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    _close(np.where(finite, got, 0), np.where(finite, want, 0))
    _close(node(np.nan_to_num(x, posinf=0, neginf=0, nan=0), w),
           rconv.Conv(np.nan_to_num(x, posinf=0, neginf=0, nan=0), w, pads=[1, 1, 1, 1]))  # and back


def test_session_runs_winograd_on_a_model(monkeypatch):
    """Through a session (initializers are read-only): a 3x3 conv + Relu graph takes the path
    and equals the reference."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import minirt

    rng = np.random.default_rng(5)
    w, b = _rand(rng, (64, 64, 3, 3)), _rand(rng, (64,))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 20, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 20, 20])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    x = _rand(rng, (1, 64, 20, 20))
    calls = []
    for name in ("input_transform", "input_transform_channels_last"):
        transform = getattr(winograd, name)
        monkeypatch.setattr(winograd, name, lambda *a, transform=transform: calls.append(1) or transform(*a))
    got = minirt.run(model, {"x": x})["y"]
    assert calls
    _close(got, np.maximum(rconv.Conv(x, w, b, pads=[1, 1, 1, 1]), 0))
