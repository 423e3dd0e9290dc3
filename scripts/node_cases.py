"""Developer tool: run the ONNX backend *node* test cases for some op types.

    python scripts/node_cases.py Conv MaxPool        # cases whose nodes use these ops
    python scripts/node_cases.py --all               # every case
    python scripts/node_cases.py -v Softmax          # print each failure's error

Runs each case through minirt.backend (the real session), like tests/test_onnx_backend.py,
but prints one line per case: handy while writing an op.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests


def _normalize(x):
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    return x


def run_case(case):
    from minirt.backend import MinirtBackend

    runner = MinirtBackend.prepare(case.model).run
    for inputs, outputs in case.data_sets:
        got = runner([_normalize(i) for i in inputs])
        for g, e in zip(got, outputs):
            e = _normalize(e)
            if isinstance(e, list):
                assert len(g) == len(e)
                for gg, ee in zip(g, e):
                    np.testing.assert_allclose(gg, ee, rtol=case.rtol, atol=case.atol)
                continue
            g = np.asarray(g)
            e = np.asarray(e)
            assert g.dtype == e.dtype, f"dtype {g.dtype} != expected {e.dtype}"
            assert g.shape == e.shape, f"shape {g.shape} != expected {e.shape}"
            if e.dtype == object:
                assert g.tolist() == e.tolist()
            else:
                np.testing.assert_allclose(g.astype(np.float64) if g.dtype.kind not in "cfiub" else g,
                                           e.astype(np.float64) if e.dtype.kind not in "cfiub" else e,
                                           rtol=case.rtol, atol=case.atol)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ops", nargs="*")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    cases = load_model_tests(kind="node")
    sel = []
    for c in cases:
        types = {n.op_type for n in c.model.graph.node}
        if args.all or types & set(args.ops):
            sel.append(c)
    ok = 0
    for c in sel:
        try:
            run_case(c)
            ok += 1
            print("PASS", c.name)
        except Exception as e:  # noqa: BLE001
            print("FAIL", c.name, "-", type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            if args.v:
                traceback.print_exc()
    print(f"{ok}/{len(sel)} passed")
    return 0 if ok == len(sel) else 1


if __name__ == "__main__":
    sys.exit(main())
