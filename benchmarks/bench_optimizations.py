"""Quantization and pruning, measured: size, accuracy, latency and throughput, minirt beside onnxruntime.

For each trained model (the digits CNN, the fraud MLP) and each variant

    fp32            the model as trained
    int8 static     minirt.quantize(mode="static"), calibrated on held-out-from-test samples;
                    minirt runs it after fuse_qdq (QLinearConv / QGemm), onnxruntime as QDQ
    int8 dynamic    minirt.quantize(mode="dynamic"): DynamicQuantizeLinear + ConvInteger/MatMulInteger
    pruned 50 %     minirt.prune(0.5): unstructured, same shapes, half the weights zero
    structured 50 % minirt.prune(0.5, structured=True): half the channels / hidden units removed

it prints one Markdown table: size on disk, accuracy (and ROC AUC for the fraud model, where
accuracy is dominated by the 97 % legitimate transactions), the median latency at batch 1 and
the throughput at batch 64, for minirt and onnxruntime. The two runtimes are timed interleaved
(one minirt run, one onnxruntime run, ...), and medians are reported.

    python benchmarks/bench_optimizations.py [--runs 200] [--models digits,fraud]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx

import minirt
from minirt.tools.prune import prune
from minirt.tools.quantize import fuse_qdq, quantize

DATA = Path(minirt.__file__).parent / "data"


def load_task(name: str):
    """(model path, input name, test inputs, labels, calibration inputs, metric function)."""
    if name == "digits":
        with np.load(DATA / "digits_test.npz") as z:
            x, y = z["images"], z["labels"]
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        imgs = (d.images / 16.0).astype(np.float32)[:, None]
        cal = train_test_split(imgs, d.target, test_size=0.25, random_state=0, stratify=d.target)[0][:256]

        def metric(out, y):
            return f"{(out.argmax(1) == y).mean():.4f}"

        return DATA / "digits_cnn.onnx", "image", x, y, cal, metric
    if name == "fraud":
        with np.load(DATA / "fraud_test.npz") as z:
            x, y = z["features"], z["labels"]
        cal, x, y = x[:512], x[512:], y[512:]  # calibrate on 512 test rows, score on the rest

        def metric(out, y):
            from sklearn.metrics import roc_auc_score

            p = out.reshape(-1)
            return f"{((p > 0.5) == y).mean():.4f} / AUC {roc_auc_score(y, p):.4f}"

        return DATA / "fraud_mlp.onnx", "features", x, y, cal, metric
    raise ValueError(f"unknown model {name!r}")


def variants(path: Path, cal: np.ndarray):
    """name -> (ModelProto for onnxruntime, graph or ModelProto for minirt)."""
    fp32 = onnx.load(str(path))
    static = quantize(fp32, cal, mode="static")
    dynamic = quantize(fp32, mode="dynamic")
    pruned, _ = prune(fp32, 0.5)
    structured, _ = prune(fp32, 0.5, structured=True)
    return {
        "fp32": (fp32, fp32),
        "int8 static": (static, fuse_qdq(minirt.load(static))),
        "int8 dynamic": (dynamic, dynamic),
        "pruned 50% (unstructured)": (pruned, pruned),
        "structured 50%": (structured, structured),
    }


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(a, b, runs: int) -> tuple[float, float]:
    """Median seconds of a() and b(), run alternately after a warm-up."""
    for _ in range(3):
        a(), b()
    ta, tb = [], []
    for _ in range(runs):
        ta.append(timed(a))
        tb.append(timed(b))
    return float(np.median(ta)), float(np.median(tb))


def bench(task: str, runs: int) -> list[list[str]]:
    import onnxruntime as ort

    path, inp, x, y, cal, metric = load_task(task)
    rows = []
    for vname, (proto, for_minirt) in variants(path, cal).items():
        size = len(proto.SerializeToString())
        ms = minirt.InferenceSession(for_minirt)
        rs = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        out_m = np.concatenate([ms.run(None, {inp: x[i:i + 256]})[0] for i in range(0, len(x), 256)])
        out_r = rs.run(None, {inp: x})[0]
        x1, x64 = x[:1], x[:64]
        l_m, l_r = interleaved(lambda: ms.run(None, {inp: x1}), lambda: rs.run(None, {inp: x1}), runs)
        t_m, t_r = interleaved(lambda: ms.run(None, {inp: x64}), lambda: rs.run(None, {inp: x64}),
                               max(runs // 4, 10))
        rows.append([task, vname, f"{size / 1024:.1f} KB", metric(out_m, y), metric(out_r, y),
                     f"{l_m * 1e3:.3f}", f"{l_r * 1e3:.3f}", f"{64 / t_m:,.0f}", f"{64 / t_r:,.0f}"])
    return rows


HEADER = ["model", "variant", "size", "quality (minirt)", "quality (ORT)", "batch-1 ms (minirt)",
          "batch-1 ms (ORT)", "batch-64 samples/s (minirt)", "batch-64 samples/s (ORT)"]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="timed batch-1 runs per runtime (batch 64: a quarter)")
    p.add_argument("--models", default="digits,fraud")
    p.add_argument("--curve", action="store_true", help="also print the digits sparsity-accuracy curve")
    args = p.parse_args(argv)
    rows = []
    for task in args.models.split(","):
        rows += bench(task, args.runs)
    print(markdown(rows))
    if args.curve:
        print()
        print(sparsity_curve())


def sparsity_curve() -> str:
    """Digits test accuracy against sparsity, for unstructured (layer and global) and structured pruning."""
    path, inp, x, y, _, _ = load_task("digits")
    lines = ["| sparsity | unstructured, per layer | unstructured, global | structured (channels) | params (structured) |",
             "|---|---|---|---|---|"]
    for s in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
        accs = []
        for kw in ({}, {"scope": "global"}, {"structured": True}):
            m, rep = prune(path, s, **kw)
            out = minirt.InferenceSession(m).run(None, {inp: x})[0]
            accs.append(f"{(out.argmax(1) == y).mean():.3f}")
        lines.append(f"| {s:.1f} | " + " | ".join(accs) + f" | {rep.params_after:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
