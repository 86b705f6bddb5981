"""Library entry points: train(cfg) runs one model end to end; evaluate_run(dir) re-tests a saved run."""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, plots
from .classify import ClassifyTask, test_metrics
from .config import Config, effective_settings, resolve
from .data.datasets import Splits, load_splits
from .device import autocast_dtype, describe, pick_device
from .engine import Interrupted, fit
from .errors import UserError
from .metrics import time_to_accuracy
from .models import get_model, get_spec
from .profile import flops_per_image, inference_speed, peak_memory_mb
from .record import RunRecord, default_run_dir, git_commit, versions


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally make torch refuse non-deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def load_data(cfg: Config, device: torch.device) -> Splits:
    """The configured data set's splits, on `device`."""
    return load_splits(cfg.dataset, cfg.data_dir or None, device=device, val_size=cfg.val_size, seed=cfg.seed,
                       train_limit=cfg.train_limit, test_limit=cfg.test_limit)


def build_model(cfg: Config, device: torch.device) -> torch.nn.Module:
    """The registered model on `device` (channels_last on CUDA)."""
    try:
        model = get_model(cfg.model, **cfg.model_args)
    except ValueError as e:
        raise UserError(f"model {cfg.model!r}: {e}") from None
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _task_runner(cfg: Config):
    """(make_task, test) for the model's kind of task; test(model, splits, cfg, device, run) -> metrics."""
    if get_spec(cfg.model).task == "detect":
        from .detection import runner
        return runner.make_task, runner.test
    return ClassifyTask, lambda model, splits, cfg, device, run: test_metrics(model, splits, cfg, device)


def train(cfg: Config, *, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train, select on validation, test, profile and record one model; returns summary.json's content."""
    wall0 = time.perf_counter()
    device = pick_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic)
    # data and model first: a missing file or unavailable weights stops the run before any file is written
    splits = load_data(cfg, device)
    model = build_model(cfg, device)
    run = RunRecord(resume_from or cfg.out or default_run_dir(cfg.model))
    resume = checkpoint.load(run.path(checkpoint.CHECKPOINT)) if resume_from else None
    run.write_json("config.json", {"config": cfg.to_dict(), "versions": versions(), "device": describe(device),
                                   "git_commit": git_commit()})
    make_task, test = _task_runner(cfg)
    task = make_task(splits, cfg, device)
    try:
        state = fit(model, task, cfg, device, run, resume=resume)
    except Interrupted as e:
        e.run_dir = run.folder
        raise
    checkpoint.save(run.path(checkpoint.MODEL), model.state_dict())
    summary = {"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run.folder),
               **test(model, splits, cfg, device, run)}
    summary.update(_timings(state, cfg, len(splits.train_x)))
    summary.update(_costs(model, cfg, device, state.compile_seconds))
    summary["wall_seconds"] = time.perf_counter() - wall0  # through profiling; plots are written after
    run.write_json("summary.json", summary)
    write_figures(run, summary)
    return summary


def _timings(state, cfg: Config, n_train: int) -> dict[str, Any]:
    steps = state.global_step
    return {"train_seconds": state.train_seconds, "compile_seconds": state.compile_seconds,
            "time_to_accuracy": time_to_accuracy(state.history), "epochs_completed": state.epoch,
            "stopped_early": state.stopped_early, "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_val_accuracy, "steps": steps, "train_images": n_train,
            "train_images_per_second": steps * cfg.batch_size / state.train_seconds if state.train_seconds else None}


def _costs(model, cfg: Config, device: torch.device, compile_seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "device": describe(device), "precision": "bf16" if autocast_dtype(device, cfg.precision) else "fp32",
        "weights_source": getattr(model, "weights_source", None),
        "peak_memory_mb": peak_memory_mb(device),
    }
    if get_spec(cfg.model).task == "classify":
        out["flops_per_image"] = flops_per_image(model, device)
        if cfg.inference_benchmark:
            out.update(inference_speed(model, device, autocast_dtype(device, cfg.precision),
                                       budget_s=0.5 if device.type == "cpu" else 1.0,
                                       channels_last=cfg.channels_last))
    return out


def write_figures(run: RunRecord, summary: dict[str, Any]) -> None:
    """curves.png and confusion.png from the run's records."""
    title = f"{summary['model']} on {summary['dataset']}"
    plots.curves(run.read_metrics(), run.path("curves.png"), title)
    from .data.datasets import get_info
    plots.confusion(summary["confusion_matrix"], get_info(summary["dataset"]).classes, run.path("confusion.png"),
                    f"{title}: test accuracy {100 * summary['test_accuracy']:.2f} %")


def load_run_config(run_dir: str | os.PathLike) -> Config:
    """The Config a run folder was made with."""
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a readable run config ({e}); is {run_dir} a mnistbench run folder?") from None
    return resolve(Config(**{**saved, "model_args": saved.get("model_args", {})}).flat())


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
    dev = pick_device(device)
    state = checkpoint.load(Path(run_dir) / checkpoint.MODEL, map_location=dev)
    splits = load_splits(cfg.dataset, data_dir or cfg.data_dir or None, device=dev, val_size=cfg.val_size,
                         seed=cfg.seed, test_limit=cfg.test_limit)
    model = build_model(cfg, dev)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"{run_dir}/model.pt does not fit model {cfg.model!r}: {str(e).splitlines()[0]}") from None
    _, test = _task_runner(cfg)
    return test(model, splits, cfg, dev, None)
