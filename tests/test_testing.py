"""minirt.testing: the one-node oracle, assert_same, the strategies and the check_kernel grader."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirt.ops.linalg import MatMul
from minirt.ops.norm import Softmax
from minirt.testing import (
    Case, KernelReport, arrays, assert_same, axes, broadcastable_shapes, cases, check_kernel, check_op,
    one_node_model, ort_op, ort_session, run_onnxruntime, run_reference, shapes, use_kernel, views,
)

SETTINGS = settings(deadline=None, max_examples=25)


# --- the oracle ---


def test_import_needs_neither_hypothesis_nor_onnxruntime():
    code = ("import sys, minirt.testing; "
            "bad = [m for m in ('hypothesis', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_dependency_says_how_to_install(monkeypatch):
    import minirt.testing as T

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    ort_session.cache_clear()
    with pytest.raises(ImportError, match=r"pip install minirt\[test\]"):
        T.ort_session(b"not a model")


def test_one_node_model_drops_trailing_absent_inputs():
    x = np.zeros((2, 3), np.float32)
    model = one_node_model("Clip", [x, None, None], {}, opset=13)
    assert list(model.graph.node[0].input) == ["i0"]
    model = one_node_model("Clip", [x, None, np.float32(1.0)], {}, opset=13)
    assert list(model.graph.node[0].input) == ["i0", "", "i2"]  # an inner absent input stays empty
    assert [i.name for i in model.graph.input] == ["i0", "i2"]
    np.testing.assert_array_equal(run_onnxruntime(model, [x - 3, None, np.float32(1.0)])[0], x - 3)


def test_one_node_model_attributes_domains_and_output_types():
    model = one_node_model("Constant", [], {"value": np.arange(3, dtype=np.int64)}, opset=13)
    np.testing.assert_array_equal(run_onnxruntime(model, [])[0], [0, 1, 2])  # a TENSOR attribute
    model = one_node_model("FusedMatMul", [np.zeros((2, 2), np.float32)] * 2, {"alpha": 2.0},
                           opset=13, domain="com.microsoft", output_dtypes=[np.float32])
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 13), ("com.microsoft", 1)}
    assert model.graph.output[0].type.tensor_type.elem_type == 1  # FLOAT


def test_sessions_are_cached_per_model():
    x = np.ones((2, 2), np.float32)
    ort_session.cache_clear()
    ort_op("Relu", [x], opset=14)
    ort_op("Relu", [x * 2], opset=14)  # same model, another value
    ort_op("Relu", [x.astype(np.float64)], opset=14)  # another dtype: another model
    info = ort_session.cache_info()
    assert (info.hits, info.misses) == (1, 2)


def test_run_reference_agrees_with_onnxruntime():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    model = one_node_model("Softmax", [x], {"axis": 0}, opset=13)
    assert_same(run_reference(model, [x])[0], run_onnxruntime(model, [x])[0], rtol=1e-6, atol=1e-7)
    assert_same(run_reference(model.SerializeToString(), {"i0": x})[0], run_onnxruntime(model, {"i0": x})[0],
                rtol=1e-6, atol=1e-7)


def test_check_op_passes_a_right_op_and_fails_a_wrong_one():
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    (y,) = check_op(Softmax, "Softmax", [x], {"axis": 1}, rtol=1e-5, atol=1e-6, opset=13)
    assert y.shape == x.shape
    with pytest.raises(AssertionError, match="Softmax output 0"):
        check_op(lambda a, axis: Softmax(a, axis=axis) * 1.01, "Softmax", [x], {"axis": 1}, rtol=1e-5, atol=1e-6,
                 opset=13)

    def in_place(a, axis):
        a[...] = 0
        return a

    with pytest.raises(AssertionError, match="modified input 0"):
        check_op(in_place, "Relu", [x.copy()], {"axis": 1}, rtol=0, atol=0, opset=14)


# --- assert_same ---


def test_assert_same_checks_dtype_shape_and_values():
    a = np.array([1.0, np.nan, 3.0], np.float32)
    assert_same(a, a.copy())  # NaNs in the same places are equal
    assert_same(a + 1e-7, a, rtol=1e-6, atol=0)
    with pytest.raises(AssertionError, match="dtype"):
        assert_same(a.astype(np.float64), a, rtol=1, atol=1)
    with pytest.raises(AssertionError, match="shape"):
        assert_same(a[None], a, rtol=1, atol=1)
    with pytest.raises(AssertionError, match="ndarray"):
        assert_same(np.float32(1.0), np.array(1.0, np.float32))
    with pytest.raises(AssertionError):
        assert_same(a + 1e-3, a, rtol=1e-6, atol=0)
    with pytest.raises(AssertionError):
        assert_same(np.array([np.nan, 2.0]), np.array([2.0, np.nan]))


def test_assert_same_is_exact_for_integers_bools_and_strings():
    with pytest.raises(AssertionError):
        assert_same(np.array([100, 201]), np.array([100, 200]), rtol=0.1, atol=5)  # tolerances ignored
    with pytest.raises(AssertionError):
        assert_same(np.array([True]), np.array([False]), rtol=1, atol=1)
    assert_same(np.array(["a", "b"], dtype=object), np.array(["a", "b"], dtype=object))
    with pytest.raises(AssertionError):
        assert_same(np.array(["a", "b"], dtype=object), np.array(["a", "c"], dtype=object))


# --- strategies ---


@SETTINGS
@given(shapes(1, 3, 2, 4))
def test_shapes_respect_their_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= d <= 4 for d in shape)


@SETTINGS
@given(broadcastable_shapes(3))
def test_broadcastable_shapes_broadcast(shps):
    assert len(shps) == 3
    np.broadcast_shapes(*shps)


@SETTINGS
@given(arrays(np.float16, shapes(0, 3), low=-1e3, high=1e3), arrays(np.int8, (4,), low=-500, high=500),
       arrays(np.bool_, (3,)))
def test_arrays_are_finite_and_typed(f, i, b):
    assert f.dtype == np.float16 and np.isfinite(f).all() and (np.abs(f) <= 1e3).all()
    assert i.dtype == np.int8 and i.shape == (4,)
    assert b.dtype == np.bool_


@SETTINGS
@given(st.integers(1, 5).flatmap(lambda r: st.tuples(st.just(r), axes(r), axes(r, unique=True))))
def test_axes_cover_negative_axes_and_are_unique(args):
    rank, axis, many = args
    assert -rank <= axis < rank
    assert len({a % rank for a in many}) == len(many)


def test_axes_include_negative_ones():
    seen = set()

    @settings(deadline=None, max_examples=50)
    @given(axes(3))
    def collect(a):
        seen.add(a)

    collect()
    assert min(seen) < 0 <= max(seen)


@SETTINGS
@given(arrays(np.float32, shapes(1, 4)).flatmap(lambda x: st.tuples(st.just(x), views(x))))
def test_views_have_the_same_values_in_another_layout(pair):
    x, v = pair
    assert_same(v, x)
    assert v.base is not None  # a view of another buffer
    assert v.size <= 1 or not v.flags.c_contiguous


@SETTINGS
@given(cases(arrays(np.float32, shapes(1, 3)), axis=lambda x: axes(x.ndim), keep=1))
def test_cases_draw_inputs_then_attributes(case):
    assert isinstance(case, Case) and len(case.inputs) == 1
    assert -case.inputs[0].ndim <= case.attrs["axis"] < case.inputs[0].ndim and case.attrs["keep"] == 1


# --- check_kernel: the grader ---


def loop_softmax(input, *, axis=-1):
    """A right kernel, as a student would write it: loops over rows of the moved axis."""
    x = np.moveaxis(input, axis, -1)
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        e = np.exp(rows[r] - rows[r].max())
        out[r] = e / e.sum()
    return np.moveaxis(out.reshape(x.shape).astype(input.dtype), -1, axis)


def wrong_softmax(input, *, axis=-1):
    """A planted bug: it ignores axis (always the last one)."""
    e = np.exp(input - input.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


SOFTMAX_CASES = cases(arrays(np.float32, shapes(1, 4)), axis=lambda x: axes(x.ndim))


def test_check_kernel_passes_a_right_kernel():
    report = check_kernel(loop_softmax, Softmax, SOFTMAX_CASES, rtol=1e-5, atol=1e-6, raise_on_failure=True)
    assert isinstance(report, KernelReport) and report.ok and bool(report)
    assert report.passed == report.cases == 25 and report.failed == 0 and report.first_failure is None
    assert report.max_abs_error < 1e-6
    assert "25/25 cases passed" in str(report)


def test_check_kernel_catches_a_planted_bug():
    report = check_kernel(wrong_softmax, Softmax, SOFTMAX_CASES, rtol=1e-5, atol=1e-6)
    assert not report.ok and report.failed > 0 and report.passed + report.failed == 25
    first = report.first_failure
    assert first.case.attrs["axis"] % first.case.inputs[0].ndim != first.case.inputs[0].ndim - 1
    assert report.max_abs_error > 1e-3
    with pytest.raises(AssertionError, match=r"first failure, case \d+: input 0: float32\["):
        check_kernel(wrong_softmax, Softmax, SOFTMAX_CASES, rtol=1e-5, atol=1e-6, raise_on_failure=True)


def test_check_kernel_is_reproducible_for_a_seed():
    a = check_kernel(wrong_softmax, Softmax, SOFTMAX_CASES, rtol=1e-5, atol=1e-6, seed=3)
    b = check_kernel(wrong_softmax, Softmax, SOFTMAX_CASES, rtol=1e-5, atol=1e-6, seed=3)
    assert (a.passed, a.failed, a.max_abs_error) == (b.passed, b.failed, b.max_abs_error)


def test_check_kernel_on_a_list_of_cases_reports_crashes_dtypes_and_in_place_writes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((3, 2), np.float32)
    listed = [(a, b), Case((a.T.copy(), b.T.copy())), ((a, b), {})]
    assert check_kernel(lambda x, y: x @ y, MatMul, listed, rtol=0, atol=0).passed == 3

    def crashes(x, y):
        raise ValueError("not written yet")

    report = check_kernel(crashes, MatMul, listed, rtol=0, atol=0)
    assert report.failed == 3 and "raised ValueError: not written yet" in report.first_failure.message
    report = check_kernel(lambda x, y: (x @ y).astype(np.float64), MatMul, listed, rtol=0, atol=0)
    assert report.failed == 3 and "dtype float64, expected float32" in report.first_failure.message

    def writes_input(x, y):
        x *= 2
        return x @ y / 2

    report = check_kernel(writes_input, MatMul, [(a.copy(), b)], rtol=0, atol=0)
    assert "modified input 0 in place" in report.first_failure.message


def test_check_kernel_grades_a_numba_kernel_against_its_reference():
    from minirt.kernels.softmax import Softmax as fast_softmax

    big = cases(arrays(np.float32, shapes(1, 3, 1, 40), low=-30, high=30), axis=lambda x: axes(x.ndim))
    assert check_kernel(fast_softmax, Softmax, big, rtol=1e-5, atol=1e-6).ok
    strided = cases(arrays(np.float32, shapes(2, 3)).flatmap(views), axis=-1)
    assert check_kernel(fast_softmax, Softmax, strided, rtol=1e-5, atol=1e-6).ok


def test_use_kernel_installs_a_kernel_and_restores_the_old_one():
    from minirt import registry

    before = registry.lookup("", "Softmax", 13, kernels=True).fn
    with use_kernel("Softmax", loop_softmax, since=13):
        assert registry.lookup("", "Softmax", 13, kernels=True).fn is loop_softmax
        assert registry.lookup("", "Softmax", 13).fn is Softmax  # the reference stays the spec
    assert registry.lookup("", "Softmax", 13, kernels=True).fn is before
    with use_kernel("Softmax", loop_softmax, since=99):  # no kernel there before: removed after
        assert registry.kernels()[("", "Softmax", 99)] is loop_softmax
    assert ("", "Softmax", 99) not in registry.kernels()
