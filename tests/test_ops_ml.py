"""ai.onnx.ml ops against onnxruntime, on real scikit-learn models converted by skl2onnx.

The oracle: onnxruntime runs the converted model with every intermediate value exposed as an
output; then each ai.onnx.ml node is run through minirt's op with ORT's own inputs for that
node, and must reproduce ORT's outputs for it. Nodes of other families are ORT's business here
(full-graph tests live with the session).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from minirt import registry
from minirt.frontend.onnx import node_attributes
from minirt.ops import ml
from minirt.testing import ort_op

skl2onnx = pytest.importorskip("skl2onnx")
sklearn = pytest.importorskip("sklearn")

from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Normalizer, OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.svm import SVC, SVR  # noqa: E402
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

SETTINGS = settings(deadline=None, max_examples=10)


def _attrs(node):
    return node_attributes(node)


def _ort_all_values(model, feeds):
    """Run ORT with every node output exposed; name -> value."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name and name not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return consts | dict(zip(names, sess.run(None, feeds))) | feeds


def _assert_same(got, want, name):
    if isinstance(want, list):  # ZipMap: list of dicts
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert g.keys() == w.keys(), name
            np.testing.assert_allclose(list(g.values()), list(w.values()), rtol=1e-5, atol=1e-6)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    if want.dtype == object or want.dtype.kind in "iub":
        assert got.tolist() == want.tolist(), name  # labels / indices: exact
    else:
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
        # float32 scores: ORT sums in a different order (and float vs double); a few ulps
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def check_ml_nodes(model, feeds, expect_ops):
    """Every ai.onnx.ml node of ``model`` reproduces ORT's outputs from ORT's inputs."""
    values = _ort_all_values(model, feeds)
    opsets = {o.domain: o.version for o in model.opset_import}
    seen = set()
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        d = registry.lookup(node.domain, node.op_type, opsets["ai.onnx.ml"])
        assert d is not None, f"{node.op_type} is not registered"
        out = d.fn(*[values[n] for n in node.input], **_attrs(node))
        out = out if isinstance(out, tuple) else (out,)
        for name, got in zip(node.output, out):
            _assert_same(got, values[name], f"{node.op_type}:{name}")
        seen.add(node.op_type)
    assert set(expect_ops) <= seen, f"expected {expect_ops}, graph had {seen}"


def _data(seed, n=60, f=5, classes=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.linspace(-1, 1, classes - 1))
    return X, y, rng


def _convert(model, X, **options):
    return skl2onnx.to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3}, options=options or None)


classifiers = [
    lambda: LogisticRegression(max_iter=300),
    lambda: DecisionTreeClassifier(max_depth=5),
    lambda: RandomForestClassifier(n_estimators=8, max_depth=4),
    lambda: GradientBoostingClassifier(n_estimators=5, max_depth=3),
    lambda: SVC(kernel="rbf"),
    lambda: SVC(kernel="linear"),
    lambda: SVC(kernel="poly", degree=2),
]


@pytest.mark.parametrize("make", classifiers, ids=lambda f: repr(f()))
@pytest.mark.parametrize("classes", [2, 3])
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_classifiers_match_ort(make, classes, seed):
    X, y, rng = _data(seed, classes=classes)
    if len(set(y)) < classes:
        y[:classes] = np.arange(classes)
    clf = make().fit(X, y)
    model = _convert(clf, X)
    X_test = rng.standard_normal((20, X.shape[1])).astype(np.float32)
    check_ml_nodes(model, {"X": X_test}, {"ZipMap"})


def test_svc_probability_matches_ort():
    X, y, rng = _data(0, classes=3)
    model = _convert(SVC(probability=True, random_state=0).fit(X, y), X)
    check_ml_nodes(model, {"X": rng.standard_normal((20, 5)).astype(np.float32)}, {"SVMClassifier"})


regressors = [
    lambda: LinearRegression(),
    lambda: DecisionTreeRegressor(max_depth=6),
    lambda: RandomForestRegressor(n_estimators=8, max_depth=4),
    lambda: GradientBoostingRegressor(n_estimators=5),
    lambda: SVR(kernel="rbf"),
]


@pytest.mark.parametrize("make", regressors, ids=lambda f: repr(f()))
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_regressors_match_ort(make, seed):
    X, _, rng = _data(seed)
    y = X @ rng.standard_normal(X.shape[1]) + 0.1 * rng.standard_normal(len(X))
    model = _convert(make().fit(X, y), X)
    check_ml_nodes(model, {"X": rng.standard_normal((20, X.shape[1])).astype(np.float32)}, set())


def test_scaler_pipeline_and_normalizer_match_ort():
    X, y, rng = _data(1)
    X_test = rng.standard_normal((20, 5)).astype(np.float32)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    check_ml_nodes(_convert(pipe, X), {"X": X_test}, {"Scaler", "LinearClassifier"})
    for norm in ["l1", "l2", "max"]:
        check_ml_nodes(_convert(Normalizer(norm=norm).fit(X), X), {"X": X_test}, {"Normalizer"})


def test_one_hot_encoder_matches_ort():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, (40, 3)).astype(np.int64)
    model = _convert(OneHotEncoder(handle_unknown="ignore").fit(X), X)
    check_ml_nodes(model, {"X": rng.integers(0, 5, (10, 3)).astype(np.int64)}, {"OneHotEncoder"})


def test_mlp_classifier_ml_nodes_match_ort():
    X, y, rng = _data(3)
    model = _convert(MLPClassifier(hidden_layer_sizes=(8,), max_iter=50).fit(X, y), X)
    check_ml_nodes(model, {"X": rng.standard_normal((20, 5)).astype(np.float32)}, {"ZipMap"})


def test_zipmap_is_a_list_of_dicts():
    out = ml.ZipMap(np.array([[0.25, 0.75]], np.float32), classlabels_strings=["a", "b"])
    assert out == [{"a": 0.25, "b": 0.75}]


# ---------------------------------------------------------------- small ops, one-node models


def _one_node(op_type, inputs, attrs, out_dtypes):
    """Every output of one ai.onnx.ml node (ml opset 3) run by onnxruntime."""
    return ort_op(op_type, inputs, attrs, opset=17, domain="ai.onnx.ml", domain_opset=3, output_dtypes=out_dtypes)


def test_label_encoder_category_mapper_imputer_binarizer_match_ort():
    s = np.array([["a", "b"], ["zz", "c"]], dtype=object)
    attrs = dict(keys_strings=["a", "b", "c"], values_int64s=[1, 2, 3], default_int64=-7)
    (want,) = _one_node("LabelEncoder", [s], attrs, [np.int64])
    np.testing.assert_array_equal(ml.LabelEncoder(s, **attrs), want)
    attrs = dict(cats_strings=["a", "b", "c"], cats_int64s=[5, 6, 7])
    (want,) = _one_node("CategoryMapper", [s], attrs, [np.int64])
    np.testing.assert_array_equal(ml.CategoryMapper(s, **attrs), want)
    x = np.array([[1.0, np.nan, 3.0], [np.nan, 2.0, 0.0]], np.float32)
    attrs = dict(imputed_value_floats=[9.0, 8.0, 7.0], replaced_value_float=float("nan"))
    (want,) = _one_node("Imputer", [x], attrs, [np.float32])
    np.testing.assert_array_equal(ml.Imputer(x, **attrs), want)
    x = np.nan_to_num(x, nan=1.5)  # ORT's Binarizer refuses NaN
    (want,) = _one_node("Binarizer", [x], {"threshold": 1.5}, [np.float32])
    np.testing.assert_array_equal(ml.Binarizer(x, threshold=1.5), want)


def test_feature_vectorizer_and_array_feature_extractor_match_ort():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(2, dtype=np.float32).reshape(2, 1)
    (want,) = _one_node("FeatureVectorizer", [a, b], {"inputdimensions": [2, 3]}, [np.float32])
    np.testing.assert_array_equal(ml.FeatureVectorizer(a, b, inputdimensions=[2, 3]), want)
    idx = np.array([2, 0], np.int64)
    (want,) = _one_node("ArrayFeatureExtractor", [a, idx], {}, [np.float32])
    np.testing.assert_array_equal(ml.ArrayFeatureExtractor(a, idx), want)


@pytest.mark.parametrize("post", ["SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"])
def test_post_transforms_match_ort(post):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    coef = (rng.standard_normal(9) * 0.3)
    coef[:3] = 0  # class 0 scores exactly 0: SOFTMAX_ZERO keeps it at zero
    coef = coef.tolist()
    attrs = dict(coefficients=coef, intercepts=[0.0, 0.0, 0.0], classlabels_ints=[0, 1, 2], post_transform=post)
    if post == "PROBIT":  # probit needs scores in (0, 1)
        x = np.abs(x) * 0.1
    labels, scores = _one_node("LinearClassifier", [x], attrs, [np.int64, np.float32])
    got_labels, got_scores = ml.LinearClassifier(x, **attrs)
    np.testing.assert_allclose(got_scores, scores, rtol=1e-4, atol=1e-5)  # float32 math; probit: ORT's approximation
    np.testing.assert_array_equal(got_labels, labels)


def test_tree_ensemble_is_vectorised():
    X, _, rng = _data(5, n=1000, f=10)
    y = X @ rng.standard_normal(10)
    model = _convert(RandomForestRegressor(n_estimators=100, max_depth=8, random_state=0).fit(X, y), X)
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    attrs = _attrs(node)
    start = time.perf_counter()
    got = ml.TreeEnsembleRegressor(X, **attrs)
    elapsed = time.perf_counter() - start
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": X})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float32 sums of 100 leaves
    assert elapsed < 1.0, f"100 trees x 1000 rows took {elapsed:.2f}s"
