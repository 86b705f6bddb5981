"""Optimizer and learning-rate schedule from the config."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """The model's own groups (e.g. a lower backbone lr) if it defines them, else its trainable params."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum; weight decay on every trainable tensor."""
    groups = param_groups(model, cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    try:  # the fused kernel: one pass over all parameters (AlexNet's CPU step 580 -> 400 ms)
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # an older torch or an unsupported device
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """Per-step schedule: OneCycle, linear warmup + cosine decay, or constant."""
    total_steps = max(total_steps, 1)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
            pct_start=max(cfg.warmup, 1e-3), cycle_momentum=False)
    warm = int(cfg.warmup * total_steps)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    def cosine(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)
