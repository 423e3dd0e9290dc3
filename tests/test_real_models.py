"""Real exported models, run by minirt and by onnxruntime on the same seeded inputs.

The .onnx files are committed under models/ (made by models/make_test_models.py) and
minirt/data/ (the demo model, made by models/train_digits_cnn.py). torch, transformers and
skl2onnx are NOT needed here: the tests only load the files. onnxruntime is the oracle.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import minirt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DATA = pathlib.Path(minirt.__file__).resolve().parent / "data"


# --------------------------------------------------------------------------- inputs
# One deterministic input generator per model: seeded by (model, batch), right dtype/shape.

def _rng(name: str, batch: int) -> np.random.Generator:
    return np.random.default_rng([sum(map(ord, name)), batch])


def image_inputs(name, batch):
    return {"input": _rng(name, batch).standard_normal((batch, 3, 32, 32), dtype=np.float32)}


def lstm_gru_inputs(name, batch):
    seq = {1: 4, 3: 11}[batch]  # vary the sequence length too: the seq dim is dynamic
    return {"input": _rng(name, batch).standard_normal((batch, seq, 6), dtype=np.float32)}


def gpt2_inputs(name, batch):
    seq = {1: 7, 3: 16}[batch]
    return {"input_ids": _rng(name, batch).integers(0, 100, (batch, seq), dtype=np.int64)}


def bert_inputs(name, batch):
    rng = _rng(name, batch)
    seq = {1: 6, 3: 12}[batch]
    mask = np.ones((batch, seq), dtype=np.int64)
    if batch > 1:
        mask[1, 8:] = 0  # a padded sequence: the mask must reach the attention scores
        mask[2, 3:] = 0
    token_type = np.zeros((batch, seq), dtype=np.int64)
    token_type[:, seq // 2:] = 1  # sentence A / sentence B
    return {"input_ids": rng.integers(0, 100, (batch, seq), dtype=np.int64),
            "attention_mask": mask, "token_type_ids": token_type}


def digits_flat_inputs(name, batch):
    # like load_digits rows: 64 integer pixels 0..16, scaled to 0..1 as in training
    pix = _rng(name, batch).integers(0, 17, (batch, 64))
    return {"input": (pix / 16.0).astype(np.float32)}


# name -> (input generator, rtol, atol, outputs compared exactly)
CASES = {
    # float32 convs + BN: sums of ~1e3 products, float32 rounding ~1e-6 relative
    "resnet_mini": (image_inputs, 1e-4, 1e-5, ()),
    # float32 depthwise/pointwise convs, HardSwish/HardSigmoid/Clip: same float32 budget
    "mobilenet_mini": (image_inputs, 1e-4, 1e-5, ()),
    # float32 recurrences over <= 11 steps: error grows a little per step, still ~1e-6
    "lstm_gru": (lstm_gru_inputs, 1e-4, 1e-5, ()),
    # float32 attention/softmax/GELU(tanh) in 2 layers: logits O(1), float32 rounding
    "gpt2_tiny": (gpt2_inputs, 1e-4, 1e-5, ()),
    # float32 attention with padding mask (large negative bias) + erf GELU: float32 budget
    "bert_tiny": (bert_inputs, 1e-4, 1e-5, ()),
    # float32 MLP; probabilities in 0..1; the ArgMax label must match exactly
    "sklearn_mlp": (digits_flat_inputs, 1e-4, 1e-6, ("label",)),
    # tree votes are exact sums of leaf values / 10 trees; label must match exactly
    "sklearn_forest": (digits_flat_inputs, 1e-5, 1e-6, ("label",)),
    # scaler + linear + softmax, float32; label must match exactly
    "sklearn_pipeline": (digits_flat_inputs, 1e-4, 1e-6, ("label",)),
}

BATCHES = (1, 3)  # every model here has a dynamic batch dim


def _ort_run(path: pathlib.Path, feeds: dict) -> dict:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def _compare(name: str, got: dict, want: dict, rtol: float, atol: float, exact) -> None:
    assert set(got) == set(want), f"{name}: outputs {sorted(got)} != onnxruntime's {sorted(want)}"
    for out, w in want.items():
        g = np.asarray(got[out])
        assert g.shape == w.shape, f"{name}:{out} shape {g.shape} != onnxruntime's {w.shape}"
        assert g.dtype == w.dtype, f"{name}:{out} dtype {g.dtype} != onnxruntime's {w.dtype}"
        if out in exact or not np.issubdtype(w.dtype, np.floating):
            np.testing.assert_array_equal(g, w, err_msg=f"{name}:{out}")
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{name}:{out}")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(CASES))
def test_model_matches_onnxruntime(name, batch):
    make_inputs, rtol, atol, exact = CASES[name]
    path = MODELS / f"{name}.onnx"
    feeds = make_inputs(name, batch)
    want = _ort_run(path, feeds)
    got = minirt.run(str(path), feeds)
    _compare(name, got, want, rtol, atol, exact)


@pytest.mark.parametrize("name", ["resnet_mini", "gpt2_tiny"])
def test_inference_session_runs_twice(name):
    """The ORT-compatible session: build once, run many times, outputs as a list."""
    make_inputs, rtol, atol, exact = CASES[name]
    path = MODELS / f"{name}.onnx"
    sess = minirt.InferenceSession(str(path))
    for batch in BATCHES:
        feeds = make_inputs(name, batch)
        want = _ort_run(path, feeds)
        got = sess.run(None, feeds)
        assert isinstance(got, list) and len(got) == len(want)
        _compare(name, dict(zip(want, got)), want, rtol, atol, exact)


def test_model_files_are_small():
    for name in CASES:
        assert (MODELS / f"{name}.onnx").stat().st_size < 2_000_000, name


# --------------------------------------------------------------------------- demo model

def _demo():
    meta = json.loads((DATA / "digits_cnn.json").read_text())
    sample = np.load(DATA / "digits_sample.npz")
    return DATA / "digits_cnn.onnx", meta, sample["images"], sample["labels"]


def test_demo_metadata_matches_model():
    path, meta, images, labels = _demo()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [meta["input"]["name"]] == ["image"]
    assert [o.name for o in sess.get_outputs()] == [meta["output"]["name"]] == ["logits"]
    assert images.dtype == np.float32 and images.shape[1:] == (1, 8, 8)
    assert 0.0 <= images.min() and images.max() <= 1.0  # scaled to 0..1 as in training
    assert len(meta["class_names"]) == 10
    assert meta["test_accuracy"] >= 0.95


def test_demo_model_predictions():
    path, meta, images, labels = _demo()
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": images})
    got = minirt.run(str(path), {"image": images})["logits"]
    # float32 convs on 8x8 images: tiny sums, float32 rounding only
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    accuracy = float((got.argmax(1) == labels).mean())
    assert accuracy >= 0.9, f"minirt accuracy on the bundled sample: {accuracy:.2f}"


def test_demo_model_batch_of_one():
    path, meta, images, labels = _demo()
    for i in range(3):
        got = minirt.run(str(path), {"image": images[i:i + 1]})["logits"]
        assert got.shape == (1, 10)
        assert int(got.argmax()) == int(labels[i])
