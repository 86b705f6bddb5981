"""Decided before training, by measurement: the faster precision on this CPU, and how many steps fit a budget.

Both come from timing a few real training steps of this model at this batch on this machine. The model,
its batch-norm statistics and every RNG are restored afterwards, so a run is the same whether or not it
was measured; the result is a Plan, recorded in config.json and reused as it is on --resume.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .config import Config
from .device import Runtime, cpu_has_native_bf16
from .optim import make_optimizer

WARMUP_STEPS = 1                  # untimed: the first step builds kernels and caches
MIN_STEPS, MAX_SECONDS = 3, 2.0   # timed: at least 2 steps, then stop at 3 steps or 2 s
BF16_MARGIN = 0.85                # auto keeps bf16 only when its step takes < 85 % of fp32's


@dataclass(frozen=True)
class Plan:
    """How long a run trains and when it validates; what was measured to decide it."""

    total_steps: int
    val_steps: tuple[int, ...]               # global steps after which validation runs
    precision: str                           # "bf16" or "fp32", as the Runtime uses it
    step_ms: dict[str, float] | None = None  # measured ms per training step, by precision (None: not measured)
    budget: dict[str, Any] | None = None     # budget_s, step_seconds, planned_steps, images_seen

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "val_steps": list(self.val_steps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(**{**d, "val_steps": tuple(d["val_steps"])})


def step_seconds(model: nn.Module, task: Any, cfg: Config, rt: Runtime) -> float:
    """Median wall time of one training step (forward, backward, optimizer) under `rt`; `model` is unchanged."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    opt = make_optimizer(model, cfg)
    batches = task.batches(0, 0)
    times: list[float] = []
    try:
        model.train()
        for i in range(WARMUP_STEPS + 1000):
            t = time.perf_counter()
            with rt.autocast():
                loss = task.loss(model, next(batches), i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rt.sync()
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - t)
            if len(times) >= MIN_STEPS or (len(times) >= 2 and sum(times) > MAX_SECONDS):
                break
    except StopIteration:  # an epoch shorter than the calibration: what was timed is enough
        pass
    finally:
        model.load_state_dict(saved)
        torch.set_rng_state(rng)
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)
    return statistics.median(times) if times else float("nan")


def choose_runtime(model: nn.Module, cfg: Config, rt: Runtime, make_task: Callable[[Runtime], Any]
                   ) -> tuple[Runtime, dict[str, float] | None]:
    """precision=auto on a CPU with native bf16: time fp32 and bf16 steps and keep bf16 only if clearly faster.

    A CPU without native bf16 emulates it several times slower (docs/BENCHMARKS.md), so fp32 is kept there
    without timing; CUDA keeps
    bf16 and an explicit precision is honoured. Returns the Runtime and the step times (ms) measured.
    """
    if cfg.precision != "auto" or rt.device.type != "cpu":
        return rt, None
    candidates = {"fp32": Runtime(rt.device, None, rt.channels_last),
                  "bf16": Runtime(rt.device, torch.bfloat16, rt.channels_last)}
    if not cpu_has_native_bf16():
        return candidates["fp32"], None
    ms = {name: 1000 * step_seconds(model, make_task(c), cfg, c) for name, c in candidates.items()}
    # bf16 only when clearly faster: near-equal timings on a busy CPU must not flip a model's precision
    # from one seed to the next, and fp32 is the exact one
    best = "bf16" if math.isfinite(ms["bf16"]) and ms["bf16"] < BF16_MARGIN * ms["fp32"] else "fp32"
    return candidates[best], {k: round(v, 3) for k, v in ms.items()}


def make_plan(model: nn.Module, cfg: Config, rt: Runtime, task: Any, step_ms: dict[str, float] | None) -> Plan:
    """Epochs: total steps from the epochs, validation at epoch ends. A budget: the steps that fit it at the
    measured step time (reusing the precision timing when there was one), validation at val_points steps."""
    per_epoch = task.steps_per_epoch
    if not cfg.budget_s:
        return Plan(*epoch_steps(cfg.epochs, per_epoch), rt.precision, step_ms)
    seconds = step_ms[rt.precision] / 1000 if step_ms else step_seconds(model, task, cfg, rt)
    if not math.isfinite(seconds) or seconds <= 0:
        seconds = cfg.budget_s  # nothing could be timed: one step
    seconds = round(seconds, 6) or 1e-6  # the recorded step time is the one the steps are planned from
    total = max(1, int(cfg.budget_s / seconds))
    points = min(cfg.val_points, total)
    val_steps = tuple(sorted({round(total * k / points) for k in range(1, points + 1)}))
    budget = {"budget_s": cfg.budget_s, "step_seconds": seconds, "planned_steps": total,
              "images_seen": total * cfg.batch_size}
    return Plan(total, val_steps, rt.precision, step_ms, budget)


def replan(saved: Plan, cfg: Config, steps_per_epoch: int) -> Plan:
    """The plan of a resumed run: a budgeted run keeps its recorded plan exactly (nothing is re-measured);
    an epoch run keeps its precision and lays its steps over the (possibly changed) number of epochs."""
    if saved.budget:
        return saved
    return Plan(*epoch_steps(cfg.epochs, steps_per_epoch), saved.precision, saved.step_ms)


def epoch_steps(epochs: float, steps_per_epoch: int) -> tuple[int, tuple[int, ...]]:
    """(total steps, validation steps) of `epochs` epochs: validation at every epoch's end and, when the last
    epoch is partial (epochs=1.5), at its last step too."""
    total = max(1, round(epochs * steps_per_epoch))
    ends = range(steps_per_epoch, total + 1, steps_per_epoch)
    return total, tuple(sorted({*ends, total}))


def runtime_for(plan: Plan, rt: Runtime) -> Runtime:
    """`rt` with the plan's precision."""
    return Runtime(rt.device, torch.bfloat16 if plan.precision == "bf16" else None, rt.channels_last)
