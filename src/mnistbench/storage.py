"""Disk room for runs and studies, checked before any work; what of a run folder survives a failed write.

A run folder ends holding model.pt (the weights), checkpoint.pt (weights, optimizer state, RNGs, progress) and
small files (config, metrics, summary, predictions, figures). While a checkpoint is replaced, its new copy is
written beside the old one (atomic writes), so the folder's peak is its final size plus one more checkpoint.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import Config, from_dict, model_spec, result_settings
from .errors import NoRoom, WriteError, mb
from .fsio import check_writable
from .record import CHECKPOINT, CONFIG, MODEL, read_config, read_metrics, read_plan

SMALL_FILES = 2_000_000   # config, metrics, summary, predictions (~0.25 MB for 10k test images), figures, events
STUDY_FILES = 4_000_000   # results.json/csv, report.md/html (figures inlined) and figures/
CHECKPOINT_EXTRA = 100_000  # RNG states, validation history, config, plan, versions
PER_TENSOR = 256          # torch's zip format: a header, a directory entry and alignment per stored tensor
TORCH_FILE = 16_000       # and per file: the pickle of the dict's structure, its version and byte-order records
MARGIN = 1.1


@dataclass(frozen=True)
class Footprint:
    """Bytes one run writes into its folder."""

    model: int       # model.pt
    checkpoint: int  # checkpoint.pt (0 with checkpoints=false)

    @property
    def final(self) -> int:
        """What the finished folder holds."""
        return self.model + self.checkpoint + SMALL_FILES

    @property
    def peak(self) -> int:
        """The most it holds at once: a new checkpoint (or model.pt) is written beside the one it replaces."""
        return self.final + max(self.model, self.checkpoint)


def footprint(model: nn.Module, cfg: Config) -> Footprint:
    """From the parameter count: model.pt is the state dict; the checkpoint adds the optimizer's state per
    trainable parameter (AdamW two moments, SGD with momentum one) and the run's progress."""
    state = model.state_dict()
    weights = sum(t.numel() * t.element_size() for t in state.values()) + PER_TENSOR * len(state) + TORCH_FILE
    trainable = [p for p in model.parameters() if p.requires_grad]
    moments = 2 if cfg.optimizer == "adamw" else int(cfg.momentum > 0)
    optimizer = sum(moments * p.numel() * p.element_size() + PER_TENSOR * (moments + 1) for p in trainable)
    return Footprint(weights, weights + optimizer + CHECKPOINT_EXTRA if cfg.checkpoints else 0)


def _bytes_in(folder: Path, names: Sequence[str] | None = None) -> int:
    """Bytes of the named files in `folder` (every file under it when `names` is None)."""
    files = (folder / n for n in names) if names is not None else (p for p in folder.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in files if p.is_file())


def _check_free(folder: Path, need: int, who: str, detail: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise NoRoom(folder, need, free, who, detail)


def check_run(folder: str | os.PathLike, model: nn.Module, cfg: Config) -> None:
    """Before any work: `folder` is writable and its disk's free space covers the run's peak (with a margin),
    less the model.pt and checkpoint.pt it already holds (a resumed run replaces them). WriteError otherwise."""
    folder, fp = Path(folder), footprint(model, cfg)
    made = not folder.exists()
    check_writable(folder)
    need = int(MARGIN * fp.peak) - _bytes_in(folder, (MODEL, CHECKPOINT))
    try:
        _check_free(folder, need, "the run needs", f"model.pt {mb(fp.model)}, checkpoint.pt {mb(fp.checkpoint)} "
                    "twice while a new one replaces it, logs, predictions and figures")
    except NoRoom:
        if made:  # nothing starts: not even the folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def check_study(study: str | os.PathLike, runs: Sequence[tuple[Config, Path]]) -> None:
    """Before the first run: `study` is writable and its disk's free space covers every run still to do (their
    folders stay: the sum of their final sizes, plus the largest run's second checkpoint copy), the results and
    the report, less what those runs' folders hold now (replaced or removed)."""
    study = Path(study)
    prints = [footprint(_meta_model(cfg), cfg) for cfg, _ in runs if _builds(cfg)]
    need = int(MARGIN * (sum(f.final for f in prints) + max((f.peak - f.final for f in prints), default=0)))
    need += STUDY_FILES - sum(_bytes_in(folder) for _, folder in runs if folder.is_dir())
    try:
        check_writable(study)
        _check_free(study, need, f"its {len(runs)} run(s) still to do and its report need",
                    "each run folder keeps its model.pt and checkpoint.pt")
    except WriteError as e:
        e.kept = "no run was started"
        raise


def _meta_model(cfg: Config) -> nn.Module:
    """The run's model on the meta device: its shapes without memory or downloaded weights."""
    options = dict(cfg.model_args)
    if "pretrained" in options:
        options["pretrained"] = False
    with torch.device("meta"):
        return model_spec(cfg).create(**options)  # a model file's: the code the config names by its hash


def _builds(cfg: Config) -> bool:
    try:
        _meta_model(cfg)
    except Exception:  # noqa: BLE001 - a model that does not build fails as its own run, with its reason
        return False
    return True


def intact(folder: str | os.PathLike) -> tuple[str, bool]:
    """What of a run folder a failed write left intact, in words, and whether `train --resume` goes on from it.
    The checkpoint is read (its pickle, not its tensors) to prove it whole and of this run's settings."""
    folder = Path(folder)
    if not (folder / CONFIG).exists():
        return "nothing of the run was written", False
    try:
        ckpt = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
        same = result_settings(from_dict(ckpt["config"]).to_dict()) == \
            result_settings(from_dict(read_config(folder)).to_dict())
        step, total = ckpt["state"]["global_step"], read_plan(folder).get("total_steps")
    except Exception:  # noqa: BLE001 - no checkpoint, or one this version cannot read: none to go on from
        same = False
    if not same:
        return "no checkpoint of the run was written yet (--resume starts it again from its saved config)", True
    with contextlib.suppress(ValueError, KeyError, TypeError):  # a seconds budget's re-plans change the total
        total = ([r["planned_after"] for r in read_metrics(folder) if r.get("kind") == "replan"
                  and r["step"] <= step] or [total])[-1]
    return f"the last checkpoint, step {step}{f' of {total}' if total else ''}, is intact", True


def in_run(e: WriteError, folder: str | os.PathLike) -> WriteError:
    """`e`, told what of the run folder is intact and how to go on (unless a lower layer told it already)."""
    if not e.kept:
        e.kept, resumable = intact(folder)
        e.then = (f"go on with: mnistbench train --resume {shlex.quote(str(folder))}" if resumable
                  else "run the same command again (or choose another --out)")
    return e
