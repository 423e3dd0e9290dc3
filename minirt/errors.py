"""minirt's exceptions. Each message names what went wrong, where, and the likely cause."""

from __future__ import annotations


class MinirtError(Exception):
    """Base class of every error minirt raises on purpose."""


class ModelLoadError(MinirtError, ValueError):
    """The model file or bytes could not be read or are not a valid ONNX model."""


class UnsupportedOpError(MinirtError, NotImplementedError):
    """The model uses ops (or op versions) that minirt does not implement."""


class InputError(MinirtError, ValueError):
    """A feed is missing, unknown, or has the wrong dtype or shape."""


class NodeError(MinirtError, RuntimeError):
    """An op failed while running: names the node, the op and its inputs."""
