"""Library entry points: train(cfg) runs one model end to end; evaluate_run(dir) re-tests a saved run."""
from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, distributed, plots, storage
from .budget import Plan, budget_error, train_flops
from .calibrate import choose_runtime, make_plan, resumed_plan, runtime_for
from .config import RESULT_NEUTRAL, Config, from_dict, model_spec, resolve, result_settings
from .data.datasets import Splits, get_info, load_splits
from .device import Runtime, machine
from .distributed import Group
from .engine import Interrupted, TrainState, fit
from .errors import UserError, WriteError, first_line
from .metrics import time_to_accuracy
from .models import display_name, files, no_download_options, trust
from .profile import forward_flops, peak_memory_mb
from .record import (
    CHECKPOINT,
    CONFUSION,
    CURVES,
    MODEL,
    MODEL_SOURCE,
    RunRecord,
    SilentRecord,
    default_run_dir,
    read_config,
    read_model_source,
    read_plan,
)
from .tasks import TASKS


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally make torch refuse non-deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def runtime(cfg: Config, device: str | None = None, *, run_dir: str | os.PathLike | None = None) -> Runtime:
    """The run's Runtime from its config (`device` overrides the configured one). For a trained run
    (`run_dir`), precision=auto becomes the precision its plan measured and trained with, so evaluate and
    predict compute what the run's own test did."""
    precision = cfg.precision
    if precision == "auto" and run_dir is not None:
        precision = read_plan(run_dir).get("precision") or precision
    return Runtime.resolve(device or cfg.device, precision, cfg.channels_last)


def load_data(cfg: Config, rt: Runtime, data_dir: str = "") -> Splits:
    """The configured data set's splits, on the run's device."""
    return load_splits(cfg.dataset, data_dir or cfg.data_dir or None, device=rt.device, val_size=cfg.val_size,
                       seed=cfg.seed, train_limit=cfg.train_limit, test_limit=cfg.test_limit)


def build_model(cfg: Config, rt: Runtime) -> torch.nn.Module:
    """The registered model with the config's options, on the run's device and in its memory layout."""
    return rt.prepare(model_spec(cfg).create(**cfg.model_args))


def make_task(cfg: Config, splits: Splits, rt: Runtime):
    """The task object (TASKS by the model's kind) that fit() trains and test() scores."""
    return TASKS[model_spec(cfg).task](splits, cfg, rt)


def train(cfg: Config, *, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train, select on validation, test, profile and record one model; returns summary.json's content.

    With `resume_from`, continue that run folder from its checkpoint under its recorded plan; a run that
    stopped before its first checkpoint starts again from its saved config. Under torchrun, every process
    trains its shard of each batch (distributed.py), rank 0 writes the run folder, and every rank returns
    rank 0's summary.
    """
    wall0 = time.perf_counter()
    with distributed.start(cfg.device, cfg.batch_size) as group:
        # one name on every rank
        folder = group.broadcast(resume_from or cfg.out or default_run_dir(display_name(cfg.model)))
        try:
            return _train(cfg, group, folder, resume_from, wall0)
        except WriteError as e:  # disk full, read-only, ...: what of the folder is intact, how to go on
            raise storage.in_run(e, folder) from None


def _train(cfg: Config, group: Group, folder: str | os.PathLike, resume_from: str | os.PathLike | None,
           wall0: float) -> dict[str, Any]:
    cfg = _shared_config(cfg, group)
    base = runtime(cfg, group.device)
    seed_everything(cfg.seed, cfg.deterministic)
    # data and model first: a missing file or bad option stops the run before any file is written
    splits = load_data(cfg, base)
    model = build_model(cfg, base)
    if group.main:  # the folder is writable and has room for what the run will write, before any work
        storage.check_run(folder, model, cfg)
    resume = _checkpoint_of(resume_from)
    plan = group.broadcast(_plan(cfg, model, splits, base, resume, group) if group.main else None)
    rt = runtime_for(plan, base)
    task = group.shard(make_task(cfg, splits, rt))
    run = (RunRecord if group.main else SilentRecord)(folder, tensorboard=cfg.tensorboard)
    if resume_from and resume is None:
        run.truncate_metrics(0)  # killed before its first checkpoint: start again from the saved config
    mf = files.registered(cfg.model_sha256) if cfg.model_sha256 else None
    if mf:  # the copy first: config.json's presence says the run started
        run.write_model_source(mf.code)
    run.write_config(cfg.to_dict(), group.describe(rt), plan.to_dict(), machine(rt.device),
                     mf and {"path": mf.path, "name": display_name(cfg.model), "sha256": mf.sha256})
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    try:
        state, plan = fit(model, task, cfg, rt, run, plan, resume=resume, group=group)
    except Interrupted as e:
        e.run_dir = run.folder
        raise
    if not group.main:
        return group.broadcast(None)
    tested = task.test(model, run)
    run.write_predictions(splits.test_index.tolist(), splits.test_y.tolist(), tested.pop("predictions").tolist())
    summary = {"model": display_name(cfg.model), "dataset": cfg.dataset, "run_dir": str(run.folder), **tested}
    summary.update(_timings(state, cfg, plan, task.steps_per_epoch, len(splits.train_x)))
    summary.update(_costs(model, rt, group))
    if model_spec(cfg).task == "classify":  # a detector's sample is a scene: flops_per_sample says it
        summary["flops_per_image"] = plan.flops_per_sample
    summary["machine"] = machine(rt.device)
    summary["wall_seconds"] = time.perf_counter() - wall0  # through profiling; figures are drawn after
    run.write_summary(summary)
    write_figures(run, summary)
    return group.broadcast(summary)


def _shared_config(cfg: Config, group: Group) -> Config:
    """Under torchrun, rank 0's config and model code on every rank: a model file travels as its text."""
    if not group.active:
        return cfg
    code = files.registered(cfg.model_sha256).to_dict() if cfg.model_sha256 and group.main else None
    cfg, code = group.broadcast((cfg, code) if group.main else None)
    if code:
        files.register(files.ModelFile.from_dict(code))
    return cfg


def _checkpoint_of(run_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The checkpoint of the run folder being resumed, or None (no run, or stopped before its first one)."""
    if run_dir is None or not (Path(run_dir) / CHECKPOINT).exists():
        return None
    return checkpoint.load(Path(run_dir) / CHECKPOINT)


def _plan(cfg: Config, model: torch.nn.Module, splits: Splits, base: Runtime, resume: dict[str, Any] | None,
          group: Group) -> Plan:
    """The precision and steps of the run: the checkpoint's plan on resume (nothing re-measured), else decided now
    (precision, forward FLOPs per sample, and the steps of the budget or epochs).

    Under torchrun rank 0 decides alone, timing one rank's shard per step (its plan is broadcast to every rank).
    """
    if resume is not None and "plan" in resume:
        return resumed_plan(Plan.from_dict(resume["plan"]), cfg, make_task(cfg, splits, base).steps_per_epoch)
    rt, step_ms, source = choose_runtime(model, cfg, base, lambda r: group.shard(make_task(cfg, splits, r)))
    task = make_task(cfg, splits, rt)
    sample = task.sample()
    key = json.dumps([cfg.model, cfg.model_sha256, cfg.model_args, list(sample.shape), rt.precision], default=str)
    with rt.autocast():
        flops = forward_flops(model, sample, key=key)
    return make_plan(model, cfg, rt, group.shard(task), step_ms, source, flops)


def _timings(state: TrainState, cfg: Config, plan: Plan, per_epoch: int, n_train: int) -> dict[str, Any]:
    steps = state.global_step
    seen = steps * cfg.batch_size
    flops = train_flops(plan.flops_per_sample, seen)
    return {"train_seconds": state.train_seconds, "compile_seconds": state.compile_seconds,
            "time_to_accuracy": time_to_accuracy(state.history), "epochs_completed": round(steps / per_epoch, 4),
            "stopped_early": state.stopped_early, "best_epoch": state.best_epoch, "best_step": state.best_step,
            "best_val_accuracy": state.best_val_accuracy, "steps": steps, "planned_steps": plan.total_steps,
            "train_images": n_train, "images_seen": seen, "budget": plan.budget, "replans": list(plan.replans),
            "budget_error": budget_error(plan.budget, state.train_seconds, flops),
            "flops_per_sample": plan.flops_per_sample, "train_flops": flops,
            "precision_step_ms": plan.step_ms, "precision_source": plan.precision_source,
            "train_images_per_second": seen / state.train_seconds if state.train_seconds else None}


def _costs(model: torch.nn.Module, rt: Runtime, group: Group) -> dict[str, Any]:
    return {**group.about(), "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "device": group.describe(rt), "precision": rt.precision,
            "weights_source": getattr(model, "weights_source", None), "peak_memory_mb": peak_memory_mb(rt.device),
            "peak_memory_kind": "cuda max allocated" if rt.device.type == "cuda" else "peak RSS of the process"}


def write_figures(run: RunRecord, summary: dict[str, Any]) -> None:
    """curves.png and confusion.png from the run's records."""
    title = f"{summary['model']} on {summary['dataset']}"
    plots.curves(run.read_metrics(), run.path(CURVES), title)
    plots.confusion(summary["confusion_matrix"], get_info(summary["dataset"]).classes, run.path(CONFUSION),
                    f"{title}: test accuracy {100 * summary['test_accuracy']:.2f} %")


def load_run_config(run_dir: str | os.PathLike, *, trust_code: bool = False) -> Config:
    """The Config a run folder was made with. A run of a model file imports the run's copy of the file, and only
    when the copy's hash is in the user's trust list or with `trust_code` (else one UserError)."""
    saved = read_config(run_dir)
    if saved.get("model_sha256"):
        saved = {**saved, "model_sha256": _open_copy(Path(run_dir), trust_code)}
    return from_dict(saved)


def _open_copy(run_dir: Path, trust_code: bool) -> str:
    """Keep the run's copy of its model file for import (if trusted); say so when the original has changed."""
    origin, code = read_model_source(run_dir)
    path = str(origin.get("path") or run_dir / MODEL_SOURCE)
    copy = files.ModelFile.of(path, code)
    trust.require(copy.sha256, str(run_dir / MODEL_SOURCE), trust_code)
    mf = files.register(copy)
    try:
        now = files.read_file(path).sha256 if Path(path).is_file() else mf.sha256
    except UserError:
        now = mf.sha256
    if now != mf.sha256:
        print(f"mnistbench: {run_dir} imports its copy of {path} ({MODEL_SOURCE}, sha256 {mf.sha256[:12]}), "
              f"not that file, whose content has changed (sha256 {now[:12]})", file=sys.stderr)
    return mf.sha256


# Beyond the result-neutral fields, a resumed run may train for longer (or shorter) and move to another device.
RESUME_MAY_CHANGE = ("epochs", "device")


def resume_config(run_dir: str | os.PathLike, overrides: dict[str, Any], *, trust_code: bool = False) -> Config:
    """The saved config with the user's overrides; refused if they change anything that decides the result,
    except RESUME_MAY_CHANGE."""
    saved = load_run_config(run_dir, trust_code=trust_code)
    merged = resolve({**saved.flat(), **overrides})
    before = result_settings(saved.to_dict(), also_ignoring=RESUME_MAY_CHANGE)
    after = result_settings(merged.to_dict(), also_ignoring=RESUME_MAY_CHANGE)
    differing = sorted(k for k in before if before[k] != after[k])
    if differing:
        may = ", ".join(RESUME_MAY_CHANGE + RESULT_NEUTRAL)
        raise UserError(f"cannot resume {run_dir} with a different config: {', '.join(differing)} differ "
                        f"(only {may} may change on resume)")
    return merged


def load_trained(run_dir: str | os.PathLike, cfg: Config, rt: Runtime) -> torch.nn.Module:
    """The run's trained model (its model.pt) on `rt`'s device, in eval mode.

    Built without pretrained weights (models.no_download_options): model.pt replaces every parameter, and an
    offline machine must not be sent looking for ImageNet files it does not need.
    """
    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise UserError(f"{run_dir}: no {MODEL} in it; train the run to the end first "
                        f"(an interrupted run resumes with: mnistbench train --resume {run_dir})")
    state = checkpoint.load(path, map_location=rt.device)
    options = no_download_options(cfg.model, cfg.model_args, weights_file=False, sha256=cfg.model_sha256)
    model = rt.prepare(model_spec(cfg).create(**options))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"{path} does not fit model {cfg.model!r}: {first_line(e)}") from None
    return model.eval()


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str = "", device: str = "auto",
                 trust_code: bool = False) -> dict[str, Any]:
    """Re-evaluate a run's saved model.pt on the test set; returns the test metrics."""
    cfg = load_run_config(run_dir, trust_code=trust_code)
    rt = runtime(cfg, device, run_dir=run_dir)
    model = load_trained(run_dir, cfg, rt)
    tested = make_task(cfg, load_data(cfg, rt, data_dir), rt).test(model)
    tested.pop("predictions")
    return tested
