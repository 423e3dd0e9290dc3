"""The op registry: (domain, op type, since-version) -> a Python function.

Every op is one function, named as the ONNX spec names it, registered with ``@op``::

    @op("Softmax", since=13)
    def Softmax(input, *, axis=-1):
        ...

    @op("Softmax", since=1)          # the older semantic keeps the `_N` suffix
    def Softmax_1(input, *, axis=1):
        ...

Dispatch picks the newest version whose ``since`` is <= the model's opset for the op's domain,
as the ONNX spec does.

A fast version of an op (a Numba loop kernel, a BLAS-backed path) registers with ``@kernel``
under the same (domain, op type, since) as the reference op it speeds up. The session uses the
kernel when one matches the chosen reference version, unless asked for the reference ops only
(``InferenceSession(..., kernels=False)``): the reference stays the spec, and tests compare the
two. Inputs arrive positionally (a missing optional input is ``None``);
attributes arrive as keyword arguments named as in the spec. An op returns one array, or a
``tuple`` of arrays when it has several outputs. Sequences are Python ``list``s.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

# domain aliases: "" and "ai.onnx" are the same domain
_DOMAIN_ALIASES = {"ai.onnx": ""}


def canonical_domain(domain: str | None) -> str:
    domain = domain or ""
    return _DOMAIN_ALIASES.get(domain, domain)


@dataclass
class OpDef:
    """One registered version of one op."""

    domain: str
    op_type: str
    since: int
    fn: Callable
    attributes: frozenset[str] = field(default_factory=frozenset)  # keyword-only names
    takes_any_attribute: bool = False  # fn(**attrs)
    # a kernel's plan-time step: prepare(**attrs) -> a callable of the inputs alone that computes
    # fn(*inputs, **attrs), with what the attributes decide worked out once per node
    prepare: Callable | None = None


# (domain, op_type) -> list of OpDef, sorted by since (ascending)
_REGISTRY: dict[tuple[str, str], list[OpDef]] = {}
# fast versions: (domain, op_type, since) -> OpDef
_KERNELS: dict[tuple[str, str, int], OpDef] = {}


def _opdef(fn: Callable, op_type: str, since: int, domain: str) -> OpDef:
    sig = inspect.signature(fn)
    attrs = frozenset(
        name for name, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    any_attr = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return OpDef(canonical_domain(domain), op_type, since, fn, attrs, any_attr)


def op(op_type: str, since: int = 1, domain: str = ""):
    """Register ``fn`` as the reference implementation of ``op_type`` from opset ``since`` on."""

    def register(fn: Callable) -> Callable:
        d = _opdef(fn, op_type, since, domain)
        key = (d.domain, op_type)
        versions = [v for v in _REGISTRY.get(key, []) if v.since != since]
        versions.append(d)
        versions.sort(key=lambda v: v.since)
        _REGISTRY[key] = versions
        return fn

    return register


def kernel(op_type: str, since: int = 1, domain: str = "", prepare: Callable | None = None):
    """Register ``fn`` as a fast version of the reference op registered with the same ``since``.

    Its signature must accept the same inputs and attributes as the reference op.

    ``prepare``, optional, is the kernel's plan-time step: ``prepare(**attrs)`` returns a callable
    of the inputs alone, computing what ``fn(*inputs, **attrs)`` computes. The plan calls it once
    per node, so that the work the attributes (and, inside it, the first run's shapes and
    weights) decide is not redone on every run — for small convs it costs as much as the
    arithmetic. ``fn`` stays the kernel for every other caller (tests, constant folding).
    """

    def register(fn: Callable) -> Callable:
        d = _opdef(fn, op_type, since, domain)
        d.prepare = prepare
        _KERNELS[(d.domain, op_type, since)] = d
        return fn

    return register


def register_op(op_type: str, fn: Callable, *, since: int = 1, domain: str = "") -> Callable:
    """Public, non-decorator form of :func:`op` (e.g. to plug a student's kernel in)."""
    return op(op_type, since=since, domain=domain)(fn)


def lookup(domain: str, op_type: str, opset: int, kernels: bool = False) -> OpDef | None:
    """The newest registered version of the op with ``since <= opset``, or None.

    With ``kernels=True``, the fast version of that same op version when one is registered.
    """
    _ensure_loaded()
    versions = _REGISTRY.get((canonical_domain(domain), op_type))
    if not versions:
        return None
    best = None
    for d in versions:
        if d.since <= opset:
            best = d
    if best is not None and kernels:
        return _KERNELS.get((best.domain, op_type, best.since), best)
    return best


def kernels() -> dict[tuple[str, str, int], Callable]:
    """Every registered fast version: (domain, op_type, since) -> function."""
    _ensure_loaded()
    return {k: d.fn for k, d in sorted(_KERNELS.items())}


def versions(domain: str, op_type: str) -> list[int]:
    """The since-versions registered for an op (empty when the op is unknown)."""
    return [d.since for d in _REGISTRY.get((canonical_domain(domain), op_type), [])]


def all_ops() -> dict[tuple[str, str], list[int]]:
    """Every registered op: (domain, op_type) -> since-versions. Used for the support table."""
    _ensure_loaded()
    return {k: [d.since for d in v] for k, v in sorted(_REGISTRY.items())}


_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import minirt.kernels  # noqa: F401  (importing registers every fast kernel)
        import minirt.ops  # noqa: F401  (importing registers every op)
        import minirt.passes.fused_ops  # noqa: F401  (the optimizer's fused ops: minirt.FusedConv ...)
