"""Make the small real-world ONNX models that tests/test_real_models.py runs.

Run from the repository root:

    python models/make_test_models.py            # all models
    python models/make_test_models.py gpt2_tiny  # just one

Needs torch==2.13.0 (CPU build), transformers, scikit-learn and skl2onnx. These are
NOT minirt dependencies: they are used only here, to make the committed .onnx files.
Every model is built from a fixed seed, so rerunning gives the same graph (the bytes
may differ across torch/transformers versions).
"""
from __future__ import annotations

import pathlib
import sys
import warnings

import numpy as np
import onnx

HERE = pathlib.Path(__file__).resolve().parent
OPSET = 17
SEED = 0

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _export(model, args, name, input_names, output_names, dynamic_axes, check_args=()):
    """Classic (TorchScript) exporter: it writes plain ONNX ops, no functions.

    check_args: more input tuples (other batch / sequence sizes) on which onnxruntime must
    agree with torch, to prove the dynamic dims were not baked in by the tracer."""
    import onnxruntime as ort
    import torch

    path = HERE / f"{name}.onnx"
    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model, args, str(path),
            input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False,
        )
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for a in (args, *check_args):
            want = model(*a)
            want = [want] if isinstance(want, torch.Tensor) else list(want)
            got = sess.run(None, {n: t.numpy() for n, t in zip(input_names, a)})
            for w, g in zip(want, got):
                np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5,
                                           err_msg=f"{name}: torch vs onnxruntime")
    _finish(path)


def _dedupe_opsets(onx: onnx.ModelProto) -> onnx.ModelProto:
    """skl2onnx 1.20 lists the default domain twice in opset_import for some models; the
    spec allows one entry per domain, so keep the first of each."""
    seen, keep = set(), []
    for o in onx.opset_import:
        if o.domain not in seen:
            seen.add(o.domain)
            keep.append(o)
    del onx.opset_import[:]
    onx.opset_import.extend(keep)
    return onx


def _finish(path: pathlib.Path) -> None:
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{path.name:22s} {path.stat().st_size / 1024:7.1f} KB  opset "
          f"{[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}  ops {ops}")


# --------------------------------------------------------------------------- torch CNNs

def resnet_mini() -> None:
    """Pre-activation ResNet (BN -> ReLU -> Conv): the BatchNormalization nodes come
    *before* each conv, so the exporter cannot fold them into the conv weights and the
    graph keeps real BatchNormalization ops (the stem's Conv+BN does get folded)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.short = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            h = torch.relu(self.bn1(x))
            out = self.conv1(h)                        # [N,cin,H,W] -> [N,cout,H/s,W/s]
            out = self.conv2(torch.relu(self.bn2(out)))
            return out + self.short(h if not isinstance(self.short, nn.Identity) else x)

    class ResNetMini(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2),
                                        Block(32, 32, 1), Block(32, 48, 2))
            self.bn = nn.BatchNorm2d(48)
            self.fc = nn.Linear(48, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            x = torch.relu(self.bn(x))
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # [N,48,8,8] -> [N,48]
            return self.fc(x)

    torch.manual_seed(SEED)
    model = ResNetMini()
    _randomize_bn(model)
    _export(model, (torch.randn(1, 3, 32, 32),), "resnet_mini", ["input"], ["logits"],
            {"input": {0: "batch"}, "logits": {0: "batch"}}, [(torch.randn(3, 3, 32, 32),)])


def mobilenet_mini() -> None:
    """MobileNet-v3-style: depthwise Conv (groups=C) + pointwise Conv, BN, ReLU6 and
    Hardswish, a squeeze-and-excite gate (Hardsigmoid), global average pool, Linear."""
    import torch
    from torch import nn

    def dw_sep(cin, cout, stride, act):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),  # depthwise
            nn.BatchNorm2d(cin), act(),
            nn.Conv2d(cin, cout, 1, bias=False),                        # pointwise
            nn.BatchNorm2d(cout), act(),
        )

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            s = nn.functional.adaptive_avg_pool2d(x, 1)               # [N,C,H,W] -> [N,C,1,1]
            s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
            return x * s

    class MobileNetMini(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
                dw_sep(16, 24, 1, nn.ReLU6),
                dw_sep(24, 32, 2, nn.ReLU6),
                SE(32),
                dw_sep(32, 48, 2, nn.Hardswish),
                dw_sep(48, 64, 1, nn.Hardswish),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    torch.manual_seed(SEED)
    model = MobileNetMini()
    _randomize_bn(model)
    _export(model, (torch.randn(1, 3, 32, 32),), "mobilenet_mini", ["input"], ["logits"],
            {"input": {0: "batch"}, "logits": {0: "batch"}}, [(torch.randn(3, 3, 32, 32),)])


def _randomize_bn(model) -> None:
    """Fresh BN layers have mean 0 / var 1 (a no-op); give them real statistics."""
    import torch

    g = torch.Generator().manual_seed(SEED + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


# --------------------------------------------------------------------------- recurrent

def lstm_gru() -> None:
    """2-layer bidirectional LSTM -> 1-layer GRU -> Linear, batch_first."""
    import torch
    from torch import nn

    class LstmGru(nn.Module):
        def __init__(self, feats=6, hidden=12, classes=5):
            super().__init__()
            self.lstm = nn.LSTM(feats, hidden, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(2 * hidden, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x):                # [batch, seq, feats]
            h, _ = self.lstm(x)              # -> [batch, seq, 2*hidden]
            h, _ = self.gru(h)               # -> [batch, seq, hidden]
            return self.fc(h)                # -> [batch, seq, classes]

    torch.manual_seed(SEED)
    _export(LstmGru(), (torch.randn(2, 7, 6),), "lstm_gru", ["input"], ["output"],
            {"input": {0: "batch", 1: "seq"}, "output": {0: "batch", 1: "seq"}},
            [(torch.randn(1, 3, 6),), (torch.randn(3, 11, 6),)])


# --------------------------------------------------------------------------- transformers

def gpt2_tiny() -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    class LogitsOnly(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            # An explicit all-ones mask keeps transformers from tracing its packed-sequence
            # check (torch.diff, which has no ONNX export).
            mask = torch.ones_like(input_ids)
            return self.m(input_ids=input_ids, attention_mask=mask, use_cache=False,
                          return_dict=False)[0]

    torch.manual_seed(SEED)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64,
                     bos_token_id=0, eos_token_id=0, use_cache=False, attn_implementation="eager")
    model = LogitsOnly(GPT2LMHeadModel(cfg).eval())
    ids = torch.randint(0, 100, (2, 8))
    _export(model, (ids,), "gpt2_tiny", ["input_ids"], ["logits"],
            {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
            [(torch.randint(0, 100, (1, 5)),), (torch.randint(0, 100, (3, 13)),)])


def bert_tiny() -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids, output_hidden_states=True,
                         return_dict=True)
            return out.logits, out.hidden_states[-1]

    torch.manual_seed(SEED)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3,
                     attn_implementation="eager")
    model = Wrapped(BertForSequenceClassification(cfg).eval())
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0
    tt = torch.zeros(2, 8, dtype=torch.int64)
    tt[:, 4:] = 1
    dyn = {0: "batch", 1: "seq"}
    ids3 = torch.randint(0, 100, (3, 13))
    mask3 = torch.ones(3, 13, dtype=torch.int64)
    mask3[0, 9:] = 0
    _export(model, (ids, mask, tt), "bert_tiny",
            ["input_ids", "attention_mask", "token_type_ids"], ["logits", "last_hidden_state"],
            {"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn,
             "logits": {0: "batch"}, "last_hidden_state": dyn},
            [(ids[:1, :5], mask[:1, :5], tt[:1, :5]), (ids3, mask3, torch.zeros_like(ids3))])


# --------------------------------------------------------------------------- scikit-learn

def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0  # [1797, 64] in 0..1
    return train_test_split(x, d.target, test_size=0.25, random_state=SEED, stratify=d.target)


def _save_skl(model, name, n_features, opset=OPSET):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, n_features]))],
                  options={id(model): {"zipmap": False}},
                  target_opset={"": opset, "ai.onnx.ml": 3})
    path = HERE / f"{name}.onnx"
    path.write_bytes(_dedupe_opsets(onx).SerializeToString())
    _finish(path)


def sklearn_mlp() -> None:
    from sklearn.neural_network import MLPClassifier

    x_tr, x_te, y_tr, y_te = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=SEED).fit(x_tr, y_tr)
    print(f"  sklearn_mlp test accuracy {clf.score(x_te, y_te):.4f}")
    _save_skl(clf, "sklearn_mlp", 64)


def sklearn_forest() -> None:
    from sklearn.ensemble import RandomForestClassifier

    x_tr, x_te, y_tr, y_te = _digits()
    clf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=SEED).fit(x_tr, y_tr)
    print(f"  sklearn_forest test accuracy {clf.score(x_te, y_te):.4f}")
    _save_skl(clf, "sklearn_forest", 64)


def sklearn_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, x_te, y_tr, y_te = _digits()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=SEED))
    pipe.fit(x_tr, y_tr)
    print(f"  sklearn_pipeline test accuracy {pipe.score(x_te, y_te):.4f}")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(pipe, initial_types=[("input", FloatTensorType([None, 64]))],
                  options={id(pipe.steps[-1][1]): {"zipmap": False}},
                  target_opset={"": OPSET, "ai.onnx.ml": 3})
    path = HERE / "sklearn_pipeline.onnx"
    path.write_bytes(_dedupe_opsets(onx).SerializeToString())
    _finish(path)


MODELS = {f.__name__: f for f in (resnet_mini, mobilenet_mini, lstm_gru, gpt2_tiny, bert_tiny,
                                  sklearn_mlp, sklearn_forest, sklearn_pipeline)}

if __name__ == "__main__":
    names = sys.argv[1:] or list(MODELS)
    for n in names:
        MODELS[n]()
