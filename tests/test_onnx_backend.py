"""The official ONNX backend test suite, run through minirt's Backend.

Covers every suite the onnx package ships without network: node (1884 one-op cases, generated
in memory), real (the "light" ResNet-50, VGG-19, DenseNet-121, Inception v1/v2, SqueezeNet,
ShuffleNet, AlexNet and ZFNet-512, with expected outputs stored in the package), simple,
pytorch-converted and pytorch-operator. Exclusions, each with its reason, live in
``tests/backend_exclusions.py``.

    pytest tests/test_onnx_backend.py -k OnnxBackendNodeModelTest     # one suite
"""

import os
import tempfile
import warnings

import onnx.backend.test

from minirt.backend import MinirtBackend

from backend_exclusions import EXCLUDED

# The light models' inputs are written to $ONNX_HOME/models/light by the runner: keep that out
# of the user's home folder.
os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "minirt-onnx-home"))

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the node cases' generators warn on purpose (overflow ...)
    backend_test = onnx.backend.test.BackendTest(MinirtBackend, __name__)

for pattern in EXCLUDED:
    backend_test.exclude(pattern)

# The runner makes every case once per device and skips the devices the backend does not
# support. minirt runs on the CPU only: drop the CUDA copies rather than report 2000 skips.
test_cases = backend_test.test_cases  # a property: each access builds new classes
for case_class in test_cases.values():
    for attr in [a for a in vars(case_class) if a.startswith("test_") and a.endswith("_cuda")]:
        delattr(case_class, attr)

globals().update(test_cases)


def test_loop16_seq_none_compared_elementwise():
    """The one case excluded because the runner cannot compare it: compare it here instead."""
    import numpy as np
    from onnx.backend.test.loader import load_model_tests

    [case] = [c for c in load_model_tests(kind="node") if c.name == "test_loop16_seq_none"]
    rep = MinirtBackend.prepare(case.model)
    for inputs, expected in case.data_sets:
        [got] = rep.run(inputs)
        [want] = expected
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-6)  # exact arithmetic on small floats
