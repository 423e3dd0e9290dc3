"""minirt: a readable ONNX inference runtime in Python.

    import minirt
    outputs = minirt.run("model.onnx", {"x": x})          # name -> array
    sess = minirt.InferenceSession("model.onnx")          # onnxruntime-style
    [y] = sess.run(None, {"x": x})
"""

import os as _os
import sys as _sys

# OpenBLAS's worker threads spin for 2**28 cycles (~0.1 s) after every multi-threaded product
# before they sleep. minirt runs its own threads between products (Numba loops, bands of conv
# columns); a spinning BLAS thread takes a core from them, and from onnxruntime when a benchmark
# runs both. 2**18 cycles (~0.1 ms) keeps back-to-back products warm: measured on 2 cores,
# minirt's Inception-v1 75 -> 49 ms, onnxruntime's ResNet-50 beside it 85 -> 39 ms. OpenBLAS
# reads it when NumPy is first imported; when NumPy came first (the usual order in a script),
# minirt asks the loaded OpenBLAS to read it again (kernels/gemm.py: reread_blas_timeout). A
# user's own value wins, and is left alone.
_REREAD_BLAS_TIMEOUT = "numpy" in _sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")

from minirt.errors import InputError, MinirtError, ModelLoadError, NodeError, UnsupportedOpError
from minirt.passes import OptimizeReport
from minirt.registry import op, register_op
from minirt.session import InferenceSession, run

__version__ = "0.1.0"

if _REREAD_BLAS_TIMEOUT:
    from minirt.kernels.gemm import reread_blas_timeout as _reread

    _reread()


def profile(model, inputs=None, **kwargs):
    """Per-node time, FLOPs, bytes and a roofline summary: see :func:`minirt.tools.profile.profile`."""
    from minirt.tools.profile import profile as _profile

    return _profile(model, inputs, **kwargs)


def optimize(model, level: int = 2, passes=None):
    """The optimized graph of ``model`` (path, bytes, ModelProto or Graph): see :mod:`minirt.passes`.

    ``level`` 0/1/2 picks the passes (2: folding, cleanup and fusions); the input is unchanged.
    """
    from minirt.ir import Graph
    from minirt.passes import optimize as _optimize

    graph = model if isinstance(model, Graph) else load(model)
    return _optimize(graph, level=level, passes=passes)


def bench(model, inputs=None, **kwargs):
    """Latency p50/p90/p99, batch sweep, cost per million: see :func:`minirt.tools.bench.bench`."""
    from minirt.tools.bench import bench as _bench

    return _bench(model, inputs, **kwargs)


def compare(model, inputs=None, **kwargs):
    """First node where minirt and onnxruntime disagree: see :func:`minirt.tools.compare.compare`."""
    from minirt.tools.compare import compare as _compare

    return _compare(model, inputs, **kwargs)


def quantize(model, calibration_data=None, **kwargs):
    """Post-training int8 quantization to QDQ ONNX: see :func:`minirt.tools.quantize.quantize`."""
    from minirt.tools.quantize import quantize as _quantize

    return _quantize(model, calibration_data, **kwargs)


def prune(model, sparsity=0.5, **kwargs):
    """Magnitude pruning, unstructured or structured: see :func:`minirt.tools.prune.prune`."""
    from minirt.tools.prune import prune as _prune

    return _prune(model, sparsity, **kwargs)


def generate(model, prompt_ids, max_new_tokens, **kwargs):
    """Autoregressive decoding with a KV cache: see :func:`minirt.tools.generate.generate`."""
    from minirt.tools.generate import generate as _generate

    return _generate(model, prompt_ids, max_new_tokens, **kwargs)


def load(model):
    """Load an ONNX model (path, bytes or ModelProto) into minirt's IR: a :class:`minirt.ir.Graph`."""
    from minirt.frontend.onnx import from_onnx

    return from_onnx(model)


__all__ = [
    "bench",
    "compare",
    "generate",
    "prune",
    "quantize",
    "InferenceSession",
    "InputError",
    "MinirtError",
    "ModelLoadError",
    "NodeError",
    "UnsupportedOpError",
    "load",
    "op",
    "optimize",
    "OptimizeReport",
    "profile",
    "register_op",
    "run",
]
