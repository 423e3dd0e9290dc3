"""The op registry: (domain, op type, since-version) -> a Python function.

Every op is one function, named as the ONNX spec names it, registered with ``@op``::

    @op("Softmax", since=13)
    def Softmax(input, *, axis=-1):
        ...

    @op("Softmax", since=1)          # the older semantic keeps the `_N` suffix
    def Softmax_1(input, *, axis=1):
        ...

Dispatch picks the newest version whose ``since`` is <= the model's opset for the op's domain,
as the ONNX spec does. Inputs arrive positionally (a missing optional input is ``None``);
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


# (domain, op_type) -> list of OpDef, sorted by since (ascending)
_REGISTRY: dict[tuple[str, str], list[OpDef]] = {}


def op(op_type: str, since: int = 1, domain: str = ""):
    """Register ``fn`` as the implementation of ``op_type`` from opset ``since`` on."""

    def register(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        attrs = frozenset(
            name for name, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
        )
        any_attr = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        key = (canonical_domain(domain), op_type)
        versions = [d for d in _REGISTRY.get(key, []) if d.since != since]
        versions.append(OpDef(key[0], op_type, since, fn, attrs, any_attr))
        versions.sort(key=lambda d: d.since)
        _REGISTRY[key] = versions
        return fn

    return register


def register_op(op_type: str, fn: Callable, *, since: int = 1, domain: str = "") -> Callable:
    """Public, non-decorator form of :func:`op` (e.g. to plug a student's kernel in)."""
    return op(op_type, since=since, domain=domain)(fn)


def lookup(domain: str, op_type: str, opset: int) -> OpDef | None:
    """The newest registered version of the op with ``since <= opset``, or None."""
    versions = _REGISTRY.get((canonical_domain(domain), op_type))
    if not versions:
        return None
    best = None
    for d in versions:
        if d.since <= opset:
            best = d
    return best


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
        import minirt.ops  # noqa: F401  (importing registers every op)
