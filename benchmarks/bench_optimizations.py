"""Quantization and pruning, measured: size, accuracy, latency and throughput, minirt beside onnxruntime.

For each trained model (the digits CNN, the fraud MLP, the char-level transformer chargpt) and
each variant

    fp32            the model as trained
    int8 static     minirt.quantize(mode="static"), calibrated on held-out-from-test samples;
                    minirt runs it after fuse_qdq (QLinearConv / QGemm), onnxruntime as QDQ
    int8 dynamic    minirt.quantize(mode="dynamic"): DynamicQuantizeLinear + ConvInteger/MatMulInteger
    pruned 50 %     minirt.prune(0.5): unstructured, same shapes, half the weights zero
    structured 50 % minirt.prune(0.5, structured=True): half the channels / hidden units removed
                    (chargpt: half the FFN units and half the attention heads, strict=False: the
                    residual-stream layers keep their outputs)

it prints one Markdown table: size on disk, accuracy (and ROC AUC for the fraud model, where
accuracy is dominated by the 97 % legitimate transactions), the median latency at batch 1 and
the throughput at batch 64, for minirt and onnxruntime. For chargpt, quality is the mean
cross-entropy (nats/char) and perplexity of next-character prediction on a fixed slice of the
validation text (64 windows of 128 characters, empty past_*), "batch 1" is one 128-character
window and the throughput is in windows/s (x128 for characters/s). The two runtimes are timed interleaved
(one minirt run, one onnxruntime run, ...), and medians are reported.

    python benchmarks/bench_optimizations.py [--runs 200] [--models digits,fraud,chargpt]
    python benchmarks/bench_optimizations.py --int8 [--runs 300]    # minirt int8 against fp32 only

``--int8`` answers one question — is minirt's int8 graph no slower than its fp32 original? — with
minirt alone: the fp32, int8-static and int8-dynamic sessions of each model run round-robin (one
run each, in turn), and the table gives each one's median and its ratio to fp32's (below 1: int8
is faster), at batch 1 and batch 64.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fair import ORT_SPIN_S, timed, warm_up  # before NumPy: it sets OpenBLAS's spin timeout (fair.py)

import numpy as np
import onnx

import minirt
from minirt.tools.prune import prune
from minirt.tools.quantize import fuse_qdq, quantize

DATA = Path(minirt.__file__).parent / "data"


def _plain_feeds(inp: str):
    return lambda proto, x: {inp: x}


def load_task(name: str):
    """(model path, feeds(proto, x) -> feed dict, test inputs, labels, calibration inputs, metric)."""
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

        return DATA / "digits_cnn.onnx", _plain_feeds("image"), x, y, cal, metric
    if name == "fraud":
        with np.load(DATA / "fraud_test.npz") as z:
            x, y = z["features"], z["labels"]
        cal, x, y = x[:512], x[512:], y[512:]  # calibrate on 512 test rows, score on the rest

        def metric(out, y):
            from sklearn.metrics import roc_auc_score

            p = out.reshape(-1)
            return f"{((p > 0.5) == y).mean():.4f} / AUC {roc_auc_score(y, p):.4f}"

        return DATA / "fraud_mlp.onnx", _plain_feeds("features"), x, y, cal, metric
    if name == "chargpt":
        x, y, cal = chargpt_windows()

        def metric(out, y):
            loss = cross_entropy(out, y)
            return f"loss {loss:.4f} / ppl {np.exp(loss):.3f}"

        return DATA / "chargpt.onnx", chargpt_feeds, x, y, cal, metric
    raise ValueError(f"unknown model {name!r}")


# ----------------------------------------------------------------------------- chargpt data

def chargpt_text() -> str:
    """The chargpt corpus, rebuilt as models/train_char_transformer.py builds it (without torch).

    One difference is forced: importing torch replaces ``inspect.getfile`` with a function of
    another module, so the training run (torch imported) did not see its docstring; it is left
    out here too. The SHA-256 in chargpt.json then matches on the Python that trained the model
    (3.11.7); a warning says so when it does not."""
    import hashlib
    import importlib
    import inspect
    import json
    import string
    import warnings

    meta = json.loads((DATA / "chargpt.json").read_text())
    allowed = set(string.printable) - set("\t\r\x0b\x0c")
    docs = []
    for name in meta["corpus"]["modules"]:
        mod = importlib.import_module(name)
        docs.append(inspect.getdoc(mod) or "")
        for attr, obj in sorted(vars(mod).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if (name, attr) == ("inspect", "getfile") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            docs.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                for a, m in sorted(vars(obj).items()):
                    if inspect.isfunction(m) and (not a.startswith("_") or a == "__init__"):
                        docs.append(inspect.getdoc(m) or "")
    text = "".join(c for c in "\n\n".join(d for d in docs if d) if c in allowed)
    if hashlib.sha256(text.encode()).hexdigest() != meta["corpus"]["sha256"]:
        warnings.warn(f"the chargpt corpus differs from the training run's (Python {meta['corpus']['python']}): "
                      "the validation slice is not exactly the one the model was scored on", stacklevel=2)
    return text


def chargpt_windows(n_eval: int = 64, n_cal: int = 256, ctx: int = 128):
    """(inputs [n_eval, ctx], next-character targets [n_eval, ctx], calibration inputs [n_cal, ctx]):
    consecutive non-overlapping windows from the start of the validation split (the last 10 % of
    the text), the calibration windows right after the evaluation ones."""
    import json

    vocab = json.loads((DATA / "chargpt.json").read_text())["vocab"]
    stoi = {c: i for i, c in enumerate(vocab)}
    ids = np.array([stoi[c] for c in chargpt_text()], dtype=np.int64)
    val = ids[-(len(ids) // 10):]
    n = n_eval * ctx
    x, y = val[:n].reshape(n_eval, ctx), val[1:n + 1].reshape(n_eval, ctx)
    cal = val[n + 1:n + 1 + n_cal * ctx].reshape(n_cal, ctx)
    return x, y, cal


def chargpt_feeds(proto, x: np.ndarray) -> dict[str, np.ndarray]:
    """input_ids plus empty past_* inputs [batch, heads, 0, head_dim], heads read from the model
    (structured pruning may have removed some)."""
    feeds = {"input_ids": np.ascontiguousarray(x, dtype=np.int64)}
    for v in proto.graph.input:
        if v.name.startswith("past"):
            dims = v.type.tensor_type.shape.dim
            feeds[v.name] = np.zeros((len(x), dims[1].dim_value, 0, dims[3].dim_value), np.float32)
    return feeds


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean -log softmax(logits)[target], in nats per character."""
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    return float(np.mean(lse - np.take_along_axis(z, targets[..., None], -1)[..., 0]))


def variants(path: Path, cal, feeds=None, task: str = ""):
    """name -> (ModelProto for onnxruntime, graph or ModelProto for minirt)."""
    fp32 = onnx.load(str(path))
    if feeds is not None and task == "chargpt":
        cal = [feeds(fp32, cal[i:i + 64]) for i in range(0, len(cal), 64)]
    static = quantize(fp32, cal, mode="static")
    dynamic = quantize(fp32, mode="dynamic")
    pruned, _ = prune(fp32, 0.5)
    structured, _ = prune(fp32, 0.5, structured=True, strict=task != "chargpt")
    out = {
        "fp32": (fp32, fp32),
        "int8 static": (static, fuse_qdq(minirt.load(static))),
        "int8 dynamic": (dynamic, dynamic),
        "pruned 50% (unstructured)": (pruned, pruned),
        "structured 50%": (structured, structured),
    }
    if task == "chargpt":  # FFN units only, every head kept
        ffn, _ = prune(fp32, 0.5, structured=True, strict=False, heads=False)
        out["structured 50% (FFN only)"] = (ffn, ffn)
    return out


def interleaved(a, b, runs: int) -> tuple[float, float]:
    """Median seconds of a() and b(), run alternately after a warm-up."""
    for _ in range(3):
        a(), b()
    ta, tb = [], []
    for _ in range(runs):
        time.sleep(ORT_SPIN_S)  # b's (onnxruntime's) worker must have stopped spinning: see ORT_SPIN_S
        warm_up(a)  # each timed in its steady state
        ta.append(timed(a))
        warm_up(b)
        tb.append(timed(b))
    return float(np.median(ta)), float(np.median(tb))


def bench(task: str, runs: int) -> list[list[str]]:
    import onnxruntime as ort

    path, feeds, x, y, cal, metric = load_task(task)
    rows = []
    for vname, (proto, for_minirt) in variants(path, cal, feeds, task).items():
        size = len(proto.SerializeToString())
        ms = minirt.InferenceSession(for_minirt)
        rs = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        out_m = np.concatenate([ms.run(None, feeds(proto, x[i:i + 256]))[0] for i in range(0, len(x), 256)])
        out_r = rs.run(None, feeds(proto, x))[0]
        f1, f64 = feeds(proto, x[:1]), feeds(proto, x[:64])
        l_m, l_r = interleaved(lambda: ms.run(None, f1), lambda: rs.run(None, f1), runs)
        t_m, t_r = interleaved(lambda: ms.run(None, f64), lambda: rs.run(None, f64), max(runs // 4, 10))
        tput = [f"{64 / t:,.0f}" for t in (t_m, t_r)]
        if task == "chargpt":  # windows/s, and characters/s
            tput = [f"{64 / t:,.0f} ({64 * x.shape[1] / t / 1e3:,.0f}k char/s)" for t in (t_m, t_r)]
        rows.append([task, vname, f"{size / 1024:.1f} KB", metric(out_m, y), metric(out_r, y),
                     f"{l_m * 1e3:.3f}", f"{l_r * 1e3:.3f}", *tput])
    return rows


HEADER = ["model", "variant", "size", "quality (minirt)", "quality (ORT)", "batch-1 ms (minirt)",
          "batch-1 ms (ORT)", "batch-64 samples/s (minirt)", "batch-64 samples/s (ORT)"]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def int8_against_fp32(task: str, runs: int) -> list[str]:
    """Rows 'model batch: fp32 ms, static ms (x fp32), dynamic ms (x fp32)', minirt round-robin."""
    path, feeds, x, _, cal, _ = load_task(task)
    chosen = {k: v for k, v in variants(path, cal, feeds, task).items() if k in ("fp32", "int8 static", "int8 dynamic")}
    sessions = {k: (proto, minirt.InferenceSession(for_minirt)) for k, (proto, for_minirt) in chosen.items()}
    lines = []
    for batch, n in ((1, runs), (64, max(runs // 4, 10))):
        calls = {k: (lambda s=s, f=feeds(proto, x[:batch]): s.run(None, f)) for k, (proto, s) in sessions.items()}
        times = {k: [] for k in calls}
        for _ in range(3):
            for call in calls.values():
                call()
        for _ in range(n):
            for k, call in calls.items():
                times[k].append(timed(call))
        ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        lines.append(f"{task} batch {batch}: fp32 {ms['fp32']:.3f} ms, int8 static {ms['int8 static']:.3f} ms "
                     f"({ms['int8 static'] / ms['fp32']:.2f}x), int8 dynamic {ms['int8 dynamic']:.3f} ms "
                     f"({ms['int8 dynamic'] / ms['fp32']:.2f}x)")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="timed batch-1 runs per runtime (batch 64: a quarter)")
    p.add_argument("--models", default="digits,fraud,chargpt")
    p.add_argument("--curve", action="store_true", help="also print the digits sparsity-accuracy curve")
    p.add_argument("--chargpt-curve", action="store_true",
                   help="also print chargpt's perplexity against structured sparsity (L1 vs random units)")
    p.add_argument("--int8", action="store_true", help="only minirt's int8 against its fp32, round-robin")
    args = p.parse_args(argv)
    if args.int8:
        for task in args.models.split(","):
            print("\n".join(int8_against_fp32(task, args.runs)), flush=True)
        return
    rows = []
    for task in args.models.split(","):
        rows += bench(task, args.runs)
    print(markdown(rows))
    if args.curve:
        print()
        print(sparsity_curve())
    if args.chargpt_curve:
        print()
        print(chargpt_curve())


def sparsity_curve() -> str:
    """Digits test accuracy against sparsity, for unstructured (layer and global) and structured pruning."""
    path, feeds, x, y, _, _ = load_task("digits")
    lines = ["| sparsity | unstructured, per layer | unstructured, global | structured (channels) | params (structured) |",
             "|---|---|---|---|---|"]
    for s in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
        accs = []
        for kw in ({}, {"scope": "global"}, {"structured": True}):
            m, rep = prune(path, s, **kw)
            out = minirt.InferenceSession(m).run(None, feeds(m, x))[0]
            accs.append(f"{(out.argmax(1) == y).mean():.3f}")
        lines.append(f"| {s:.1f} | " + " | ".join(accs) + f" | {rep.params_after:,} |")
    return "\n".join(lines)


def chargpt_curve() -> str:
    """chargpt validation perplexity (the 64 fixed windows) against structured sparsity: FFN units
    only, FFN units + heads, and, as a control, FFN units chosen at random instead of by L1 norm."""
    from onnx import numpy_helper

    path, feeds, x, y, _, _ = load_task("chargpt")

    def ppl(m) -> str:
        return f"{np.exp(cross_entropy(minirt.InferenceSession(m).run(None, feeds(m, x))[0], y)):.2f}"

    lines = ["| sparsity | FFN units (L1) | FFN units + heads (L1) | FFN units (random) | params (FFN + heads) |",
             "|---|---|---|---|---|"]
    for s in [0.0, 0.125, 0.25, 0.5, 0.75]:
        ffn, _ = prune(path, s, structured=True, strict=False, heads=False)
        both, rep = prune(path, s, structured=True, strict=False)
        rnd = onnx.load(str(path))  # the same cut, units drawn at random
        inits = {t.name: numpy_helper.to_array(t) for t in rnd.graph.initializer}
        pruned = {t.name: numpy_helper.to_array(t) for t in ffn.graph.initializer}
        rng = np.random.default_rng(0)
        for name, w in inits.items():
            if name.endswith("fc.bias"):
                keep = np.sort(rng.permutation(w.size)[:pruned[name].size])
                layer = name.split(".")[1]
                for t in rnd.graph.initializer:  # W1 (the MatMul before the bias), b1, W2
                    a = inits[t.name]
                    if t.name == name:
                        t.CopyFrom(numpy_helper.from_array(a[keep], t.name))
                    elif a.ndim == 2 and a.shape[1] == w.size and _layer_of(rnd, t.name) == ("fc", layer):
                        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a[:, keep]), t.name))
                    elif a.ndim == 2 and a.shape[0] == w.size and _layer_of(rnd, t.name) == ("out", layer):
                        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a[keep]), t.name))
        lines.append(f"| {s:.3f} | {ppl(ffn)} | {ppl(both)} | {ppl(rnd)} | {rep.params_after:,} |")
    return "\n".join(lines)


def _layer_of(m, weight: str) -> tuple[str, str] | None:
    """("fc" or "out", block number) of the MatMul reading ``weight`` (names as torch exports them)."""
    for n in m.graph.node:
        if n.op_type == "MatMul" and weight in n.input and n.name.startswith("/blocks."):
            parts = n.name.split("/")  # /blocks.0/fc/MatMul
            return parts[2], parts[1].split(".")[1]
    return None


if __name__ == "__main__":
    main()
