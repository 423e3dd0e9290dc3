"""BatchNormalization -> Relu/Clip fused into minirt.FusedBatchNormalization (DenseNet's
pre-activation blocks): the pass, and the one-pass kernel against the unfused ops."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import minirt
from minirt.frontend.onnx import from_onnx
from minirt.passes import fuse_elementwise
from minirt.passes import fused_ops


def _graph(activation, extra_reader=False, training=False, opset=15):
    C = 4
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [C], rng.uniform(0.5, 2, C)),
             helper.make_tensor("b", TensorProto.FLOAT, [C], rng.uniform(-1, 1, C)),
             helper.make_tensor("m", TensorProto.FLOAT, [C], rng.uniform(-1, 1, C)),
             helper.make_tensor("v", TensorProto.FLOAT, [C], rng.uniform(0.5, 2, C)),
             helper.make_tensor("lo", TensorProto.FLOAT, [], [-0.25]),
             helper.make_tensor("hi", TensorProto.FLOAT, [], [0.75])]
    bn_attrs = {"epsilon": 1e-3}
    if training:
        bn_attrs["training_mode"] = 1
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], **bn_attrs)]
    nodes.append(helper.make_node("Relu", ["n"], ["y"]) if activation == "Relu"
                 else helper.make_node("Clip", ["n", "lo", "hi"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("Neg", ["n"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C, 5, 6])],
                          outputs, inits)
    return from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))


@pytest.mark.parametrize("activation", ["Relu", "Clip"])
def test_batchnorm_activation_is_one_node_and_bit_identical(activation):
    g = _graph(activation)
    fused = fuse_elementwise(g)
    assert [n.op_type for n in fused.nodes] == ["FusedBatchNormalization"]
    assert fused.nodes[0].domain == "minirt" and fused.nodes[0].attrs["activation"] == activation
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    unfused = minirt.InferenceSession(g, optimize=0).run(None, {"x": x})[0]  # the BN and Relu/Clip kernels
    got = minirt.InferenceSession(fused, optimize=0).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, unfused)  # one pass, the same roundings; NaN stays NaN
    assert np.isnan(got[0, 1, 2, 3])
    ref = minirt.InferenceSession(fused, optimize=0, kernels=False).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)  # reference BN: float64 inside


def test_not_fused_when_the_normalized_value_has_other_readers_or_trains():
    assert "FusedBatchNormalization" not in [n.op_type for n in fuse_elementwise(_graph("Relu", extra_reader=True)).nodes]
    assert "FusedBatchNormalization" not in [n.op_type for n in fuse_elementwise(_graph("Relu", training=True)).nodes]


def test_kernel_falls_back_for_other_activations_and_dtypes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 4)).astype(np.float64)
    p = [rng.uniform(0.5, 2, 3) for _ in range(4)]
    want = fused_ops.FusedBatchNormalization(x, *p, activation="Relu")
    np.testing.assert_allclose(fused_ops.FusedBatchNormalization_fast(x, *p, activation="Relu"), want, rtol=1e-12)
    want = fused_ops.FusedBatchNormalization(x, *p, activation="Sigmoid")
    np.testing.assert_allclose(fused_ops.FusedBatchNormalization_fast(x, *p, activation="Sigmoid"), want, rtol=1e-12)


def test_shape_specialization_sees_through_the_fused_node():
    from minirt.ir import Node
    from minirt.passes.specialize import output_shapes

    node = Node("FusedBatchNormalization", ["x", "s", "b", "m", "v"], ["y"], {"activation": "Relu"}, domain="minirt")
    assert output_shapes(node, {"x": (2, 4, 5, 6)}.get, {}, 17) == [(2, 4, 5, 6)]


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False  # as minirt's initializers are: the plan-time step keeps its runner
    return a


@pytest.mark.parametrize("activation, params", [("Relu", None), ("Clip", (-0.25, 0.75)), ("Clip", (-np.inf, 6.0)),
                                                ("", None), ("Sigmoid", None)])
@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (1, 4, 7), (3, 4), (0, 4, 3, 3)])
def test_plan_time_step_is_the_kernel(activation, params, shape):
    """FusedBatchNormalization's plan-time step (s, t, bounds and view worked out once) gives the
    kernel's bits on its first and later runs, for writeable parameters (never kept), and for a
    non-contiguous input (the kernel's own path)."""
    rng = np.random.default_rng(1)
    C = shape[1]
    consts = [_readonly(rng.uniform(0.5, 2, C).astype(np.float32)) for _ in range(4)]
    attrs = dict(epsilon=1e-3, activation=activation, activation_params=params)
    step = fused_ops.prepare_fused_batch_norm(**attrs)
    for _ in range(3):
        x = rng.normal(size=shape).astype(np.float32)
        want = fused_ops.FusedBatchNormalization_fast(x, *consts, **attrs)
        got = step(x, *consts)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    writeable = [np.array(c) for c in consts]
    np.testing.assert_array_equal(step(x, *writeable), fused_ops.FusedBatchNormalization_fast(x, *writeable, **attrs))
    if len(shape) == 4 and shape[0]:
        view = np.swapaxes(rng.normal(size=shape[:2] + shape[2:][::-1]).astype(np.float32), 2, 3)  # not contiguous
        np.testing.assert_array_equal(step(view, *consts), fused_ops.FusedBatchNormalization_fast(view, *consts, **attrs))
