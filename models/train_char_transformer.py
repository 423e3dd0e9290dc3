"""Train chargpt: a tiny character-level GPT, exported with an explicit KV cache.

Run from the repository root (needs torch==2.13.0 and onnxruntime, NOT minirt deps):

    python models/train_char_transformer.py    # 2000 steps on one thread: ~4 CPU-minutes (10 min on a busy machine)

The text: the docstrings of ~90 pure-Python standard library modules (their module docstring,
then those of their public classes, functions and methods defined in the module, in sorted
order, via ``inspect.getdoc``), joined with blank lines and kept to printable ASCII. It ships
with every Python, so nothing is downloaded; the same Python version gives the same text
(CPython 3.11.7 gives 679,508 characters, see ``corpus`` in chargpt.json, with its
SHA-256). The last 10 % of the text is the validation split.

The model: decoder-only, pre-LayerNorm, learned absolute positions, 2 layers, d_model 64,
4 heads of 16, MLP 256 with GELU, tied input/output embedding, context 128 characters (so
that the default 100-token generation of ``minirt generate`` fits after a short prompt).

The ONNX graph (opset 17, classic TorchScript exporter) has an explicit KV cache:

    inputs   input_ids        int64   [batch, seq]
             past_key_{i}     float32 [batch, 4, past_seq, 16]   i = 0, 1 (past_seq may be 0)
             past_value_{i}   float32 [batch, 4, past_seq, 16]
    outputs  logits           float32 [batch, seq, vocab]
             present_key_{i}  float32 [batch, 4, past_seq + seq, 16]
             present_value_{i}

Positions are computed inside the graph from past_seq (the new tokens sit at
past_seq .. past_seq + seq - 1), and the causal mask lets query t see keys 0 .. past_seq + t.
Feeding the whole sequence with empty pasts, or the prompt and then one token at a time
while carrying present_* into past_*, gives the same logits.

Writes:
  minirt/data/chargpt.onnx   the model
  minirt/data/chargpt.json   vocab (id -> character), architecture, train/val loss, val
                             perplexity, corpus description and hash, versions, date
"""
from __future__ import annotations

import datetime
import hashlib
import importlib
import inspect
import json
import math
import pathlib
import platform
import string
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SEED = 0
N_LAYER, D_MODEL, N_HEAD, D_MLP, N_CTX = 2, 64, 4, 256, 128
BATCH, STEPS, LR = 32, 2000, 3e-3
THREADS = 1  # one thread beats two on a model this small (and gives the same numbers everywhere)
OUT = pathlib.Path(__file__).resolve().parent.parent / "minirt" / "data"

# Pure-Python modules (their docstrings are the same on every platform of one Python version).
MODULES = """abc argparse ast asyncio.base_events asyncio.events asyncio.futures asyncio.locks
asyncio.queues asyncio.streams asyncio.tasks base64 bisect calendar cmd codecs collections
concurrent.futures._base configparser contextlib copy csv dataclasses datetime decimal difflib
doctest email.message enum fractions ftplib functools gettext glob gzip heapq hmac html.parser
http.client http.cookiejar http.server imaplib inspect ipaddress json logging logging.handlers
mailbox mimetypes multiprocessing.pool numbers optparse os pathlib pdb pickle pickletools pprint
queue random re shlex shutil smtplib socket socketserver statistics string subprocess tarfile
tempfile textwrap threading tokenize trace traceback typing unittest.case unittest.mock
urllib.parse urllib.request uuid warnings weakref xml.dom.minidom zipfile""".split()
ALLOWED = set(string.printable) - set("\t\r\x0b\x0c")  # 95 printable ASCII characters + newline


def module_docs(name: str) -> list[str]:
    """The docstrings of one module: its own, then its public classes/functions/methods'."""
    mod = importlib.import_module(name)
    out = [inspect.getdoc(mod) or ""]
    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != name:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        out.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            for a, m in sorted(vars(obj).items()):
                if inspect.isfunction(m) and (not a.startswith("_") or a == "__init__"):
                    out.append(inspect.getdoc(m) or "")
    return [d for d in out if d]


def corpus() -> str:
    parts = [d for name in MODULES for d in module_docs(name)]
    return "".join(c for c in "\n\n".join(parts) if c in ALLOWED)


# ---------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.fc = nn.Linear(D_MODEL, D_MLP)
        self.out = nn.Linear(D_MLP, D_MODEL)

    def forward(self, x, past_k, past_v, mask):
        b, t, _ = x.shape
        hd = D_MODEL // N_HEAD
        q, k, v = self.qkv(self.ln1(x)).split(D_MODEL, dim=2)  # 3 x [B, T, C]
        q, k, v = (z.reshape(b, t, N_HEAD, hd).transpose(1, 2) for z in (q, k, v))  # [B, H, T, hd]
        k = torch.cat([past_k, k], dim=2)  # [B, H, P+T, hd]
        v = torch.cat([past_v, v], dim=2)
        att = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(hd))  # [B, H, T, P+T]
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, D_MODEL)  # [B, T, C]
        x = x + self.proj(y)
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, k, v


class CharGPT(nn.Module):
    """forward(input_ids, past_key_0, past_value_0, past_key_1, ...) -> logits, present_key_0, ..."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, D_MODEL)
        self.wpe = nn.Embedding(N_CTX, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D_MODEL)
        for name, p in self.named_parameters():  # GPT-2's init: small weights, zero biases
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, input_ids, *past):
        t = input_ids.shape[1]
        p = past[0].shape[2]  # past_seq: the number of tokens already in the cache
        pos = torch.arange(t, device=input_ids.device) + p  # positions of the new tokens
        x = self.wte(input_ids) + self.wpe(pos)[None]
        keys = torch.arange(p + t, device=input_ids.device)
        mask = keys[None, :] <= pos[:, None]  # [T, P+T]: query at pos sees keys up to pos
        presents = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past[2 * i], past[2 * i + 1], mask)
            presents += [k, v]
        logits = self.ln_f(x) @ self.wte.weight.T  # tied embedding: [B, T, vocab]
        return (logits, *presents)


def empty_past(batch: int, past_len: int = 0) -> list[torch.Tensor]:
    shape = (batch, N_HEAD, past_len, D_MODEL // N_HEAD)
    return [torch.zeros(shape) for _ in range(2 * N_LAYER)]


# ---------------------------------------------------------------------- training
def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    text = corpus()
    vocab = sorted(set(text))
    stoi = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n_val = len(data) // 10
    train, val = data[:-n_val], data[-n_val:]
    print(f"corpus: {len(text):,} characters, vocab {len(vocab)}, train {len(train):,}, val {len(val):,}")

    gen = torch.Generator().manual_seed(SEED)

    def batch(split: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(split) - N_CTX - 1, (n,), generator=gen)
        x = torch.stack([split[i : i + N_CTX] for i in ix])
        y = torch.stack([split[i + 1 : i + 1 + N_CTX] for i in ix])
        return x, y

    model = CharGPT(len(vocab))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.05)

    @torch.no_grad()
    def evaluate(split: torch.Tensor) -> float:
        """Mean cross-entropy (nats/char) over non-overlapping windows of the whole split."""
        model.eval()
        n = (len(split) - 1) // N_CTX
        x = split[: n * N_CTX].reshape(n, N_CTX)
        y = split[1 : n * N_CTX + 1].reshape(n, N_CTX)
        total = 0.0
        for i in range(0, n, 256):
            logits = model(x[i : i + 256], *empty_past(len(x[i : i + 256])))[0]
            total += F.cross_entropy(logits.reshape(-1, len(vocab)), y[i : i + 256].reshape(-1),
                                     reduction="sum").item()
        model.train()
        return total / (n * N_CTX)

    t0 = time.perf_counter()
    steps_done = 0
    for step in range(STEPS):
        x, y = batch(train, BATCH)
        logits = model(x, *empty_past(BATCH))[0]
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        steps_done = step + 1
        if step % 250 == 0:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f} s")
    train_seconds = time.perf_counter() - t0
    model.eval()
    train_loss, val_loss = evaluate(train[: len(val)]), evaluate(val)
    print(f"train loss {train_loss:.4f}  val loss {val_loss:.4f}  val perplexity {math.exp(val_loss):.3f}"
          f"  ({train_seconds:.0f} s, {steps_done} steps)")

    # ------------------------------------------------------------------ export
    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "chargpt.onnx"
    past_names = [f"past_{kv}_{i}" for i in range(N_LAYER) for kv in ("key", "value")]
    present_names = [f"present_{kv}_{i}" for i in range(N_LAYER) for kv in ("key", "value")]
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    dyn.update({n: {0: "batch", 2: "past_seq"} for n in past_names})
    dyn.update({n: {0: "batch", 2: "total_seq"} for n in present_names})
    example = (torch.zeros(1, 3, dtype=torch.long), *empty_past(1, 2))  # non-zero sizes: nothing baked in
    torch.onnx.export(model, example, str(onnx_path), input_names=["input_ids", *past_names],
                      output_names=["logits", *present_names], dynamic_axes=dyn, opset_version=17,
                      dynamo=False)
    verify(model, onnx_path, len(vocab))

    sample = sample_text(model, vocab, stoi, "The ", 120)
    print("greedy sample:", repr(sample))
    meta = {
        "model": "chargpt.onnx",
        "task": "next-character prediction (character-level decoder-only transformer)",
        "vocab": vocab,
        "vocab_size": len(vocab),
        "unknown_characters": "not in the vocab: drop them (or map them to ' ') before encoding",
        "architecture": {"n_layer": N_LAYER, "d_model": D_MODEL, "n_head": N_HEAD,
                         "head_dim": D_MODEL // N_HEAD, "d_mlp": D_MLP, "n_ctx": N_CTX,
                         "positions": "learned absolute, computed in-graph from past_seq",
                         "norm": "pre-LayerNorm", "activation": "GELU (erf)", "tied_embedding": True,
                         "parameters": n_params},
        "inputs": {"input_ids": "int64 [batch, seq]",
                   "past_key_{i}/past_value_{i}": f"float32 [batch, {N_HEAD}, past_seq, {D_MODEL // N_HEAD}]"
                                                  " (past_seq may be 0)"},
        "outputs": {"logits": "float32 [batch, seq, vocab]",
                    "present_key_{i}/present_value_{i}":
                        f"float32 [batch, {N_HEAD}, past_seq + seq, {D_MODEL // N_HEAD}]"},
        "corpus": {"source": "docstrings of pure-Python standard library modules (inspect.getdoc "
                             "of each module and its public classes, functions and methods), "
                             "printable ASCII only; see MODULES in the script",
                   "modules": MODULES, "characters": len(text),
                   "sha256": hashlib.sha256(text.encode()).hexdigest(),
                   "python": platform.python_version(), "val_split": "last 10% of the text"},
        "training": {"steps": steps_done, "batch": BATCH, "seq": N_CTX, "optimizer": "AdamW, one-cycle",
                     "lr": LR, "seconds": round(train_seconds, 1), "threads": THREADS},
        "train_loss": round(train_loss, 4),
        "val_loss": round(val_loss, 4),
        "val_perplexity": round(math.exp(val_loss), 3),
        "loss_unit": "nats per character, mean over non-overlapping 128-character windows",
        "greedy_sample": {"prompt": "The ", "text": sample},
        "seed": SEED,
        "opset": 17,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "date": datetime.date.today().isoformat(),
        "script": "models/train_char_transformer.py",
    }
    (OUT / "chargpt.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KB) and chargpt.json")


@torch.no_grad()
def sample_text(model: CharGPT, vocab, stoi, prompt: str, n: int) -> str:
    ids = torch.tensor([[stoi[c] for c in prompt]])
    logits, *past = model(ids, *empty_past(1))
    out = []
    for _ in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(vocab[int(nxt)])
        logits, *past = model(nxt, *past)
    return prompt + "".join(out)


@torch.no_grad()
def verify(model: CharGPT, path: pathlib.Path, vocab: int) -> None:
    """onnxruntime == torch: without past (past_seq 0), with past, at other batch/seq sizes."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    rng = np.random.default_rng(SEED)
    for batch, past_len, seq in [(1, 0, 1), (2, 0, 17), (3, 5, 1), (2, 40, 7), (1, 0, N_CTX)]:
        ids = torch.from_numpy(rng.integers(0, vocab, (batch, past_len + seq)))
        full = model(ids, *empty_past(batch))  # the whole sequence, no cache
        _, *past = model(ids[:, :past_len], *empty_past(batch))
        want = model(ids[:, past_len:], *past)  # the last `seq` tokens, with the cache
        got = sess.run(None, dict(zip(names, [ids[:, past_len:].numpy(), *(p.numpy() for p in past)])))
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(want[0].numpy(), full[0][:, past_len:].numpy(), rtol=1e-4, atol=1e-4)
    print("onnxruntime matches torch (with and without past); cached logits match uncached")


if __name__ == "__main__":
    main()
