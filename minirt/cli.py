"""The ``minirt`` command line: info, run, demo, ops — and the tools' commands.

A module in ``minirt/tools/`` that defines ``add_cli(subparsers)`` adds its own command (its
parser sets ``func=``, called with the parsed arguments, returning an exit status).

    minirt info model.onnx [--ir]
    minirt run model.onnx --input x=x.npy [--save out.npz]
    minirt demo
    minirt ops

Errors a user can cause (a bad path, a file that is not a model, a wrong input) print one clear
line and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

import minirt
from minirt.errors import MinirtError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minirt", description="A readable ONNX inference runtime.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="inputs, outputs, opsets, op histogram and weights of a model")
    p.add_argument("model")
    p.add_argument("--ir", action="store_true", help="also print the whole IR, one line per node")
    p.add_argument("--optimized", action="store_true",
                   help="run the graph passes and show node counts before/after (with --ir: the optimized IR)")
    p.add_argument("--level", type=int, default=2, choices=(0, 1, 2), help="optimization level for --optimized")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="run a model on inputs stored as .npy files")
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input, repeat for each (a .npz file may hold all of them)")
    p.add_argument("--save", metavar="OUT.npz", help="write every output to this .npz file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the bundled digits classifier end to end")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ops", help="the table of supported ops and their opset versions")
    p.set_defaults(func=cmd_ops)

    # the tools (profile, bench, compare ...) add their own commands
    import minirt.tools

    for mod in pkgutil.iter_modules(minirt.tools.__path__):
        tool = importlib.import_module(f"minirt.tools.{mod.name}")
        if hasattr(tool, "add_cli"):
            tool.add_cli(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except MinirtError as e:
        print(f"minirt {args.command}: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"minirt {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- info
def cmd_info(args) -> int:
    graph = minirt.load(args.model)
    print(model_summary(graph, title=args.model))
    if args.optimized:
        from minirt.passes import optimize_with_report

        graph, report = optimize_with_report(graph, level=args.level)
        print()
        print(report)
    if args.ir:
        print()
        print(graph)
    return 0


def model_summary(graph, title: str = "") -> str:
    """Inputs/outputs with shapes and dtypes, opsets, op histogram, parameter count and bytes."""
    lines = [f"model {title}".rstrip()]
    if graph.metadata.get("producer"):
        lines.append(f"  producer: {graph.metadata['producer']}")
    lines.append("  opsets: " + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(graph.opsets.items())))
    lines.append("  inputs:")
    lines += [f"    {v.name}: {v.type_str()}" for v in graph.feed_inputs()]
    lines.append("  outputs:")
    lines += [f"    {v.name}: {v.type_str()}" for v in graph.outputs]
    n, b = graph.parameter_count()
    lines.append(f"  parameters: {n:,} values in {len(graph.initializers)} tensors, {_bytes(b)}")
    hist = graph.op_histogram()
    lines.append(f"  nodes: {sum(hist.values())} ({len(hist)} op types)")
    lines += [f"    {op:<24} {count}" for op, count in hist.items()]
    return "\n".join(lines)


def _bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b:.1f} GB"


# ---------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from minirt.tools.inputs import load_inputs

    feeds = load_inputs(args.input)
    sess = minirt.InferenceSession(args.model)
    t0 = time.perf_counter()
    outputs = sess.run(None, feeds)
    ms = (time.perf_counter() - t0) * 1e3
    names = [o.name for o in sess.get_outputs()]
    print(f"ran {args.model} in {ms:.1f} ms")
    for name, out in zip(names, outputs):
        print(f"  {name}: {summarize(out)}")
    if args.save:
        np.savez(args.save, **{n: np.asarray(o) for n, o in zip(names, outputs)})
        print(f"saved {len(names)} outputs to {args.save}")
    return 0


def summarize(x) -> str:
    """One line: dtype, shape and a few statistics of an output."""
    if isinstance(x, list):
        return f"sequence of {len(x)} items"
    x = np.asarray(x)
    head = f"{x.dtype}{list(x.shape)}"
    if x.size == 0:
        return head + " (empty)"
    if x.dtype.kind in "fiu" and x.dtype.itemsize <= 8:
        xf = x.astype(np.float64)
        stats = f"min {xf.min():.4g}  max {xf.max():.4g}  mean {xf.mean():.4g}"
        if x.ndim == 2 and x.shape[1] > 1 and x.dtype.kind == "f":
            stats += f"  argmax {np.argmax(x, axis=1)[:8].tolist()}"
        return f"{head}  {stats}"
    flat = x.reshape(-1)[:6].tolist()
    return f"{head}  {flat}{' ...' if x.size > 6 else ''}"


# ---------------------------------------------------------------------- demo
def demo_files() -> tuple[Path, dict, dict]:
    """The bundled digits model, its facts (accuracy, scaling ...) and sample images."""
    data = resources.files("minirt") / "data"
    model = Path(str(data / "digits_cnn.onnx"))
    facts = json.loads((data / "digits_cnn.json").read_text())
    with np.load(str(data / "digits_sample.npz")) as z:
        sample = {k: z[k] for k in z.files}
    return model, facts, sample


def cmd_demo(args) -> int:
    model, facts, sample = demo_files()
    print("minirt demo: a small CNN trained on scikit-learn's 8x8 handwritten digits\n")
    graph = minirt.load(model)
    print(model_summary(graph, title=model.name))
    print()
    print(graph)
    images, labels = sample["images"], sample["labels"]
    sess = minirt.InferenceSession(graph)
    t0 = time.perf_counter()
    [logits] = sess.run(None, {sess.get_inputs()[0].name: images})
    ms = (time.perf_counter() - t0) * 1e3
    pred = logits.argmax(axis=1)
    print(f"\nran {len(images)} images in {ms:.1f} ms (first run includes warm-up)")
    print(f"  predicted: {pred.tolist()}")
    print(f"  true:      {labels.tolist()}")
    print(f"  correct:   {int((pred == labels).sum())}/{len(labels)}"
          f"   (the model's accuracy on the held-out test set: {facts.get('test_accuracy', '?')})")
    print("\n  first image, as the model sees it:")
    for row in images[0, 0]:
        print("    " + "".join(" .:-=+*#%@"[min(9, int(v * 9.99))] * 2 for v in row))
    print(f"  -> {int(pred[0])}")
    try:
        import onnxruntime as ort
    except ImportError:
        print("\nonnxruntime is not installed: skipping the cross-check (pip install minirt[test])")
        return 0
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    [ref_logits] = ref.run(None, {ref.get_inputs()[0].name: images})
    diff = float(np.abs(ref_logits - logits).max())
    same = bool((ref_logits.argmax(axis=1) == pred).all())
    print(f"\nonnxruntime {ort.__version__}: max |difference| {diff:.2e}, same predictions: {same}")
    return 0 if same and diff < 1e-3 else 1


# ---------------------------------------------------------------------- ops
def cmd_ops(args) -> int:
    from minirt import registry

    table = registry.all_ops()
    print(f"{len(table)} ops registered (domain, op type, opset versions)")
    for (domain, op_type), versions in table.items():
        print(f"  {domain or 'ai.onnx':<16} {op_type:<32} {', '.join(map(str, versions))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
