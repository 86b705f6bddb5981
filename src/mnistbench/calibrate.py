"""Decided before training: the run's precision (measured once per machine and setting) and its first Plan.

Both can come from timing a few real training steps of this model at this batch on this machine. The model,
its batch-norm statistics and every RNG are restored afterwards, so a run is the same whether or not it was
measured. precision=auto's choice is cached per machine and setting (fsio.cache_dir()/precision.json), so every
run of one command, and every seed of a study's model, trains in the same precision.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import torch
from torch import nn

from .budget import Plan, epoch_steps, flops_plan, seconds_plan
from .config import Config
from .device import Runtime, cpu_has_native_bf16, machine
from .errors import UserError
from .fsio import cache_dir, write_json
from .optim import make_optimizer

WARMUP_STEPS = 1                  # untimed: the first step builds kernels and caches
MIN_STEPS, MAX_SECONDS = 3, 2.0   # timed to choose a precision: at least 2 steps, then stop at 3 steps or 2 s
BUDGET_STEPS = 1                  # timed for a budget's first plan: one step; the run re-plans from its own
BF16_MARGIN = 0.85                # auto keeps bf16 only when its step takes < 85 % of fp32's
PRECISION_CACHE = "precision.json"


def step_seconds(model: nn.Module, task: Any, cfg: Config, rt: Runtime, steps: int = MIN_STEPS) -> float:
    """Median wall time of one training step (forward, backward, optimizer) under `rt`, over `steps` timed steps
    after a warm-up (fewer when they pass MAX_SECONDS); `model` is unchanged."""
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
            if len(times) >= steps or (len(times) >= 2 and sum(times) > MAX_SECONDS):
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
                   ) -> tuple[Runtime, dict[str, float] | None, str]:
    """(Runtime, step times measured in ms by precision or None, how the precision was decided).

    precision=auto: bf16 autocast on CUDA; fp32 on a CPU without native bf16 (emulated bf16 is several times
    slower) and under deterministic=true (exact, and never timed: the same command gives the same run); on a
    CPU with native bf16, bf16 only where its step takes under 85 % of fp32's, as measured once per machine
    and setting and cached. An explicit precision is honoured.
    """
    if cfg.precision != "auto":
        return rt, None, "set"
    if rt.device.type != "cpu":
        return rt, None, rt.device.type  # "cuda" (bf16) or "mps" (fp32)
    fp32 = Runtime(rt.device, None, rt.channels_last)
    if not cpu_has_native_bf16():
        return fp32, None, "no native bf16"
    if cfg.deterministic:
        return fp32, None, "deterministic"
    bf16 = Runtime(rt.device, torch.bfloat16, rt.channels_last)
    key = _cache_key(cfg, rt)
    cached = _read_cache().get(key)
    if cached and cached.get("precision") in ("fp32", "bf16"):
        return (bf16 if cached["precision"] == "bf16" else fp32), cached.get("step_ms"), "cached"
    ms = {name: round(1000 * step_seconds(model, make_task(c), cfg, c), 3) for name, c in (("fp32", fp32),
                                                                                          ("bf16", bf16))}
    # bf16 only when clearly faster: near-equal timings on a busy CPU must not decide it, and fp32 is exact
    best = "bf16" if math.isfinite(ms["bf16"]) and ms["bf16"] < BF16_MARGIN * ms["fp32"] else "fp32"
    _write_cache(key, {"precision": best, "step_ms": ms, "measured": date.today().isoformat()})
    return (bf16 if best == "bf16" else fp32), ms, "measured"


def _cache_key(cfg: Config, rt: Runtime) -> str:
    """The machine and the settings a step time depends on (not the seed, data slice or schedule)."""
    model = f"{cfg.model}@{cfg.model_sha256}" if cfg.model_sha256 else cfg.model  # a model file: its code
    what = {"machine": machine(rt.device), "torch": torch.__version__, "model": model,
            "model_args": dict(cfg.model_args), "task_args": dict(cfg.task_args), "batch_size": cfg.batch_size,
            "processes": os.environ.get("WORLD_SIZE", "1"), "channels_last": cfg.channels_last,
            "compile": cfg.compile, "compile_mode": cfg.compile_mode, "augment": cfg.augment}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_cache() -> dict[str, Any]:
    try:
        doc = json.loads((cache_dir() / PRECISION_CACHE).read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    """Add one decision to the cache; a cache that cannot be written only means timing again next time."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / PRECISION_CACHE, {**_read_cache(), key: entry})
    except OSError:
        pass


def make_plan(model: nn.Module, cfg: Config, rt: Runtime, task: Any, step_ms: dict[str, float] | None,
              source: str, flops_per_sample: int | None) -> Plan:
    """The first plan: epochs; a FLOPs budget (exact); or a seconds budget at the measured step time (reusing the
    precision timing when there is one), which training re-plans from its own steps."""
    common = {"precision": rt.precision, "step_ms": step_ms, "precision_source": source,
              "flops_per_sample": flops_per_sample}
    if cfg.budget_flops:
        if not flops_per_sample:
            raise UserError(f"budget_flops: the forward FLOPs of {cfg.model} could not be counted "
                            "(torch.utils.flop_counter); use budget_s instead")
        return flops_plan(cfg.budget_flops, flops_per_sample, cfg.batch_size, cfg.val_points,
                          **{k: v for k, v in common.items() if k != "flops_per_sample"})
    if cfg.budget_s:
        seconds = step_ms[rt.precision] / 1000 if step_ms else step_seconds(model, task, cfg, rt, BUDGET_STEPS)
        return seconds_plan(cfg.budget_s, seconds, cfg.batch_size, cfg.val_points, **common)
    return Plan(*epoch_steps(cfg.epochs, task.steps_per_epoch), **common)


def resumed_plan(saved: Plan, cfg: Config, steps_per_epoch: int) -> Plan:
    """The plan of a resumed run: a budgeted run keeps its recorded plan exactly (nothing is re-measured);
    an epoch run keeps its precision and lays its steps over the (possibly changed) number of epochs."""
    if saved.budget:
        return saved
    total, val_steps = epoch_steps(cfg.epochs, steps_per_epoch)
    return Plan(total, val_steps, saved.precision, saved.step_ms, precision_source=saved.precision_source,
                flops_per_sample=saved.flops_per_sample)


def runtime_for(plan: Plan, rt: Runtime) -> Runtime:
    """`rt` with the plan's precision."""
    return Runtime(rt.device, torch.bfloat16 if plan.precision == "bf16" else None, rt.channels_last)
