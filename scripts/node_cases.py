"""Developer tool: run the ONNX backend *node* test cases for some op types.

    python scripts/node_cases.py Conv MaxPool        # cases whose nodes use these ops
    python scripts/node_cases.py --all               # every case
    python scripts/node_cases.py -v Softmax          # print each failure's error

Uses minirt.backend when it exists (the real session); until then a tiny stand-in executor
that runs the nodes in order straight from the registry.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.test.loader import load_model_tests


def _normalize(x):
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    return x


def _tiny_run(model, inputs):
    from minirt import registry
    from minirt.dtypes import np_dtype  # noqa: F401

    registry._ensure_loaded()
    opsets = {(o.domain or ""): o.version for o in model.opset_import}
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in env]
    env.update(zip(names, inputs))
    for node in model.graph.node:
        d = registry.lookup(node.domain, node.op_type, opsets.get(node.domain or "", 1))
        if d is None:
            raise NotImplementedError(f"{node.op_type} not registered")
        attrs = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if a.type == onnx.AttributeProto.TENSOR:
                v = numpy_helper.to_array(v)
            elif a.type == onnx.AttributeProto.STRING:
                v = v.decode()
            elif a.type == onnx.AttributeProto.STRINGS:
                v = [s.decode() for s in v]
            elif a.type == onnx.AttributeProto.GRAPH:
                raise NotImplementedError("subgraphs need the real session")
            attrs[a.name] = v
        args = [env[n] if n else None for n in node.input]
        out = d.fn(*args, **attrs)
        if not isinstance(out, tuple):
            out = (out,)
        for n, v in zip(node.output, out):
            if n:
                env[n] = v
    return [env[o.name] for o in model.graph.output]


def run_case(case):
    try:
        from minirt.backend import MinirtBackend  # the real thing, once it exists

        rep = MinirtBackend.prepare(case.model)
        runner = rep.run
    except ImportError:
        runner = lambda inputs: _tiny_run(case.model, inputs)  # noqa: E731
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
