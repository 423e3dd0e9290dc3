"""minirt as an ``onnx.backend.base.Backend``, so the official ONNX backend test suite runs as-is.

    from onnx.backend.test import BackendTest
    BackendTest(minirt.backend.MinirtBackend, __name__)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from minirt.session import InferenceSession


class MinirtRep(BackendRep):
    """A prepared model: runs a list (positional) or dict (by name) of inputs."""

    def __init__(self, session: InferenceSession):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def run(self, inputs: Any, **kwargs: Any) -> tuple:
        if isinstance(inputs, dict):
            feeds = inputs
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(self.input_names, inputs))
        return tuple(self.session.run(None, feeds))


class MinirtBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return True

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> MinirtRep:
        super().prepare(model, device, **kwargs)
        return MinirtRep(InferenceSession(model))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


prepare = MinirtBackend.prepare
run_model = MinirtBackend.run_model
supports_device = MinirtBackend.supports_device
