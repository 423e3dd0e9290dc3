"""Text generation with a KV cache: one token at a time, each step reusing the keys and values
of every earlier token instead of computing them again.

    ids = generate("chargpt.onnx", prompt_ids, 100, greedy=True)               # KV cache
    ids = generate("chargpt.onnx", prompt_ids, 100, greedy=True, use_cache=False)  # same ids, slower
    ids, stats = generate(sess, prompt_ids, 100, temperature=0.8, top_k=10, seed=0, return_stats=True)
    print(stats.summary())          # tokens/s, time to first token, per-token latency

    vocab = load_vocab()             # the bundled chargpt model's characters
    print(vocab.decode(generate(chargpt_path(), vocab.encode("The "), 80, greedy=True)))

The model must follow the explicit past/present convention (models/train_char_transformer.py
exports one, and so does Hugging Face's ONNX export of GPT-2 "with past"):

    inputs   input_ids               int64   [batch, seq]
             past_key_{i}, past_value_{i}   [batch, heads, past_seq, head_dim]   (past_seq may be 0)
             (optional) attention_mask int64 [batch, past_seq + seq]; position_ids int64 [batch, seq]
    outputs  logits                  [batch, seq, vocab]
             present_key_{i}, present_value_{i}  [batch, heads, past_seq + seq, head_dim]

Inputs and outputs are found by name: any input whose name starts with ``past`` and holds a
layer number and ``key``/``value`` (``past_key_0``, ``past_key_values.0.key``) is paired with the
output starting with ``present`` that has the same number and kind.

With the cache, the first step (the "prefill") runs the whole prompt with empty pasts; every
later step feeds only the token just chosen, plus the present_* of the step before as past_*.
Without it, every step runs the whole sequence so far with empty pasts: the same logits (up to
float rounding), but step t redoes the work of the t-1 steps before it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from minirt.errors import InputError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


# ---------------------------------------------------------------------- the bundled model and its vocab
def chargpt_path() -> Path:
    """The bundled character-level GPT (minirt/data/chargpt.onnx)."""
    return Path(str(resources.files("minirt") / "data" / "chargpt.onnx"))


@dataclass
class Vocab:
    """Characters <-> token ids, as stored in a model's json (``"vocab": [char for id 0, 1, ...]``)."""

    chars: list[str]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str, errors: str = "replace") -> np.ndarray:
        """Token ids (int64 [len]). A character outside the vocab becomes a space with
        ``errors="replace"``, is dropped with ``"ignore"``, raises with ``"strict"``."""
        ids = []
        for c in text:
            if c in self.index:
                ids.append(self.index[c])
            elif errors == "strict":
                raise InputError(f"character {c!r} is not in the model's vocab of {len(self)} characters")
            elif errors == "replace" and " " in self.index:
                ids.append(self.index[" "])
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def load_vocab(path: str | Path | None = None) -> Vocab:
    """The vocab in a model's json (default: the bundled chargpt.json). ``path`` may also be the
    .onnx file, whose json sits beside it with the same stem."""
    path = Path(path) if path is not None else chargpt_path().with_suffix(".json")
    if path.suffix == ".onnx":
        path = path.with_suffix(".json")
    meta = json.loads(path.read_text())
    if "vocab" not in meta:
        raise InputError(f"{path} has no 'vocab' list: it is not a character model's json")
    return Vocab(list(meta["vocab"]), meta)


# ---------------------------------------------------------------------- statistics
@dataclass
class GenerationStats:
    """What one :func:`generate` call cost."""

    use_cache: bool
    prompt_tokens: int
    new_tokens: int
    total_s: float
    time_to_first_token_s: float  # the prefill and the first sampled token
    token_latencies_s: list[float]  # one per new token; [0] is the time to first token
    step_input_lengths: list[int]  # tokens fed to the model at each step (1 after the prefill, cached)

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second, the prefill included."""
        return self.new_tokens / self.total_s if self.total_s > 0 else float("inf")

    @property
    def decode_tokens_per_s(self) -> float:
        """New tokens per second after the first (the steady decoding speed)."""
        rest = self.token_latencies_s[1:]
        return len(rest) / sum(rest) if rest and sum(rest) > 0 else float("nan")

    @property
    def mean_token_latency_ms(self) -> float:
        rest = self.token_latencies_s[1:] or self.token_latencies_s
        return 1e3 * float(np.mean(rest)) if rest else float("nan")

    def summary(self) -> str:
        lat = np.array(self.token_latencies_s[1:] or self.token_latencies_s) * 1e3
        p50, p90 = (np.percentile(lat, [50, 90]) if len(lat) else (float("nan"),) * 2)
        return (f"{'with' if self.use_cache else 'without'} KV cache: {self.new_tokens} new tokens after a "
                f"{self.prompt_tokens}-token prompt in {self.total_s * 1e3:.0f} ms = "
                f"{self.tokens_per_s:.1f} tokens/s; "
                f"time to first token {self.time_to_first_token_s * 1e3:.1f} ms; "
                f"per-token latency p50 {p50:.2f} ms, p90 {p90:.2f} ms")


# ---------------------------------------------------------------------- the model's inputs and outputs
@dataclass
class _Signature:
    ids: str
    logits: str
    past: list[str]  # input names, in (layer, key/value) order
    present: list[str]  # the output that feeds each of them
    past_shape: list[tuple[int, int]]  # (heads, head_dim) of each past input
    past_dtype: list[Any]
    attention_mask: str | None
    position_ids: str | None


def _layer_and_kind(name: str) -> tuple[int, str] | None:
    num = re.search(r"(\d+)", name)
    kind = re.search(r"(key|value)", name)
    return (int(num.group(1)), kind.group(1)) if num and kind else None


def _signature(sess) -> _Signature:
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    past = {_layer_and_kind(i.name): i for i in inputs if i.name.startswith("past") and _layer_and_kind(i.name)}
    present = {_layer_and_kind(o.name): o.name for o in outputs
               if o.name.startswith("present") and _layer_and_kind(o.name)}
    if not past:
        raise InputError(
            "this model has no past_* inputs, so it cannot use a KV cache: export it with explicit past "
            "key/value inputs and present outputs (see models/train_char_transformer.py); its inputs are "
            f"{[i.name for i in inputs]}")
    missing = sorted(set(past) - set(present))
    if missing:
        raise InputError(f"no present_* output for the past inputs of (layer, kind) {missing}; "
                         f"outputs are {[o.name for o in outputs]}")
    order = sorted(past)
    shapes, dtypes = [], []
    for k in order:
        shape = past[k].shape
        if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
            raise InputError(f"input {past[k].name!r} has shape {shape}: expected [batch, heads, past_seq, "
                             "head_dim] with fixed heads and head_dim")
        shapes.append((shape[1], shape[3]))
        dtypes.append(_DTYPES.get(past[k].type, np.float32))
    others = [i.name for i in inputs if i.name not in {p.name for p in past.values()}]
    ids = "input_ids" if "input_ids" in others else next(
        (n for n in others if "ids" in n and "position" not in n), None)
    mask = next((n for n in others if n == "attention_mask"), None)
    pos = next((n for n in others if n == "position_ids"), None)
    unknown = [n for n in others if n not in (ids, mask, pos)]
    if ids is None or unknown:
        raise InputError(f"cannot tell how to feed inputs {unknown or others}: generate() feeds input_ids, "
                         "past_*, and optionally attention_mask and position_ids")
    out_names = [o.name for o in outputs]
    logits = "logits" if "logits" in out_names else next(n for n in out_names if n not in present.values())
    return _Signature(ids, logits, [past[k].name for k in order], [present[k] for k in order], shapes, dtypes,
                      mask, pos)


def _session(model):
    if hasattr(model, "run") and hasattr(model, "get_inputs"):
        return model  # a minirt or onnxruntime InferenceSession
    from minirt.session import InferenceSession

    return InferenceSession(model)


# ---------------------------------------------------------------------- choosing the next token
def sample_next(logits: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                greedy: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
    """One token id per row of ``logits`` [batch, vocab].

    greedy (or temperature 0, or top_k 1): argmax. Otherwise p = softmax(logits / temperature)
    over the top_k largest logits (all of them when top_k is None), and a draw from p.
    """
    if greedy or temperature == 0 or top_k == 1:
        return logits.argmax(axis=-1)
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    rng = rng if rng is not None else np.random.default_rng()
    z = logits.astype(np.float64) / temperature  # [batch, vocab]
    if top_k is not None and top_k < z.shape[-1]:
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]  # the k-th largest of each row
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


# ---------------------------------------------------------------------- generate
def generate(model, prompt_ids: Sequence[int] | np.ndarray, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, greedy: bool = False, use_cache: bool = True, seed: int | None = None,
             eos_id: int | None = None, max_length: int | None = None, return_stats: bool = False):
    """Extend ``prompt_ids`` by up to ``max_new_tokens`` tokens; returns prompt + new tokens.

    ``model``: a path, bytes, or an InferenceSession (minirt's or onnxruntime's) following the
    past/present convention of this module. ``prompt_ids``: int [seq] or [batch, seq] (the
    result has the same rank). Sampling draws from ``np.random.default_rng(seed)``, so a seed
    makes it reproducible; ``greedy`` always takes the most likely token. Generation stops early
    when every row has produced ``eos_id`` (rows that finished first are padded with it).
    ``max_length`` (the model's context, e.g. ``n_ctx`` in chargpt.json) refuses a prompt plus
    new tokens longer than the positions the model knows. With ``return_stats`` the result is
    ``(ids, GenerationStats)``.
    """
    sess = _session(model)
    sig = _signature(sess)
    prompt = np.asarray(prompt_ids, dtype=np.int64)
    squeeze = prompt.ndim == 1
    prompt = prompt[None] if squeeze else prompt
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise InputError(f"prompt_ids must be a non-empty [seq] or [batch, seq], got shape {prompt.shape}")
    if max_length is not None and prompt.shape[1] + max_new_tokens > max_length:
        raise InputError(f"a {prompt.shape[1]}-token prompt plus {max_new_tokens} new tokens is longer than "
                         f"the model's context of {max_length}: shorten the prompt or ask for fewer tokens")
    rng = np.random.default_rng(seed)
    batch = prompt.shape[0]
    empty = {name: np.zeros((batch, h, 0, d), dtype=dt)
             for name, (h, d), dt in zip(sig.past, sig.past_shape, sig.past_dtype)}

    ids = prompt
    past = empty
    finished = np.zeros(batch, dtype=bool)
    latencies, lengths = [], []
    t_start = time.perf_counter()
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        past_len = next(iter(past.values())).shape[2]
        new = ids[:, past_len:] if use_cache else ids  # with the cache, only what the cache lacks
        feed = {sig.ids: new, **(past if use_cache else empty)}
        start = past_len if use_cache else 0
        if sig.attention_mask:
            feed[sig.attention_mask] = np.ones((batch, start + new.shape[1]), dtype=np.int64)
        if sig.position_ids:
            feed[sig.position_ids] = np.broadcast_to(np.arange(start, start + new.shape[1]), new.shape).copy()
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        if use_cache:
            past = {p: outs[q] for p, q in zip(sig.past, sig.present)}  # present_* -> past_* of the next step
        nxt = sample_next(outs[sig.logits][:, -1, :], temperature=temperature, top_k=top_k, greedy=greedy,
                          rng=rng).astype(np.int64)
        if eos_id is not None:
            nxt = np.where(finished, eos_id, nxt)
            finished |= nxt == eos_id
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        latencies.append(time.perf_counter() - t0)
        lengths.append(int(new.shape[1]))
        if eos_id is not None and finished.all():
            break
    total = time.perf_counter() - t_start
    result = ids[0] if squeeze else ids
    if not return_stats:
        return result
    stats = GenerationStats(use_cache, int(prompt.shape[1]), len(latencies), total,
                            latencies[0] if latencies else 0.0, latencies, lengths)
    return result, stats


# ---------------------------------------------------------------------- command line
def add_cli(sub) -> None:
    p = sub.add_parser("generate", help="generate text with a character-level model and a KV cache")
    p.add_argument("model", nargs="?", help="an ONNX model with past/present inputs (default: bundled chargpt)")
    p.add_argument("--vocab", metavar="JSON", help="the json holding the model's vocab (default: MODEL.json)")
    p.add_argument("--prompt", default="The ", help="the text to continue (default: %(default)r)")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--no-cache", action="store_true", help="rerun the whole sequence at every step")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler (reproducible text)")
    p.add_argument("--threads", type=int, default=None,
                   help="cap BLAS/Numba threads (1 is fastest for a model this small on a busy machine)")
    p.add_argument("--compare-cache", action="store_true",
                   help="generate with and without the KV cache and compare tokens/s")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    from minirt.session import InferenceSession

    model = Path(args.model) if args.model else chargpt_path()
    vocab = load_vocab(args.vocab or model.with_suffix(".json"))
    n_ctx = vocab.meta.get("architecture", {}).get("n_ctx")
    prompt = vocab.encode(args.prompt)
    if len(prompt) == 0:
        raise InputError("the prompt is empty (or has no character of the model's vocab)")
    if n_ctx is not None and len(prompt) + args.max_new_tokens > n_ctx:
        keep = n_ctx - args.max_new_tokens
        if keep < 1:
            raise InputError(f"--max-new-tokens {args.max_new_tokens} leaves no room for a prompt in the "
                             f"model's context of {n_ctx} characters")
        print(f"(the model sees {n_ctx} characters: keeping the last {keep} of the prompt)")
        prompt = prompt[-keep:]
    sess = InferenceSession(model, threads=args.threads)
    kw = dict(temperature=args.temperature, top_k=args.top_k, greedy=args.greedy, seed=args.seed,
              max_length=n_ctx, return_stats=True)
    runs = [True, False] if args.compare_cache else [not args.no_cache]
    generate(sess, prompt, 2, **{**kw, "return_stats": False})  # warm-up: first-run costs are not timed
    results = []
    for use_cache in runs:
        ids, stats = generate(sess, prompt, args.max_new_tokens, use_cache=use_cache, **kw)
        results.append((ids, stats))
    ids, stats = results[0]
    print(vocab.decode(ids))
    print()
    for _, s in results:
        print(s.summary())
    if args.compare_cache:
        (a, sa), (b, sb) = results
        same = "identical" if np.array_equal(a, b) else "different (sampling from slightly different logits)"
        print(f"KV cache speed-up: {sa.tokens_per_s / sb.tokens_per_s:.2f}x; the two texts are {same}")
    return 0
