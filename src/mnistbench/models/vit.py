"""A Vision Transformer written from scratch for 28x28 digits: patch embedding, pre-norm blocks, CLS head."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .spec import ModelSpec

IMAGE_SIZE = 28
PATCH_SIZES = (4, 7)  # the divisors of 28 that give a useful sequence: 49 or 16 tokens
# auto: the plain path on CPU, where it measured faster for these short sequences (default ViT, fp32, training
# step of 256; docs/BENCHMARKS.md), SDPA on other devices
ATTENTION = ("auto", "sdpa", "plain")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
    """softmax(q kᵀ / √d) v over the last two dims; `fused` uses F.scaled_dot_product_attention."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, h, T, T)
    return att.softmax(dim=-1) @ v  # (B, h, T, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention: one qkv projection, head split, scaled dot product, output projection."""

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0, attention: str = "auto"):
        super().__init__()
        self.heads = heads
        self.attention = attention
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, h, T, d)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        fused = self.attention == "sdpa" or (self.attention == "auto" and x.device.type != "cpu")
        y = attention(q, k, v, fused=fused)  # (B, h, T, d)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.drop(self.proj(y))


class FeedForward(nn.Module):
    """Linear, GELU, Linear: the per-token MLP of a transformer block."""

    def __init__(self, *, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, *, dim: int, heads: int, hidden: int, dropout: float = 0.0, attention: str = "auto"):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim=dim, heads=heads, dropout=dropout, attention=attention)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim=dim, hidden=hidden, dropout=dropout)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))  # (B, T, C)
        return x + self.mlp(self.ln2(x))  # (B, T, C)


class ViT(nn.Module):
    """Patches -> tokens + CLS + positions -> `depth` blocks -> LayerNorm -> linear head on CLS.

    (B, 1, 28, 28) -> conv p/p -> (B, C, 28/p, 28/p) -> (B, N, C) -> cat CLS -> (B, N+1, C) -> (B, 10)
    """

    def __init__(self, *, patch_size: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 dropout: float = 0.0, attention: str = "auto", num_classes: int = 10):
        super().__init__()
        n_patches = (IMAGE_SIZE // patch_size) ** 2
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        self.drop = nn.Dropout(dropout)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(
            Block(dim=dim, heads=heads, hidden=hidden, dropout=dropout, attention=attention) for _ in range(depth)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def set_attention(self, attention: str) -> None:
        """Switch every attention layer to `attention` (one of ATTENTION)."""
        for m in self.modules():
            if isinstance(m, SelfAttention):
                m.attention = attention

    def forward(self, x):
        x = self.patch_embed(x)  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        cls = self.cls.expand(x.size(0), -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.pos  # (B, N+1, C)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, N+1, C)
        return self.head(self.ln_f(x[:, 0]))  # (B, 10)


def build(*, patch_size: int = 7, dim: int = 96, depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0,
          dropout: float = 0.0, attention: str = "auto") -> ViT:
    """A from-scratch ViT for (B, 1, 28, 28) input in [-1, 1], returning (B, 10) logits.

    Defaults (patch 7 -> 16 tokens, dim 96, depth 4, 4 heads of 24, MLP ratio 2, no dropout) fit the
    2-core CPU budget: a step takes about half the time of dim 128 / depth 6, so a time budget buys about
    twice the epochs, which scored better than the larger net's (docs/BENCHMARKS.md).
    Augmentation and label smoothing regularise enough that dropout stays 0. `attention`: sdpa
    (F.scaled_dot_product_attention), plain (softmax of q kᵀ / √d, then v) or auto (see ATTENTION).
    """
    if patch_size not in PATCH_SIZES:
        raise UserError(f"vit patch_size must be one of {PATCH_SIZES} (it must divide 28), got {patch_size}")
    if dim < 1 or depth < 1 or heads < 1:
        raise UserError(f"vit needs dim, depth and heads >= 1, got dim={dim} depth={depth} heads={heads}")
    if dim % heads:
        raise UserError(f"vit heads={heads} must divide dim={dim}")
    if mlp_ratio <= 0 or int(dim * mlp_ratio) < 1:
        raise UserError(f"vit mlp_ratio must be > 0 (giving a hidden size >= 1), got {mlp_ratio}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"vit dropout must be in [0, 1), got {dropout}")
    if attention not in ATTENTION:
        raise UserError(f"vit attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    return ViT(patch_size=patch_size, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout,
               attention=attention)


# AdamW with warmup + cosine, label smoothing and small affine augmentation: what a ViT needs on MNIST.
# Test-time shifts (tta=shift) raised validation accuracy by 0.34-0.52 points on each of 3 seeds (docs/BENCHMARKS.md)
_RECIPE = {"batch_size": 256, "lr": 2e-3, "weight_decay": 0.05, "optimizer": "adamw", "schedule": "cosine",
           "warmup": 0.1, "label_smoothing": 0.1, "grad_clip": 1.0, "augment": "affine", "translate": 2.0,
           "rotate": 10.0, "scale": 0.1, "tta": "shift"}

SPEC = ModelSpec(
    name="vit",
    build=build,
    about="from-scratch Vision Transformer: 7x7 patches, CLS token, pre-norm blocks, own attention",
    recipes={
        # fp32 on a 2-core CPU, validation accuracy of one view (mean of seeds 0/1/2) grew from 10 to 11 to 12
        # epochs; 12 is the most that fits the CPU bar with room for a busy machine, since attention takes the
        # plain path on CPU (with SDPA, 11 epochs already overran it). Evaluation in batches of 250: faster per
        # image than batches of 1,000. precision=auto measures both precisions: on a bf16 CPU the plain path's
        # bf16 step is the faster one. Figures: docs/BENCHMARKS.md.
        "default": {**_RECIPE, "epochs": 12, "eval_batch_size": 250},
        # the same recipe for 50 epochs (two seeds, with SDPA attention; docs/BENCHMARKS.md)
        "long": {**_RECIPE, "epochs": 50},
        # a small ViT's GPU step is launch-bound: CUDA graphs (reduce-overhead) matter more than FLOPs
        "gpu": {**_RECIPE, "epochs": 30, "compile": True, "compile_mode": "reduce-overhead"},
    },
)
