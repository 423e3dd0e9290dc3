"""Models "nobody here built": exported by torch (classic and dynamo exporters), transformers,
skl2onnx and onnxruntime's own tools, run in minirt and in onnxruntime on the same inputs.

Two parts (see models/SWEEP.md for the whole sweep and its findings):

* the committed zoo, ``models/zoo/*.onnx`` (each < 300 KB, made by
  ``python models/sweep_models.py --zoo``) with its seeded inputs ``<name>.inputs.npz``:
  always run, needs only onnxruntime;
* a slice of the sweep exported at test time, only where torch / transformers / skl2onnx are
  importable (never in CI, which installs minirt[test] only).

Known minirt failures are ``xfail(strict=True)``: they flip to failures once fixed, so the
marker gets removed.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import minirt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZOO = ROOT / "models" / "zoo"


def _load_sweep():
    """models/sweep_models.py as a module (it is a script, not part of the package). Its
    comparison helpers need only numpy/onnx/onnxruntime; torch is imported lazily."""
    spec = importlib.util.spec_from_file_location("sweep_models", ROOT / "models" / "sweep_models.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sweep_models", mod)
    spec.loader.exec_module(mod)
    return mod


sweep = _load_sweep()


def _xfail(reason: str):
    return pytest.mark.xfail(reason=reason, strict=True)


# --------------------------------------------------------------------------- the committed zoo
# file stem -> (rtol, atol, marks). Float outputs within rtol/atol, ints/strings/labels exact,
# ZipMap outputs (lists of dicts) key by key.
ZOO_CASES = {
    # transformers LlamaForCausalLM (RMSNorm, rotary, SiLU-gated MLP, GQA 4 q / 2 kv heads),
    # dynamo exporter (opset 18+), padded attention mask
    "llama_tiny.dynamo": (1e-4, 1e-5, ()),
    # transformers BertForSequenceClassification, dynamo exporter
    "bert_tiny.dynamo": (1e-4, 1e-5, ()),
    # UNet: ConvTranspose, Resize nearest + bilinear (align_corners True/False), Concat; opset 11
    "unet_mini.classic11": (1e-4, 1e-5, ()),
    # the same UNet through the dynamo exporter (Resize-18+, different glue)
    "unet_mini.dynamo": (1e-4, 1e-5, ()),
    # MobileNetV2 inverted residuals, ReLU6/Hardswish, squeeze-excite; dynamo
    "mobilenetv2_se.dynamo": (1e-4, 1e-5, ()),
    # GPT-2 decoding step with KV cache in/out (past_key_* -> present_key_*), left-padded mask
    "gpt2_past.classic17": (1e-4, 1e-5, ()),
    # T5 encoder: relative-position buckets (Log, Min, Where, Cast), gated-GELU FFN, RMS-style norm
    "t5_encoder.dynamo": (1e-4, 1e-5, ()),
    # onnxruntime transformer optimizer on a BERT with eager attention: com.microsoft Attention,
    # EmbedLayerNormalization, SkipLayerNormalization, BiasGelu
    "bert_tiny.ortopt": (1e-4, 1e-5, ()),
    # onnxruntime static quantization, QOperator format: QLinearConv, com.microsoft QLinearAdd,
    # QLinearMul, QLinearSigmoid, QLinearGlobalAveragePool, QGemm. int8 requantization may round a
    # value one step apart between runtimes: float outputs within a few quantization steps
    "mobilenetv2.qop": (1e-2, 5e-2, ()),
    # onnxruntime's offline graph optimizer (ORT_ENABLE_EXTENDED) on MobileNetV2:
    # com.microsoft FusedConv (Conv + activation)
    "mobilenetv2.ortext": (1e-4, 1e-5, ()),
    # onnxruntime dynamic quantization of a 2-layer bi-LSTM + GRU tagger:
    # com.microsoft DynamicQuantizeLSTM, MatMulInteger, DynamicQuantizeLinear
    "rnn_plain.qdynamic": (1e-2, 5e-2, ()),
    # skl2onnx ColumnTransformer(StandardScaler + OneHotEncoder on strings and ints) +
    # LogisticRegression, ZipMap on: string tensors in, list of dicts out
    "sk_coltrans_logreg.zipmap": (1e-4, 1e-6, ()),
}


def _zoo_params():
    for stem, (rtol, atol, marks) in ZOO_CASES.items():
        yield pytest.param(stem, rtol, atol, id=stem, marks=marks)


def _zoo_feeds(stem: str) -> dict:
    with np.load(ZOO / f"{stem}.inputs.npz") as z:
        feeds = {k: z[k] for k in z.files}
    # string tensors are stored as fixed-width unicode; onnxruntime and minirt take object arrays
    return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in feeds.items()}


def test_zoo_is_complete_and_small():
    files = {p.name[:-len(".onnx")] for p in ZOO.glob("*.onnx")}
    assert files == set(ZOO_CASES), "models/zoo and ZOO_CASES disagree: rerun models/sweep_models.py --zoo"
    for stem in files:
        assert (ZOO / f"{stem}.onnx").stat().st_size < 300 * 1024, stem
        assert (ZOO / f"{stem}.inputs.npz").exists(), stem


@pytest.mark.parametrize("stem, rtol, atol", _zoo_params())
def test_zoo_model_matches_onnxruntime(stem, rtol, atol):
    path = ZOO / f"{stem}.onnx"
    feeds = _zoo_feeds(stem)
    sess = sweep._ort_session(path)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    msess = minirt.InferenceSession(str(path))
    got = dict(zip([o.name for o in msess.get_outputs()], msess.run(None, feeds)))
    ok, detail = sweep.compare_outputs(got, want, rtol, atol)
    assert ok, f"{stem}: {detail}"


# --------------------------------------------------------------------------- exported at test time
# A slice of the sweep that covers other exporter paths than the zoo; a few seconds each.
LIVE_TORCH = [
    ("shufflenet", "classic13", ()),       # channel shuffle: Reshape/Transpose, Split (opset 13 inputs)
    ("densenet", "dynamo", ()),            # concat blocks, AvgPool
    ("efficientnet", "classic17", ()),     # SiLU, ReduceMean squeeze-excite
    ("norms", "classic11", ()),            # GroupNorm/InstanceNorm/LayerNorm at opset 11 (decomposed)
    ("audio1d", "dynamo", ()),             # Conv1d with dilation/groups, PReLU, Softplus
    ("rnn_packed", "classic17", ()),       # bi-LSTM over pack_padded_sequence, GRU
    ("mha", "dynamo", ()),                 # nn.MultiheadAttention with key_padding_mask
]
LIVE_HF = [
    ("distilbert", "classic17", ()),
    ("roberta", "dynamo", ()),             # position ids from CumSum over the padding mask
    ("gptneox", "classic17", ()),          # partial rotary (rotary_pct 0.5)
    ("clip_text", "classic17", ()),        # quick-GELU, causal mask, argmax pooling (Gather)
]


def _check_live(case_name: str, exporter: str, tmp_path):
    case = next(c for c in sweep.TORCH_CASES if c.name == case_name)
    path = tmp_path / f"{case_name}.{exporter}.onnx"
    sweep.export_torch(case, exporter, path)
    r = sweep.check(path, sweep.torch_feeds(case, path), case.rtol, case.atol)
    assert r["status"] == "pass", f"{case_name} {exporter}: {r['status']}: {r.get('detail')}"


@pytest.mark.parametrize("case_name, exporter",
                         [pytest.param(n, e, id=f"{n}-{e}", marks=m) for n, e, m in LIVE_TORCH])
def test_torch_export_matches_onnxruntime(case_name, exporter, tmp_path):
    pytest.importorskip("torch")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    _check_live(case_name, exporter, tmp_path)


@pytest.mark.parametrize("case_name, exporter",
                         [pytest.param(n, e, id=f"{n}-{e}", marks=m) for n, e, m in LIVE_HF])
def test_transformers_export_matches_onnxruntime(case_name, exporter, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    _check_live(case_name, exporter, tmp_path)


LIVE_SKLEARN = [
    ("sk_gbc_zipmap", ()),
    ("sk_rf_regressor", ()),
    ("sk_svc_zipmap", ()),
    ("sk_knn_nozipmap", ()),
    ("sk_kmeans", ()),
    ("sk_pca", ()),
]


@pytest.mark.parametrize("name", [pytest.param(n, id=n, marks=m) for n, m in LIVE_SKLEARN])
def test_sklearn_export_matches_onnxruntime(name, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    import onnx
    case = next(c for c in sweep._sk_cases() if c.name == name)
    onx, feeds = case.build()
    path = tmp_path / f"{name}.onnx"
    onnx.save(onx, str(path))
    r = sweep.check(path, [feeds])
    assert r["status"] == "pass", f"{name}: {r['status']}: {r.get('detail')}"
