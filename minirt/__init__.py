"""minirt: a readable ONNX inference runtime in Python.

    import minirt
    outputs = minirt.run("model.onnx", {"x": x})          # name -> array
    sess = minirt.InferenceSession("model.onnx")          # onnxruntime-style
    [y] = sess.run(None, {"x": x})
"""

from minirt.errors import InputError, MinirtError, ModelLoadError, NodeError, UnsupportedOpError
from minirt.registry import op, register_op
from minirt.session import InferenceSession, run

__version__ = "0.1.0"


def profile(model, inputs=None, **kwargs):
    """Per-node time, FLOPs, bytes and a roofline summary: see :func:`minirt.tools.profile.profile`."""
    from minirt.tools.profile import profile as _profile

    return _profile(model, inputs, **kwargs)


def load(model):
    """Load an ONNX model (path, bytes or ModelProto) into minirt's IR: a :class:`minirt.ir.Graph`."""
    from minirt.frontend.onnx import from_onnx

    return from_onnx(model)


__all__ = [
    "InferenceSession",
    "InputError",
    "MinirtError",
    "ModelLoadError",
    "NodeError",
    "UnsupportedOpError",
    "load",
    "op",
    "profile",
    "register_op",
    "run",
]
