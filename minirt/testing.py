"""Testing helpers: an onnxruntime oracle for one op, Hypothesis strategies, and a kernel grader.

Three layers, each usable on its own:

* **The oracle.** :func:`one_node_model` builds a model holding a single ONNX node;
  :func:`run_onnxruntime` runs it (one cached ORT session per distinct model) and
  :func:`run_reference` runs it with ``onnx.reference`` as a second opinion. :func:`check_op`
  puts the two halves together: it calls a minirt op function and compares it with onnxruntime on
  the same node; :func:`assert_same` is the comparison (dtype, shape, values).
* **Strategies** for Hypothesis: :func:`shapes`, :func:`broadcastable_shapes`, :func:`arrays`
  (finite values), :func:`axes` (negative ones too), :func:`views` (the same values laid out
  non-contiguously) and :func:`cases` (inputs plus attributes, ready for :func:`check_kernel`).
* **The grader.** :func:`check_kernel` runs a kernel (a student's, or a Numba one) against the
  reference op on many generated cases and returns a :class:`KernelReport`::

      from minirt.ops.norm import Softmax
      from minirt.testing import arrays, axes, cases, check_kernel, shapes

      report = check_kernel(my_softmax, Softmax,
                            cases(arrays(np.float32, shapes(1, 4)), axis=lambda x: axes(x.ndim)),
                            rtol=1e-5, atol=1e-6)
      print(report)            # 25/25 cases passed, max abs error 5.96e-08 ...

The module imports only NumPy at import time. ``onnx``, ``onnxruntime`` and ``hypothesis`` are
imported by the functions that need them; without them you get an error that says
``pip install minirt[test]``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Case", "Failure", "KernelReport",
    "one_node_model", "ort_session", "run_onnxruntime", "run_reference", "ort_op",
    "assert_same", "check_op", "check_kernel", "use_kernel",
    "shapes", "broadcastable_shapes", "arrays", "axes", "views", "cases",
]


def _require(module: str):
    """Import an optional test dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"minirt.testing needs {module.split('.')[0]!r} for this: pip install minirt[test]"
        ) from e


# ---------------------------------------------------------------------------------------------
# the oracle: one node, run by onnxruntime (or onnx.reference)


def _elem_type(dtype) -> int:
    """ONNX element type code of a NumPy dtype (or pass an ONNX code through)."""
    from minirt.dtypes import onnx_type

    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        return int(dtype)
    return onnx_type(dtype)


def _attr_value(value):
    """An attribute value in the form ``onnx.helper.make_node`` takes."""
    if isinstance(value, np.ndarray):  # a TENSOR attribute
        return _require("onnx.numpy_helper").from_array(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def one_node_model(op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict | None = None, *,
                   opset: int | None = None, domain: str = "", n_outputs: int | None = None,
                   output_dtypes: Sequence | None = None, domain_opset: int = 1,
                   ir_version: int = 10):
    """An ``onnx.ModelProto`` with one node ``op_type`` whose inputs have the dtypes of ``inputs``.

    Inputs are named ``i0, i1, ...``; ``None`` is an absent optional input (an empty name in the
    node), and trailing absent inputs are left off the node altogether (onnxruntime crashes on
    them). Shapes are left unknown, so one model serves every shape. Outputs are ``o0, o1, ...``
    (``n_outputs`` of them, default 1 or ``len(output_dtypes)``): untyped (onnxruntime infers
    them) unless ``output_dtypes`` gives their dtypes.
    Attribute values may be Python scalars, strings, lists, NumPy arrays (TENSOR attributes) or
    ``onnx.GraphProto``. ``opset`` is the default domain's version (the newest onnx knows when
    ``None``); a custom ``domain`` is imported at ``domain_opset``.
    """
    onnx = _require("onnx")
    helper = onnx.helper
    inputs = list(inputs)
    while inputs and inputs[-1] is None:  # trailing absent optionals: left off the node
        inputs.pop()
    names = ["" if x is None else f"i{k}" for k, x in enumerate(inputs)]
    graph_inputs = [helper.make_tensor_value_info(n, _elem_type(np.asarray(x).dtype), None)
                    for n, x in zip(names, inputs) if x is not None]
    if n_outputs is None:
        n_outputs = 1 if output_dtypes is None else len(output_dtypes)
    outs = [f"o{k}" for k in range(n_outputs)]
    if output_dtypes is None:
        graph_outputs = [onnx.ValueInfoProto(name=o) for o in outs]
    else:
        graph_outputs = [helper.make_tensor_value_info(o, _elem_type(t), None) for o, t in zip(outs, output_dtypes)]
    node = helper.make_node(op_type, names, outs, domain=domain or None,
                            **{k: _attr_value(v) for k, v in sorted((attrs or {}).items())})
    graph = helper.make_graph([node], op_type, graph_inputs, graph_outputs)
    opsets = [helper.make_opsetid("", opset if opset is not None else onnx.defs.onnx_opset_version())]
    if domain and domain != "ai.onnx":
        opsets.append(helper.make_opsetid(domain, domain_opset))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    return model


@functools.lru_cache(maxsize=512)
def ort_session(model_bytes: bytes):
    """An onnxruntime CPU session for a serialized model, cached: one session per distinct model."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _serialized(model) -> bytes:
    return model if isinstance(model, bytes) else model.SerializeToString()


def _feeds(model, inputs) -> dict:
    """inputs as a feed dict: a dict passes through; a list is positional (None = absent)."""
    if isinstance(inputs, dict):
        return {k: np.asarray(v) for k, v in inputs.items()}
    names = None if isinstance(model, bytes) else [i.name for i in model.graph.input]
    if names is None or all(re.fullmatch(r"i\d+", n) for n in names):  # a one_node_model: i0, i1, ...
        return {f"i{k}": np.asarray(x) for k, x in enumerate(inputs) if x is not None}
    return {n: np.asarray(x) for n, x in zip(names, inputs) if x is not None}


def run_onnxruntime(model, inputs) -> list:
    """Every output of ``model`` (a ModelProto or its bytes) run by onnxruntime on ``inputs``.

    ``inputs`` is a dict name -> array, or a list in the node's input order (``None`` = absent).
    """
    return ort_session(_serialized(model)).run(None, _feeds(model, inputs))


def run_reference(model, inputs) -> list:
    """Every output of ``model`` run by ``onnx.reference.ReferenceEvaluator`` (a second opinion)."""
    onnx = _require("onnx")
    reference = _require("onnx.reference")
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    return list(reference.ReferenceEvaluator(model).run(None, _feeds(model, inputs)))


def ort_op(op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict | None = None, **model_kw) -> list:
    """Run one ONNX node in onnxruntime: ``run_onnxruntime(one_node_model(...), inputs)``.

    Returns every output as a list. ``model_kw`` are :func:`one_node_model`'s keywords
    (``opset``, ``domain``, ``n_outputs``, ``output_dtypes`` ...).
    """
    model = one_node_model(op_type, inputs, attrs, **model_kw)
    return run_onnxruntime(model.SerializeToString(), inputs)


# ---------------------------------------------------------------------------------------------
# comparing results


def _exact_kind(dtype: np.dtype) -> bool:
    return dtype.kind in "biuOUS"


def assert_same(actual, expected, *, rtol: float = 0.0, atol: float = 0.0, name: str = "output") -> None:
    """``actual`` is an ndarray with ``expected``'s dtype and shape, and the same values.

    Integers, booleans and strings must be equal. Floats must be within ``atol + rtol * |expected|``
    (compared in float64); NaNs must sit in the same places. ``rtol == atol == 0`` means equal.
    """
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray), f"{name}: expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, expected {expected.shape}"
    if actual.dtype == object:
        assert actual.tolist() == expected.tolist(), f"{name}: values differ"
        return
    try:
        if _exact_kind(actual.dtype) or rtol == atol == 0.0:
            np.testing.assert_array_equal(actual, expected, strict=True)
        else:
            np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
    except AssertionError as e:
        raise AssertionError(f"{name}: {str(e).strip()}") from None


def _as_outputs(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def check_op(fn: Callable, op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict | None = None, *,
             rtol: float, atol: float, opset: int | None = None, domain: str = "", **model_kw) -> list:
    """Call the minirt op ``fn(*inputs, **attrs)`` and compare it with onnxruntime on the same node.

    Checks every output (dtype, shape, values: :func:`assert_same`) and that ``fn`` left its
    inputs untouched. Returns minirt's outputs as a list.
    """
    attrs = dict(attrs or {})
    before = [None if x is None else np.array(x, copy=True) for x in inputs]
    actual = _as_outputs(fn(*inputs, **attrs))
    for k, (x, x0) in enumerate(zip(inputs, before)):
        if x is not None:
            assert np.array_equal(x, x0, equal_nan=x0.dtype.kind in "fc"), f"{op_type} modified input {k} in place"
    expected = ort_op(op_type, inputs, attrs, opset=opset, domain=domain, n_outputs=len(actual), **model_kw)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert_same(a, e, rtol=rtol, atol=atol, name=f"{op_type} output {k}")
    return actual


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies


def _st():
    return _require("hypothesis.strategies")


def shapes(min_rank: int = 0, max_rank: int = 4, min_side: int = 1, max_side: int = 5):
    """Array shapes (tuples) of rank ``min_rank..max_rank`` and sides ``min_side..max_side``."""
    st = _st()
    return st.lists(st.integers(min_side, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def broadcastable_shapes(n: int = 2, min_rank: int = 0, max_rank: int = 4, min_side: int = 1, max_side: int = 4):
    """``n`` mutually broadcastable shapes (a tuple of tuples), size-1 dims and missing dims included."""
    hnp = _require("hypothesis.extra.numpy")
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=min_rank, max_dims=max_rank,
                                             min_side=min_side, max_side=max_side).map(lambda b: b.input_shapes)


def arrays(dtype, shape, *, low: float = -10, high: float = 10):
    """Arrays of ``dtype`` with finite values in ``[low, high]``; ``shape`` is a tuple or a strategy.

    Booleans are random; integers are whole numbers in the range. Values come from a seeded NumPy
    generator (fast for big arrays, and Hypothesis still shrinks the seed and the shape).
    """
    st = _st()
    dtype = np.dtype(dtype)
    shape_st = shape if hasattr(shape, "example") else st.just(tuple(shape))

    def make(args):
        shp, seed = args
        rng = np.random.default_rng(seed)
        if dtype == np.bool_:
            return rng.random(shp) < 0.5
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(max(int(low), info.min), min(int(high), info.max) + 1, shp).astype(dtype)
        return rng.uniform(low, high, shp).astype(dtype)

    return st.tuples(shape_st, st.integers(0, 2**32 - 1)).map(make)


def axes(rank: int, *, unique: bool = False, min_size: int | None = None, max_size: int | None = None):
    """One axis in ``-rank..rank-1`` (negative ones included); with ``unique=True`` a list of
    distinct axes (``a`` and ``a - rank`` count as the same axis)."""
    st = _st()
    if rank == 0:
        return st.just([]) if unique else st.nothing()
    one = st.integers(-rank, rank - 1)
    if not unique:
        return one
    return st.lists(one, min_size=min_size or 0, max_size=rank if max_size is None else max_size,
                    unique_by=lambda a: a % rank)


def _strided(x: np.ndarray) -> np.ndarray:
    """Same values, every other element of a twice-as-long last dim."""
    buf = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    buf[..., ::2] = x
    return buf[..., ::2]


def _transposed(x: np.ndarray) -> np.ndarray:
    """Same values, stored in reversed axis order (a transposed view of a contiguous array)."""
    return np.ascontiguousarray(x.transpose()).transpose()


def _reversed(x: np.ndarray) -> np.ndarray:
    """Same values, negative strides along every axis."""
    flip = (slice(None, None, -1),) * x.ndim
    return np.ascontiguousarray(x[flip])[flip]


_VIEWS = {"strided": _strided, "transposed": _transposed, "reversed": _reversed}


def views(array: np.ndarray):
    """Arrays equal to ``array`` (same dtype, shape, values) laid out differently in memory:
    a strided view, a transposed view or negative strides; never C-contiguous unless the array
    has at most one element. A kernel must give the same answer for each."""
    st = _st()
    array = np.asarray(array)
    if array.ndim == 0:
        return st.just(array.copy())

    def make(kind):
        view = _VIEWS[kind](array)
        if view.flags.c_contiguous and view.size > 1:  # e.g. a 1-D "transpose": reverse instead
            view = _reversed(array)
        return view

    return st.sampled_from(sorted(_VIEWS)).map(make)


@dataclass
class Case:
    """One test case for a kernel: positional inputs and keyword attributes."""

    inputs: tuple
    attrs: dict = field(default_factory=dict)

    def describe(self, max_values: int = 32) -> str:
        parts = []
        for k, x in enumerate(self.inputs):
            if x is None:
                parts.append(f"input {k}: None")
                continue
            x = np.asarray(x)
            text = f"input {k}: {x.dtype}{list(x.shape)}"
            if not x.flags.c_contiguous and x.ndim > 0:
                text += f" (strides {x.strides})"
            if x.size <= max_values:
                text += " = " + np.array2string(x, precision=4, separator=", ").replace("\n", "")
            parts.append(text)
        if self.attrs:
            parts.append("attributes: " + ", ".join(f"{k}={v!r}" for k, v in self.attrs.items()))
        return "; ".join(parts)


def _as_case(case) -> Case:
    """A Case from a Case, an array (one input), a tuple of inputs, or an (inputs, attrs) pair."""
    if isinstance(case, Case):
        return case
    if isinstance(case, np.ndarray):
        return Case((case,))
    if isinstance(case, dict):
        return Case(tuple(case.get("inputs", ())), dict(case.get("attrs", {})))
    case = tuple(case)
    if len(case) == 2 and isinstance(case[1], dict) and isinstance(case[0], (tuple, list)):
        return Case(tuple(case[0]), dict(case[1]))
    return Case(case)


def cases(*inputs, **attrs):
    """A strategy of :class:`Case`: one value drawn from each input strategy, then each attribute.

    An attribute is a strategy, a plain value, or a function of the drawn inputs returning a
    strategy (for attributes that depend on them)::

        cases(arrays(np.float32, shapes(1, 4)), axis=lambda x: axes(x.ndim))
    """
    st = _st()

    @st.composite
    def draw_case(draw):
        drawn = tuple(draw(s) for s in inputs)
        values = {}
        for name, a in attrs.items():
            if callable(a) and not hasattr(a, "example"):
                a = a(*drawn)
            values[name] = draw(a) if hasattr(a, "example") else a
        return Case(drawn, values)

    return draw_case()


# ---------------------------------------------------------------------------------------------
# the grader


@dataclass
class Failure:
    """A case the kernel got wrong: which one, its inputs, and what went wrong."""

    index: int
    case: Case
    message: str

    def __str__(self) -> str:
        message = "\n".join("  " + line for line in self.message.splitlines())
        return f"case {self.index}: {self.case.describe()}\n{message}"


@dataclass
class KernelReport:
    """What :func:`check_kernel` found: counts, the failures, the largest error seen."""

    kernel: str
    reference: str
    passed: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0

    @property
    def cases(self) -> int:
        return self.passed + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = (f"{self.kernel} vs {self.reference}: {self.passed}/{self.cases} cases passed, "
                f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}")
        if self.first_failure is None:
            return head
        return f"{head}\nfirst failure, {self.first_failure}"


def _name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Largest absolute and relative error over the finite elements (0 when not numeric)."""
    if actual.shape != expected.shape or actual.size == 0 or actual.dtype.kind not in "biufc" \
            or expected.dtype.kind not in "biufc":
        return 0.0, 0.0
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(a) & np.isfinite(e)
    if not finite.any():
        return 0.0, 0.0
    diff = np.abs(a - e)[finite]
    return float(diff.max()), float((diff / np.maximum(np.abs(e[finite]), np.finfo(np.float64).tiny)).max())


def _grade_one(kernel_fn, reference_fn, case: Case, rtol, atol, report: KernelReport, index: int) -> None:
    expected = _as_outputs(reference_fn(*case.inputs, **case.attrs))
    originals = [None if x is None else np.array(x, copy=True) for x in case.inputs]
    message = None
    try:
        actual = _as_outputs(kernel_fn(*case.inputs, **case.attrs))
    except Exception as e:  # a crash is a failed case, not a crashed grader
        message = f"raised {type(e).__name__}: {e}"
    else:
        if len(actual) != len(expected):
            message = f"returned {len(actual)} outputs, expected {len(expected)}"
        for k, (x, x0) in enumerate(zip(case.inputs, originals)):
            if message is None and x is not None and not np.array_equal(np.asarray(x), x0, equal_nan=x0.dtype.kind in "fc"):
                message = f"modified input {k} in place (kernels must not write to their inputs)"
        for k, (a, e) in enumerate(zip(actual, expected)):
            if isinstance(a, np.ndarray) and isinstance(e, np.ndarray):
                abs_err, rel_err = _errors(a, e)
                report.max_abs_error = max(report.max_abs_error, abs_err)
                report.max_rel_error = max(report.max_rel_error, rel_err)
            if message is None:
                try:
                    assert_same(a, e, rtol=rtol, atol=atol, name=f"output {k}")
                except AssertionError as err:
                    message = str(err).strip()
    if message is None:
        report.passed += 1
    else:
        report.failed += 1
        report.failures.append(Failure(index, case, message))


def check_kernel(kernel_fn: Callable, reference_fn: Callable, strategy_or_cases, *, rtol: float, atol: float,
                 max_examples: int = 25, raise_on_failure: bool = False, seed: int | None = 0) -> KernelReport:
    """Grade ``kernel_fn`` against ``reference_fn`` (a minirt op) on many cases.

    ``strategy_or_cases`` is a Hypothesis strategy of cases (see :func:`cases`) or a list of
    cases; a case is a :class:`Case`, one array, a tuple of inputs, or an ``(inputs, attrs)``
    pair. Each case runs both functions as ``fn(*inputs, **attrs)``; the kernel passes a case when
    every output has the reference's dtype and shape and values within ``atol + rtol * |ref|``
    (:func:`assert_same`), it raised nothing, and it left its inputs untouched.

    A strategy is drawn ``max_examples`` times (reproducibly for a given ``seed``; ``seed=None``
    for fresh cases each run). Returns a :class:`KernelReport`; with ``raise_on_failure=True`` a
    failing kernel raises ``AssertionError`` naming the first failing case.
    """
    report = KernelReport(kernel=_name(kernel_fn), reference=_name(reference_fn))
    if hasattr(strategy_or_cases, "example"):  # a Hypothesis strategy
        hypothesis = _require("hypothesis")

        @hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(strategy_or_cases)
        def run_all(case):
            _grade_one(kernel_fn, reference_fn, _as_case(case), rtol, atol, report, report.cases)

        if seed is not None:
            run_all = hypothesis.seed(seed)(run_all)
        run_all()
    else:
        for i, case in enumerate(strategy_or_cases):
            _grade_one(kernel_fn, reference_fn, _as_case(case), rtol, atol, report, i)
    if raise_on_failure and not report.ok:
        raise AssertionError(str(report) if report.cases else f"{report.kernel}: no cases were run")
    return report


@contextlib.contextmanager
def use_kernel(op_type: str, fn: Callable, *, since: int, domain: str = ""):
    """Install ``fn`` as the fast kernel of ``op_type`` (version ``since``) inside a ``with`` block.

    Sessions built inside the block run ``fn`` for that op (a session keeps the kernels it was
    built with); on leaving, whatever kernel was registered before is back, so one exercise
    cannot leak into the next::

        with use_kernel("Softmax", my_softmax, since=13):
            sess = minirt.InferenceSession("minirt/data/chargpt.onnx")
    """
    from minirt import registry

    registry._ensure_loaded()  # the bundled kernels first, so they cannot overwrite fn later
    key = (registry.canonical_domain(domain), op_type, since)
    saved = registry._KERNELS.get(key)
    registry.kernel(op_type, since=since, domain=domain)(fn)
    try:
        yield fn
    finally:
        if saved is None:
            registry._KERNELS.pop(key, None)
        else:
            registry._KERNELS[key] = saved
