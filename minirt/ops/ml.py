"""ai.onnx.ml ops: the classic-ML operators that skl2onnx emits for scikit-learn models.

Maps (``dict``) and sequences of maps (``list`` of ``dict``) are plain Python objects here;
string tensors are NumPy object arrays of ``str``. Scores are float32, as onnxruntime gives them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from minirt.registry import op

ML = "ai.onnx.ml"


# ---------------------------------------------------------------------------- helpers


def _as_2d_float(X):
    """Features as float32 [N, F] (float64 stays float64); a 1-D input is one row."""
    X = np.asarray(X)
    X = X.astype(np.float64 if X.dtype == np.float64 else np.float32)
    return X.reshape(1, -1) if X.ndim == 1 else X.reshape(X.shape[0], -1)


def _erf_inv(p):
    """Inverse error function (Winitzki's approximation, as onnxruntime uses)."""
    sign = np.sign(p)
    x = (1 - p) * (1 + p)
    with np.errstate(divide="ignore", invalid="ignore"):  # p outside (-1, 1): NaN, as ORT
        log = np.log(x)
    a = 2 / (np.pi * 0.147) + 0.5 * log
    return sign * np.sqrt(np.sqrt(a * a - log / 0.147) - a)


def _softmax_zero(s):
    """Softmax over the non-zero entries of each row; exact zeros stay zero."""
    nonzero = np.abs(s) > 1e-7
    e = np.where(nonzero, np.exp(s - s.max(axis=1, keepdims=True)), 0)
    total = e.sum(axis=1, keepdims=True)
    return np.where(total == 0, 0.5, e / np.where(total == 0, 1, total))


def _post_transform(scores, post_transform):
    """NONE | SOFTMAX | LOGISTIC | SOFTMAX_ZERO | PROBIT, applied to [N, C] scores."""
    if post_transform in ("NONE", 0):
        return scores
    if post_transform in ("LOGISTIC", 2):
        return 1 / (1 + np.exp(-scores))
    if post_transform in ("SOFTMAX", 1):
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if post_transform in ("SOFTMAX_ZERO", 3):
        return _softmax_zero(scores)
    if post_transform in ("PROBIT", 4):
        return np.sqrt(2) * _erf_inv(2 * scores - 1)
    raise NotImplementedError(f"post_transform={post_transform!r}")


def _labels(classlabels_ints, classlabels_strings):
    """The class labels as an array: int64, or object (str)."""
    if classlabels_strings:
        return np.array(classlabels_strings, dtype=object)
    return np.array(classlabels_ints or [], dtype=np.int64)


# ---------------------------------------------------------------------------- simple transforms


@op("ArrayFeatureExtractor", since=1, domain=ML)
def ArrayFeatureExtractor(X, Y):
    """Z = X[..., Y] (a 1-D X gives one row) — https://onnx.ai/onnx/operators/onnx_aionnxml_ArrayFeatureExtractor.html"""
    index = np.asarray(Y).reshape(-1)
    shape = (1, index.size) if X.ndim == 1 else (*X.shape[:-1], index.size)
    return X[..., index].reshape(shape)  # [..., F] -> [..., len(Y)]


@op("Binarizer", since=1, domain=ML)
def Binarizer(X, *, threshold=0.0):
    """Y = 1 if X > threshold else 0 — https://onnx.ai/onnx/operators/onnx_aionnxml_Binarizer.html"""
    return (X > threshold).astype(X.dtype)


@op("Scaler", since=1, domain=ML)
def Scaler(X, *, offset=None, scale=None):
    """Y = (X - offset) * scale, as float32 — https://onnx.ai/onnx/operators/onnx_aionnxml_Scaler.html"""
    offset = np.asarray(offset if offset is not None else [0.0], dtype=np.float32)
    scale = np.asarray(scale if scale is not None else [1.0], dtype=np.float32)
    return ((X.astype(np.float32) - offset) * scale).astype(np.float32)


@op("Normalizer", since=1, domain=ML)
def Normalizer(X, *, norm="MAX"):
    """Y = X / (max | sum |.| | sqrt(sum x^2)) per row — https://onnx.ai/onnx/operators/onnx_aionnxml_Normalizer.html"""
    x = _as_2d_float(X).astype(np.float32)
    if norm == "MAX":
        d = x.max(axis=1, keepdims=True)
    elif norm == "L1":
        d = np.abs(x).sum(axis=1, keepdims=True)
    elif norm == "L2":
        d = np.sqrt((x * x).sum(axis=1, keepdims=True))
    else:
        raise ValueError(f"Normalizer: unknown norm {norm!r}")
    return np.where(d == 0, x, x / np.where(d == 0, 1, d)).astype(np.float32)


@op("Imputer", since=1, domain=ML)
def Imputer(X, *, imputed_value_floats=None, imputed_value_int64s=None,
            replaced_value_float=0.0, replaced_value_int64=0):
    """Y = imputed value where X == replaced value (or NaN) — https://onnx.ai/onnx/operators/onnx_aionnxml_Imputer.html"""
    if X.dtype.kind == "f":
        values = np.asarray(imputed_value_floats, dtype=X.dtype)
        missing = np.isnan(X) if math.isnan(replaced_value_float) else X == replaced_value_float
    else:
        values = np.asarray(imputed_value_int64s, dtype=X.dtype)
        missing = X == replaced_value_int64
    return np.where(missing, values if values.size > 1 else values.reshape(()), X)


@op("FeatureVectorizer", since=1, domain=ML)
def FeatureVectorizer(*X, inputdimensions=None):
    """Y = concat of the inputs' columns, each cut or zero-padded to inputdimensions[i] — https://onnx.ai/onnx/operators/onnx_aionnxml_FeatureVectorizer.html"""
    parts = []
    for x, dim in zip(X, inputdimensions):
        x = _as_2d_float(x).astype(np.float32)
        parts.append(np.pad(x[:, :dim], [(0, 0), (0, max(dim - x.shape[1], 0))]))
    return np.concatenate(parts, axis=1)  # [N, sum(inputdimensions)]


@op("OneHotEncoder", since=1, domain=ML)
def OneHotEncoder(X, *, cats_int64s=None, cats_strings=None, zeros=1):
    """Y[..., j] = 1.0 if X == cats[j] — https://onnx.ai/onnx/operators/onnx_aionnxml_OneHotEncoder.html"""
    cats = cats_strings if cats_strings else cats_int64s
    if X.dtype.kind == "f":
        X = X.astype(np.int64)
    Y = (X[..., None] == np.asarray(cats, dtype=object if cats_strings else np.int64))  # [..., len(cats)]
    if not zeros and not Y.any(axis=-1).all():
        raise ValueError("OneHotEncoder: an input value is not among the categories (zeros=0)")
    return Y.astype(np.float32)


@op("CategoryMapper", since=1, domain=ML)
def CategoryMapper(X, *, cats_int64s=None, cats_strings=None, default_int64=-1, default_string="_Unused"):
    """string <-> int64 through the pairs (cats_strings[i], cats_int64s[i]) — https://onnx.ai/onnx/operators/onnx_aionnxml_CategoryMapper.html"""
    if X.dtype == object:
        table = dict(zip(cats_strings, cats_int64s))
        return np.array([table.get(v, default_int64) for v in X.reshape(-1)], np.int64).reshape(X.shape)
    table = dict(zip(cats_int64s, cats_strings))
    return np.array([table.get(int(v), default_string) for v in X.reshape(-1)], object).reshape(X.shape)


def _encode(X, keys, values, default, out_dtype):
    """Element-wise dictionary lookup keys -> values; NaN keys match NaN."""
    table = {(_nan_key(k)): v for k, v in zip(keys, values)}
    flat = [table.get(_nan_key(k), default) for k in X.reshape(-1).tolist()]
    return np.array(flat, dtype=out_dtype).reshape(X.shape)


def _nan_key(k):
    return "nan" if isinstance(k, float) and math.isnan(k) else k


@op("LabelEncoder", since=4, domain=ML)
def LabelEncoder(X, *, default_float=-0.0, default_int64=-1, default_string="_Unused", default_tensor=None,
                 keys_floats=None, keys_int64s=None, keys_strings=None, keys_tensor=None,
                 values_floats=None, values_int64s=None, values_strings=None, values_tensor=None):
    """Y = values[i] where X == keys[i], else the default — https://onnx.ai/onnx/operators/onnx_aionnxml_LabelEncoder.html"""
    keys = next(k for k in (keys_tensor, keys_strings, keys_int64s, keys_floats) if k is not None)
    keys = keys.tolist() if isinstance(keys, np.ndarray) else keys
    if values_tensor is not None:
        dtype = values_tensor.dtype
        default = default_tensor.reshape(-1)[0] if default_tensor is not None else np.zeros((), dtype)[()]
        if dtype == object and default_tensor is None:
            default = "_Unused"
        values = values_tensor.tolist()
    elif values_strings is not None:
        values, dtype, default = values_strings, np.dtype(object), default_string
    elif values_int64s is not None:
        values, dtype, default = values_int64s, np.dtype(np.int64), default_int64
    else:
        values, dtype, default = values_floats, np.dtype(np.float32), default_float
    return _encode(X, keys, values, default, dtype)


@op("LabelEncoder", since=1, domain=ML)
def LabelEncoder_1(X, *, classes_strings=None, default_int64=-1, default_string="_Unused"):
    """string -> its index in classes_strings, or int64 -> classes_strings[i] — https://onnx.ai/onnx/operators/onnx_aionnxml_LabelEncoder.html"""
    if X.dtype == object:
        return _encode(X, classes_strings, range(len(classes_strings)), default_int64, np.int64)
    return _encode(X, range(len(classes_strings)), classes_strings, default_string, object)


@op("DictVectorizer", since=1, domain=ML)
def DictVectorizer(X, *, int64_vocabulary=None, string_vocabulary=None):
    """Y[i, j] = X[i][vocabulary[j]] (0 when absent); one map gives one row — https://onnx.ai/onnx/operators/onnx_aionnxml_DictVectorizer.html"""
    vocabulary = string_vocabulary if string_vocabulary else int64_vocabulary
    rows = [X] if isinstance(X, dict) else list(X)
    values = [[row.get(k, 0) for k in vocabulary] for row in rows]
    first = next((v for row in rows for v in row.values()), 0.0)
    dtype = object if isinstance(first, str) else np.asarray(first).dtype
    if dtype != object and dtype.kind != "f":
        dtype = np.int64 if dtype.kind in "iu" else np.float32
    return np.array(values, dtype=dtype).reshape(len(rows), len(vocabulary))  # [N, V]


@op("CastMap", since=1, domain=ML)
def CastMap(X, *, cast_to="TO_FLOAT", map_form="DENSE", max_map=1):
    """A map int64 -> value as a [1, n] tensor of the map's values in key order — https://onnx.ai/onnx/operators/onnx_aionnxml_CastMap.html"""
    dtype = {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}[cast_to]
    if map_form == "DENSE":
        values = [X[k] for k in sorted(X)]
    else:  # SPARSE: position k holds X[k], missing keys are 0
        values = [X.get(k, 0) for k in range(max_map)]
    if dtype is object:
        return np.array([str(v) for v in values], dtype=object).reshape(1, -1)
    return np.array([float(v) for v in values]).astype(dtype).reshape(1, -1)


@op("ZipMap", since=1, domain=ML)
def ZipMap(X, *, classlabels_int64s=None, classlabels_strings=None):
    """One {label: score} dict per row of X — https://onnx.ai/onnx/operators/onnx_aionnxml_ZipMap.html"""
    labels = classlabels_strings if classlabels_strings else classlabels_int64s
    return [dict(zip(labels, row)) for row in np.asarray(X).reshape(len(X), -1).tolist()]


# ---------------------------------------------------------------------------- linear models


@op("LinearRegressor", since=1, domain=ML)
def LinearRegressor(X, *, coefficients=None, intercepts=None, post_transform="NONE", targets=1):
    """Y = X @ coefficients.T + intercepts — https://onnx.ai/onnx/operators/onnx_aionnxml_LinearRegressor.html"""
    x = _as_2d_float(X)
    coef = np.asarray(coefficients, dtype=x.dtype).reshape(targets, -1)  # [T, F]
    y = x @ coef.T  # [N, F] @ [F, T] -> [N, T]
    if intercepts is not None:
        y = y + np.asarray(intercepts, dtype=x.dtype)
    return _post_transform(y, post_transform).astype(np.float32)


@op("LinearClassifier", since=1, domain=ML)
def LinearClassifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients=None,
                     intercepts=None, multi_class=0, post_transform="NONE"):
    """scores = post(X @ coefficients.T + intercepts), label = classes[argmax] — https://onnx.ai/onnx/operators/onnx_aionnxml_LinearClassifier.html"""
    x = _as_2d_float(X)
    labels = _labels(classlabels_ints, classlabels_strings)
    coef = np.asarray(coefficients, dtype=x.dtype).reshape(-1, x.shape[1])  # [C, F]
    scores = x @ coef.T  # [N, C]
    if intercepts is not None:
        scores = scores + np.asarray(intercepts, dtype=x.dtype)
    if coef.shape[0] == 1 and len(labels) == 2:  # binary with one score: class 1 when positive
        positive = scores[:, 0] > 0
        scores = _post_transform(scores, post_transform)
        scores = np.concatenate([(1 - scores) if post_transform == "LOGISTIC" else -scores, scores], axis=1)
        return labels[positive.astype(np.int64)], scores.astype(np.float32)
    label = labels[np.argmax(scores, axis=1)]  # from the raw scores, as onnxruntime does
    return label, _post_transform(scores, post_transform).astype(np.float32)


# ---------------------------------------------------------------------------- SVMs


def _kernel(X, support_vectors, kernel_type, kernel_params):
    """K[n, s] = k(X[n], SV[s]) for LINEAR, POLY, RBF, SIGMOID."""
    gamma, coef0, degree = (list(kernel_params or []) + [0.0, 0.0, 0.0])[:3]
    if kernel_type == "RBF":
        d2 = (X * X).sum(1)[:, None] + (support_vectors ** 2).sum(1)[None, :] - 2 * X @ support_vectors.T
        return np.exp(-gamma * np.maximum(d2, 0))
    dot = X @ support_vectors.T  # [N, F] @ [F, S] -> [N, S]
    if kernel_type == "LINEAR":
        return dot
    if kernel_type == "POLY":
        return (gamma * dot + coef0) ** int(degree)
    if kernel_type == "SIGMOID":
        return np.tanh(gamma * dot + coef0)
    raise NotImplementedError(f"SVM kernel_type={kernel_type!r}")


@op("SVMRegressor", since=1, domain=ML)
def SVMRegressor(X, *, coefficients=None, kernel_params=None, kernel_type="LINEAR", n_supports=0,
                 one_class=0, post_transform="NONE", rho=None, support_vectors=None):
    """Y = sum_s coef[s] * k(X, SV[s]) + rho — https://onnx.ai/onnx/operators/onnx_aionnxml_SVMRegressor.html"""
    x = _as_2d_float(X).astype(np.float64)
    coef = np.asarray(coefficients, dtype=np.float64)
    if n_supports > 0:
        sv = np.asarray(support_vectors, dtype=np.float64).reshape(n_supports, -1)
        y = _kernel(x, sv, kernel_type, kernel_params) @ coef  # [N, S] @ [S] -> [N]
    else:  # linear model stored as coefficients only
        y = x @ coef
    y = y + rho[0]
    if one_class:
        y = np.where(y > 0, 1.0, -1.0)
    return _post_transform(y.reshape(-1, 1), post_transform).astype(np.float32)


@op("SVMClassifier", since=1, domain=ML)
def SVMClassifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients=None,
                  kernel_params=None, kernel_type="LINEAR", post_transform="NONE", prob_a=None,
                  prob_b=None, rho=None, support_vectors=None, vectors_per_class=None):
    """One-vs-one SVM: pairwise decision values and votes, label = most voted class — https://onnx.ai/onnx/operators/onnx_aionnxml_SVMClassifier.html"""
    x = _as_2d_float(X).astype(np.float64)
    labels = _labels(classlabels_ints, classlabels_strings)
    n_classes = len(labels)
    coef = np.asarray(coefficients, dtype=np.float64)
    if not vectors_per_class:  # linear SVM: one weight row per class
        scores = x @ coef.reshape(-1, x.shape[1]).T + np.asarray(rho)  # [N, C]
        if scores.shape[1] == 1 and n_classes == 2:
            label = labels[(scores[:, 0] > 0).astype(np.int64)]
            scores = np.concatenate([-scores, scores], axis=1)
            return label, _post_transform(scores, post_transform).astype(np.float32)
        return labels[np.argmax(scores, axis=1)], _post_transform(scores, post_transform).astype(np.float32)
    sv = np.asarray(support_vectors, dtype=np.float64).reshape(sum(vectors_per_class), -1)
    K = _kernel(x, sv, kernel_type, kernel_params)  # [N, S]
    coef = coef.reshape(n_classes - 1, -1)  # [C-1, S]
    start = np.concatenate([[0], np.cumsum(vectors_per_class)])
    votes = np.zeros((x.shape[0], n_classes), np.int64)
    decisions = []
    pair = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            d = K[:, si] @ coef[j - 1, si] + K[:, sj] @ coef[i, sj] + rho[pair]  # [N]
            votes[np.arange(len(d)), np.where(d > 0, i, j)] += 1
            decisions.append(d)
            pair += 1
    decisions = np.stack(decisions, axis=1)  # [N, C*(C-1)/2]
    label = labels[np.argmax(votes, axis=1)]  # the vote decides, even when probabilities are asked for
    if prob_a:
        probs = _pairwise_coupling(decisions, prob_a, prob_b, n_classes)
        return label, probs.astype(np.float32)
    if n_classes == 2:  # onnxruntime reports [-d, d] for the single pair
        decisions = np.concatenate([-decisions, decisions], axis=1)
    return label, _post_transform(decisions, post_transform).astype(np.float32)


def _pairwise_coupling(decisions, prob_a, prob_b, n_classes):
    """libsvm's multi-class probabilities from Platt-scaled pairwise ones (Wu, Lin, Weng 2004)."""
    n = decisions.shape[0]
    r = np.zeros((n, n_classes, n_classes))
    pair = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            p = 1 / (1 + np.exp(decisions[:, pair] * prob_a[pair] + prob_b[pair]))
            p = np.clip(p, 1e-7, 1 - 1e-7)
            r[:, i, j], r[:, j, i] = p, 1 - p
            pair += 1
    probs = np.empty((n, n_classes))
    for row in range(n):
        Q = -r[row].T * r[row]  # Q[i, j] = -r_ji r_ij
        np.fill_diagonal(Q, (r[row] ** 2).sum(axis=0))
        p = np.full(n_classes, 1 / n_classes)
        for _ in range(max(100, n_classes)):
            Qp = Q @ p
            pQp = p @ Qp
            if np.abs(Qp - pQp).max() < 0.005 / n_classes:
                break
            for t in range(n_classes):
                diff = (-Qp[t] + pQp) / Q[t, t]
                p[t] += diff
                pQp = (pQp + diff * (diff * Q[t, t] + 2 * Qp[t])) / (1 + diff) / (1 + diff)
                Qp = (Qp + diff * Q[t]) / (1 + diff)
                p /= 1 + diff
        probs[row] = p
    return probs


# ---------------------------------------------------------------------------- tree ensembles
#
# All trees of the ensemble are flattened into one node table; every row walks every tree at
# once: ``node[n, t]`` is where row n stands in tree t, and one step moves all of them one level
# down with fancy indexing. A 100-tree, 1000-row forest takes ~depth steps of [1000, 100] work.


_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
          "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6, "LEAF": 7}


def _walk(X, roots, feature, threshold, mode, true_next, false_next, missing_true, members=None):
    """Leaf reached by each row in each tree: [N, T] indices into the node table."""
    node = np.broadcast_to(np.asarray(roots), (X.shape[0], len(roots))).copy()  # [N, T]
    rows = np.arange(X.shape[0])[:, None]
    while True:
        inner = mode[node] != 7
        if not inner.any():
            return node
        x = X[rows, feature[node]]  # [N, T] feature value each row looks at
        t, m = threshold[node], mode[node]
        go_true = np.select(
            [m == 0, m == 1, m == 2, m == 3, m == 4, m == 5],
            [x <= t, x < t, x >= t, x > t, x == t, x != t], default=False)
        if members is not None and (m == 6).any():  # BRANCH_MEMBER: x is one of the node's values
            is_member = (members[node] == x[..., None]).any(axis=-1)  # [N, T, max members]
            go_true = np.where(m == 6, is_member, go_true)
        go_true |= np.isnan(x) & missing_true[node]
        node = np.where(inner, np.where(go_true, true_next[node], false_next[node]), node)


def _aggregate(leaf_values, aggregate_function, n_trees):
    """[N, T, K] per-tree leaf values (NaN = no value) -> [N, K] by SUM/AVERAGE/MIN/MAX."""
    if aggregate_function in ("SUM", 1):
        return np.nansum(leaf_values, axis=1)
    if aggregate_function in ("AVERAGE", 0):
        return np.nansum(leaf_values, axis=1) / n_trees
    with warnings.catch_warnings():  # an all-NaN column (no tree has that target) warns
        warnings.simplefilter("ignore", RuntimeWarning)
        fn = np.nanmin if aggregate_function in ("MIN", 2) else np.nanmax
        return np.nan_to_num(fn(leaf_values, axis=1), nan=0.0)


class _Forest:
    """The classic (opset 1/3) tree attributes turned into one flat node table."""

    def __init__(self, nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, nodes_values,
                 nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true):
        index = {(t, n): k for k, (t, n) in enumerate(zip(nodes_treeids, nodes_nodeids))}
        self.index = index
        self.trees = sorted(set(nodes_treeids))
        # each tree's root is its node 0 (or else its first listed node)
        self.roots = [index[(t, 0)] if (t, 0) in index else list(nodes_treeids).index(t) for t in self.trees]
        self.feature = np.asarray(nodes_featureids, np.int64)
        self.threshold = np.asarray(nodes_values, np.float64)
        self.mode = np.array([_MODES[m] for m in nodes_modes], np.int64)
        n = len(nodes_nodeids)
        self.true_next = np.array([index.get((t, c), 0) for t, c in zip(nodes_treeids, nodes_truenodeids)])
        self.false_next = np.array([index.get((t, c), 0) for t, c in zip(nodes_treeids, nodes_falsenodeids)])
        missing = nodes_missing_value_tracks_true or [0] * n
        self.missing_true = np.asarray(missing, bool)

    def leaf_values(self, X, treeids, nodeids, ids, weights, n_out):
        """[N, T, n_out] summed weights of the leaf each row reaches in each tree (NaN: none)."""
        table = np.full((len(self.mode), n_out), np.nan)  # per node, per output
        for t, nd, i, w in zip(treeids, nodeids, ids, weights):
            k = self.index[(t, nd)]
            table[k, i] = w if np.isnan(table[k, i]) else table[k, i] + w
        X = X.astype(np.float32).astype(np.float64)  # thresholds are compared in float32
        leaf = _walk(X, self.roots, self.feature, self.threshold.astype(np.float32), self.mode,
                     self.true_next, self.false_next, self.missing_true)
        return table[leaf]  # [N, T] -> [N, T, n_out]


@op("TreeEnsembleRegressor", since=1, domain=ML)
@op("TreeEnsembleRegressor", since=3, domain=ML)
def TreeEnsembleRegressor(X, *, aggregate_function="SUM", base_values=None, base_values_as_tensor=None,
                          n_targets=1, nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                          nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None,
                          nodes_modes=None, nodes_nodeids=None, nodes_treeids=None,
                          nodes_truenodeids=None, nodes_values=None, nodes_values_as_tensor=None,
                          post_transform="NONE", target_ids=None, target_nodeids=None,
                          target_treeids=None, target_weights=None, target_weights_as_tensor=None):
    """Y = aggregate over trees of the reached leaves' weights + base_values — https://onnx.ai/onnx/operators/onnx_aionnxml_TreeEnsembleRegressor.html"""
    values = nodes_values_as_tensor if nodes_values_as_tensor is not None else nodes_values
    weights = target_weights_as_tensor if target_weights_as_tensor is not None else target_weights
    base = base_values_as_tensor if base_values_as_tensor is not None else base_values
    forest = _Forest(nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, values,
                     nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true)
    x = _as_2d_float(X)
    leaves = forest.leaf_values(x, target_treeids, target_nodeids, target_ids, weights, n_targets)
    y = _aggregate(leaves, aggregate_function, len(forest.roots))  # [N, n_targets]
    if base is not None:
        y = y + np.asarray(base, np.float64)
    return _post_transform(y, post_transform).astype(np.float32)


@op("TreeEnsembleClassifier", since=1, domain=ML)
@op("TreeEnsembleClassifier", since=3, domain=ML)
def TreeEnsembleClassifier(X, *, base_values=None, base_values_as_tensor=None, class_ids=None,
                           class_nodeids=None, class_treeids=None, class_weights=None,
                           class_weights_as_tensor=None, classlabels_int64s=None,
                           classlabels_strings=None, nodes_falsenodeids=None, nodes_featureids=None,
                           nodes_hitrates=None, nodes_hitrates_as_tensor=None,
                           nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_nodeids=None,
                           nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                           nodes_values_as_tensor=None, post_transform="NONE"):
    """scores = post(sum over trees of the reached leaves' class weights + base), label = argmax — https://onnx.ai/onnx/operators/onnx_aionnxml_TreeEnsembleClassifier.html"""
    values = nodes_values_as_tensor if nodes_values_as_tensor is not None else nodes_values
    weights = class_weights_as_tensor if class_weights_as_tensor is not None else class_weights
    base = base_values_as_tensor if base_values_as_tensor is not None else base_values
    labels = _labels(classlabels_int64s, classlabels_strings)
    forest = _Forest(nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, values,
                     nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true)
    x = _as_2d_float(X)
    n_classes = len(labels)
    leaves = forest.leaf_values(x, class_treeids, class_nodeids, class_ids, weights, n_classes)
    scores = np.nansum(leaves, axis=1)  # [N, T, C] -> [N, C]
    if base is not None:
        scores = scores + np.asarray(base, np.float64)
    if len(set(class_ids)) == 1 and n_classes == 2:
        # binary, weights for one class only: that is the score of the positive class
        s = scores[:, class_ids[0]] if base is None or len(base) < 2 else scores[:, 1]
        if post_transform in ("NONE", "PROBIT") and not (np.asarray(weights) < 0).any():
            scores = np.stack([1 - s, s], axis=1)
            label = labels[(s > 0.5).astype(np.int64)]
        else:
            scores = np.stack([-s, s], axis=1)
            label = labels[(s > 0).astype(np.int64)]
        return label, _post_transform(scores, post_transform).astype(np.float32)
    label = labels[np.argmax(scores, axis=1)]  # from the raw scores, as onnxruntime does
    return label, _post_transform(scores, post_transform).astype(np.float32)


@op("TreeEnsemble", since=5, domain=ML)
def TreeEnsemble(X, *, aggregate_function=1, leaf_targetids=None, leaf_weights=None,
                 membership_values=None, n_targets=None, nodes_falseleafs=None,
                 nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                 nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_splits=None,
                 nodes_trueleafs=None, nodes_truenodeids=None, post_transform=0, tree_roots=None):
    """Y = aggregate over trees of the reached leaf weights per target (opset-5 form) — https://onnx.ai/onnx/operators/onnx_aionnxml_TreeEnsemble.html"""
    # One table: inner nodes first, then leaves (leaf k is entry n_nodes + k).
    n_nodes, n_leaves = len(nodes_featureids), len(leaf_targetids)
    leaf_base = n_nodes
    modes = np.asarray(nodes_modes, np.int64)
    mode = np.concatenate([modes, np.full(n_leaves, 7)])
    feature = np.concatenate([np.asarray(nodes_featureids, np.int64), np.zeros(n_leaves, np.int64)])
    split = np.concatenate([np.asarray(nodes_splits, np.float64), np.zeros(n_leaves)])
    true_next = np.asarray(nodes_truenodeids) + leaf_base * np.asarray(nodes_trueleafs)
    false_next = np.asarray(nodes_falsenodeids) + leaf_base * np.asarray(nodes_falseleafs)
    true_next = np.concatenate([true_next, np.zeros(n_leaves, np.int64)])
    false_next = np.concatenate([false_next, np.zeros(n_leaves, np.int64)])
    missing = np.zeros(n_nodes, bool) if nodes_missing_value_tracks_true is None \
        else np.asarray(nodes_missing_value_tracks_true, bool)
    missing = np.concatenate([missing, np.zeros(n_leaves, bool)])
    members = None
    if membership_values is not None:  # NaN-separated member lists, one per MEMBER node
        groups, current = [], []
        for v in np.asarray(membership_values, np.float64).tolist():
            if math.isnan(v):
                groups.append(current)
                current = []
            else:
                current.append(v)
        width = max(len(g) for g in groups)
        members = np.full((n_nodes + n_leaves, width), np.nan)  # NaN-padded member values per node
        for node, g in zip(np.flatnonzero(modes == 6), groups):
            members[node, :len(g)] = g
    # A root that is a leaf: both branches point at the same leaf
    roots = [leaf_base + nodes_truenodeids[r] if nodes_trueleafs[r] and nodes_falseleafs[r]
             and nodes_truenodeids[r] == nodes_falsenodeids[r] else r for r in tree_roots]
    x = _as_2d_float(X)
    leaf = _walk(x.astype(np.float64), roots, feature, split, mode, true_next, false_next, missing, members)
    values = np.full((n_nodes + n_leaves, n_targets), np.nan)
    values[leaf_base + np.arange(n_leaves), np.asarray(leaf_targetids)] = np.asarray(leaf_weights, np.float64)
    y = _aggregate(values[leaf], aggregate_function, len(roots))  # [N, T, K] -> [N, K]
    return _post_transform(y, post_transform).astype(x.dtype)
