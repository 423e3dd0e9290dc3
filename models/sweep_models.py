"""Robustness sweep: export a broad set of models "nobody here built" and run each in
minirt and in onnxruntime on the same seeded inputs.

    python models/sweep_models.py [OUTDIR] [--only NAME[,NAME...]] [--family torch|hf|sklearn|ortopt]
                                           [--exporters classic11,classic13,classic17,dynamo]
                                           [--no-run] [--zoo]

OUTDIR defaults to a fresh temporary folder. Every exported model, a results.json and a
Markdown table (results.md) land there. ``--zoo`` re-makes the few tiny models committed
under models/zoo/ (tests/test_model_zoo.py runs them against onnxruntime without torch).

Needs torch==2.13.0 (CPU), transformers, scikit-learn, skl2onnx and onnxscript (the dynamo
exporter). None of these is a minirt dependency. Every model is built from seed 0 with random
weights (transformers models from tiny configs: nothing is downloaded).

Each model is exported with the classic TorchScript exporter (``dynamo=False``) at opsets 11,
13 and 17, and with the dynamo exporter (``dynamo=True``, its default opset). Exported with
batch 2 (sequence 8), it is run at batch 3 (sequence 5) where its dims are dynamic, so a dim
the tracer baked in shows up. Results: ``pass``, ``mismatch`` (max error, which output, and the
first node whose output diverges), ``minirt error`` (first line of minirt's exception),
``ort error`` or ``export error`` (the exporter or onnxruntime could not handle it: not a
minirt bug).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

HERE = pathlib.Path(__file__).resolve().parent
ZOO = HERE / "zoo"
SEED = 0
RTOL, ATOL = 1e-4, 1e-5
EXPORTERS = ("classic11", "classic13", "classic17", "dynamo")
# dynamo at opset 23 writes SDPA as the ONNX Attention op (and may use RMSNormalization,
# RotaryEmbedding): tried on every model with attention
ATTN_EXPORTERS = EXPORTERS + ("dynamo23",)

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# =========================================================================== cases

@dataclass
class TorchCase:
    """A torch module and how to call it.

    make(batch, seq) -> tuple of input tensors (the module's positional args).
    dynamic: input name -> {axis: dim name}; outputs get their dynamic axes from the exporter.
    """
    name: str
    family: str                      # "torch" (hand-written) or "hf" (transformers)
    build: Callable[[], Any]         # -> nn.Module (eval mode, seeded)
    make: Callable[[int, int], tuple]
    input_names: list[str]
    output_names: list[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    exporters: tuple[str, ...] = EXPORTERS
    rtol: float = RTOL
    atol: float = ATOL
    note: str = ""


def _t():
    import torch
    return torch


def _gen(seed_key: str, batch: int):
    import torch
    g = torch.Generator().manual_seed(sum(map(ord, seed_key)) * 1000 + batch)
    return g


def _image(name, c=3, hw=32):
    def make(batch, seq):
        torch = _t()
        return (torch.randn(batch, c, hw, hw, generator=_gen(name, batch)),)
    return make


def _ids_mask(name, vocab=100, with_type=False, with_mask=True):
    def make(batch, seq):
        torch = _t()
        g = _gen(name, batch)
        ids = torch.randint(3, vocab, (batch, seq), generator=g)
        out = [ids]
        if with_mask:
            mask = torch.ones(batch, seq, dtype=torch.int64)
            for b in range(1, batch):            # padded rows, at least one 1 per row
                mask[b, max(1, seq - 2 * b):] = 0
            out.append(mask)
        if with_type:
            tt = torch.zeros(batch, seq, dtype=torch.int64)
            tt[:, seq // 2:] = 1
            out.append(tt)
        return tuple(out)
    return make


IMG_DYN = {"input": {0: "batch"}}
SEQ_DYN = {0: "batch", 1: "seq"}


# --------------------------------------------------------------------------- hand-written torch nets

def _seeded(fn):
    def build():
        torch = _t()
        torch.manual_seed(SEED)
        m = fn()
        # non-trivial BN running stats, so folding / BN math is exercised
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                with torch.no_grad():
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)
        return m.eval()
    return build


def vgg():
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*block(3, 8), *block(8, 16), nn.Flatten(), nn.Dropout(0.5),
                         nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10))


def resnet():
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            out = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(out)) + self.down(x))

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.body(x) + self.down(x))

    return nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1), Basic(16, 16, 1), Basic(16, 24, 2),
                         Bottleneck(24, 8, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def densenet():
    import torch
    from torch import nn

    class Dense(nn.Module):
        def __init__(self, cin, growth, n):
            super().__init__()
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(),
                              nn.Conv2d(cin + i * growth, growth, 3, padding=1, bias=False))
                for i in range(n))

        def forward(self, x):
            feats = [x]
            for layer in self.layers:
                feats.append(layer(torch.cat(feats, 1)))  # concat along channels
            return torch.cat(feats, 1)

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Dense(8, 4, 3), nn.BatchNorm2d(20), nn.ReLU(),
                         nn.Conv2d(20, 12, 1), nn.AvgPool2d(2), Dense(12, 4, 2),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(20, 10))


def mobilenetv2():
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c, 1), nn.Sigmoid())

        def forward(self, x):
            return x * self.fc(self.pool(x))

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand, act, se):
            super().__init__()
            mid = cin * expand
            self.res = stride == 1 and cin == cout
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), act(),
                SE(mid) if se else nn.Identity(),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.body(x)
            return x + y if self.res else y

    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                         Inverted(8, 8, 1, 3, nn.ReLU6, False), Inverted(8, 16, 2, 4, nn.Hardswish, True),
                         Inverted(16, 16, 1, 4, nn.Hardswish, True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def efficientnet():
    import torch
    from torch import nn

    class MBConv(nn.Module):
        def __init__(self, cin, cout, stride, k):
            super().__init__()
            mid = cin * 4
            self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
            self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                                    nn.BatchNorm2d(mid), nn.SiLU())
            self.se1 = nn.Conv2d(mid, cin // 2, 1)
            self.se2 = nn.Conv2d(cin // 2, mid, 1)
            self.proj = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            h = self.dw(self.expand(x))
            s = h.mean((2, 3), keepdim=True)              # squeeze: ReduceMean
            s = torch.sigmoid(self.se2(nn.functional.silu(self.se1(s))))
            y = self.proj(h * s)
            return x + y if self.res else y

    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU(),
                         MBConv(8, 8, 1, 3), MBConv(8, 16, 2, 5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10))


def shufflenet():
    import torch
    from torch import nn

    def shuffle(x, groups):
        n, c, h, w = x.shape
        x = x.view(n, groups, c // groups, h, w)       # [N,C,H,W] -> [N,g,C/g,H,W]
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(n, c, h, w)

    class Unit(nn.Module):
        def __init__(self, c):
            super().__init__()
            half = c // 2
            self.branch = nn.Sequential(
                nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
                nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
                nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())

        def forward(self, x):
            a, b = x.chunk(2, dim=1)                      # Split
            return shuffle(torch.cat((a, self.branch(b)), 1), 2)

    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), Unit(16), Unit(16),
                         nn.Conv2d(16, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def unet():
    import torch
    from torch import nn
    F = nn.functional

    def cbr(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.e1, self.e2, self.e3 = cbr(3, 8), cbr(8, 16), cbr(16, 16)
            self.up1 = nn.ConvTranspose2d(16, 16, 2, stride=2)
            self.d1 = cbr(32, 8)
            self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
            self.d2 = cbr(16, 8)
            self.head = nn.Conv2d(8 + 8 + 8, 2, 1)

        def forward(self, x):
            e1 = self.e1(x)                               # [N,8,32,32]
            e2 = self.e2(F.max_pool2d(e1, 2))             # [N,16,16,16]
            e3 = self.e3(F.max_pool2d(e2, 2))             # [N,16,8,8]
            d1 = self.d1(torch.cat((self.up1(e3), e2), 1))  # ConvTranspose + Concat -> [N,8,16,16]
            d2 = self.d2(torch.cat((self.up2(d1), e1), 1))  # Resize nearest -> [N,8,32,32]
            b1 = F.interpolate(e2[:, :8], size=e1.shape[-2:], mode="bilinear", align_corners=False)
            b2 = F.interpolate(d1, scale_factor=2.0, mode="bilinear", align_corners=True)
            return self.head(torch.cat((d2, b1, b2), 1))

    return UNet()


def vit_small():
    import torch
    from torch import nn

    class ViT(nn.Module):
        def __init__(self, d=32, patch=8, img=32):
            super().__init__()
            self.patch = nn.Conv2d(3, d, patch, patch)
            n = (img // patch) ** 2
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
            self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.1)
            layer = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, 10)

        def forward(self, x):
            p = self.patch(x).flatten(2).transpose(1, 2)   # [N,d,4,4] -> [N,16,d]
            cls = self.cls.expand(p.shape[0], -1, -1)
            h = self.enc(torch.cat((cls, p), 1) + self.pos)
            return self.head(self.norm(h[:, 0]))

    return ViT()


def mha():
    from torch import nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 32)
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.ln = nn.LayerNorm(32)
            self.out = nn.Linear(32, 5)

        def forward(self, ids, mask):
            h = self.emb(ids)
            a, w = self.attn(h, h, h, key_padding_mask=mask == 0)
            return self.out(self.ln(h + a)), w

    return M()


def norms():
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.GELU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True), nn.LeakyReLU(0.1),
                         nn.Conv2d(8, 8, 3, padding=1), nn.LayerNorm([8, 32, 32]), nn.ELU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.LogSoftmax(-1))


def audio1d():
    from torch import nn

    return nn.Sequential(nn.Conv1d(1, 8, 9, stride=2, padding=4), nn.BatchNorm1d(8), nn.GELU(approximate="tanh"),
                         nn.Conv1d(8, 16, 5, stride=2, dilation=2, padding=4), nn.BatchNorm1d(16), nn.PReLU(16),
                         nn.MaxPool1d(2), nn.Conv1d(16, 16, 3, padding=1, groups=4), nn.Softplus(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 6), nn.Softmax(-1))


def rnn_tagger():
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16, padding_idx=0)
            self.lstm = nn.LSTM(16, 12, num_layers=1, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(24, 8, bidirectional=True, batch_first=True)
            self.out = nn.Linear(16, 7)

        def forward(self, ids, lengths):
            h = self.emb(ids)
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            out, _ = self.gru(out)
            return self.out(out).log_softmax(-1)

    return Tagger()


def rnn_plain():
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.lstm = nn.LSTM(16, 12, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(24, 8, bidirectional=True, batch_first=True)
            self.out = nn.Linear(16, 7)

        def forward(self, ids):
            out, _ = self.lstm(self.emb(ids))
            out, _ = self.gru(out)
            return self.out(out)

    return Tagger()


def _ids_only(name, vocab=50):
    def make(batch, seq):
        torch = _t()
        return (torch.randint(0, vocab, (batch, seq), generator=_gen(name, batch)),)
    return make


def _ids_lengths(name):
    def make(batch, seq):
        torch = _t()
        ids = torch.randint(1, 50, (batch, seq), generator=_gen(name, batch))
        lengths = torch.tensor([max(1, seq - 2 * b) for b in range(batch)], dtype=torch.int64)
        for b, n in enumerate(lengths.tolist()):
            ids[b, n:] = 0
        return ids, lengths
    return make


def _audio(name):
    def make(batch, seq):
        torch = _t()
        return (torch.randn(batch, 1, 40 * seq, generator=_gen(name, batch)),)
    return make


# --------------------------------------------------------------------------- transformers (tiny configs)

ATTN = {"impl": None}  # set to "eager" to build transformers models without SDPA


def _cfg(cfg):
    if ATTN["impl"]:
        cfg._attn_implementation = ATTN["impl"]
    return cfg


def _hf(build_model, fields, kwargs_names):
    """nn.Module: forward(*inputs) -> tuple(out[f] for f in fields)."""
    import torch

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = build_model()

        def forward(self, *args):
            out = self.m(**dict(zip(kwargs_names, args)))
            return tuple(out[f] for f in fields)

    torch.manual_seed(SEED)
    return Wrap().eval()


def hf_bert():
    from transformers import BertConfig, BertForSequenceClassification
    cfg = _cfg(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=64, num_labels=3))
    return _hf(lambda: BertForSequenceClassification(cfg), ["logits"],
               ["input_ids", "attention_mask", "token_type_ids"])


def hf_distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    cfg = _cfg(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                max_position_embeddings=64, num_labels=2))
    return _hf(lambda: DistilBertForSequenceClassification(cfg), ["logits"], ["input_ids", "attention_mask"])


def hf_roberta():
    from transformers import RobertaConfig, RobertaForSequenceClassification
    cfg = _cfg(RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=70, num_labels=3, pad_token_id=1))
    return _hf(lambda: RobertaForSequenceClassification(cfg), ["logits"], ["input_ids", "attention_mask"])


def hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = _cfg(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, use_cache=False))
    return _hf(lambda: GPT2LMHeadModel(cfg), ["logits"], ["input_ids", "attention_mask"])


def hf_gpt2_past():
    """GPT-2 decoding step with a KV cache: past k/v per layer in, logits + present k/v out."""
    import torch
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel
    cfg = _cfg(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, use_cache=True))

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = GPT2LMHeadModel(cfg)

        def forward(self, input_ids, attention_mask, pk0, pv0, pk1, pv1):
            cache = DynamicCache(ddp_cache_data=[(pk0, pv0), (pk1, pv1)], config=cfg)
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                         use_cache=True)
            pkv = out.past_key_values
            pres = [t for layer in pkv.layers for t in (layer.keys, layer.values)]
            return (out.logits, *pres)

    torch.manual_seed(SEED)
    return Step().eval()


def _gpt2_past_make(batch, seq):
    torch = _t()
    g = _gen("gpt2_past", batch)
    past = 6 if batch == 2 else 4
    ids = torch.randint(0, 100, (batch, seq), generator=g)
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    if batch > 1:
        mask[1, :2] = 0  # left padding in the cache of row 1
    kv = [torch.randn(batch, 2, past, 16, generator=g) for _ in range(4)]
    return (ids, mask, *kv)


def hf_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = _cfg(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           use_cache=False, tie_word_embeddings=False))
    return _hf(lambda: LlamaForCausalLM(cfg), ["logits"], ["input_ids", "attention_mask"])


def hf_gptneox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    cfg = _cfg(GPTNeoXConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=64, rotary_pct=0.5, use_cache=False))
    return _hf(lambda: GPTNeoXForCausalLM(cfg), ["logits"], ["input_ids", "attention_mask"])


def hf_t5enc():
    from transformers import T5Config, T5EncoderModel
    cfg = _cfg(T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                        relative_attention_num_buckets=8, relative_attention_max_distance=20,
                        feed_forward_proj="gated-gelu"))
    return _hf(lambda: T5EncoderModel(cfg), ["last_hidden_state"], ["input_ids", "attention_mask"])


def hf_vit():
    from transformers import ViTConfig, ViTForImageClassification
    cfg = _cfg(ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, num_labels=5))
    return _hf(lambda: ViTForImageClassification(cfg), ["logits"], ["pixel_values"])


def hf_whisper_enc():
    from transformers import WhisperConfig, WhisperModel
    cfg = _cfg(WhisperConfig(vocab_size=100, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                             encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                             num_mel_bins=16, max_source_positions=25, max_target_positions=32,
                             pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=2))
    return _hf(lambda: WhisperModel(cfg).encoder, ["last_hidden_state"], ["input_features"])


def _mel(batch, seq):
    torch = _t()
    return (torch.randn(batch, 16, 50, generator=_gen("whisper", batch)),)


def hf_clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = _cfg(CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=32, eos_token_id=2))
    return _hf(lambda: CLIPTextModel(cfg), ["last_hidden_state", "pooler_output"], ["input_ids", "attention_mask"])


def _seq_dyn(*names):
    return {n: dict(SEQ_DYN) for n in names}


TORCH_CASES: list[TorchCase] = [
    TorchCase("vgg", "torch", _seeded(vgg), _image("vgg"), ["input"], ["logits"], IMG_DYN),
    TorchCase("resnet", "torch", _seeded(resnet), _image("resnet"), ["input"], ["logits"], IMG_DYN),
    TorchCase("densenet", "torch", _seeded(densenet), _image("densenet"), ["input"], ["logits"], IMG_DYN),
    TorchCase("mobilenetv2", "torch", _seeded(mobilenetv2), _image("mobilenetv2"), ["input"], ["logits"], IMG_DYN),
    TorchCase("efficientnet", "torch", _seeded(efficientnet), _image("efficientnet"), ["input"], ["logits"],
              IMG_DYN),
    TorchCase("shufflenet", "torch", _seeded(shufflenet), _image("shufflenet"), ["input"], ["logits"], IMG_DYN),
    TorchCase("unet", "torch", _seeded(unet), _image("unet"), ["input"], ["mask"], IMG_DYN),
    TorchCase("vit_small", "torch", _seeded(vit_small), _image("vit_small"), ["input"], ["logits"], IMG_DYN),
    TorchCase("mha", "torch", _seeded(mha), _ids_mask("mha", vocab=50), ["ids", "mask"], ["out", "attn"],
              _seq_dyn("ids", "mask")),
    TorchCase("norms", "torch", _seeded(norms), _image("norms"), ["input"], ["logp"], IMG_DYN),
    TorchCase("audio1d", "torch", _seeded(audio1d), _audio("audio1d"), ["wave"], ["probs"],
              {"wave": {0: "batch", 2: "samples"}}),
    TorchCase("rnn_plain", "torch", _seeded(rnn_plain), _ids_only("rnn_plain"), ["ids"], ["logits"],
              _seq_dyn("ids")),
    TorchCase("rnn_packed", "torch", _seeded(rnn_tagger), _ids_lengths("rnn_packed"), ["ids", "lengths"],
              ["logp"], {"ids": dict(SEQ_DYN), "lengths": {0: "batch"}}),
    # transformers
    TorchCase("bert", "hf", hf_bert, _ids_mask("bert", with_type=True),
              ["input_ids", "attention_mask", "token_type_ids"], ["logits"],
              _seq_dyn("input_ids", "attention_mask", "token_type_ids")),
    TorchCase("distilbert", "hf", hf_distilbert, _ids_mask("distilbert"), ["input_ids", "attention_mask"],
              ["logits"], _seq_dyn("input_ids", "attention_mask")),
    TorchCase("roberta", "hf", hf_roberta, _ids_mask("roberta"), ["input_ids", "attention_mask"], ["logits"],
              _seq_dyn("input_ids", "attention_mask")),
    TorchCase("gpt2", "hf", hf_gpt2, _ids_mask("gpt2"), ["input_ids", "attention_mask"], ["logits"],
              _seq_dyn("input_ids", "attention_mask")),
    TorchCase("gpt2_past", "hf", hf_gpt2_past, _gpt2_past_make,
              ["input_ids", "attention_mask", "past_key_0", "past_value_0", "past_key_1", "past_value_1"],
              ["logits", "present_key_0", "present_value_0", "present_key_1", "present_value_1"],
              {"input_ids": dict(SEQ_DYN), "attention_mask": {0: "batch", 1: "total"},
               **{f"past_{kv}_{i}": {0: "batch", 2: "past"} for kv in ("key", "value") for i in (0, 1)}}),
    TorchCase("llama", "hf", hf_llama, _ids_mask("llama"), ["input_ids", "attention_mask"], ["logits"],
              _seq_dyn("input_ids", "attention_mask")),
    TorchCase("gptneox", "hf", hf_gptneox, _ids_mask("gptneox"), ["input_ids", "attention_mask"], ["logits"],
              _seq_dyn("input_ids", "attention_mask")),
    TorchCase("t5_encoder", "hf", hf_t5enc, _ids_mask("t5"), ["input_ids", "attention_mask"],
              ["last_hidden_state"], _seq_dyn("input_ids", "attention_mask")),
    TorchCase("vit_hf", "hf", hf_vit, _image("vit_hf"), ["pixel_values"], ["logits"],
              {"pixel_values": {0: "batch"}}),
    TorchCase("whisper_encoder", "hf", hf_whisper_enc, _mel, ["input_features"], ["last_hidden_state"],
              {"input_features": {0: "batch"}}),
    TorchCase("clip_text", "hf", hf_clip_text, _ids_mask("clip"), ["input_ids", "attention_mask"],
              ["last_hidden_state", "pooler_output"], _seq_dyn("input_ids", "attention_mask")),
]

for _c in TORCH_CASES:   # attention models also go through dynamo at opset 23
    if _c.family == "hf" or _c.name in ("vit_small", "mha"):
        _c.exporters = ATTN_EXPORTERS


# =========================================================================== exporting

def _dynamic_shapes(case: TorchCase):
    """dynamic_axes -> torch.export dynamic_shapes (a tuple, one entry per positional arg)."""
    from torch.export import Dim
    dims: dict[str, Any] = {}
    out = []
    for n in case.input_names:
        axes = case.dynamic.get(n, {})
        spec = {}
        for ax, dn in axes.items():
            if dn not in dims:
                dims[dn] = Dim.AUTO
            spec[ax] = dims[dn]
        out.append(spec or None)
    return tuple(out)


def export_torch(case: TorchCase, exporter: str, path: pathlib.Path) -> None:
    import torch
    model = case.build()
    args = case.make(2, 8)
    if exporter.endswith("eager"):              # transformers model built with eager attention
        ATTN["impl"] = "eager"
        try:
            model = case.build()
        finally:
            ATTN["impl"] = None
        exporter = exporter[:-len("eager")]
    if exporter.startswith("classic"):
        opset = int(exporter[len("classic"):].rstrip("fn"))
        fns = exporter.endswith("fn")

        def classic():
            torch.onnx.export(model, args, str(path), input_names=case.input_names,
                              output_names=case.output_names, dynamic_axes=case.dynamic,
                              opset_version=opset, dynamo=False, export_modules_as_functions=fns)
        try:
            with torch.no_grad():
                classic()
        except Exception as e:
            if "scaled_dot_product_attention" in str(e) and case.family == "hf":
                # what users do for opset < 14: build the model with eager attention
                ATTN["impl"] = "eager"
                try:
                    model = case.build()
                finally:
                    ATTN["impl"] = None
                with torch.no_grad():
                    classic()
                return "attn_implementation=eager (SDPA needs opset 14)"
            # nn.TransformerEncoderLayer / nn.MultiheadAttention take a fused "fast path"
            # (aten::_transformer_encoder_layer_fwd, _native_multi_head_attention) under no_grad
            # in eval mode, which the classic exporter cannot write: export with grad enabled.
            if "_native_multi_head_attention" not in str(e) and "_transformer_encoder_layer_fwd" not in str(e):
                raise
            classic()
            return "exported with grad enabled (the no_grad fast path is not exportable)"
        return ""
    with torch.no_grad():
        if True:
            opset = int(exporter[len("dynamo"):]) if exporter != "dynamo" else None
            try:
                prog = torch.onnx.export(model, args, input_names=case.input_names,
                                         output_names=case.output_names, opset_version=opset,
                                         dynamic_shapes=_dynamic_shapes(case), dynamo=True,
                                         external_data=False, verbose=False)
            except Exception:
                # dynamic shapes refused: export static (the checks below run at the export shape)
                prog = torch.onnx.export(model, args, input_names=case.input_names, opset_version=opset,
                                         output_names=case.output_names, dynamo=True, verbose=False)
            prog.save(str(path), external_data=False)
    return ""


def torch_feeds(case: TorchCase, path: pathlib.Path) -> list[dict]:
    """Feeds to try, best first: the run shape (batch 3, seq 5), then the export shape."""
    names = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    feeds = []
    for batch, seq in ((3, 5), (2, 8)):
        arrs = dict(zip(case.input_names, (t.numpy() for t in case.make(batch, seq))))
        feeds.append({k: v for k, v in arrs.items() if k in names})
    return feeds


# --------------------------------------------------------------------------- scikit-learn

@dataclass
class SkCase:
    name: str
    build: Callable[[], tuple]        # -> (onnx ModelProto, feeds dict)
    note: str = ""


def _digits():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def _sk_convert(model, X, zipmap, name, options=None):
    from skl2onnx import to_onnx
    opts = dict(options or {})
    if zipmap is not None:
        opts.setdefault("zipmap", zipmap)
    onx = to_onnx(model, X[:1], options={id(model): opts} if opts else None, target_opset={"": 17, "ai.onnx.ml": 3})
    return _dedupe_opsets(onx)


def _dedupe_opsets(onx):
    seen, keep = set(), []
    for o in onx.opset_import:
        if o.domain not in seen:
            seen.add(o.domain)
            keep.append(o)
    del onx.opset_import[:]
    onx.opset_import.extend(keep)
    return onx


def _sk_classifier(make, zipmap, subset=None):
    def build():
        X, y = _digits()
        if subset:
            X, y = X[:subset], y[:subset]
        m = make().fit(X, y)
        onx = _sk_convert(m, X, zipmap, None)
        return onx, {"X": X[:7]}
    return build


def _sk_simple(make, kind="cls"):
    def build():
        X, y = _digits()
        X, y = X[:400], y[:400]
        if kind == "reg":
            y = y.astype(np.float32) + X[:, 20]
        m = make().fit(X, y) if kind != "unsup" else make().fit(X)
        return _sk_convert(m, X, None, None), {"X": X[:7]}
    return build


def _sk_column_transformer(zipmap):
    def build():
        import pandas as pd
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        rng = np.random.default_rng(SEED)
        n = 200
        df = pd.DataFrame({
            "age": rng.normal(40, 10, n).astype(np.float32),
            "income": rng.lognormal(10, 1, n).astype(np.float32),
            "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
            "rooms": rng.integers(1, 6, n).astype(np.int64),
        })
        y = ((df.age > 40).astype(int) + (df.city == "paris").astype(int) + (df.rooms > 3)).to_numpy()
        pre = ColumnTransformer([
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "rooms"]),
        ])
        pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(df, y)
        types = [("age", FloatTensorType([None, 1])), ("income", FloatTensorType([None, 1])),
                 ("city", StringTensorType([None, 1])), ("rooms", Int64TensorType([None, 1]))]
        onx = to_onnx(pipe, initial_types=types, options={id(pipe.steps[-1][1]): {"zipmap": zipmap}},
                      target_opset={"": 17, "ai.onnx.ml": 3})
        test = df.iloc[:6]
        feeds = {"age": test[["age"]].to_numpy(np.float32), "income": test[["income"]].to_numpy(np.float32),
                 "city": np.array([["paris"], ["lyon"], ["nice"], ["lille"], ["brest"], ["paris"]], dtype=object),
                 "rooms": test[["rooms"]].to_numpy(np.int64)}
        return _dedupe_opsets(onx), feeds
    return build


def _sk_cases() -> list[SkCase]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestRegressor)
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    cases = []
    for zm in (True, False):
        z = "zipmap" if zm else "nozipmap"
        cases += [
            SkCase(f"sk_coltrans_logreg_{z}", _sk_column_transformer(zm)),
            SkCase(f"sk_gbc_{z}", _sk_classifier(lambda: GradientBoostingClassifier(
                n_estimators=5, max_depth=3, random_state=SEED), zm, subset=500)),
            SkCase(f"sk_histgb_{z}", _sk_classifier(lambda: HistGradientBoostingClassifier(
                max_iter=5, random_state=SEED), zm, subset=500)),
            SkCase(f"sk_svc_{z}", _sk_classifier(lambda: SVC(probability=True, random_state=SEED), zm, subset=300)),
            SkCase(f"sk_knn_{z}", _sk_classifier(lambda: KNeighborsClassifier(3), zm, subset=300)),
        ]
    cases += [
        SkCase("sk_rf_regressor", _sk_simple(lambda: RandomForestRegressor(5, max_depth=5, random_state=SEED),
                                            "reg")),
        SkCase("sk_histgb_regressor", _sk_simple(lambda: HistGradientBoostingRegressor(
            max_iter=5, random_state=SEED), "reg")),
        SkCase("sk_kmeans", _sk_simple(lambda: KMeans(4, n_init=2, random_state=SEED), "unsup")),
        SkCase("sk_pca", _sk_simple(lambda: PCA(5, random_state=SEED), "unsup")),
    ]
    return cases


# =========================================================================== comparing

def _first_line(e: BaseException) -> str:
    """The first line of an exception; for minirt's "cannot run" list, the listed ops too."""
    lines = [ln.strip() for ln in f"{type(e).__name__}: {e}".strip().splitlines()]
    if type(e).__name__ == "UnsupportedOpError" and len(lines) > 1:
        return " ".join(ln for ln in lines if not ln.startswith("See "))[:400]
    return lines[0][:300]


def _ort_session(path_or_bytes):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes), so,
                                providers=["CPUExecutionProvider"])


def _as_numpy(x):
    return x if isinstance(x, (list, dict)) else np.asarray(x)


def compare_outputs(got: dict, want: dict, rtol=RTOL, atol=ATOL) -> tuple[bool, str]:
    """(ok, detail). Floats with allclose, everything else exactly, ZipMap lists of dicts by key."""
    if set(got) != set(want):
        return False, f"outputs {sorted(got)} != onnxruntime's {sorted(want)}"
    worst = (0.0, "")
    for name, w in want.items():
        g = got[name]
        if isinstance(w, list):                    # ZipMap: list of {label: prob}
            if not isinstance(g, (list, tuple)) or len(g) != len(w):
                return False, f"{name}: {type(g).__name__} len {len(g) if hasattr(g, '__len__') else '?'} " \
                              f"!= list of {len(w)} dicts"
            for i, (gd, wd) in enumerate(zip(g, w)):
                if not isinstance(gd, dict) or set(gd) != set(wd):
                    return False, f"{name}[{i}]: keys {sorted(gd) if isinstance(gd, dict) else type(gd)} " \
                                  f"!= {sorted(wd)}"
                for k in wd:
                    if not np.isclose(gd[k], wd[k], rtol=rtol, atol=atol):
                        return False, f"{name}[{i}][{k}]: {gd[k]} != {wd[k]}"
            continue
        g = np.asarray(g)
        w = np.asarray(w)
        if g.shape != w.shape:
            return False, f"{name}: shape {g.shape} != onnxruntime's {w.shape}"
        if g.dtype != w.dtype and not (g.dtype.kind in "OUS" and w.dtype.kind in "OUS"):
            return False, f"{name}: dtype {g.dtype} != onnxruntime's {w.dtype}"
        if w.dtype.kind == "f":
            if not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
                err = np.abs(g.astype(np.float64) - w.astype(np.float64))
                err = np.nan_to_num(err, nan=np.inf)
                return False, f"{name}: max abs err {err.max():.3g} (max |ref| {np.abs(w).max():.3g})"
            if g.size:
                worst = max(worst, (float(np.nanmax(np.abs(g.astype(np.float64) - w))), name))
        elif not np.array_equal(g, w):
            bad = int((g != w).sum())
            return False, f"{name}: {bad}/{w.size} elements differ (exact compare)"
    return True, f"max abs err {worst[0]:.2g}" if worst[1] else ""


def first_divergence(path: pathlib.Path, feeds: dict, rtol=RTOL, atol=ATOL) -> str:
    """Run minirt with every intermediate, onnxruntime with every node output exposed as an
    extra graph output, and name the first node (in graph order) whose output differs."""
    import minirt
    m = onnx.load(str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
        types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:
        types = {}
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in have:
                m.graph.output.append(types[o] if o in types else onnx.ValueInfoProto(name=o))
                have.add(o)
    try:
        sess = _ort_session(m.SerializeToString())
    except Exception:
        del m.graph.output[:]
        m.graph.output.extend(types[o] for o in have if o in types)
        sess = _ort_session(m.SerializeToString())
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    got = minirt.run(str(path), feeds, intermediate=True)
    for node in m.graph.node:
        for o in node.output:
            if o in want and o in got:
                ok, detail = compare_outputs({o: got[o]}, {o: want[o]}, rtol, atol)
                if not ok:
                    return f"first diverging node {node.name or '?'} ({node.op_type}) output {detail}"
    return "no intermediate diverges (only the final outputs?)"


def check(path: pathlib.Path, feeds_list: list[dict], rtol=RTOL, atol=ATOL) -> dict:
    """Run path in onnxruntime and minirt; return a result dict."""
    import minirt
    res: dict[str, Any] = {}
    feeds, want, ort_err = None, None, None
    sess = None
    try:
        sess = _ort_session(path)
    except Exception as e:
        return {"status": "ort error", "detail": _first_line(e)}
    for f in feeds_list:
        try:
            want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, f)))
            feeds = f
            break
        except Exception as e:
            ort_err = e
    if want is None:
        return {"status": "ort error", "detail": _first_line(ort_err)}
    if feeds is not feeds_list[0]:
        res["run_note"] = "static dims: run at the export shape"
    try:
        msess = minirt.InferenceSession(str(path))
    except Exception as e:
        return {**res, "status": "minirt error", "detail": "load: " + _first_line(e)}
    try:
        t0 = time.perf_counter()
        outs = msess.run(None, feeds)
        res["minirt_s"] = round(time.perf_counter() - t0, 4)
        got = dict(zip([o.name for o in msess.get_outputs()], outs))
    except Exception as e:
        return {**res, "status": "minirt error", "detail": "run: " + _first_line(e)}
    ok, detail = compare_outputs(got, want, rtol, atol)
    if ok:
        return {**res, "status": "pass", "detail": detail}
    try:
        where = first_divergence(path, feeds, rtol, atol)
    except Exception as e:
        where = f"(divergence search failed: {_first_line(e)})"
    return {**res, "status": "mismatch", "detail": f"{detail}; {where}"}


def describe(path: pathlib.Path) -> dict:
    m = onnx.load(str(path), load_external_data=False)
    ops = sorted({(n.domain or "", n.op_type) for n in m.graph.node})
    funcs = sorted({f.name for f in m.functions})
    return {
        "opsets": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "ops": [f"{d}.{t}" if d else t for d, t in ops],
        "functions": funcs,
        "size_kb": round(path.stat().st_size / 1024, 1),
    }


# =========================================================================== ORT transformer optimizer

ORTOPT = {  # name -> (source model, model_type, num_heads, hidden_size)
    "bert_ortopt": ("bert", "bert", 2, 32),
    "distilbert_ortopt": ("distilbert", "bert", 2, 32),
    "gpt2_ortopt": ("gpt2", "gpt2", 2, 32),
    # eager attention (MatMul/Softmax, as older transformers exported): the optimizer fuses it
    "bert_eager_ortopt": ("bert", "bert", 2, 32),
    "distilbert_eager_ortopt": ("distilbert", "bert", 2, 32),
    "gpt2_eager_ortopt": ("gpt2", "gpt2", 2, 32),
    "gpt2_past_eager_ortopt": ("gpt2_past", "gpt2", 2, 32),
}


def ort_optimize(src: pathlib.Path, dst: pathlib.Path, model_type, num_heads, hidden) -> None:
    from onnxruntime.transformers.optimizer import optimize_model
    opt = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden,
                         opt_level=None, use_gpu=False)
    opt.save_model_to_file(str(dst))



# =========================================================================== onnxruntime's own tools
# Models as onnxruntime's tools rewrite them: quantized (dynamic: MatMulInteger /
# DynamicQuantizeLinear; static QDQ: QuantizeLinear/DequantizeLinear pairs; static QOperator:
# QLinearConv, com.microsoft QLinearAdd / QLinearGlobalAveragePool ...) and ORT's offline
# graph optimizer at ORT_ENABLE_EXTENDED (com.microsoft FusedConv, FusedGemm, BiasGelu ...).

ORTTOOLS = {  # name -> (source case, tool)
    "bert_qdynamic": ("bert", "qdynamic"),
    "gpt2_qdynamic": ("gpt2", "qdynamic"),
    "rnn_plain_qdynamic": ("rnn_plain", "qdynamic"),
    "resnet_qdq": ("resnet", "qdq"),
    "mobilenetv2_qdq": ("mobilenetv2", "qdq"),
    "resnet_qop": ("resnet", "qop"),
    "mobilenetv2_qop": ("mobilenetv2", "qop"),
    "resnet_ortext": ("resnet", "ortext"),
    "mobilenetv2_ortext": ("mobilenetv2", "ortext"),
    "bert_ortext": ("bert", "ortext"),
    "gpt2_ortext": ("gpt2", "ortext"),
}


def ort_tool(case: "TorchCase", src: pathlib.Path, dst: pathlib.Path, tool: str) -> None:
    import onnxruntime as ort
    from onnxruntime import quantization as q
    if tool == "qdynamic":
        q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8)
    elif tool in ("qdq", "qop"):
        names = [i.name for i in onnx.load(str(src)).graph.input]

        class Reader(q.CalibrationDataReader):
            def __init__(self):
                self.it = iter([dict(zip(names, (t.numpy() for t in case.make(4, 8)))) for _ in range(1)]
                               + [dict(zip(names, (t.numpy() for t in case.make(b, 8)))) for b in (1, 2, 3)])

            def get_next(self):
                return next(self.it, None)

        pre = dst.with_suffix(".pre.onnx")
        q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        q.quantize_static(str(pre), str(dst), Reader(),
                          quant_format=q.QuantFormat.QDQ if tool == "qdq" else q.QuantFormat.QOperator,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          per_channel=tool == "qdq")
        pre.unlink()
    elif tool == "ortext":
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(dst)
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    else:
        raise ValueError(tool)


# =========================================================================== odd corners
# Local functions (classic exporter's export_modules_as_functions), control flow (TorchScript
# loops/ifs -> Loop/If; torch.cond -> If), float16 weights and activations.

def scripted_loop():
    """A TorchScript module (torch.jit.script): its loop and data-dependent if export as real
    Loop / If nodes with subgraphs."""
    import torch

    class Body(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            h = x
            for _ in range(x.shape[1] // 2):        # trip count from a shape: Loop
                h = torch.tanh(self.lin(h)) + h
            if bool(h.sum() > 0):                    # data-dependent If
                h = h * 2.0
            else:
                h = h - 1.0
            return h

    return torch.jit.script(Body())


def cond_model():
    import torch

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(8, 8)
            self.b = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda t: self.a(t).relu(), lambda t: self.b(t).sigmoid(), (x,))

    return M()


def _vec(name, d=8):
    def make(batch, seq):
        torch = _t()
        return (torch.randn(batch, d, generator=_gen(name, batch)),)
    return make


def _half(build):
    def b():
        return build().half()
    return b


def _half_image(name):
    def make(batch, seq):
        return tuple(t.half() for t in _image(name)(batch, seq))
    return make


TORCH_CASES += [
    TorchCase("resnet_functions", "torch", _seeded(resnet), _image("resnet"), ["input"], ["logits"], IMG_DYN,
              exporters=("classic17fn",), note="export_modules_as_functions: ONNX local functions"),
    TorchCase("scripted_loop", "torch", _seeded(scripted_loop), _vec("loop"), ["x"], ["y"], {"x": {0: "batch"}},
              exporters=("classic13", "classic17")),
    TorchCase("torch_cond", "torch", _seeded(cond_model), _vec("cond"), ["x"], ["y"], {"x": {0: "batch"}},
              exporters=("dynamo",)),
    # float16 through and through; ORT and minirt may accumulate in different precisions
    TorchCase("resnet_fp16", "torch", _half(_seeded(resnet)), _half_image("resnet"), ["input"], ["logits"],
              IMG_DYN, exporters=("classic17", "dynamo"), rtol=1e-2, atol=1e-2),
    TorchCase("mobilenetv2_fp16", "torch", _half(_seeded(mobilenetv2)), _half_image("mobilenetv2"), ["input"],
              ["logits"], IMG_DYN, exporters=("classic17", "dynamo"), rtol=1e-2, atol=1e-2),
]

# =========================================================================== driver

def run_sweep(outdir: pathlib.Path, only=None, families=None, exporters=ATTN_EXPORTERS, do_run=True) -> list[dict]:
    outdir.mkdir(parents=True, exist_ok=True)
    results = []

    def record(r):
        results.append(r)
        print(f"{r['model']:28s} {r['exporter']:10s} {r['status']:13s} {r.get('detail', '')[:150]}", flush=True)
        (outdir / "results.json").write_text(json.dumps(results, indent=1))

    def want(name, fam):
        return (not only or name in only) and (not families or fam in families)

    for case in TORCH_CASES:
        if not want(case.name, case.family):
            continue
        for ex in exporters:
            if ex not in case.exporters and not (ex == "classic17" and "classic17fn" in case.exporters):
                continue
            if ex == "classic17" and "classic17fn" in case.exporters:
                ex = "classic17fn"
            path = outdir / f"{case.name}.{ex}.onnx"
            r = {"model": case.name, "family": case.family, "exporter": ex}
            t0 = time.perf_counter()
            try:
                note = export_torch(case, ex, path)
                if note:
                    r["note"] = note
            except Exception as e:
                r.update(status="export error", detail=_first_line(e))
                record(r)
                continue
            r["export_s"] = round(time.perf_counter() - t0, 1)
            r.update(describe(path))
            if do_run:
                r.update(check(path, torch_feeds(case, path), case.rtol, case.atol))
            else:
                r["status"] = "exported"
            record(r)

    for name, (src, mtype, heads, hidden) in ORTOPT.items():
        if not want(name, "ortopt"):
            continue
        ex = "classic17eager" if "_eager" in name else "classic17"
        r = {"model": name, "family": "ortopt", "exporter": f"ortopt({ex})"}
        srcpath = outdir / f"{src}.{ex}.onnx"
        case = next(c for c in TORCH_CASES if c.name == src)
        path = outdir / f"{name}.onnx"
        try:
            if not srcpath.exists():
                export_torch(case, ex, srcpath)
            ort_optimize(srcpath, path, mtype, heads, hidden)
        except Exception as e:
            r.update(status="export error", detail=_first_line(e))
            record(r)
            continue
        r.update(describe(path))
        if do_run:
            r.update(check(path, torch_feeds(case, path), case.rtol, case.atol))
        else:
            r["status"] = "exported"
        record(r)

    for name, (src, tool) in ORTTOOLS.items():
        if not want(name, "orttools"):
            continue
        r = {"model": name, "family": "orttools", "exporter": f"{tool}(classic17)"}
        case = next(c for c in TORCH_CASES if c.name == src)
        srcpath = outdir / f"{src}.classic17.onnx"
        path = outdir / f"{name}.onnx"
        try:
            if not srcpath.exists():
                export_torch(case, "classic17", srcpath)
            ort_tool(case, srcpath, path, tool)
        except Exception as e:
            r.update(status="export error", detail=_first_line(e))
            record(r)
            continue
        r.update(describe(path))
        if do_run:
            # int8 quantization: minirt and ORT may round a requantized value differently by one
            # step; compare float outputs at a scale-aware tolerance
            tol = (RTOL, ATOL) if tool == "ortext" else (1e-2, 5e-2)
            r.update(check(path, torch_feeds(case, path), *tol))
        else:
            r["status"] = "exported"
        record(r)

    if not families or "sklearn" in families:
        for sk in _sk_cases():
            if only and sk.name not in only:
                continue
            r = {"model": sk.name, "family": "sklearn", "exporter": "skl2onnx"}
            path = outdir / f"{sk.name}.onnx"
            try:
                onx, feeds = sk.build()
                onnx.save(onx, str(path))
            except Exception as e:
                r.update(status="export error", detail=_first_line(e))
                record(r)
                continue
            r.update(describe(path))
            if do_run:
                r.update(check(path, [feeds]))
            else:
                r["status"] = "exported"
            record(r)

    write_table(results, outdir / "results.md")
    return results


def write_table(results: list[dict], path: pathlib.Path) -> None:
    lines = ["| model | family | exporter | opsets | result | detail |", "|---|---|---|---|---|---|"]
    for r in results:
        ops = ", ".join(f"{k} {v}" for k, v in r.get("opsets", {}).items())
        notes = "; ".join(r[k] for k in ("note", "run_note") if r.get(k))
        detail = (r.get("detail", "") + (f" ({notes})" if notes else "")).replace("|", "\\|")
        lines.append(f"| {r['model']} | {r['family']} | {r['exporter']} | {ops} | {r['status']} | {detail} |")
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines.append("")
    lines.append("Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the committed zoo

ZOO_MODELS = {  # file stem under models/zoo -> (case name, exporter)
    "llama_tiny.dynamo": ("llama", "dynamo"),
    "bert_tiny.dynamo": ("bert", "dynamo"),
    "unet_mini.classic11": ("unet", "classic11"),
    "unet_mini.dynamo": ("unet", "dynamo"),
    "mobilenetv2_se.dynamo": ("mobilenetv2", "dynamo"),
    "gpt2_past.classic17": ("gpt2_past", "classic17"),
    "t5_encoder.dynamo": ("t5_encoder", "dynamo"),
}
ZOO_ORTOPT = {"bert_tiny.ortopt": "bert_eager_ortopt"}
ZOO_ORTTOOLS = {"mobilenetv2.qop": "mobilenetv2_qop", "mobilenetv2.ortext": "mobilenetv2_ortext",
                "rnn_plain.qdynamic": "rnn_plain_qdynamic"}
ZOO_SKLEARN = {"sk_coltrans_logreg.zipmap": "sk_coltrans_logreg_zipmap"}


def _save_feeds(path: pathlib.Path, feeds: dict) -> None:
    # strings as fixed-width unicode, so the npz loads without pickle
    np.savez(str(path), **{k: v.astype(str) if v.dtype == object else v for k, v in feeds.items()})


def _first_ort_feeds(path: pathlib.Path, feeds_list: list[dict]) -> dict:
    sess = _ort_session(path)
    for f in feeds_list:
        try:
            sess.run(None, f)
            return f
        except Exception:
            continue
    raise RuntimeError(f"{path.name}: onnxruntime runs none of the feeds")


def _strip_metadata(path: pathlib.Path) -> None:
    """Drop the dynamo exporter's per-node metadata_props (stack traces, module paths: ~70 %
    of a tiny model's bytes) and doc strings; the graph itself is untouched."""
    m = onnx.load(str(path))

    def strip(g):
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    strip(a.g)
                for sub in a.graphs:
                    strip(sub)
    strip(m.graph)
    for f in m.functions:
        for n in f.node:
            del n.metadata_props[:]
    onnx.save(m, str(path))


def make_zoo(outdir: pathlib.Path = ZOO) -> None:
    """Re-make models/zoo/*.onnx and their seeded inputs (*.inputs.npz)."""
    outdir.mkdir(parents=True, exist_ok=True)
    cases = {c.name: c for c in TORCH_CASES}
    for stem, (name, ex) in ZOO_MODELS.items():
        path = outdir / f"{stem}.onnx"
        export_torch(cases[name], ex, path)
        _strip_metadata(path)
        _save_feeds(outdir / f"{stem}.inputs.npz", _first_ort_feeds(path, torch_feeds(cases[name], path)))
    with tempfile.TemporaryDirectory() as tmp:
        for stem, name in ZOO_ORTOPT.items():
            src, mtype, heads, hidden = ORTOPT[name]
            ex = "classic17eager" if "_eager" in name else "classic17"
            s = pathlib.Path(tmp) / f"{stem}.src.onnx"
            export_torch(cases[src], ex, s)
            path = outdir / f"{stem}.onnx"
            ort_optimize(s, path, mtype, heads, hidden)
            _save_feeds(outdir / f"{stem}.inputs.npz", _first_ort_feeds(path, torch_feeds(cases[src], path)))
        for stem, name in ZOO_ORTTOOLS.items():
            src, tool = ORTTOOLS[name]
            s = pathlib.Path(tmp) / f"{stem}.src.onnx"
            export_torch(cases[src], "classic17", s)
            path = outdir / f"{stem}.onnx"
            ort_tool(cases[src], s, path, tool)
            _save_feeds(outdir / f"{stem}.inputs.npz", _first_ort_feeds(path, torch_feeds(cases[src], path)))
    sk = {c.name: c for c in _sk_cases()}
    for stem, name in ZOO_SKLEARN.items():
        onx, feeds = sk[name].build()
        onnx.save(onx, str(outdir / f"{stem}.onnx"))
        _save_feeds(outdir / f"{stem}.inputs.npz", feeds)
    for p in sorted(outdir.glob("*.onnx")):
        d = describe(p)
        print(f"{p.name:36s} {d['size_kb']:7.1f} KB  {d['opsets']}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--only", default="")
    ap.add_argument("--family", default="")
    ap.add_argument("--exporters", default=",".join(ATTN_EXPORTERS))
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--zoo", action="store_true", help="re-make models/zoo/*.onnx and stop")
    a = ap.parse_args(argv)
    if a.zoo:
        make_zoo(pathlib.Path(a.outdir) if a.outdir else ZOO)
        return
    out = pathlib.Path(a.outdir) if a.outdir else pathlib.Path(tempfile.mkdtemp(prefix="minirt_sweep_"))
    print(f"writing to {out}")
    run_sweep(out, only=set(filter(None, a.only.split(","))), families=set(filter(None, a.family.split(","))),
              exporters=tuple(a.exporters.split(",")), do_run=not a.no_run)
    print(f"results: {out / 'results.md'}")


if __name__ == "__main__":
    main()
