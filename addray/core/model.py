"""Decoder-only pre-norm transformer with rotary position embeddings (RoPE).

The defaults are the reference's model: LayerNorm, biases everywhere, an untied output
head. ``model.norm: rmsnorm``, ``model.bias: false`` and ``model.tie_embeddings: true``
(the head reuses the embedding matrix) make much smaller models possible, and
``model.head_bias`` sets the head's bias apart from the blocks' (false with ``bias: true``:
biases in every block, none over the vocabulary); the module
names stay the same, so checkpoints of default models load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from addray.core.config import ModelConfig

INIT_STD = 0.02  # of every weight matrix and embedding at initialisation (as GPT-2)


class Rotary(nn.Module):
    """RoPE: position t turns each pair (x[i], x[i + head_dim/2]) of a head's dimensions
    by the angle t * theta^(-2i / head_dim), for any even head_dim (the reference's bug
    report).

    The tables are built once for max_seq_len positions, each pair's frequency written
    for both its halves. ``x * cos + rotate_half(x) * sin`` (rotate_half(x) = (-x2, x1))
    is computed as ``x * cos + x.roll(head_dim / 2) * sin_signed``, sin with its first half
    negated: the same numbers (a sign moves from one factor to the other) in one operation
    instead of three.
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(max_seq_len).float(), inv_freq)  # (T, hd/2)
        # not parameters and not saved: rebuilt from the config
        self.register_buffer("cos", torch.cat((freqs, freqs), dim=-1).cos(), persistent=False)
        self.register_buffer("sin_signed", torch.cat((-freqs.sin(), freqs.sin()), dim=-1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, heads, head_dim), as the qkv projection lays it out, rotated by
        position (the T axis). Rotating before the heads move in front of T keeps each
        multiplication on contiguous memory (several times faster on a CPU)."""
        t, half = x.size(-3), x.size(-1) // 2
        cos = self.cos[:t, None].to(x.dtype)  # (T, 1, hd)
        sin = self.sin_signed[:t, None].to(x.dtype)
        return x * cos + x.roll(half, dims=-1) * sin


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model)
    return nn.LayerNorm(cfg.d_model, bias=cfg.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.rotary = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)
        # fused training (core/fused.py) swaps in attention written as matrix products
        self.attend = F.scaled_dot_product_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h, hd = self.n_heads, c // self.n_heads
        qkv = self.qkv(x)  # (B, T, 3C)
        # q and k rotated together, before the heads are moved in front of T
        qk = self.rotary(qkv[..., : 2 * c].reshape(b, t, 2 * h, hd))
        q, k = qk.transpose(1, 2).split(h, dim=1)  # (B, H, T, hd) each
        v = qkv[..., 2 * c:].reshape(b, t, h, hd).transpose(1, 2)
        y = self.attend(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DigitBasis(nn.Module):
    """A token embedding whose digit rows are a learned linear map of fixed features:
    row n (digit n of base B) is ``basis[n] @ coef`` with basis[n] = (1, cos 2 pi k n / B,
    sin 2 pi k n / B for k = 1..K), so every digit code is a sum of K circles and an
    offset; the other tokens ('+', '=', PAD) keep free rows (``special``). ``weight`` is
    the (vocab, d_model) matrix this makes, and a tied head scores against it.
    With ``ramp`` the features gain 2n / (B - 1) - 1, the digit's value as a line.
    Parameters: (2K + 1 + ramp + specials) x d_model, against vocab x d_model for a free
    table."""

    def __init__(self, vocab_size: int, d_model: int, k: int, ramp: bool = False):
        super().__init__()
        base = vocab_size - 3
        self.register_buffer("basis", fourier_basis(base, k, ramp), persistent=False)
        # rows at the norm of a normal init's rows: each feature row has squared norm k + 1
        # (and at most one more with the ramp)
        self.coef = nn.Parameter(torch.randn(2 * k + 1 + ramp, d_model) * INIT_STD
                                 / math.sqrt(k + 1))
        self.special = nn.Parameter(torch.randn(vocab_size - base, d_model) * INIT_STD)

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat((self.basis @ self.coef, self.special))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


class Transformer(nn.Module):
    """Token embedding -> n_layers pre-norm blocks -> final norm -> output head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        basis = cfg.digit_basis is not None
        self.embed = (DigitBasis(cfg.vocab_size, cfg.d_model, cfg.digit_basis, cfg.digit_ramp)
                      if basis else nn.Embedding(cfg.vocab_size, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = make_norm(cfg)
        # a tied head over a digit basis scores against the matrix the basis makes, with
        # only its bias (if any) of its own
        self.scores_embedding = basis and cfg.tie_embeddings
        if self.scores_embedding:
            self.head_bias = (nn.Parameter(torch.zeros(cfg.vocab_size))
                              if cfg.has_head_bias else None)
        else:
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.has_head_bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections, scaled as in GPT-2
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * cfg.n_layers))
        if cfg.embed_init == "fourier":
            with torch.no_grad():
                base = cfg.vocab_size - 3  # digits 0..base-1, then '+', '=', PAD
                self.embed.weight[:base] = fourier_digits(base, cfg.d_model)
        if cfg.tie_embeddings and not basis:
            self.head.weight = self.embed.weight  # one (vocab, d_model) matrix, counted once

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab)."""
        if idx.size(1) > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {idx.size(1)} tokens exceeds max_seq_len "
                             f"{self.cfg.max_seq_len}")
        if self.scores_embedding:  # build the basis' matrix once for input and head
            table = self.embed.weight
            x = self.drop(F.embedding(idx, table))
        else:
            x = self.drop(self.embed(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        if self.scores_embedding:
            return F.linear(self.ln_f(x), table, self.head_bias)
        return self.head(self.ln_f(x))


def fourier_digits(base: int, d_model: int, scale: float = INIT_STD) -> torch.Tensor:
    """(base, d_model) rows of the norm a normal init's rows have on average
    (``scale`` x sqrt(d_model)): digit n at angle 2 pi k n / base on circle k,
    k = 1..d_model/2, as (cos, sin) pairs. Trained models of 2,000 parameters end with
    most of their digit embeddings' variance at k = 1 and the rest at k = 2..8
    (docs/LOG.md, "Digits on circles"); this starts them there."""
    n = torch.arange(base, dtype=torch.float64)[:, None]
    k = torch.arange(1, d_model // 2 + 1, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * k * n / base  # (base, d_model/2)
    rows = torch.stack([angle.cos(), angle.sin()], dim=-1).reshape(base, d_model)
    return (rows * scale * math.sqrt(2)).float()


def fourier_basis(base: int, k: int, ramp: bool = False) -> torch.Tensor:
    """(base, 2k + 1 [+ 1]): for digit n, 1 and (cos, sin)(2 pi j n / base) for j = 1..k,
    then with ``ramp`` 2n / (base - 1) - 1."""
    n = torch.arange(base, dtype=torch.float64)[:, None]
    j = torch.arange(1, k + 1, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * j * n / base
    pairs = torch.stack([angle.cos(), angle.sin()], dim=-1).reshape(base, 2 * k)
    columns = [torch.ones(base, 1, dtype=torch.float64), pairs]
    if ramp:
        columns.append(2 * n / (base - 1) - 1)
    return torch.cat(columns, dim=1).float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in the instantiated model, each tensor once.

    Counts every parameter with requires_grad once (a tied embedding and output head
    once): embedding, attention and MLP weights and biases, norm scales and shifts, and
    the output head. RoPE has no parameters (its cos/sin tables are buffers).
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
