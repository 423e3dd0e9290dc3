"""InferenceSession: load a model, build its plan once, run it many times.

The session owns what surrounds the plan (:mod:`minirt.plan`): graph optimization, input
validation with errors that teach, observers (hooks, verbose), the result cache, thread limits,
and the onnxruntime-shaped API (``run``, ``get_inputs``, ``get_outputs``).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from minirt.cache import CacheInfo, ResultCache
from minirt.dtypes import NP_TO_ONNX, type_name
from minirt.errors import InputError
from minirt.ir import Graph, Value
from minirt.observe import Observer, VerbosePrinter, _Observers
from minirt.plan import Plan, check_supported
from minirt.plan_cache import Capture, SpecializedPlans, agree, signature, worth_specializing


@dataclass
class NodeArg:
    """An input or output as onnxruntime describes it: name, shape (ints/strings/None) and type."""

    name: str
    shape: list[Any]
    type: str
    dtype: np.dtype | None = None

    @classmethod
    def from_value(cls, v: Value) -> NodeArg:
        if v.dtype is None:
            t = f"{v.kind}(?)"
        else:
            code = NP_TO_ONNX.get(np.dtype(v.dtype), 8)
            t = _ORT_TYPE_NAMES.get(code, type_name(code))
            t = f"tensor({t})" if v.kind == "tensor" else f"{v.kind}(tensor({t}))"
        return cls(v.name, list(v.shape) if v.shape is not None else [], t, v.dtype)


_ORT_TYPE_NAMES = {1: "float", 11: "double", 10: "float16", 8: "string"}
_ORT_TYPE_NAMES.update({c: type_name(c) for c in (2, 3, 4, 5, 6, 7, 9, 12, 13, 16)})


class InferenceSession:
    """Load a model once, run it many times — the same shape as onnxruntime's session.

    >>> sess = minirt.InferenceSession("model.onnx")
    >>> [logits] = sess.run(None, {"image": x})
    """

    def __init__(self, model, *, optimize: int = 2, kernels: bool = True, threads: int | None = None,
                 verbose: int = 0, cache_size: int = 0, specialize: int | bool = True):
        """``optimize`` is the graph-pass level (:mod:`minirt.passes`): 0 runs the graph as loaded,
        1 folds constants and removes dead/no-op nodes, 2 (default) also folds Conv+BatchNorm and
        fuses MatMul+Add and elementwise chains. The graph as loaded stays in ``original_graph``.

        ``kernels=False`` runs the NumPy reference ops only (the spec), never the fast kernels.

        ``threads=N`` caps the threads BLAS and Numba kernels use during a run (default: all cores).

        ``cache_size=N`` keeps the outputs of the last N distinct inputs (see :mod:`minirt.cache`):
        a repeated input is answered without running the model; ``cache_info()`` counts hits.

        ``verbose=1`` prints every node as it runs with its time, ``verbose=2`` adds its outputs'
        shapes and value ranges.

        ``specialize=N`` (default ``True`` = 8) keeps up to N plans specialized on concrete input
        shapes: when the same input shapes come a second time, the shape arithmetic they decide
        (``Shape -> Gather -> Concat -> Reshape``, ``Range(seq)`` masks ...) is folded into a plan
        of their own (:mod:`minirt.passes.specialize`). ``0``/``False`` turns it off. Only graphs
        with ``Shape``/``Size`` nodes and inputs of symbolic dims are concerned.
        """
        from minirt.frontend.onnx import from_onnx
        from minirt.malloc import tune_malloc

        tune_malloc()  # once per process: freed arrays are reused, not page-faulted in again (minirt/malloc.py)
        self.original_graph: Graph = model if isinstance(model, Graph) else from_onnx(model)
        check_supported(self.original_graph)  # report unsupported ops against the graph as written
        self.graph = self.original_graph
        if optimize:
            from minirt.passes import optimize as optimize_graph

            self.graph = optimize_graph(self.original_graph, level=optimize)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self._pools = None  # threadpoolctl controller, made on first use
        self._kernels = kernels
        self._plan = Plan(self.graph, kernels=kernels)
        self._specialized: SpecializedPlans | None = None
        if not isinstance(specialize, bool) and int(specialize) < 0:
            raise ValueError(f"specialize must be a number of plans >= 0 or a bool, got {specialize!r}")
        if specialize and worth_specializing(self.graph):
            self._specialized = SpecializedPlans(8 if specialize is True else int(specialize))
        self._observers: list[Observer] = [VerbosePrinter(verbose)] if verbose else []
        self._cache = ResultCache(cache_size) if cache_size else None
        self._inputs = self.graph.feed_inputs()
        self._known = {v.name: v for v in self._inputs}  # name -> Value, for the input checks
        self._required = {v.name for v in self.graph.inputs if v.name not in self.graph.initializers}
        self._accepted: list | None = None  # (name, dtype, shape) of the last feeds that passed the checks, in order

    # hooks
    def add_hook(self, before: Callable | None = None, after: Callable | None = None) -> Observer:
        """Call ``before(node, inputs)`` / ``after(node, inputs, outputs, seconds)`` around every
        node of every later run. Returns a handle for :meth:`remove_hook`.

        An ``Observer`` instance may be passed as ``before`` to add it as it is.
        """
        hook = before if isinstance(before, Observer) else Observer(before, after)
        self._observers.append(hook)
        return hook

    def remove_hook(self, hook: Observer) -> None:
        self._observers.remove(hook)

    # onnxruntime-compatible introspection
    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg.from_value(v) for v in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg.from_value(v) for v in self.graph.outputs]

    def run(self, output_names: Iterable[str] | None, input_feed: Mapping[str, Any], run_options=None) -> list:
        """Run the model. ``output_names=None`` returns every output, in the graph's order."""
        feeds = self._validate(input_feed)
        if self._cache is None:
            outputs, _ = self._run(feeds, keep_all=False)
            return self._select(outputs, output_names)
        key = ResultCache.key(feeds)
        outputs = self._cache.get(key) if key is not None else None
        if outputs is None:
            outputs, _ = self._run(feeds, keep_all=False)
            if key is not None:
                self._cache.put(key, outputs)
        return self._select(outputs, output_names)

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the result cache (all zero when it is off)."""
        return self._cache.info() if self._cache is not None else CacheInfo(0, 0, 0, 0)

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    @property
    def specialized_plans(self) -> dict[tuple, Plan]:
        """The plans specialized on input shapes, newest last: signature -> plan.

        A signature is a tuple of ``(input name, shape, dtype)``. A plan whose specialization
        folded nothing (or failed its check) is the generic plan ``self._plan`` itself.
        """
        return dict(self._specialized.plans) if self._specialized is not None else {}

    def run_batches(self, data: Any, batch_size: int = 32, *, output_names: Iterable[str] | None = None,
                    progress: bool | None = None) -> Iterator[list]:
        """Stream the model over many samples, one batch at a time; yields each batch's outputs.

        ``data`` is one array (split along axis 0 and fed to the model's only input), a dict
        name -> array (all split along axis 0 together), or any iterable of ready batches
        (arrays or dicts) such as a generator reading files. A progress bar is drawn on stderr
        when it is a terminal (``progress=True``/``False`` forces it on/off).
        """
        from minirt.tools.progress import Progress

        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        names = [v.name for v in self._inputs]
        if isinstance(data, np.ndarray) or isinstance(data, Mapping):
            arrays = {names[0]: data} if isinstance(data, np.ndarray) else dict(data)
            if isinstance(data, np.ndarray) and len(names) != 1:
                raise InputError(f"this model has {len(names)} inputs {names}: pass a dict of arrays")
            sizes = {k: len(v) for k, v in arrays.items()}
            if len(set(sizes.values())) > 1:
                raise InputError(f"every input must have the same number of samples, got {sizes}")
            total = next(iter(sizes.values()), 0)
            batches: Iterable[Any] = (
                {k: v[i:i + batch_size] for k, v in arrays.items()} for i in range(0, total, batch_size)
            )
            n_batches: int | None = -(-total // batch_size)
        else:
            batches, n_batches = data, (len(data) if hasattr(data, "__len__") else None)
        with Progress(n_batches, "run_batches", unit="batch", enabled=progress) as bar:
            for batch in batches:
                feed = batch if isinstance(batch, Mapping) else {names[0]: batch}
                yield self.run(output_names, feed)
                bar.update()

    def run_with_intermediates(self, input_feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run and return every value the graph computed (name -> array): the feeds, every
        intermediate and the outputs, in the order they were computed (weights are left out)."""
        outputs, env = self._run(self._validate(input_feed), keep_all=True)
        env = {k: v for k, v in env.items() if k not in self.graph.initializers}
        env.update(zip(self._plan.output_names, outputs))
        return env

    def _select(self, outputs: list, output_names: Iterable[str] | None) -> list:
        if output_names is None:
            return outputs
        index = {n: i for i, n in enumerate(self._plan.output_names)}
        chosen = []
        for name in output_names:
            if name not in index:
                raise InputError(f"unknown output {name!r}: this model's outputs are {list(index)}")
            chosen.append(outputs[index[name]])
        return chosen

    def _run(self, feeds: dict[str, Any], keep_all: bool):
        """Run the plan on validated feeds; returns (outputs, every value when keep_all).

        The plain path (no observer, not keep_all) may run a plan specialized on the feeds'
        shapes; observed runs and run_with_intermediates run the generic plan, whose nodes are
        the ones of ``self.graph`` with every intermediate there.
        """
        plan = self._plan
        observer = None
        if self._observers:
            observer = self._observers[0] if len(self._observers) == 1 else _Observers(list(self._observers))
        elif self._specialized is not None and not keep_all:
            key = signature(feeds)
            if key is not None:
                found = self._specialized.get(key)
                if found is not None:
                    plan = found
                elif self._specialized.seen_again(key):
                    with self._thread_limit():
                        outputs = self._specialize(key, feeds)
                    return [self._finish(o, feeds) for o in outputs], {}
        args = [feeds.get(n, plan.template[s]) for n, s in zip(plan.input_names, plan.input_slots)]
        if not self.threads and observer is None and not keep_all:  # no thread cap: 0.8 us less a run
            return [self._finish(o, feeds) for o in plan.execute(args)], {}
        with self._thread_limit():
            if keep_all:
                outputs, env = plan.execute(args, keep_all=True, observer=observer)
            else:
                outputs, env = plan.execute(args, observer=observer), {}
        return [self._finish(o, feeds) for o in outputs], env

    def _specialize(self, key: tuple, feeds: dict[str, Any]) -> list:
        """Second sighting of these input shapes: build their specialized plan, check it, run.

        The run answering this call is the generic plan's, observed to capture the values the
        specialization folded into constants: each must equal what the generic plan computed,
        else the specialized plan is not used (and a warning says so: that would be a minirt bug).
        """
        from minirt.passes.specialize import specialize_shapes

        generic = self._plan
        args = [feeds.get(n, generic.template[s]) for n, s in zip(generic.input_names, generic.input_slots)]
        try:
            graph = specialize_shapes(self.graph, {n: x.shape for n, x in feeds.items()})
        except Exception as e:  # noqa: BLE001  (an optimization must never break a run)
            warnings.warn(f"minirt: specializing the plan on input shapes {key} failed ({type(e).__name__}: "
                          f"{e}); running the generic plan for these shapes", RuntimeWarning, stacklevel=4)
            self._specialized.put(key, generic)
            return generic.execute(args)
        if len(graph.nodes) >= len(self.graph.nodes):  # nothing folded: the generic plan is as good
            self._specialized.put(key, generic)
            return generic.execute(args)
        folded = {n for n in graph.initializers if n not in self.graph.initializers}
        capture = Capture(folded)
        outputs = generic.execute(args, observer=capture)
        bad = []
        for name in sorted(folded):
            value = agree(capture.values.get(name), graph.initializers[name])
            if value is None:
                bad.append(name)
            else:
                graph.initializers[name] = value
        if bad:
            warnings.warn(f"minirt: the plan specialized on input shapes {key} folded {bad[0]!r} to a value the "
                          "generic plan does not compute; running the generic plan for these shapes",
                          RuntimeWarning, stacklevel=4)
            self._specialized.put(key, generic)
        else:
            self._specialized.put(key, Plan(graph, kernels=self._kernels))
        return outputs

    @contextlib.contextmanager
    def _thread_limit(self):
        """With ``threads=N``: BLAS (via threadpoolctl) and Numba use at most N threads in a run."""
        if not self.threads:
            yield
            return
        import numba
        from threadpoolctl import ThreadpoolController

        if self._pools is None:
            self._pools = ThreadpoolController()  # finds the BLAS libraries once per session
        before = numba.get_num_threads()
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with self._pools.limit(limits=self.threads, user_api="blas"):
                yield
        finally:
            numba.set_num_threads(before)

    @staticmethod
    def _finish(out: Any, feeds: dict[str, Any]) -> Any:
        """Give the caller an array of its own: never one of minirt's weights or their own feed."""
        if isinstance(out, np.ndarray):
            if out.base is None and out.flags.writeable and not any(out is f for f in feeds.values()):
                return out  # it owns its memory, made in this run: no feed can share it (0.2 us a feed less)
            if not out.flags.writeable or any(
                isinstance(f, np.ndarray) and np.may_share_memory(out, f) for f in feeds.values()
            ):
                return out.copy()
            return out
        if isinstance(out, np.generic):
            return np.asarray(out)
        return out

    # ------------------------------------------------------------------ input checks
    def _validate(self, input_feed: Mapping[str, Any]) -> dict[str, Any]:
        if type(input_feed) is dict:  # arrays of the very names, dtypes and shapes last accepted: 2 us less
            seen = []
            for name, x in input_feed.items():
                if type(x) is not np.ndarray:
                    break
                seen.append((name, x.dtype, x.shape))
            else:
                if seen == self._accepted:
                    return dict(input_feed)
        feeds = self._check_inputs(input_feed)
        as_given = all(type(x) is np.ndarray and x is input_feed[n] for n, x in feeds.items())
        # remembered only when every feed passed as it was given (a list made into an array, or
        # a feed missing next time, must be checked again)
        self._accepted = [(n, x.dtype, x.shape) for n, x in feeds.items()] if as_given else None
        return feeds

    def _check_inputs(self, input_feed: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(input_feed, Mapping):
            raise InputError(
                f"inputs must be a dict of name -> array, got {type(input_feed).__name__}; "
                f"this model's inputs are {[v.name for v in self._inputs]}"
            )
        known = self._known
        unknown = [n for n in input_feed if n not in known]
        if unknown:
            raise InputError(
                f"unknown input(s) {unknown}: this model's inputs are {list(known)}"
                + _close_match_hint(unknown, list(known))
            )
        missing = [n for n in self._required if n not in input_feed]
        if missing:
            raise InputError(
                f"missing input(s) {sorted(missing)}: "
                + ", ".join(f"{n} ({known[n].type_str()})" for n in sorted(missing))
            )
        feeds: dict[str, Any] = {}
        symbols: dict[str, tuple[int, str]] = {}
        for name, x in input_feed.items():
            v = known[name]
            if v.kind != "tensor":
                feeds[name] = x
                continue
            if not isinstance(x, np.ndarray):
                if v.dtype is not None and not isinstance(x, (str, bytes)):
                    try:
                        x = np.asarray(x, dtype=v.dtype)
                    except (TypeError, ValueError) as e:
                        raise InputError(f"input {name!r}: cannot turn {type(x).__name__} into {v.type_str()}: {e}") from None
                else:
                    x = np.asarray(x)
            _check_dtype(name, v, x)
            _check_shape(name, v, x, symbols)
            feeds[name] = x
        return feeds


def _check_dtype(name: str, v: Value, x: np.ndarray) -> None:
    if v.dtype is None or x.dtype == v.dtype:
        return
    if v.dtype == object and x.dtype.kind in "US":
        return
    hint = f"pass {name}.astype(np.{v.dtype})"
    if v.dtype.kind == "f" and x.dtype.kind == "f":
        hint += f" (NumPy makes float64 by default; the model was exported in {v.dtype})"
    elif v.dtype.kind in "iu" and x.dtype.kind in "iu":
        hint += " (token ids and indices are usually int64 in ONNX models)"
    raise InputError(f"input {name!r}: {x.dtype} given, {v.dtype} expected: {hint}")


def _check_shape(name: str, v: Value, x: np.ndarray, symbols: dict[str, tuple[int, str]]) -> None:
    if v.shape is None:
        return
    if x.ndim != len(v.shape):
        raise InputError(
            f"input {name!r}: rank {x.ndim} given (shape {list(x.shape)}), rank {len(v.shape)} expected "
            f"({v.type_str()})" + _missing_axis_hint(x.shape, v.shape)
        )
    for axis, (want, got) in enumerate(zip(v.shape, x.shape)):
        if isinstance(want, int) and want > 0 and want != got:
            cause = ""
            if axis == 0 and want == 1:
                cause = (
                    "; dim 0 is fixed to 1 in this model, likely at export: feed one sample at a time, "
                    "or re-export with a dynamic batch axis"
                )
            raise InputError(
                f"input {name!r}: shape {list(x.shape)} given, {v.type_str()} expected: "
                f"dim {axis} must be {want}, got {got}{cause}"
            )
        if isinstance(want, str):
            if want not in symbols:  # the first sighting names where it was seen (only then: 0.3 us a dim)
                symbols[want] = (got, f"input {name!r} dim {axis}")
            elif symbols[want][0] != got:
                size, where = symbols[want]
                raise InputError(
                    f"input {name!r}: dim {axis} is {got}, but the symbolic dim {want!r} is {size} "
                    f"in {where}; every input must agree on {want!r}"
                )


def _missing_axis_hint(given: tuple[int, ...], expected: tuple) -> str:
    """When one axis of size 1 is missing (often the batch or channel axis), say where to add it."""
    if len(given) + 1 != len(expected):
        return ""
    for k in range(len(expected)):
        candidate = given[:k] + (1,) + given[k:]
        if all(not isinstance(e, int) or e <= 0 or e == c for e, c in zip(expected, candidate)):
            return f"; add the missing axis with np.expand_dims(x, {k})"
    return ""


def _close_match_hint(unknown: list[str], known: list[str]) -> str:
    import difflib

    lowered = {k.lower(): k for k in known}
    for u in unknown:
        m = difflib.get_close_matches(u.lower(), list(lowered), n=1)
        if m:
            return f" (did you mean {lowered[m[0]]!r}?)"
    return ""


def run(model, inputs: Mapping[str, Any], *, intermediate: bool = False) -> dict[str, Any]:
    """One-shot inference: load ``model`` (path, bytes, ModelProto), run it, return name -> array.

    With ``intermediate=True`` every value the graph computed is returned too (the graph is then
    run as loaded, without optimization, so every intermediate keeps its name and meaning).
    """
    if isinstance(model, InferenceSession):
        sess = model
    else:
        sess = InferenceSession(model, optimize=0 if intermediate else 2)
    if intermediate:
        return sess.run_with_intermediates(inputs)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, inputs)))
