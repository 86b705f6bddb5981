"""The plan of a study: which model × seed runs, with which config, in which folder, and what is already done."""
from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FIELDS, Config, from_dict, parse_value, resolve, result_settings
from ..errors import UserError
from ..models import display_name, get_spec, list_models
from ..record import code_identity, read_code_identity, read_config, status
from . import presets
from .formatting import short

RUNS = "runs"
# Set by compare itself, per run; the study's own flags choose them.
RESERVED = {"model": "--models", "out": "--out", "data_dir": "--data-dir", "device": "--device", "quiet": "--quiet"}


@dataclass(frozen=True)
class StudySpec:
    """What a `compare` command asks for: its models, seeds, budgets, settings and where it all goes."""

    models: tuple[str, ...]
    preset: str = "quick"
    seeds: int = 1
    budgets: tuple[float, ...] = ()   # () = the preset's budget (or epochs) for every run
    budget_unit: str = "s"            # what `budgets` count: "s" (seconds of training) or "FLOPs" (training FLOPs)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    out: Path = Path("runs/compare")
    data_dir: str = ""
    device: str = "auto"
    quiet: bool = False
    executor: str = "local"
    address: str | None = None        # the Ray cluster to join (executor ray)
    reuse_finished: bool = False      # keep finished runs made by other code instead of running them again


@dataclass(frozen=True)
class Job:
    """One model × seed of the study: its resolved config and its run folder (relative to the study)."""

    model: str                # as rows, folders and the report name it (models.display_name of cfg.model)
    seed: int
    cfg: Config
    run_dir: str
    settings: dict[str, Any]  # what the preset and --set chose for this model (for the report)


def user_overrides(models: Sequence[str], overrides: Mapping[str, Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(first seed, per-model --set overrides): each key goes to the models that accept it."""
    overrides = dict(overrides)
    for key, flag in RESERVED.items():
        if key in overrides:
            raise UserError(f"--set {key}=... is chosen per run by compare; use {flag} instead")
    base_seed = parse_value("seed", overrides.pop("seed", 0), FIELDS["seed"].default)
    per_model = {m: presets.accepted(m, overrides) for m in models}
    unused = sorted(k for k in overrides if not any(k in per for per in per_model.values()))
    if unused:
        raise UserError(f"--set {', '.join(unused)}: no model in this study takes "
                        f"{'this key' if len(unused) == 1 else 'these keys'} (models: {', '.join(models)}); "
                        "see `mnistbench models` for each model's options")
    return base_seed, per_model


def run_dir(model: str, seed: int, budget: float | None, unit: str = "s") -> str:
    """runs/<model>-seed<k>, or runs/<model>-b<seconds>-seed<k> (-f<FLOPs>- for training FLOPs) in a study of
    several budgets."""
    if budget is None:
        return f"{RUNS}/{model}-seed{seed}"
    return f"{RUNS}/{model}-b{budget:g}-seed{seed}" if unit == "s" else f"{RUNS}/{model}-f{short(budget)}-seed{seed}"


def plan(spec: StudySpec) -> list[Job]:
    """Every job in run order: budget by budget, seed by seed, each running every model (a full first
    comparison early). Every config is resolved here, once: a bad value is one clear error before any work."""
    base_seed, per_model = user_overrides(spec.models, spec.overrides)
    jobs = []
    for budget in spec.budgets or (None,):
        for seed in range(base_seed, base_seed + spec.seeds):
            for m in spec.models:
                folder = run_dir(display_name(m), seed, budget if spec.budgets else None, spec.budget_unit)
                settings = {**presets.preset_overrides(spec.preset, m), **per_model[m]}
                if budget is not None:  # one budget replaces the preset's, seconds or FLOPs
                    settings.update({"budget_s": budget, "budget_flops": 0} if spec.budget_unit == "s" else
                                    {"budget_s": 0, "budget_flops": budget})
                o = {**settings, "model": m, "seed": seed, "data_dir": spec.data_dir, "device": spec.device,
                     "quiet": spec.quiet, "out": str(spec.out / folder)}
                jobs.append(Job(display_name(m), seed, resolve(o), folder, settings))
    return jobs


def check_builds(jobs: Sequence[Job]) -> None:
    """Build every distinct model of the study on the meta device (no memory, no weights fetched), so that a
    bad model option is one clear error before the first run instead of a failed row later."""
    import torch

    from ..config import model_spec
    from ..models import no_download_options

    seen = set()
    for job in jobs:
        # weights that cannot be fetched are a run's failure (a failed row), not a typo: none are fetched here
        options = no_download_options(job.cfg.model, job.cfg.model_args, sha256=job.cfg.model_sha256)
        key = (job.cfg.model, job.cfg.model_sha256, json.dumps(options, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            try:
                with torch.device("meta"):
                    model_spec(job.cfg).create(**options)
            except UserError:
                raise
            except Exception:  # noqa: BLE001 - not a settings error: the run itself will fail and say why
                pass


def decisive_settings(config: Mapping[str, Any]) -> str:
    """The config of a run as canonical JSON, without the fields that do not change its result
    (config.RESULT_NEUTRAL: a finished run with other values there still counts as done)."""
    return json.dumps(result_settings(config), sort_keys=True, default=str)


def run_state(folder: Path, cfg: Config, previous: dict[str, Any] | None) -> str:
    """'done' (finished with this config by this code), 'other code' (finished with this config by another
    version, commit or source of mnistbench), 'resume' (interrupted with this config by this code) or 'fresh'."""
    found = status(folder)
    if found == "none":
        return "fresh"
    try:  # re-resolved: a config written by an older version gains the fields it lacks, at their defaults
        saved = from_dict(read_config(folder)).to_dict()
    except UserError:
        return "fresh"
    if decisive_settings(saved) != decisive_settings(cfg.to_dict()):
        return "fresh"
    if previous is not None and previous["status"] != "ok":
        return "fresh"  # failed rows are retried from scratch
    if read_code_identity(folder) != code_identity():
        return "other code" if found == "finished" else "fresh"  # never resume one run with two codes
    return "done" if found == "finished" else "resume"


def rerun_command(spec: StudySpec) -> str:
    """The command line that continues (or reproduces) this study."""
    args = ["mnistbench", "compare", "--models", ",".join(spec.models), "--preset", spec.preset,
            "--seeds", str(spec.seeds), "--out", str(spec.out)]
    if spec.budgets:
        flag = "--budgets" if spec.budget_unit == "s" else "--budgets-flops"
        args += [flag, ",".join(short(b) if float(short(b)) == b else repr(b) for b in spec.budgets)]
    if spec.data_dir:
        args += ["--data-dir", spec.data_dir]
    if spec.device != "auto":
        args += ["--device", spec.device]
    if spec.executor != "local":
        args += ["--executor", spec.executor]
    if spec.address:
        args += ["--address", spec.address]
    if spec.reuse_finished:
        args += ["--reuse-finished"]
    for k, v in spec.overrides.items():
        args += ["--set", f"{k}={v}"]
    return shlex.join(args + (["--quiet"] if spec.quiet else []))


def check_models(models: Sequence[str] | None, seeds: int, preset: str) -> list[str]:
    """The study's model list (default: all registered), checked with the seeds and preset before any work: a
    model file is imported here, and built and run on a meta batch when its configs are resolved."""
    models = list(models or list_models())
    for m in models:
        get_spec(m)
    shown = [display_name(m) for m in models]
    if len(set(shown)) != len(shown):
        twice = sorted({s for s in shown if shown.count(s) > 1})
        raise UserError(f"--models names {', '.join(twice)} twice (a model file's model is named by its NAME): "
                        f"{','.join(models)}")
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least 1")
    presets.preset_overrides(preset, models[0])  # an unknown preset fails here, before any work
    return models
