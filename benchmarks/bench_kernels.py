"""Time each fast kernel against its NumPy reference op and onnxruntime on the same one-node model.

    python benchmarks/bench_kernels.py [--repeats 15] [--only Conv]

The three are run interleaved (kernel, reference, onnxruntime, kernel, ...) so that a noisy
machine slows all of them alike; the table shows medians and the ratios kernel/reference and
kernel/onnxruntime (below 1: the kernel is faster), then the best times (on a shared, busy machine
the best run is the one that was not preempted). onnxruntime runs with 2 intra-op threads.

The kernel runs as a session's plan runs it: through its plan-time step when it registers one
(``prepare``: Conv's kept runner, the pools' kept geometry), with every input but the first
read-only, as a model's initializers are (Conv's Winograd path is taken only for read-only
weights).
"""

from __future__ import annotations

import argparse
import time

from fair import ORT_SPIN_S, warm_up  # before NumPy: it sets OpenBLAS's spin timeout (fair.py)

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from minirt import registry
from minirt.dtypes import NP_TO_ONNX

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def q(dtype, *shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def s(v, dtype=np.float32):
    return np.asarray(v, dtype=dtype)


# name, op type, opset, inputs, attributes, number of outputs
CASES = [
    ("Conv 3x3 64->64 @56 (ResNet)", "Conv", 13, [f32(1, 64, 56, 56), f32(64, 64, 3, 3), f32(64)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 1x1 256->64 @56", "Conv", 13, [f32(1, 256, 56, 56), f32(64, 256, 1, 1), f32(64)], {}, 1),
    ("Conv 1x1 s2 512->1024 @28", "Conv", 13, [f32(1, 512, 28, 28), f32(1024, 512, 1, 1)], dict(strides=[2, 2]), 1),
    ("Conv 7x7 s2 3->64 @224", "Conv", 13, [f32(1, 3, 224, 224), f32(64, 3, 7, 7), f32(64)], dict(pads=[3, 3, 3, 3], strides=[2, 2]), 1),
    ("Conv 3x3 512->512 @14", "Conv", 13, [f32(1, 512, 14, 14), f32(512, 512, 3, 3)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 3x3 256->256 @14 (ResNet)", "Conv", 13, [f32(1, 256, 14, 14), f32(256, 256, 3, 3), f32(256)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 3x3 512->512 @7 (ResNet)", "Conv", 13, [f32(1, 512, 7, 7), f32(512, 512, 3, 3), f32(512)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 3x3 64->64 @224 (VGG)", "Conv", 13, [f32(1, 64, 224, 224), f32(64, 64, 3, 3), f32(64)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 3x3 128->32 @14 (DenseNet)", "Conv", 13, [f32(1, 128, 14, 14), f32(32, 128, 3, 3)], dict(pads=[1, 1, 1, 1]), 1),
    ("Conv 3x3 s2 128->128 @56 (ResNet v1.5)", "Conv", 13, [f32(1, 128, 56, 56), f32(128, 128, 3, 3), f32(128)], dict(pads=[1, 1, 1, 1], strides=[2, 2]), 1),
    ("Conv depthwise 3x3 272 @14 (shufflenet)", "Conv", 13, [f32(1, 272, 14, 14), f32(272, 1, 3, 3), f32(272)], dict(pads=[1, 1, 1, 1], group=272), 1),
    ("Conv depthwise 3x3 128 @56", "Conv", 13, [f32(1, 128, 56, 56), f32(128, 1, 3, 3), f32(128)], dict(pads=[1, 1, 1, 1], group=128), 1),
    ("Conv group=32 3x3 256 @28", "Conv", 13, [f32(1, 256, 28, 28), f32(256, 8, 3, 3)], dict(pads=[1, 1, 1, 1], group=32), 1),
    ("MatMul 512x768 @ 768x768", "MatMul", 13, [f32(512, 768), f32(768, 768)], {}, 1),
    ("Gemm 1x2048 @ (1000x2048)^T + C", "Gemm", 13, [f32(1, 2048), f32(1000, 2048), f32(1000)], dict(transB=1), 1),
    ("Softmax 96x128x128 axis=-1", "Softmax", 13, [f32(96, 128, 128)], {}, 1),
    ("LogSoftmax 64x1000", "LogSoftmax", 13, [f32(64, 1000)], {}, 1),
    ("LayerNorm 512x768", "LayerNormalization", 17, [f32(512, 768), f32(768), f32(768)], {}, 1),
    ("MaxPool 3x3 s2 64 @112", "MaxPool", 13, [f32(1, 64, 112, 112)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 1),
    ("AveragePool 3x3 64 @56", "AveragePool", 13, [f32(1, 64, 56, 56)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 1),
    # the pools and LRNs of the CNNs of onnx's light model zoo, at batch 1. "MaxPool Y" is the
    # Y-only minirt.MaxPool that the graph passes run for a MaxPool whose Indices nobody reads
    ("MaxPool Y 3x3 s2 64 @111 (squeezenet)", "MaxPool", 13, [f32(1, 64, 111, 111)], dict(kernel_shape=[3, 3], strides=[2, 2]), 1),
    ("MaxPool Y 3x3 s2 64 @112 (inception_v1)", "MaxPool", 13, [f32(1, 64, 112, 112)], dict(kernel_shape=[3, 3], strides=[2, 2]), 1),
    ("MaxPool Y 3x3 s2 24 @112 p1 (shufflenet)", "MaxPool", 13, [f32(1, 24, 112, 112)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 1),
    ("MaxPool Y 3x3 s2 192 @56 p0011 (incep_v2)", "MaxPool", 13, [f32(1, 192, 56, 56)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]), 1),
    ("MaxPool Y 3x3 s1 p1 256 @27 (inception_v1)", "MaxPool", 13, [f32(1, 256, 27, 27)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 1),
    ("MaxPool Y 3x3 s1 p1 832 @6 (inception_v1)", "MaxPool", 13, [f32(1, 832, 6, 6)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 1),
    ("MaxPool Y 2x2 s2 16 @16 (tiny)", "MaxPool", 13, [f32(1, 16, 16, 16)], dict(kernel_shape=[2, 2], strides=[2, 2]), 1),
    ("MaxPool Y 3x3 s2 16 @16 (tiny)", "MaxPool", 13, [f32(1, 16, 16, 16)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 1),
    ("AveragePool 3x3 s1 p1 256 @28 (incep_v2)", "AveragePool", 13, [f32(1, 256, 28, 28)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 1),
    ("AveragePool 3x3 s1 p1 576 @14 (incep_v2)", "AveragePool", 13, [f32(1, 576, 14, 14)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 1),
    ("AveragePool 3x3 s1 p1 cip 1024 @7", "AveragePool", 13, [f32(1, 1024, 7, 7)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), 1),
    ("AveragePool 3x3 s2 p1 272 @14 (shufflenet)", "AveragePool", 13, [f32(1, 272, 14, 14)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 1),
    ("AveragePool 7x7 544 @7 (shufflenet)", "AveragePool", 13, [f32(1, 544, 7, 7)], dict(kernel_shape=[7, 7]), 1),
    ("AveragePool 2x2 s2 16 @16 (tiny)", "AveragePool", 13, [f32(1, 16, 16, 16)], dict(kernel_shape=[2, 2], strides=[2, 2]), 1),
    ("LRN size 5 192 @55 (inception_v1)", "LRN", 13, [f32(1, 192, 55, 55)], dict(size=5, alpha=1e-4, beta=0.75, bias=1.0), 1),
    ("LRN size 5 64 @55 (inception_v1)", "LRN", 13, [f32(1, 64, 55, 55)], dict(size=5, alpha=1e-4, beta=0.75, bias=1.0), 1),
    ("LRN size 5 16 @16 (tiny)", "LRN", 13, [f32(1, 16, 16, 16)], dict(size=5, alpha=1e-4, beta=0.75, bias=1.0), 1),
    ("MatMulInteger u8 512x768 @ s8 768x768", "MatMulInteger", 13,
     [q(np.uint8, 512, 768), q(np.int8, 768, 768), s(128, np.uint8), s(0, np.int8)], {}, 1),
    ("QLinearMatMul u8 512x768 @ u8 768x768", "QLinearMatMul", 13,
     [q(np.uint8, 512, 768), s(0.02), s(128, np.uint8), q(np.uint8, 768, 768), s(0.01), s(120, np.uint8), s(0.5), s(128, np.uint8)], {}, 1),
    ("ConvInteger u8 3x3 64->64 @56", "ConvInteger", 13,
     [q(np.uint8, 1, 64, 56, 56), q(np.int8, 64, 64, 3, 3), s(128, np.uint8), s(0, np.int8)], dict(pads=[1, 1, 1, 1]), 1),
    ("QLinearConv u8 3x3 256->256 @14", "QLinearConv", 13,
     [q(np.uint8, 1, 256, 14, 14), s(0.02), s(128, np.uint8), q(np.int8, 256, 256, 3, 3), s(0.01), s(0, np.int8),
      s(0.5), s(128, np.uint8), rng.integers(-1000, 1000, 256).astype(np.int32)], dict(pads=[1, 1, 1, 1]), 1),
]


def ort_session(op_type, opset, inputs, attrs, n_out):
    names = [f"i{k}" for k in range(len(inputs))]
    vis = [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in zip(names, inputs)]
    outs = [f"o{k}" for k in range(n_out)]
    node = helper.make_node(op_type, names, outs, **attrs)
    graph = helper.make_graph([node], "g", vis, [onnx.ValueInfoProto(name=o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = dict(zip(names, inputs))
    return lambda: sess.run(None, feeds)


def median_times(fns, repeats):
    """Run the functions interleaved, ``repeats`` rounds; the median seconds of each."""
    times = [[] for _ in fns]
    for f in fns:  # warm up: JIT compile, BLAS thread start, ORT arena
        f()
    for _ in range(repeats):
        time.sleep(ORT_SPIN_S)  # the last round's onnxruntime worker must have stopped spinning
        for t, f in zip(times, fns):
            warm_up(f)  # each timed in its steady state
            start = time.perf_counter()
            f()
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times], [float(np.min(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args(argv)
    fp32_matmul = None
    print(f"{'case':44s} {'kernel ms':>10s} {'ref ms':>10s} {'ORT ms':>10s} {'k/ref':>7s} {'k/ORT':>7s}")
    for name, op_type, opset, inputs, attrs, n_out in CASES:
        if args.only and args.only not in name:
            continue
        opdef = registry.lookup("", op_type, opset, kernels=True)
        ref = registry.lookup("", op_type, opset, kernels=False).fn
        if name.startswith("MaxPool Y"):  # the Y-only minirt.MaxPool (the reference returns Y and Indices)
            opdef = registry.lookup("minirt", "MaxPool", 1, kernels=True)
        assert opdef.fn is not ref, f"no kernel registered for {op_type}"
        for a in inputs[1:]:
            a.flags.writeable = False  # weights, scales, zero points: a model's initializers are read-only
        if opdef.prepare is not None:  # as a plan runs it: the node's step, made once
            step = opdef.prepare(**attrs)
            fast = lambda step=step: step(*inputs)  # noqa: E731
        else:
            fast = lambda fn=opdef.fn: fn(*inputs, **attrs)  # noqa: E731
        (k, r, o), (kb, rb, ob) = median_times([fast, lambda: ref(*inputs, **attrs),
                                                ort_session(op_type, opset, inputs, attrs, n_out)], args.repeats)
        print(f"{name:44s} {k * 1e3:10.3f} {r * 1e3:10.3f} {o * 1e3:10.3f} {k / r:7.2f} {k / o:7.2f}"
              f"   best: {kb * 1e3:.3f} {rb * 1e3:.3f} {ob * 1e3:.3f}", flush=True)
        if name.startswith("MatMul "):
            fp32_matmul = k
        if name.startswith(("MatMulInteger", "QLinearMatMul")) and fp32_matmul:
            print(f"{'  (vs the fp32 MatMul kernel, same shape)':40s} {'':32s} {k / fp32_matmul:7.2f}")


if __name__ == "__main__":
    main()
