"""A small transformer for the summary's Next Check 2: a character-level language model.

Data: the source text of a few modules of Python's own standard library (they ship with every
Python, so nothing is downloaded; the text, hence the numbers, depend on the Python version,
which the provenance records). The first 90 % of the characters train, the last 10 % validate.
The model is a pre-norm decoder with causal self-attention whose linear layers (the attention
projections ``qkv``/``proj`` and the MLP ``fc1``/``fc2`` of every block) are ``nn.Linear``, so
that every compression method of :mod:`hmat.nn` can replace them.
"""

from __future__ import annotations

import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

__all__ = ["STDLIB_FILES", "CharData", "load_text", "TinyTransformer", "is_compressed_layer",
           "train_lm", "evaluate_lm"]

STDLIB_FILES = ("textwrap.py", "functools.py", "heapq.py", "string.py", "bisect.py")
COMPRESSED = ("qkv", "proj", "fc1", "fc2")


def is_compressed_layer(name: str, layer) -> bool:
    """Predicate for :func:`hmat.nn.replace_linear`: attention projections and MLP of every
    block (the embedding and the output head stay dense)."""
    return name.rsplit(".", 1)[-1] in COMPRESSED


@dataclass
class CharData:
    train: torch.Tensor  # (n_train,) int64 character codes
    val: torch.Tensor
    vocab: list
    files: tuple
    n_chars: int


def load_text(files=STDLIB_FILES, val_fraction: float = 0.1) -> CharData:
    """The concatenated source of ``files`` (paths relative to the standard library), encoded
    over the sorted set of its characters; the last ``val_fraction`` validates."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for f in files:
        p = root / f
        if not p.is_file():
            raise FileNotFoundError(f"files: {f!r} is not a file of the standard library ({root})")
        texts.append(p.read_text(encoding="utf-8"))
    text = "\n".join(texts)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    codes = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(round(val_fraction * len(codes)))
    return CharData(codes[:-n_val], codes[-n_val:], vocab, tuple(files), len(codes))


class Block(nn.Module):
    """Pre-norm transformer block: causal multi-head attention and a 4x MLP (GELU)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Character embedding + learned positions, ``depth`` blocks, final norm, linear head."""

    def __init__(self, vocab_size: int, d: int = 128, depth: int = 2, heads: int = 4,
                 context: int = 64, seed: int = 0):
        super().__init__()
        for arg, v in (("vocab_size", vocab_size), ("d", d), ("depth", depth), ("heads", heads),
                       ("context", context)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{arg} must be a positive integer, got {v!r}")
        if d % heads:
            raise ValueError(f"d ({d}) must be a multiple of heads ({heads})")
        self.context = int(context)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.tok = nn.Embedding(vocab_size, d)
            self.pos = nn.Parameter(0.02 * torch.randn(context, d))
            self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab_size)

    def forward(self, idx):
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def _windows(codes: torch.Tensor, context: int, starts: torch.Tensor):
    offs = torch.arange(context + 1)
    w = codes[starts[:, None] + offs]
    return w[:, :-1], w[:, 1:]


def train_lm(model: TinyTransformer, data: CharData, steps: int = 300, batch: int = 32,
             lr: float = 3e-3, seed: int = 0, progress: bool = True) -> dict:
    """AdamW on next-character cross-entropy over random windows (seeded), cosine decay."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / max(steps, 1))))
    high = len(data.train) - model.context - 1
    losses, t0 = [], time.perf_counter()
    model.train()
    for _ in tqdm(range(steps), desc="train transformer", disable=not progress):
        x, y = _windows(data.train, model.context, torch.randint(0, high, (batch,), generator=gen))
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - t0}


def evaluate_lm(model: nn.Module, data: CharData, context: int | None = None) -> dict:
    """Validation loss (nats per character) and next-character error over non-overlapping
    windows of the validation text; ``wrong`` is the per-character 0/1 error (for paired
    intervals between two models on the same characters)."""
    ctx = context or model.context
    n = (len(data.val) - 1) // ctx
    starts = torch.arange(n) * ctx
    x, y = _windows(data.val, ctx, starts)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        model.train(was)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    wrong = (logits.argmax(-1) != y).flatten().numpy().astype(np.float64)
    return {"val_loss": float(loss), "error": 100.0 * float(wrong.mean()), "wrong": wrong}
