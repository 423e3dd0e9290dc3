"""minirt's pruner: exact per-layer / global sparsity, structured pruning that really shrinks the
model and keeps it runnable and consistent between minirt and onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import minirt
from minirt.tools.prune import prune

ort = pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).parent))
from test_ort_quantized import digits_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "minirt" / "data" / "digits_cnn.onnx"
MODELS = ROOT / "models"


def weights(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def both(model, feeds):
    got = minirt.InferenceSession(model).run(None, feeds)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return got, want


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_layer_sparsity_is_exact(sparsity):
    pruned, report = prune(DIGITS, sparsity)
    w = weights(pruned)
    assert len(report.layers) == 3
    for layer in report.layers:
        a = w[layer.weight]
        assert a.shape == layer.shape_before  # unstructured: same shapes
        assert np.count_nonzero(a == 0) == round(sparsity * a.size)  # trained weights: no prior zeros
        assert layer.nonzero_after == a.size - round(sparsity * a.size)
    assert "sparsity" in report.table()


def test_global_sparsity_is_exact_overall_and_uneven_per_layer():
    pruned, report = prune(DIGITS, 0.5, scope="global")
    w = weights(pruned)
    total = sum(w[s.weight].size for s in report.layers)
    zeros = sum(np.count_nonzero(w[s.weight] == 0) for s in report.layers)
    assert zeros == round(0.5 * total)
    assert len({round(s.sparsity, 3) for s in report.layers}) > 1  # one threshold, unequal layers
    # the kept weights are exactly the largest ones
    orig = weights(onnx.load(str(DIGITS)))
    kept = np.concatenate([np.abs(orig[s.weight])[w[s.weight] != 0] for s in report.layers])
    gone = np.concatenate([np.abs(orig[s.weight])[w[s.weight] == 0] for s in report.layers])
    assert gone.max() <= kept.min()


def test_unstructured_runs_the_same_in_minirt_and_ort():
    x = digits_split()[1][:64]
    pruned, _ = prune(DIGITS, 0.5)
    [got], [want] = both(pruned, {"image": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_structured_digits_shrinks_and_agrees(tmp_path, sparsity):
    _, x, y = digits_split()
    out = tmp_path / "p.onnx"
    pruned, report = prune(DIGITS, sparsity, structured=True, output_path=out)
    assert out.exists()
    w = weights(pruned)
    assert report.params_after < report.params_before
    assert sum(a.size for a in w.values()) == report.params_after
    conv0, conv1, fc = report.layers
    keep0 = 8 - round(sparsity * 8)
    keep1 = 16 - round(sparsity * 16)
    assert conv0.shape_after == (keep0, 1, 3, 3)
    assert conv1.shape_after == (keep1, keep0, 3, 3)
    assert fc.shape_after == (10, keep1 * 16)  # Flatten: 16 columns (4x4) per channel
    [got], [want] = both(pruned, {"image": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if sparsity == 0.25:
        assert (got.argmax(1) == y).mean() > 0.7  # no fine-tuning: still far above chance


def test_structured_keeps_the_largest_channels():
    orig = weights(onnx.load(str(DIGITS)))
    pruned, report = prune(DIGITS, 0.5, structured=True)
    name = report.layers[0].weight
    norms = np.abs(orig[name]).reshape(8, -1).sum(1)
    kept = np.abs(weights(pruned)[name]).reshape(4, -1).sum(1)
    np.testing.assert_allclose(np.sort(kept), np.sort(norms)[4:])


def test_structured_mlp():
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16).astype(np.float32)
    pruned, report = prune(MODELS / "sklearn_mlp.onnx", 0.5, structured=True)
    assert report.layers[0].shape_after == (64, 16)  # MatMul W [K, N]: 32 -> 16 hidden units
    assert report.layers[1].shape_after == (16, 10)
    got, want = both(pruned, {"input": x})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)


def test_structured_refuses_residual_adds():
    with pytest.raises(ValueError, match="Add"):
        prune(MODELS / "resnet_mini.onnx", 0.5, structured=True)
    pruned, report = prune(MODELS / "mobilenet_mini.onnx", 0.5, structured=True, strict=False)
    assert any("skipped" in s.note for s in report.layers)
    x = {"input": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    [got], [want] = both(pruned, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        prune(DIGITS, 1.0)
    with pytest.raises(ValueError):
        prune(DIGITS, 0.5, scope="model")


def test_cli(tmp_path):
    out = tmp_path / "p.onnx"
    r = subprocess.run([sys.executable, "-m", "minirt.cli", "prune", str(DIGITS), "--sparsity", "0.5",
                        "--structured", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "sparsity" in r.stdout and out.exists()


# ----------------------------------------------------------------------------- a transformer: chargpt

CHARGPT = ROOT / "minirt" / "data" / "chargpt.onnx"


def chargpt_feeds(model, ids):
    """input_ids and empty past_* [batch, heads, 0, head_dim], the head count read from the model."""
    feeds = {"input_ids": ids}
    for v in model.graph.input:
        if v.name.startswith("past"):
            d = v.type.tensor_type.shape.dim
            feeds[v.name] = np.zeros((len(ids), d[1].dim_value, 0, d[3].dim_value), np.float32)
    return feeds


@pytest.fixture(scope="module")
def chargpt_ids():
    return np.random.default_rng(0).integers(0, 96, (4, 32)).astype(np.int64)


def test_structured_chargpt_ffn(chargpt_ids):
    """FFN hidden units go through the erf-GELU diamond: W1 columns, b1, W2 rows."""
    with pytest.raises(ValueError, match="residual"):  # attention/FFN outputs write the residual stream
        prune(CHARGPT, 0.5, structured=True, heads=False)
    pruned, report = prune(CHARGPT, 0.5, structured=True, strict=False, heads=False)
    shapes = {s.node: s.shape_after for s in report.layers}
    assert shapes["/blocks.0/fc/MatMul"] == (64, 128) and shapes["/blocks.0/out/MatMul"] == (128, 64)
    assert shapes["/blocks.1/qkv/MatMul"] == (64, 192)  # heads kept
    w = weights(pruned)
    assert w["blocks.0.fc.bias"].shape == (128,)
    assert report.params_after == report.params_before - 2 * (64 * 128 + 128 + 128 * 64)
    got, want = both(pruned, chargpt_feeds(pruned, chargpt_ids))
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)  # float32, same graph: ~1e-5
    assert len(pruned.SerializeToString()) < 0.8 * CHARGPT.stat().st_size


def test_structured_chargpt_heads(chargpt_ids):
    """Whole heads: Q/K/V column groups, output-projection rows, the Split sizes, the Reshape
    constants and the past/present shapes; the KV cache still gives the same logits."""
    pruned, report = prune(CHARGPT, 0.5, structured=True, strict=False)
    notes = {s.node: s.note for s in report.layers}
    assert "heads 4 -> 2" in notes["/blocks.0/qkv/MatMul"]
    shapes = {s.node: s.shape_after for s in report.layers}
    assert shapes["/blocks.0/qkv/MatMul"] == (64, 96) and shapes["/blocks.0/proj/MatMul"] == (32, 64)
    feeds = chargpt_feeds(pruned, chargpt_ids)
    assert feeds["past_key_0"].shape == (4, 2, 0, 16)
    got, want = both(pruned, feeds)
    assert got[1].shape == (4, 2, 32, 16)  # present_key_0: two heads left
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    # prefill 24 tokens, then 8 with the cache: the same logits as the whole window at once
    sess = minirt.InferenceSession(pruned)
    names = [o.name for o in pruned.graph.output]
    _, *present = sess.run(None, chargpt_feeds(pruned, chargpt_ids[:, :24]))
    past = {n.replace("present", "past"): p for n, p in zip(names[1:], present)}
    step = sess.run(None, {"input_ids": chargpt_ids[:, 24:], **past})[0]
    np.testing.assert_allclose(step, got[0][:, 24:], rtol=1e-4, atol=1e-4)
    assert report.params_after < 0.6 * report.params_before
