"""Miscellaneous ops: Dropout, random generators, signal processing, NonMaxSuppression, strings.

Random ops draw from ``numpy.random.default_rng(seed)``: seeded runs repeat, but the numbers
are not those of onnxruntime (no two runtimes share a generator).
"""

from __future__ import annotations

import re

import numpy as np

from minirt.dtypes import np_dtype
from minirt.ops._common import normalize_axis
from minirt.registry import op


# ---------------------------------------------------------------------------- Dropout


def _dropout(data, ratio, training, seed):
    """(output, mask): identity at inference; in training, zero with probability ratio and rescale."""
    if not training or ratio == 0:
        return data, np.ones(data.shape, dtype=bool)
    mask = np.random.default_rng(seed).uniform(size=data.shape) >= ratio
    return (data * mask / data.dtype.type(1 - ratio)).astype(data.dtype), mask


@op("Dropout", since=12)
@op("Dropout", since=13)
def Dropout(data, ratio=None, training_mode=None, *, seed=None):
    """output = data at inference; training: data * mask / (1 - ratio) — https://onnx.ai/onnx/operators/onnx__Dropout.html"""
    ratio = 0.5 if ratio is None else float(np.asarray(ratio))
    training = False if training_mode is None else bool(np.asarray(training_mode))
    return _dropout(data, ratio, training, seed)


@op("Dropout", since=7)
@op("Dropout", since=10)
def Dropout_7(data, *, ratio=0.5):
    """Inference-only Dropout: identity, mask all True — https://onnx.ai/onnx/operators/onnx__Dropout.html"""
    return _dropout(data, ratio, False, None)


@op("Dropout", since=1)
@op("Dropout", since=6)
def Dropout_1(data, *, consumed_inputs=None, is_test=0, ratio=0.5):
    """Dropout with is_test: identity when is_test, else random drop — https://onnx.ai/onnx/operators/onnx__Dropout.html"""
    return _dropout(data, ratio, not is_test, None)


# ---------------------------------------------------------------------------- random


def _rng(seed):
    return np.random.default_rng(None if seed is None else int(np.float32(seed).view(np.uint32)))


@op("RandomNormal", since=1)
def RandomNormal(*, dtype=1, mean=0.0, scale=1.0, seed=None, shape):
    """y ~ N(mean, scale^2) of the given shape — https://onnx.ai/onnx/operators/onnx__RandomNormal.html"""
    return _rng(seed).normal(mean, scale, size=shape).astype(np_dtype(dtype))


@op("RandomUniform", since=1)
def RandomUniform(*, dtype=1, high=1.0, low=0.0, seed=None, shape):
    """y ~ U[low, high) of the given shape — https://onnx.ai/onnx/operators/onnx__RandomUniform.html"""
    return _rng(seed).uniform(low, high, size=shape).astype(np_dtype(dtype))


@op("RandomNormalLike", since=1)
def RandomNormalLike(input, *, dtype=None, mean=0.0, scale=1.0, seed=None):
    """y ~ N(mean, scale^2) with input's shape (and dtype unless given) — https://onnx.ai/onnx/operators/onnx__RandomNormalLike.html"""
    out = input.dtype if dtype is None else np_dtype(dtype)
    return _rng(seed).normal(mean, scale, size=input.shape).astype(out)


@op("RandomUniformLike", since=1)
def RandomUniformLike(input, *, dtype=None, high=1.0, low=0.0, seed=None):
    """y ~ U[low, high) with input's shape (and dtype unless given) — https://onnx.ai/onnx/operators/onnx__RandomUniformLike.html"""
    out = input.dtype if dtype is None else np_dtype(dtype)
    return _rng(seed).uniform(low, high, size=input.shape).astype(out)


@op("Bernoulli", since=15)
def Bernoulli(input, *, dtype=None, seed=None):
    """y = 1 with probability input, else 0 — https://onnx.ai/onnx/operators/onnx__Bernoulli.html"""
    out = input.dtype if dtype is None else np_dtype(dtype)
    return (_rng(seed).uniform(size=input.shape) < input).astype(out)


@op("Multinomial", since=7)
def Multinomial(input, *, dtype=6, sample_size=1, seed=None):
    """samples[b, s] ~ Categorical(softmax(input[b])) (input holds unnormalised log-probabilities) — https://onnx.ai/onnx/operators/onnx__Multinomial.html"""
    p = np.exp(input - input.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)  # [B, C]
    u = _rng(seed).uniform(size=(input.shape[0], sample_size))  # [B, S]
    idx = (u[:, :, None] > cdf[:, None, :]).sum(axis=2)  # [B, S, C] -> [B, S]
    return np.minimum(idx, input.shape[1] - 1).astype(np_dtype(dtype))


# ---------------------------------------------------------------------------- signal


def _window(size, periodic, terms, output_datatype):
    """Generalised cosine window: sum_k (-1)^k a_k cos(2 pi k n / D)."""
    n = int(np.asarray(size))
    denominator = n if periodic else n - 1
    k = np.arange(n) * (2 * np.pi / max(denominator, 1))
    w = sum(((-1) ** i) * a * np.cos(i * k) for i, a in enumerate(terms))
    return np.asarray(w).astype(np_dtype(output_datatype))


@op("HannWindow", since=17)
def HannWindow(size, *, output_datatype=1, periodic=1):
    """w[n] = 0.5 - 0.5 cos(2 pi n / N) — https://onnx.ai/onnx/operators/onnx__HannWindow.html"""
    return _window(size, periodic, [0.5, 0.5], output_datatype)


@op("HammingWindow", since=17)
def HammingWindow(size, *, output_datatype=1, periodic=1):
    """w[n] = 25/46 - 21/46 cos(2 pi n / N) — https://onnx.ai/onnx/operators/onnx__HammingWindow.html"""
    return _window(size, periodic, [25 / 46, 21 / 46], output_datatype)


@op("BlackmanWindow", since=17)
def BlackmanWindow(size, *, output_datatype=1, periodic=1):
    """w[n] = 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N) — https://onnx.ai/onnx/operators/onnx__BlackmanWindow.html"""
    return _window(size, periodic, [0.42, 0.5, 0.08], output_datatype)


def _to_complex(x):
    """[..., 1] real or [..., 2] (real, imag) -> complex [...]."""
    return x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0].astype(np.complex128)


def _from_complex(z, dtype):
    """complex [...] -> [..., 2] (real, imag)."""
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


@op("DFT", since=20)
def DFT(input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    """X[k] = sum_n x[n] exp(-+2 pi i k n / N) along axis; signals as [..., 1 | 2] — https://onnx.ai/onnx/operators/onnx__DFT.html"""
    axis = -2 if axis is None else int(np.asarray(axis))
    return _dft(input, dft_length, axis, inverse, onesided)


@op("DFT", since=17)
def DFT_17(input, dft_length=None, *, axis=1, inverse=0, onesided=0):
    """DFT with axis as an attribute — https://onnx.ai/onnx/operators/onnx__DFT.html"""
    return _dft(input, dft_length, axis, inverse, onesided)


def _dft(x, dft_length, axis, inverse, onesided):
    axis = normalize_axis(axis, x.ndim)  # an axis of the signal, never the last (re, im) one
    z = _to_complex(x)
    if dft_length is not None:
        n = int(np.asarray(dft_length))
    else:
        n = 2 * (z.shape[axis] - 1) if inverse and onesided else z.shape[axis]
    if inverse and onesided:  # one-sided spectrum -> real signal
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(x.dtype)
    y = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        y = np.take(y, np.arange(n // 2 + 1), axis=axis)  # the other half mirrors it
    return _from_complex(y, x.dtype)


@op("STFT", since=17)
def STFT(signal, frame_step, window=None, frame_length=None, *, onesided=1):
    """Y[b, f, k] = DFT(window * signal[b, f*step : f*step + length])[k] — https://onnx.ai/onnx/operators/onnx__STFT.html"""
    step = int(np.asarray(frame_step))
    length = int(np.asarray(frame_length)) if frame_length is not None else len(window)
    z = _to_complex(signal)  # [B, L]
    n_frames = 1 + (z.shape[1] - length) // step
    starts = np.arange(n_frames) * step
    frames = z[:, starts[:, None] + np.arange(length)]  # [B, L] -> [B, F, length]
    if window is not None:
        frames = frames * window
    spectrum = np.fft.fft(frames, axis=-1)  # [B, F, length]
    if onesided:
        spectrum = spectrum[..., : length // 2 + 1]
    return _from_complex(spectrum, signal.dtype)  # [B, F, bins, 2]


@op("MelWeightMatrix", since=17)
def MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                    output_datatype=1):
    """Triangular filters [dft_length // 2 + 1, num_mel_bins] spaced evenly on the mel scale — https://onnx.ai/onnx/operators/onnx__MelWeightMatrix.html"""
    n_mel, n_fft, rate = int(num_mel_bins), int(dft_length), int(sample_rate)

    def mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    low, high = mel(float(lower_edge_hertz)), mel(float(upper_edge_hertz))
    edges_mel = low + np.arange(n_mel + 2) * (high - low) / (n_mel + 2)  # the spec's step: / (bins + 2)
    edges_hz = 700 * (10 ** (edges_mel / 2595) - 1)
    edges = ((n_fft + 1) * edges_hz // rate).astype(np.int64)  # filter edges as DFT bins
    out = np.zeros((n_fft // 2 + 1, n_mel))
    for i in range(n_mel):
        lo, center, hi = edges[i], edges[i + 1], edges[i + 2]
        if center == lo:
            out[center, i] = 1
        else:
            out[lo:center + 1, i] = (np.arange(lo, center + 1) - lo) / (center - lo)  # rising edge
        if hi > center:
            out[center:hi, i] = (hi - np.arange(center, hi)) / (hi - center)  # falling edge
    return out.astype(np_dtype(output_datatype))


# ---------------------------------------------------------------------------- detection


def _corners(boxes, center_point_box):
    """[.., 4] boxes -> (y1, x1, y2, x2) with y1 <= y2, x1 <= x2."""
    if center_point_box:  # [x_center, y_center, width, height]
        xc, yc, w, h = np.moveaxis(boxes, -1, 0)
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    y1, x1, y2, x2 = np.moveaxis(boxes, -1, 0)  # corners may come in either order
    return np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)


def _iou(box, others):
    """Intersection over union of one corner box with many: [4], [K, 4] -> [K]."""
    y1, x1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    y2, x2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


@op("NonMaxSuppression", since=10)
@op("NonMaxSuppression", since=11)
def NonMaxSuppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                      score_threshold=None, *, center_point_box=0):
    """Greedy per-class selection by score, dropping boxes with IoU > threshold; rows (batch, class, box) — https://onnx.ai/onnx/operators/onnx__NonMaxSuppression.html"""
    max_out = 0 if max_output_boxes_per_class is None else int(np.asarray(max_output_boxes_per_class).reshape(-1)[0])
    iou_t = 0.0 if iou_threshold is None else float(np.asarray(iou_threshold).reshape(-1)[0])
    corners = np.stack(_corners(boxes.astype(np.float64), center_point_box), axis=-1)  # [B, N, 4]
    selected = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            order = np.argsort(-s, kind="stable")  # best first, ties by index
            if score_threshold is not None:
                order = order[s[order] > float(np.asarray(score_threshold).reshape(-1)[0])]
            kept = []
            for i in order:
                if len(kept) >= max_out:
                    break
                if not kept or (_iou(corners[b, i], corners[b, kept]) <= iou_t).all():
                    kept.append(i)
            selected += [(b, c, i) for i in kept]
    return np.array(selected, dtype=np.int64).reshape(-1, 3)  # [num_selected, 3]


# ---------------------------------------------------------------------------- strings


def _strings(values, shape):
    return np.array(values, dtype=object).reshape(shape)


@op("StringConcat", since=20)
def StringConcat(X, Y):
    """Z = X + Y element-wise, with broadcasting — https://onnx.ai/onnx/operators/onnx__StringConcat.html"""
    x, y = np.broadcast_arrays(X, Y)
    return _strings([a + b for a, b in zip(x.reshape(-1), y.reshape(-1))], x.shape)


@op("RegexFullMatch", since=20)
def RegexFullMatch(X, *, pattern=None):
    """Y = whether the whole string matches pattern — https://onnx.ai/onnx/operators/onnx__RegexFullMatch.html"""
    regex = re.compile(pattern)
    return np.array([regex.fullmatch(s) is not None for s in X.reshape(-1)], dtype=bool).reshape(X.shape)


@op("StringSplit", since=20)
def StringSplit(X, *, delimiter=None, maxsplit=None):
    """Y[..., j] = j-th piece of X split on delimiter (whitespace runs if empty), padded with ""; Z = piece counts — https://onnx.ai/onnx/operators/onnx__StringSplit.html"""
    sep = delimiter or None  # None: split on runs of whitespace, as str.split()
    limit = -1 if maxsplit is None else maxsplit
    pieces = [s.split(sep, limit) for s in X.reshape(-1)]
    width = max((len(p) for p in pieces), default=0)
    Y = _strings([p + [""] * (width - len(p)) for p in pieces], (*X.shape, width))  # [..., max pieces]
    Z = np.array([len(p) for p in pieces], dtype=np.int64).reshape(X.shape)
    return Y, Z


@op("StringNormalizer", since=10)
def StringNormalizer(X, *, case_change_action="NONE", is_case_sensitive=0, locale="", stopwords=None):
    """Y = X without stopwords, then lower/upper-cased; X is [C] or [1, C] — https://onnx.ai/onnx/operators/onnx__StringNormalizer.html"""
    def key(s):
        return s if is_case_sensitive else s.lower()

    stops = {key(w) for w in stopwords or []}
    change = {"LOWER": str.lower, "UPPER": str.upper, "NONE": lambda s: s}[case_change_action]
    words = [change(s) for s in X.reshape(-1) if key(s) not in stops]
    if not words:
        words = [""]  # an empty result keeps one empty string
    return _strings(words, (1, len(words)) if X.ndim == 2 else (len(words),))


@op("TfIdfVectorizer", since=9)
def TfIdfVectorizer(X, *, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts,
                    ngram_indexes, pool_int64s=None, pool_strings=None, weights=None):
    """Y[.., idx] = weighted count of each pooled n-gram (with skips) in the row — https://onnx.ai/onnx/operators/onnx__TfIdfVectorizer.html"""
    pool = pool_strings if pool_strings else pool_int64s
    # n-gram tuple -> output column; ngram_counts[n-1] is where the n-grams start in the pool
    bounds = list(ngram_counts) + [len(pool)]
    column, k = {}, 0
    for n in range(1, len(ngram_counts) + 1):
        for start in range(bounds[n - 1], bounds[n], n):
            column[tuple(pool[start:start + n])] = ngram_indexes[k]
            k += 1
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    rows = rows.tolist()
    counts = np.zeros((len(rows), max(ngram_indexes) + 1), dtype=np.float32)
    for r, row in enumerate(rows):
        for n in range(min_gram_length, max_gram_length + 1):
            for skip in range(max_skip_count + 1 if n > 1 else 1):
                step = skip + 1
                for start in range(len(row) - (n - 1) * step):
                    gram = tuple(row[start:start + (n - 1) * step + 1:step])
                    if gram in column:
                        counts[r, column[gram]] += 1
    if mode == "IDF":
        counts = np.minimum(counts, 1)
    if mode in ("IDF", "TFIDF") and weights is not None:
        counts = counts * np.asarray(weights, np.float32)[: counts.shape[1]]
    return counts.reshape(-1) if X.ndim == 1 else counts  # [B, V] or [V]
