"""`mnistbench compare`: every model × seed trained in-process into one study folder, resumable, then reported."""
from __future__ import annotations

import gc
import json
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import checkpoint, presets, report, results
from .config import FIELDS, Config, resolve
from .errors import UserError
from .formatting import pct
from .fsio import write_bytes
from .models import get_spec, list_models

RUNS = "runs"
# Set by compare itself, per run; the study's own flags choose them.
RESERVED = {"model": "--models", "out": "--out", "data_dir": "--data-dir", "device": "--device", "quiet": "--quiet"}
# Config fields that do not change a result: a finished run with other values still counts as done.
NOT_DECISIVE = ("out", "quiet", "data_dir", "checkpoint_minutes", "checkpoints")
MAX_REASON = 200  # characters of a failed row's reason


@dataclass(frozen=True)
class Job:
    """One model × seed of the study: the overrides resolve() gets and the run folder (relative)."""

    model: str
    seed: int
    overrides: dict[str, Any]
    run_dir: str


class StudyInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the study; finished rows are saved. `code` is the exit status."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_out(preset: str) -> Path:
    """runs/compare-<preset>: a fixed name, so running the same command again resumes the study."""
    return Path("runs") / f"compare-{preset}"


def user_overrides(models: Sequence[str], overrides: Mapping[str, Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(first seed, per-model --set overrides): each key goes to the models that accept it."""
    overrides = dict(overrides)
    for key, flag in RESERVED.items():
        if key in overrides:
            raise UserError(f"--set {key}=... is chosen per run by compare; use {flag} instead")
    base_seed = int(overrides.pop("seed", 0))
    per_model = {m: presets.accepted(m, overrides) for m in models}
    unused = sorted(k for k in overrides if not any(k in per for per in per_model.values()))
    if unused:
        raise UserError(f"--set {', '.join(unused)}: no model in this study takes "
                        f"{'this key' if len(unused) == 1 else 'these keys'} (models: {', '.join(models)}); "
                        "see `mnistbench models` for each model's options")
    return base_seed, per_model


def plan(models: Sequence[str], preset: str, seeds: int, overrides: Mapping[str, Any], *,
         data_dir: str = "", device: str = "auto", quiet: bool = False, out: Path = Path(".")) -> list[Job]:
    """Every job in run order: seed by seed, each seed running every model (a full first comparison early)."""
    base_seed, per_model = user_overrides(models, overrides)
    jobs = []
    for seed in range(base_seed, base_seed + seeds):
        for m in models:
            run_dir = f"{RUNS}/{m}-seed{seed}"
            o = {**presets.preset_overrides(preset, m), **per_model[m], "model": m, "seed": seed,
                 "data_dir": data_dir, "device": device, "quiet": quiet, "out": str(out / run_dir)}
            jobs.append(Job(m, seed, o, run_dir))
    return jobs


def decisive_settings(config: Mapping[str, Any]) -> str:
    """The config of a run as canonical JSON, without the fields that do not change its result."""
    d = {k: v for k, v in config.items() if k not in NOT_DECISIVE}
    return json.dumps(d, sort_keys=True, default=str)


def run_state(folder: Path, cfg: Config, previous: dict[str, Any] | None) -> str:
    """'done' (finished with this config), 'resume' (interrupted with this config) or 'fresh'."""
    try:
        saved = json.loads((folder / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return "fresh"
    if decisive_settings(saved) != decisive_settings(json.loads(json.dumps(cfg.to_dict()))):
        return "fresh"
    if previous is not None and previous["status"] != "ok":
        return "fresh"  # failed rows are retried from scratch
    summary = folder / "summary.json"
    if summary.exists():
        # a summary older than config.json belongs to an earlier run in this folder
        fresh_summary = summary.stat().st_mtime >= (folder / "config.json").stat().st_mtime
        return "done" if fresh_summary else "fresh"
    return "resume" if (folder / checkpoint.CHECKPOINT).exists() else "fresh"


def one_line(e: BaseException) -> str:
    """The reason for a failed row: the exception's first line, its type named unless it is a UserError."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not isinstance(e, UserError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if len(text) <= MAX_REASON:
        return text
    cut = text.rfind(". ", 0, MAX_REASON)  # whole sentences where possible (torch's OOM message runs long)
    return text[:cut + 1] if cut > 40 else text[:MAX_REASON - 3] + "..."


def rerun_command(models: Sequence[str], preset: str, seeds: int, out: Path, data_dir: str, device: str,
                  overrides: Mapping[str, Any], quiet: bool) -> str:
    """The command line that continues (or reproduces) this study."""
    args = ["mnistbench", "compare", "--models", ",".join(models), "--preset", preset, "--seeds", str(seeds),
            "--out", str(out)]
    if data_dir:
        args += ["--data-dir", data_dir]
    if device != "auto":
        args += ["--device", device]
    for k, v in overrides.items():
        args += ["--set", f"{k}={v}"]
    return shlex.join(args + (["--quiet"] if quiet else []))


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _free_memory() -> None:
    """Drop the finished model before the next one: a failed run must not leave its GPU memory behind."""
    gc.collect()
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _train(cfg: Config, folder: Path, state: str) -> dict[str, Any]:
    """train() into `folder`, from scratch or from its checkpoint, leaving torch's global flags as found."""
    import torch

    from .train import train

    if state == "fresh" and folder.exists():
        shutil.rmtree(folder)  # metrics.jsonl is appended to: a new run must not inherit an old one's lines
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return train(cfg, resume_from=folder if state == "resume" else None)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def compare(models: Sequence[str] | None = None, *, preset: str = "quick", seeds: int = 1,
            out: str | Path | None = None, data_dir: str = "", device: str = "auto",
            overrides: Mapping[str, Any] | None = None, quiet: bool = False, build_report: bool = True,
            log: Callable[[str], None] | None = _stderr) -> list[dict[str, Any]]:
    """Train every model × seed into `out`/runs/<model>-seed<k>, one result row each, then write the report.

    Rows are saved (results.json, results.csv, atomically) after every run; a rerun skips runs finished
    with the same config, resumes an interrupted one from its checkpoint and retries failed ones. A model
    that raises becomes a failed row with its reason, and the study goes on. Ctrl-C raises StudyInterrupted.
    """
    from .data.datasets import resolve_files
    from .engine import Interrupted

    log = log or (lambda msg: None)
    models = _check_models(models, seeds, preset)
    overrides = dict(overrides or {})
    study = Path(out) if out else default_out(preset)
    jobs = plan(models, preset, seeds, overrides, data_dir=data_dir, device=device, quiet=quiet, out=study)
    for job in jobs:  # a bad --set value is one clear error before any work, not a failed row per model
        resolve(job.overrides)
    dataset = str(overrides.get("dataset", FIELDS["dataset"].default))
    resolve_files(dataset, data_dir or None)  # missing data: one clear error instead of one failed row per run
    try:
        study.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the study folder {study} ({e.strerror or e}); choose another with --out")
    command = rerun_command(models, preset, seeds, study, data_dir, device, overrides, quiet)
    meta = {"preset": preset, "preset_about": presets.ABOUT.get(preset, ""), "models": models,
            "seeds": sorted({j.seed for j in jobs}), "dataset": dataset, "overrides": overrides,
            "data_dir": data_dir, "device": device, "command": command,
            "plan": {j.model: {k: v for k, v in j.overrides.items() if k not in ("model", "seed", *RESERVED)}
                     for j in jobs}}
    previous = _previous_rows(study)
    rows: dict[tuple[str, int], dict[str, Any]] = {}

    def save() -> list[dict[str, Any]]:
        ordered = [rows[(j.model, j.seed)] for j in jobs if (j.model, j.seed) in rows]
        results.write_results(study, meta, ordered)
        return ordered

    t0, ran_seconds, ran = time.perf_counter(), 0.0, 0
    states = [_state(study, j, previous) for j in jobs]
    todo = sum(1 for s in states if s != "done")
    log(f"compare: {len(models)} models × {seeds} seed{'s' * (seeds > 1)}, preset {preset}, in {study} "
        f"({len(jobs) - todo} of {len(jobs)} runs already done)")
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.model}, seed {job.seed}"
        if states[i - 1] == "done":
            rows[(job.model, job.seed)] = results.run_row(study, job.run_dir, preset=preset)
            save()
            log(f"{head}: finished earlier, skipped ({job.run_dir})")
            continue
        elapsed = time.perf_counter() - t0
        eta = f", about {_clock(ran_seconds / ran * todo)} left" if ran else ""
        verb = "resuming from its checkpoint" if states[i - 1] == "resume" else "training"
        log(f"{head}: {verb} (elapsed {_clock(elapsed)}{eta})")
        started = time.perf_counter()
        try:
            row = _run_job(study, job, states[i - 1], preset, log, head)
        except (Interrupted, KeyboardInterrupt) as e:
            raise _interrupted(e, job, save(), study, command) from None
        rows[(job.model, job.seed)] = row
        save()
        _free_memory()
        ran, todo = ran + 1, todo - 1
        ran_seconds += time.perf_counter() - started
    final = save()
    if build_report:
        path = report.build_report(study, meta, final)
        log(f"compare: {sum(r['status'] == 'ok' for r in final)} of {len(final)} runs finished in "
            f"{_clock(time.perf_counter() - t0)}; report: {path}")
    return final


def _run_job(study: Path, job: Job, state: str, preset: str, log: Callable[[str], None], head: str) -> dict:
    """Train one job and return its row; any exception but an interruption becomes a failed row."""
    from .engine import Interrupted

    folder = study / job.run_dir
    try:
        cfg = resolve(job.overrides)
        _train(cfg, folder, state)
        row = results.run_row(study, job.run_dir, preset=preset)
        accuracy = pct(row["test_accuracy"]) if row["test_accuracy"] is not None else "–"
        log(f"{head}: test accuracy {accuracy}, {row['train_seconds'] or 0:.1f} s of training")
        return row
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one model failing must not stop the study
        reason = one_line(e)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / "error.txt", traceback.format_exc().encode())
        log(f"{head}: FAILED: {reason} (traceback in {job.run_dir}/error.txt)")
        return results.failed_row(job.model, job.seed, preset=preset, run_dir=job.run_dir, error=reason)


def _interrupted(e: BaseException, job: Job, done: list[dict], study: Path, command: str) -> StudyInterrupted:
    """The StudyInterrupted that tells what was kept and how to go on."""
    from .engine import Interrupted

    by_signal = isinstance(e, Interrupted)
    return StudyInterrupted(
        f"study stopped by {e if by_signal else 'Ctrl-C'} during {job.model} seed {job.seed}; "
        f"{sum(r['status'] == 'ok' for r in done)} finished run(s) are kept in {study / results.RESULTS_CSV}. "
        f"Continue with: {command}   (finished runs are skipped"
        + ("; the interrupted one resumes from its checkpoint" if by_signal else "")
        + f"). Report of the finished runs: mnistbench report {shlex.quote(str(study))}", getattr(e, "code", 130))


def _check_models(models: Sequence[str] | None, seeds: int, preset: str) -> list[str]:
    """The study's model list (default: all registered), checked with the seeds and preset before any work."""
    models = list(models or list_models())
    for m in models:
        get_spec(m)
    if len(set(models)) != len(models):
        raise UserError(f"--models lists a model twice: {','.join(models)}")
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least 1")
    presets.preset_overrides(preset, models[0])  # an unknown preset fails here, before any work
    return models


def _state(study: Path, job: Job, previous: dict[tuple[str, int], dict[str, Any]]) -> str:
    return run_state(study / job.run_dir, resolve(job.overrides), previous.get((job.model, job.seed)))


def _previous_rows(study: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of an earlier run of this study, by (model, seed); none if there was none."""
    try:
        rows = json.loads((study / results.RESULTS_JSON).read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return {}
    return {(r["model"], r["seed"]): r for r in rows}
