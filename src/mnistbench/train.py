"""Library entry points: train(cfg) runs one model end to end; evaluate_run(dir) re-tests a saved run."""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, plots
from .config import Config, effective_settings, resolve
from .data.datasets import Splits, get_info, load_splits
from .device import Runtime
from .engine import Interrupted, TrainState, fit
from .errors import UserError
from .metrics import time_to_accuracy
from .models import get_model, get_spec
from .profile import peak_memory_mb
from .record import (
    CHECKPOINT,
    CONFUSION,
    CURVES,
    MODEL,
    RunRecord,
    default_run_dir,
    read_config,
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


def runtime(cfg: Config, device: str | None = None) -> Runtime:
    """The run's Runtime from its config (`device` overrides the configured one)."""
    return Runtime.resolve(device or cfg.device, cfg.precision, cfg.channels_last)


def load_data(cfg: Config, rt: Runtime, data_dir: str = "") -> Splits:
    """The configured data set's splits, on the run's device."""
    return load_splits(cfg.dataset, data_dir or cfg.data_dir or None, device=rt.device, val_size=cfg.val_size,
                       seed=cfg.seed, train_limit=cfg.train_limit, test_limit=cfg.test_limit)


def build_model(cfg: Config, rt: Runtime) -> torch.nn.Module:
    """The registered model with the config's options, on the run's device and in its memory layout."""
    return rt.prepare(get_model(cfg.model, **cfg.model_args))


def make_task(cfg: Config, splits: Splits, rt: Runtime):
    """The task object (TASKS by the model's kind) that fit() trains and test() scores."""
    return TASKS[get_spec(cfg.model).task](splits, cfg, rt)


def train(cfg: Config, *, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train, select on validation, test, profile and record one model; returns summary.json's content."""
    wall0 = time.perf_counter()
    rt = runtime(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    # data, model and task first: a missing file or bad option stops the run before any file is written
    splits = load_data(cfg, rt)
    model = build_model(cfg, rt)
    task = make_task(cfg, splits, rt)
    run = RunRecord(resume_from or cfg.out or default_run_dir(cfg.model))
    resume = checkpoint.load(run.path(CHECKPOINT)) if resume_from else None
    run.write_config(cfg.to_dict(), rt.describe())
    try:
        state = fit(model, task, cfg, rt, run, resume=resume)
    except Interrupted as e:
        e.run_dir = run.folder
        raise
    checkpoint.save(run.path(MODEL), model.state_dict())
    tested = task.test(model, run)
    run.write_predictions(splits.test_index.tolist(), splits.test_y.tolist(), tested.pop("predictions").tolist())
    summary = {"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run.folder), **tested}
    summary.update(_timings(state, cfg, len(splits.train_x)))
    summary.update(_costs(model, rt))
    summary["wall_seconds"] = time.perf_counter() - wall0  # through profiling; figures are drawn after
    run.write_summary(summary)
    write_figures(run, summary)
    return summary


def _timings(state: TrainState, cfg: Config, n_train: int) -> dict[str, Any]:
    steps = state.global_step
    return {"train_seconds": state.train_seconds, "compile_seconds": state.compile_seconds,
            "time_to_accuracy": time_to_accuracy(state.history), "epochs_completed": state.epoch,
            "stopped_early": state.stopped_early, "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_val_accuracy, "steps": steps, "train_images": n_train,
            "train_images_per_second": steps * cfg.batch_size / state.train_seconds if state.train_seconds else None}


def _costs(model: torch.nn.Module, rt: Runtime) -> dict[str, Any]:
    return {"params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "device": rt.describe(), "precision": rt.precision,
            "weights_source": getattr(model, "weights_source", None), "peak_memory_mb": peak_memory_mb(rt.device)}


def write_figures(run: RunRecord, summary: dict[str, Any]) -> None:
    """curves.png and confusion.png from the run's records."""
    title = f"{summary['model']} on {summary['dataset']}"
    plots.curves(run.read_metrics(), run.path(CURVES), title)
    plots.confusion(summary["confusion_matrix"], get_info(summary["dataset"]).classes, run.path(CONFUSION),
                    f"{title}: test accuracy {100 * summary['test_accuracy']:.2f} %")


def load_run_config(run_dir: str | os.PathLike) -> Config:
    """The Config a run folder was made with."""
    return Config.from_dict(read_config(run_dir))


def resume_config(run_dir: str | os.PathLike, overrides: dict[str, Any]) -> Config:
    """The saved config with the user's overrides; refused if they change anything but epochs and display."""
    saved = load_run_config(run_dir)
    merged = resolve({**saved.flat(), **overrides})
    before, after = effective_settings(saved), effective_settings(merged)
    differing = sorted(k for k in before if before[k] != after[k])
    if differing:
        raise UserError(f"cannot resume {run_dir} with a different config: {', '.join(differing)} differ "
                        "(only --epochs, --device, --data-dir and --quiet may change on resume)")
    return merged


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str = "", device: str = "auto") -> dict[str, Any]:
    """Re-evaluate a run's saved model.pt on the test set; returns the test metrics."""
    cfg = load_run_config(run_dir)
    rt = runtime(cfg, device)
    state = checkpoint.load(Path(run_dir) / MODEL, map_location=rt.device)
    splits = load_data(cfg, rt, data_dir)
    model = build_model(cfg, rt)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"{run_dir}/{MODEL} does not fit model {cfg.model!r}: {str(e).splitlines()[0]}") from None
    tested = make_task(cfg, splits, rt).test(model)
    tested.pop("predictions")
    return tested
