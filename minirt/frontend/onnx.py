"""ONNX ModelProto -> minirt IR.

The only module that reads ONNX protobufs. It turns a model (a path, bytes or a ModelProto)
into an :class:`minirt.ir.Graph`: attributes become Python values, initializers become
read-only NumPy arrays, If/Loop/Scan bodies become nested Graphs, model-local functions are
inlined, and tensors stored as external data are read from files next to the model (a path
that escapes the model's folder is refused).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
from onnx import AttributeProto, TensorProto, numpy_helper

from minirt.dtypes import np_dtype
from minirt.errors import ModelLoadError
from minirt.ir import Graph, Node, Value
from minirt.registry import canonical_domain

ModelLike = str | os.PathLike | bytes | onnx.ModelProto


def load_model_proto(model: ModelLike) -> tuple[onnx.ModelProto, Path | None]:
    """Read a ModelProto and the folder its external data lives in (None for bytes)."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            return onnx.load_from_string(bytes(model)), None
        except Exception as e:  # noqa: BLE001  (protobuf raises DecodeError and others)
            raise ModelLoadError(f"these {len(model)} bytes are not an ONNX model: {e}") from None
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not an ONNX model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path} is not a valid ONNX model ({type(e).__name__}: {e})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{path} holds no graph: is it really an ONNX model?")
    return proto, path.resolve().parent


def from_onnx(model: ModelLike) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) into a minirt :class:`Graph`."""
    proto, base_dir = load_model_proto(model)
    if proto.functions:
        # model-local functions: inline them, so the runtime only sees primitive ops
        proto = onnx.inliner.inline_local_functions(proto)
    proto = _with_inferred_shapes(proto)
    opsets = {}
    for o in proto.opset_import:
        opsets[canonical_domain(o.domain)] = int(o.version)
    if proto.ir_version and proto.ir_version < 3 and "" not in opsets:
        opsets[""] = 1
    graph = _graph(proto.graph, opsets, base_dir)
    graph.metadata = {
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "ir_version": str(proto.ir_version),
        "doc": proto.doc_string,
        **{p.key: p.value for p in proto.metadata_props},
    }
    return graph


def _with_inferred_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Run ONNX's shape inference so the IR (and its printout) knows intermediate shapes.

    Only used for display and checks, never to change results; a model it cannot handle
    (a custom domain, say) is kept as it is.
    """
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001  (inference is a convenience, not a requirement)
        return proto


def _graph(g: onnx.GraphProto, opsets: dict[str, int], base_dir: Path | None) -> Graph:
    inits = {t.name: _tensor(t, base_dir) for t in g.initializer}
    for st in g.sparse_initializer:
        inits[st.values.name] = _sparse(st, base_dir)
    nodes = []
    for i, n in enumerate(g.node):
        attrs = {a.name: _attribute(a, opsets, base_dir) for a in n.attribute}
        nodes.append(
            Node(
                op_type=n.op_type,
                inputs=list(n.input),
                outputs=list(n.output),
                attrs=attrs,
                name=n.name or f"{n.op_type}_{i}",
                domain=canonical_domain(n.domain),
            )
        )
    graph = Graph(
        name=g.name or "graph",
        nodes=nodes,
        inputs=[_value(v) for v in g.input],
        outputs=[_value(v) for v in g.output],
        initializers=inits,
        value_info={v.name: _value(v) for v in g.value_info},
        opsets=opsets,
    )
    graph.toposort()
    return graph


def _value(v: onnx.ValueInfoProto) -> Value:
    return _typed_value(v.name, v.type)


def _typed_value(name: str, t: onnx.TypeProto) -> Value:
    which = t.WhichOneof("value")
    if which == "tensor_type" or which == "sparse_tensor_type":
        tt = getattr(t, which)
        dtype = np_dtype(tt.elem_type) if tt.elem_type else None
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
            )
        return Value(name, dtype, shape)
    if which in ("sequence_type", "optional_type"):
        inner = _typed_value(name, getattr(t, which).elem_type)
        return Value(name, inner.dtype, inner.shape, kind=which.split("_")[0])
    if which == "map_type":
        return Value(name, None, None, kind="map")
    return Value(name)


def _tensor(t: TensorProto, base_dir: Path | None) -> np.ndarray:
    if t.data_location == TensorProto.EXTERNAL:
        t = _read_external(t, base_dir)
    arr = numpy_helper.to_array(t)
    arr.flags.writeable = False  # weights are shared by every run: nobody may change them
    return arr


def _sparse(st: onnx.SparseTensorProto, base_dir: Path | None) -> np.ndarray:
    values = _tensor(st.values, base_dir)
    indices = _tensor(st.indices, base_dir)
    dense = np.zeros(tuple(st.dims), dtype=values.dtype)
    if indices.ndim == 1:  # linearized indices
        dense.reshape(-1)[indices] = values
    else:  # [nnz, rank] coordinates
        dense[tuple(indices.T)] = values
    dense.flags.writeable = False
    return dense


def _read_external(t: TensorProto, base_dir: Path | None) -> TensorProto:
    """Load a tensor's bytes from its external file, which must lie inside the model's folder."""
    info = {e.key: e.value for e in t.external_data}
    if base_dir is None:
        raise ModelLoadError(
            f"initializer {t.name!r} is stored in an external file ({info.get('location')!r}); "
            "load the model from its path so minirt knows where to find that file"
        )
    location = info.get("location", "")
    path = (base_dir / location).resolve()
    if not path.is_relative_to(base_dir):
        raise ModelLoadError(
            f"initializer {t.name!r} points to external data {location!r}, outside the model's "
            f"folder {base_dir}: refused (a model may only read files beside it)"
        )
    if not path.is_file():
        raise ModelLoadError(f"external data file {path} for initializer {t.name!r} is missing")
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else -1
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length) if length >= 0 else f.read()
    loaded = TensorProto()
    loaded.CopyFrom(t)
    del loaded.external_data[:]
    loaded.data_location = TensorProto.DEFAULT
    loaded.raw_data = data
    return loaded


def node_attributes(node: onnx.NodeProto, opsets: dict[str, int] | None = None) -> dict:
    """A NodeProto's attributes as the Python values ops receive (see :class:`minirt.ir.Node`)."""
    return {a.name: _attribute(a, opsets or {}, None) for a in node.attribute}


def _attribute(a: AttributeProto, opsets: dict[str, int], base_dir: Path | None):
    """An AttributeProto as a Python value (see :class:`minirt.ir.Node`)."""
    T = AttributeProto
    if a.ref_attr_name:
        raise ModelLoadError(f"attribute {a.name!r} refers to a function attribute outside a function")
    if a.type == T.FLOAT:
        return float(a.f)
    if a.type == T.INT:
        return int(a.i)
    if a.type == T.STRING:
        return a.s.decode("utf-8", errors="replace")
    if a.type == T.TENSOR:
        return _tensor(a.t, base_dir)
    if a.type == T.GRAPH:
        return _graph(a.g, opsets, base_dir)
    if a.type == T.SPARSE_TENSOR:
        return _sparse(a.sparse_tensor, base_dir)
    if a.type == T.FLOATS:
        return [float(x) for x in a.floats]
    if a.type == T.INTS:
        return [int(x) for x in a.ints]
    if a.type == T.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in a.strings]
    if a.type == T.TENSORS:
        return [_tensor(t, base_dir) for t in a.tensors]
    if a.type == T.GRAPHS:
        return [_graph(g, opsets, base_dir) for g in a.graphs]
    if a.type == T.SPARSE_TENSORS:
        return [_sparse(s, base_dir) for s in a.sparse_tensors]
    if a.type == T.TYPE_PROTO:
        return _typed_value(a.name, a.tp)
    if a.type == T.TYPE_PROTOS:
        return [_typed_value(a.name, tp) for tp in a.type_protos]
    raise ModelLoadError(f"attribute {a.name!r} has an unknown type {a.type}")
