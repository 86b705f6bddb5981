"""Optimizer from the config, and the learning rate as a pure function of (step, total steps)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config

# OneCycle's start and end as fractions of the peak learning rate (torch's OneCycleLR defaults:
# div_factor 25, final_div_factor 1e4)
ONECYCLE_START, ONECYCLE_END = 1 / 25, 1 / 25 / 1e4


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """The model's own groups (e.g. a lower backbone lr) if it defines them, else its trainable params."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum; each group remembers its peak lr as `peak_lr`."""
    groups = param_groups(model, cfg.lr)
    for g in groups:
        g["peak_lr"] = g["lr"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    kw = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "weight_decay": cfg.weight_decay}
    try:  # the fused kernel: one pass over all parameters, the faster CPU step (docs/BENCHMARKS.md)
        return torch.optim.AdamW(groups, **kw, fused=True)
    except (RuntimeError, TypeError):  # an older torch or an unsupported device
        return torch.optim.AdamW(groups, **kw)


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def lr_factor(schedule: str, warmup: float, step: int, total: int) -> float:
    """The learning rate at `step` of `total` as a fraction of the peak.

    onecycle: torch's OneCycleLR (cosine from peak/25 up to the peak over the `warmup` fraction, then
    cosine down to peak/25e4); cosine: linear warmup, then cosine decay to 0; constant: 1. A pure
    function: nothing to save or replay on resume, and a longer run simply re-plans it.
    """
    total = max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":
        peak = max(warmup, 1e-3) * total - 1  # the step at which the peak is reached
        if step <= peak:
            return _cos(ONECYCLE_START, 1.0, step / peak if peak > 0 else 1.0)
        return _cos(1.0, ONECYCLE_END, min((step - peak) / max(total - 1 - peak, 1e-9), 1.0))
    warm = int(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min((step - warm) / max(total - warm, 1), 1.0)))


def set_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to its peak times `factor`; returns the last group's (the head's) lr."""
    for g in opt.param_groups:
        g["lr"] = g["peak_lr"] * factor
    return opt.param_groups[-1]["lr"]
