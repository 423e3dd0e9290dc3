"""minirt vs onnxruntime vs onnx.reference on whole models, interleaved in one process.

    python benchmarks/bench_models.py                      # every model, 2 threads
    python benchmarks/bench_models.py --models resnet50,vgg19 --repeats 20
    python benchmarks/bench_models.py --no-reference --json results.json
    python benchmarks/bench_models.py --cold-start         # fresh-process start-up time
    python benchmarks/bench_models.py --pause 0.1          # each run after 0.1 s idle (a script, a loop with gaps)

Models: the "light" models of the ONNX backend suite (onnx/backend/test/data/light, weights made
by ConstantOfShape, input shapes from the model) and the small real models of this repository.

How it measures:

- the three runtimes run the same random input (seeded), **interleaved** round by round so a
  busy machine slows them alike. Each round waits ``ORT_SPIN_S``, then treats both runtimes
  alike: untimed runs of minirt for at least ``fair.WARM_S`` (one at least), one timed run, then the
  same for onnxruntime — each is timed in its steady state, back to back with itself. Why the
  wait: after a run each runtime's threads spin for a while — onnxruntime's intra-op worker
  ~40 ms by design, OpenBLAS's ~0.1 ms — and must not take the cores of the other's timed run:
  timed right after an onnxruntime run, minirt's ResNet-50 measured 98 ms instead of 77, and any
  model that minirt runs in under ~40 ms ran entirely beside ORT's spinning worker until the
  wait was added (stop 8). Why the warm runs: right after the wait both runtimes are slower for
  a few ms (caches, the vCPU waking up: squeezenet 10.4 -> 13.3 ms for minirt's second run after
  60 ms idle), not by the same amount, and a single untimed run of a 50 µs model does not cover
  that: timing one runtime after the idle and the other right after it (stop 8's first scheme)
  moved small-model ratios by up to 1.4x, both ways (gpt2_tiny 1.43 then, 2.06 in steady state;
  sklearn_mlp 3.24 then, 2.75). The table shows medians and the ratios of medians;
- onnxruntime gets the same thread count (``intra_op_num_threads = --threads``, inter-op 1,
  all graph optimizations on, its default); minirt runs with its default passes (level 2) and
  ``threads=--threads``;
- onnx.reference (``ReferenceEvaluator``) is slow: it runs ``--reference-repeats`` times (3) after
  the timed minirt/ORT rounds, and not at all with ``--no-reference``;
- every runtime is warmed up once first (Numba JIT / cache load, BLAS threads, ORT arena);
- peak memory: ``tracemalloc`` peak of one minirt run (NumPy reports its allocations to
  tracemalloc), i.e. the largest sum of live arrays during the run, weights not included.

``--pause S`` times each run after S seconds of idle instead (no warm runs): the latency a
script that runs a model now and then, or a camera loop with gaps, sees. It found minirt's runs
after 0.1 s idle 10-90x slower than onnxruntime's (resnet_mini 47-55 ms against 0.6) until
OpenBLAS's workers were pinned (``minirt.kernels.gemm.pin_blas_workers``).

``--cold-start`` spawns fresh Python processes that time ``import minirt``, building an
``InferenceSession`` for squeezenet and its first run: with Numba's on-disk cache warm (the
normal case), and with a fresh empty ``NUMBA_CACHE_DIR`` (the first run ever on a machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from fair import ORT_SPIN_S, timed, warm_up  # before NumPy: it sets OpenBLAS's spin timeout (fair.py)

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIGHT_DIR = Path(__import__("onnx").__file__).parent / "backend" / "test" / "data" / "light"
LIGHT = ["resnet50", "vgg19", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet",
         "bvlc_alexnet", "zfnet512"]
SMALL = {
    "gpt2_tiny": ROOT / "models" / "gpt2_tiny.onnx",
    "bert_tiny": ROOT / "models" / "bert_tiny.onnx",
    "resnet_mini": ROOT / "models" / "resnet_mini.onnx",
    "mobilenet_mini": ROOT / "models" / "mobilenet_mini.onnx",
    "lstm_gru": ROOT / "models" / "lstm_gru.onnx",
    "sklearn_mlp": ROOT / "models" / "sklearn_mlp.onnx",
    "digits_cnn": ROOT / "minirt" / "data" / "digits_cnn.onnx",
}


def model_path(name: str) -> Path:
    return SMALL[name] if name in SMALL else LIGHT_DIR / f"light_{name}.onnx"


SEQ = 16  # the length fed to a symbolic sequence axis (batch axes get 1)


def make_feeds(sess, seed: int = 0) -> dict:
    """Seeded feeds shaped like the model's inputs (inputs backed by a weight are left out).

    Symbolic dims: 1 on the first axis, ``SEQ`` elsewhere. Floats in [0, 1); integer inputs are
    token ids in [0, 100) (the tiny vocabularies), except masks (ones) and token types (zeros).
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in sess.get_inputs():
        shape = tuple(d if isinstance(d, int) and d > 0 else (1 if axis == 0 else SEQ)
                      for axis, d in enumerate(arg.shape))
        dtype = np.dtype(arg.dtype) if arg.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f":
            feeds[arg.name] = rng.random(shape).astype(dtype)
        elif "mask" in arg.name:
            feeds[arg.name] = np.ones(shape, dtype)
        elif "type" in arg.name:
            feeds[arg.name] = np.zeros(shape, dtype)
        else:
            feeds[arg.name] = rng.integers(0, 100, shape).astype(dtype)
    return feeds


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def peak_memory_mb(fn) -> float:
    """tracemalloc peak (MB) of one call: the most memory its live Python/NumPy allocations held."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def bench_model(name: str, repeats: int, threads: int, reference_repeats: int, progress=None,
                pause: float = 0.0) -> dict:
    import minirt

    path = model_path(name)
    # all cores: no per-run thread cap (threadpoolctl costs ~30 us a run), as minirt bench does
    sess = minirt.InferenceSession(str(path), threads=None if threads >= (os.cpu_count() or 1) else threads)
    feeds = make_feeds(sess)
    ort_sess = ort_session(path, threads)
    ort_feeds = {k: v for k, v in feeds.items() if k in {i.name for i in ort_sess.get_inputs()}}
    run_minirt = lambda: sess.run(None, feeds)  # noqa: E731
    run_ort = lambda: ort_sess.run(None, ort_feeds)  # noqa: E731
    got, want = run_minirt(), run_ort()  # warm-up, and a sanity check that both agree
    run_minirt()  # the second sighting of these input shapes builds their specialized plan, if any
    plan = sess.specialized_plans.get(next(iter(sess.specialized_plans), None), sess._plan)
    max_err = max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)), initial=0))
                  for g, w in zip(got, want) if np.asarray(g).dtype.kind == "f")  if got else 0.0
    t_minirt, t_ort = [], []
    for _ in range(repeats):
        # the other runtime's spinning threads must not be on the cores a run is timed on: after
        # a run onnxruntime's intra-op worker spins ~40 ms (measured: 40 ms of CPU burnt during a
        # sleep right after a squeezenet run; its pool spins 2**20 pauses before it blocks), so
        # each round waits ORT_SPIN_S first; minirt leaves < 1 ms of spinning (OpenBLAS: 2**18
        # cycles), which onnxruntime's own warm runs cover. Both are timed in their steady state.
        if pause:  # --pause: each timed run comes after `pause` seconds of idle, nothing warm
            time.sleep(max(pause, ORT_SPIN_S))
            t_minirt.append(timed(run_minirt))
            time.sleep(max(pause, ORT_SPIN_S))
            t_ort.append(timed(run_ort))
        else:
            time.sleep(ORT_SPIN_S)
            warm_up(run_minirt)
            t_minirt.append(timed(run_minirt))
            warm_up(run_ort)
            t_ort.append(timed(run_ort))
        if progress is not None:
            progress.update()
    row = {"model": name, "nodes": len(sess._plan.steps), "nodes_run": len(plan.steps), "minirt_ms": float(np.median(t_minirt)) * 1e3,
           "ort_ms": float(np.median(t_ort)) * 1e3, "minirt_best_ms": min(t_minirt) * 1e3,
           "ort_best_ms": min(t_ort) * 1e3, "max_abs_diff": max_err,
           "minirt_peak_mb": peak_memory_mb(run_minirt)}
    row["minirt_over_ort"] = row["minirt_ms"] / row["ort_ms"]
    if reference_repeats:
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(str(path))
        t_ref = []
        for _ in range(reference_repeats):
            t_ref.append(timed(lambda: ref.run(None, feeds)))
            if progress is not None:
                progress.update()
        row["reference_ms"] = float(np.median(t_ref)) * 1e3
        row["reference_over_minirt"] = row["reference_ms"] / row["minirt_ms"]
    return row


def geomean(values) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def print_table(rows: list[dict]) -> None:
    has_ref = any("reference_ms" in r for r in rows)
    head = f"{'model':<15} {'nodes':>7} {'minirt ms':>10} {'ORT ms':>9} {'minirt/ORT':>10}"
    if has_ref:
        head += f" {'ref ms':>10} {'ref/minirt':>10}"
    head += f" {'peak MB':>8} {'max|diff|':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        nodes = str(r["nodes"]) if r["nodes"] == r["nodes_run"] else f"{r['nodes']}>{r['nodes_run']}"
        line = (f"{r['model']:<15} {nodes:>7} {r['minirt_ms']:>10.2f} {r['ort_ms']:>9.2f} "
                f"{r['minirt_over_ort']:>10.2f}")
        if has_ref:
            line += (f" {r['reference_ms']:>10.1f} {r['reference_over_minirt']:>10.1f}" if "reference_ms" in r
                     else f" {'':>10} {'':>10}")
        line += f" {r['minirt_peak_mb']:>8.1f} {r['max_abs_diff']:>9.1e}"
        print(line)
    print("-" * len(head))
    for label, group in (("light models", [r for r in rows if r["model"] in LIGHT]),
                         ("small models", [r for r in rows if r["model"] in SMALL]), ("all", rows)):
        if not group:
            continue
        line = f"geomean {label:<14} minirt/ORT {geomean(r['minirt_over_ort'] for r in group):.2f}"
        if has_ref:
            line += f"   ref/minirt {geomean(r.get('reference_over_minirt') for r in group):.1f}"
        print(line)


# ----------------------------------------------------------------------------- executor overhead


def node_overhead_us(n_nodes: int = 1000, repeats: int = 200) -> float:
    """Microseconds per node of the executor alone: a chain of Identity nodes on a 1-element
    array, graph passes off (they would remove it), minus the cost of the Identity op itself."""
    import minirt
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"]) for i in range(n_nodes)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"v{n_nodes}", TensorProto.FLOAT, [1])])
    sess = minirt.InferenceSession(helper.make_model(graph), optimize=0)
    x = np.zeros(1, np.float32)
    feeds = {"v0": x}
    sess.run(None, feeds)
    identity = sess._plan.steps[0].fn
    per_run = float(np.median([timed(lambda: sess.run(None, feeds)) for _ in range(repeats)]))
    per_call = float(np.median([timed(lambda: [identity(x) for _ in range(n_nodes)]) for _ in range(repeats // 4)]))
    return (per_run - per_call) / n_nodes * 1e6


# ----------------------------------------------------------------------------- cold start

_COLD_SCRIPT = """
import time, sys
t0 = time.perf_counter()
import numpy as np
import minirt
t1 = time.perf_counter()
sess = minirt.InferenceSession(sys.argv[1])
t2 = time.perf_counter()
x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
sess.run(None, {sess.get_inputs()[0].name: x})
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {t3 - t0:.3f}")
"""


def cold_start(runs: int = 3) -> dict:
    """Seconds for import / session / first run / total in fresh processes, Numba cache warm and cold."""
    path = str(model_path("squeezenet"))
    results = {}
    for label in ("cache warm", "cache cold"):
        totals = []
        for _ in range(runs):
            # this checkout's minirt, as fair.py makes it for this process
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
            with tempfile.TemporaryDirectory() as tmp:
                if label == "cache cold":
                    env["NUMBA_CACHE_DIR"] = tmp  # an empty cache: every kernel compiles
                start = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", _COLD_SCRIPT, path], env=env, capture_output=True,
                                     text=True, check=True).stdout.split()
                wall = time.perf_counter() - start
            totals.append([float(v) for v in out] + [wall])
        med = np.median(np.asarray(totals), axis=0)
        results[label] = dict(zip(["import_s", "session_s", "first_run_s", "in_process_s", "process_wall_s"],
                                  (float(v) for v in med)))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated names (default: all): "
                        + ",".join(LIGHT + list(SMALL)))
    parser.add_argument("--repeats", type=int, default=10, help="timed minirt/ORT rounds per model")
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip onnx.reference (slow)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--cold-start", action="store_true", help="time fresh processes instead")
    parser.add_argument("--overhead", action="store_true", help="only the executor's per-node overhead")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of idle before each timed run, no warm runs (what a script or a "
                             "loop with gaps sees); default 0: steady state")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.cold_start:
        res = cold_start()
        print(f"load average {load:.2f}; squeezenet, fresh process (median of 3), seconds:")
        for label, r in res.items():
            print(f"  {label:<11} import {r['import_s']:.2f}  session {r['session_s']:.2f}  "
                  f"first run {r['first_run_s']:.2f}  total {r['in_process_s']:.2f}  "
                  f"(process wall {r['process_wall_s']:.2f})")
        if args.json:
            Path(args.json).write_text(json.dumps({"load": load, "cold_start": res}, indent=2))
        return 0

    if args.overhead:
        print(f"load average {load:.2f}; executor overhead (1000 Identity nodes, op cost subtracted): "
              f"{node_overhead_us():.2f} us/node")
        return 0

    from minirt.tools.progress import Progress

    names = [m.strip() for m in args.models.split(",") if m.strip()] or LIGHT + list(SMALL)
    unknown = [m for m in names if m not in LIGHT and m not in SMALL]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {LIGHT + list(SMALL)}")
    ref_repeats = 0 if args.no_reference else args.reference_repeats
    rows = []
    with Progress(len(names) * (args.repeats + ref_repeats), "bench_models", unit="run") as bar:
        for name in names:
            rows.append(bench_model(name, args.repeats, args.threads, ref_repeats, bar, args.pause))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.pause:
        print(f"each timed run after {args.pause:g} s of idle (no warm runs)")
    print(f"threads {args.threads}, {args.repeats} interleaved rounds (median ms); "
          f"load average {load:.2f} before, {load_after:.2f} after; peak MB = tracemalloc peak of one minirt run")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "repeats": args.repeats,
                                               "load_before": load, "load_after": load_after, "rows": rows},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
