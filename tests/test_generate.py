"""minirt.tools.generate (KV-cache generation) on the bundled chargpt model, and the bundled
trained models' accuracy (fraud MLP, digits CNN) in minirt against what their json records."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import minirt
from minirt.cli import main as cli_main
from minirt.errors import InputError
from minirt.tools.generate import chargpt_path, generate, load_vocab, sample_next

ort = pytest.importorskip("onnxruntime")

DATA = Path(str(resources.files("minirt") / "data"))
CHARGPT = chargpt_path()
META = json.loads(CHARGPT.with_suffix(".json").read_text())
N_LAYER, N_HEAD = META["architecture"]["n_layer"], META["architecture"]["n_head"]
HEAD_DIM, N_CTX = META["architecture"]["head_dim"], META["architecture"]["n_ctx"]
VOCAB = META["vocab_size"]

# float32 through 2 layers (matmuls with K <= 256, softmax, LayerNorm): minirt and onnxruntime
# sum in different orders, so they differ by a few float32 ulps of values of size ~10 (measured:
# < 1e-5 on the logits). 1e-4 leaves a wide margin and still catches any real mistake, which
# moves logits by 1e-2 or more.
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def sess():
    return minirt.InferenceSession(CHARGPT, threads=1)  # 1 thread: small matmuls, stable timings


@pytest.fixture(scope="module")
def ort_sess():
    return ort.InferenceSession(str(CHARGPT), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def vocab():
    return load_vocab()


def _feed(ids: np.ndarray, past_len: int, rng: np.random.Generator) -> dict:
    feed = {"input_ids": ids}
    for i in range(N_LAYER):
        for kv in ("key", "value"):
            feed[f"past_{kv}_{i}"] = rng.standard_normal((len(ids), N_HEAD, past_len, HEAD_DIM)).astype(np.float32)
    return feed


@pytest.mark.parametrize("batch,past_len,seq", [(1, 0, 1), (2, 0, 13), (1, 9, 1), (3, 20, 4)])
def test_chargpt_matches_onnxruntime(sess, ort_sess, batch, past_len, seq):
    rng = np.random.default_rng(past_len * 7 + seq)
    feed = _feed(rng.integers(0, VOCAB, (batch, seq)), past_len, rng)
    got, want = sess.run(None, feed), ort_sess.run(None, feed)
    assert [o.name for o in sess.get_outputs()] == [o.name for o in ort_sess.get_outputs()]
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, **TOL)
    assert got[1].shape == (batch, N_HEAD, past_len + seq, HEAD_DIM)  # present = past + new


def test_cached_logits_equal_uncached(sess):
    """Prompt then one token at a time with the cache == the whole sequence at once."""
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 12))
    empty = {f"past_{kv}_{i}": np.zeros((2, N_HEAD, 0, HEAD_DIM), np.float32)
             for i in range(N_LAYER) for kv in ("key", "value")}
    full = sess.run(None, {"input_ids": ids, **empty})
    out = sess.run(None, {"input_ids": ids[:, :8], **empty})
    logits = [out[0]]
    for t in range(8, 12):
        past = {f"past_{kv}_{i}": out[1 + 2 * i + (kv == "value")]  # present_* -> past_*
                for i in range(N_LAYER) for kv in ("key", "value")}
        out = sess.run(None, {"input_ids": ids[:, t:t + 1], **past})
        logits.append(out[0])
    np.testing.assert_allclose(np.concatenate(logits, axis=1), full[0], **TOL)


def test_greedy_cached_equals_uncached(sess, vocab):
    prompt = vocab.encode("Return the ")
    a, sa = generate(sess, prompt, 40, greedy=True, return_stats=True)
    b, sb = generate(sess, prompt, 40, greedy=True, use_cache=False, return_stats=True)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(prompt) + 40,) and np.array_equal(a[:len(prompt)], prompt)
    # the work per step: with the cache, the prompt once and then one token per step
    assert sa.step_input_lengths == [len(prompt)] + [1] * 39
    assert sb.step_input_lengths == list(range(len(prompt), len(prompt) + 40))


def test_greedy_same_in_onnxruntime(sess, ort_sess, vocab):
    """generate() takes an onnxruntime session too, and both runtimes pick the same tokens."""
    prompt = vocab.encode("The ")
    np.testing.assert_array_equal(generate(sess, prompt, 30, greedy=True),
                                  generate(ort_sess, prompt, 30, greedy=True))


def test_kv_cache_is_faster(sess, vocab):
    """48 new tokens after a 60-character prompt: without the cache each step reruns 60..107
    tokens, with it one. The expected gap is several-fold, so the best of two runs is safe."""
    prompt = vocab.encode(("The object is returned unchanged when the value is None. " * 2)[:60])
    generate(sess, prompt, 2, greedy=True)  # warm-up
    best = {}
    for use_cache in (True, False) * 2:
        _, st = generate(sess, prompt, 48, greedy=True, use_cache=use_cache, return_stats=True)
        best[use_cache] = max(best.get(use_cache, 0.0), st.tokens_per_s)
    assert best[True] > best[False], best


def test_seeded_sampling_is_reproducible(sess, vocab):
    prompt = vocab.encode("import ")
    a = generate(sess, prompt, 30, temperature=0.9, top_k=10, seed=123)
    b = generate(sess, prompt, 30, temperature=0.9, top_k=10, seed=123)
    c = generate(sess, prompt, 30, temperature=0.9, top_k=10, seed=124)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_top_k_1_equals_greedy(sess, vocab):
    prompt = vocab.encode("If the ")
    np.testing.assert_array_equal(generate(sess, prompt, 25, top_k=1, seed=5),
                                  generate(sess, prompt, 25, greedy=True))


def test_sample_next_top_k_and_temperature():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, top_k=2, rng=rng)[0] for _ in range(2000)])
    assert set(draws) == {2, 3}  # only the two most likely survive top_k=2
    assert abs((draws == 3).mean() - 4 / 7) < 0.05  # renormalized: 0.4 / (0.3 + 0.4)
    cold = [sample_next(logits, temperature=0.05, rng=rng)[0] for _ in range(200)]
    assert np.mean(np.array(cold) == 3) > 0.95  # a low temperature approaches argmax


def test_batch_and_eos(sess, vocab):
    prompts = np.stack([vocab.encode("The "), vocab.encode("def ")])
    out = generate(sess, prompts, 10, greedy=True)
    assert out.shape == (2, 14)
    for row, p in zip(out, prompts):  # a batch row = that prompt generated alone
        np.testing.assert_array_equal(row, generate(sess, p, 10, greedy=True))
    first = int(out[0, 4])
    stopped = generate(sess, prompts[0], 10, greedy=True, eos_id=first)
    assert len(stopped) == 5 and stopped[-1] == first


def test_vocab_round_trip_and_errors(sess, vocab):
    text = "Return a new list.\n  x = f(1)"
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.decode(vocab.encode("caf\u00e9")) == "caf "  # outside the vocab -> space
    with pytest.raises(InputError, match="not in the model's vocab"):
        vocab.encode("\u00e9", errors="strict")
    with pytest.raises(InputError, match="context"):
        generate(sess, vocab.encode("x" * 100), 40, max_length=N_CTX)
    with pytest.raises(InputError, match="no past_"):
        generate(DATA / "digits_cnn.onnx", [1, 2], 3)


def test_cli_generate_compare_cache(capsys):
    assert cli_main(["generate", "--prompt", "The ", "--max-new-tokens", "12", "--greedy",
                     "--compare-cache", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ")
    assert "with KV cache" in out and "without KV cache" in out and "identical" in out


# ---------------------------------------------------------------------- bundled classifiers
def test_fraud_mlp_accuracy_matches_record():
    meta = json.loads((DATA / "fraud_mlp.json").read_text())
    with np.load(DATA / "fraud_test.npz") as z:
        x, y = z["features"], z["labels"]
    path = DATA / "fraud_mlp.onnx"
    [score] = minirt.InferenceSession(path).run(None, {"features": x})
    [ref] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"features": x})
    np.testing.assert_allclose(score, ref, rtol=1e-5, atol=1e-6)
    pred = (score[:, 0] >= meta["threshold"]).astype(np.int64)
    np.testing.assert_array_equal(pred, (ref[:, 0] >= meta["threshold"]).astype(np.int64))
    assert round(float((pred == y).mean()), 4) == meta["test_accuracy"]
    assert len(y) == meta["test_size"] and int(y.sum()) == meta["test_fraud_cases"]


def test_digits_cnn_accuracy_matches_record():
    meta = json.loads((DATA / "digits_cnn.json").read_text())
    with np.load(DATA / "digits_test.npz") as z:
        x, y = z["images"], z["labels"]
    path = DATA / "digits_cnn.onnx"
    [logits] = minirt.InferenceSession(path).run(None, {"image": x})
    [ref] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    np.testing.assert_array_equal(logits.argmax(1), ref.argmax(1))
    assert len(y) == meta["test_size"]
    assert round(float((logits.argmax(1) == y).mean()), 4) == meta["test_accuracy"]


def test_hugging_face_style_gpt2_with_past():
    """A transformers GPT-2 exported with past (attention_mask input, present_* outputs): generate
    fills the mask in, and cached == uncached == onnxruntime."""
    path = Path(__file__).resolve().parent.parent / "models" / "zoo" / "gpt2_past.classic17.onnx"
    assert path.exists(), "models/zoo/gpt2_past.classic17.onnx is committed (made by models/sweep_models.py --zoo)"
    sess = minirt.InferenceSession(path, threads=1)
    prompt = np.array([[5, 17, 2], [9, 9, 40]])
    cached = generate(sess, prompt, 8, greedy=True)
    np.testing.assert_array_equal(cached, generate(sess, prompt, 8, greedy=True, use_cache=False))
    np.testing.assert_array_equal(cached, generate(ort.InferenceSession(str(path)), prompt, 8, greedy=True))
