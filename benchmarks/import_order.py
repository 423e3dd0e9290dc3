"""minirt's steady-state latency when a script imports NumPy before minirt, and after it.

    python benchmarks/import_order.py --models squeezenet,resnet50,vgg19 --repeats 15 --pairs 2

OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` when NumPy loads it. ``import minirt`` sets a short
spin; when NumPy came first, minirt asks the loaded OpenBLAS to read its environment again
(``minirt/kernels/gemm.py: reread_blas_timeout``). Each pair runs one fresh process per order,
alternating; each prints the median of ``--repeats`` runs per model after 1 s of warm runs. The
two orders should agree within the machine's noise (before stop 11, NumPy first was 25-60%
slower on VGG-19 and DenseNet-121). The benchmarks' other scripts import minirt first
(``fair.py``), so they never see the difference. No onnxruntime here: minirt alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys, time
order, models, repeats = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
sys.path.insert(0, {repo!r}); sys.path.insert(0, {bench!r})
if order == "numpy-first":
    import numpy as np
    import minirt
else:
    import minirt
    import numpy as np
import bench_models as bm
out = []
for name in models:
    s = minirt.InferenceSession(str(bm.model_path(name)))
    feeds = bm.make_feeds(s)
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        s.run(None, feeds)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        s.run(None, feeds)
        ts.append(time.perf_counter() - t)
    out.append(f"{{name}} {{np.median(ts) * 1e3:.2f}}")
print(" ".join(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="squeezenet,resnet50,vgg19,densenet121,resnet_mini")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per model and process")
    parser.add_argument("--pairs", type=int, default=2, help="numpy-first / minirt-first process pairs")
    args = parser.parse_args()
    code = _CHILD.format(repo=str(REPO), bench=str(REPO / "benchmarks"))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}  # as a user's shell has it
    print(f"median ms of {args.repeats} runs after 1 s of warm runs, one fresh process each")
    for i in range(args.pairs):
        for order in ("numpy-first", "minirt-first"):
            out = subprocess.run([sys.executable, "-c", code, order, args.models, str(args.repeats)],
                                 env=env, capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            print(f"pair {i + 1} {order:12s} {out.stdout.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
