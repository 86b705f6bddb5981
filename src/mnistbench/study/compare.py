"""`mnistbench compare`: every planned run trained into one study folder, resumable, then reported."""
from __future__ import annotations

import gc
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import FIELDS, Config
from ..errors import UserError
from ..fsio import read_json, write_bytes
from ..record import ERROR
from . import presets, report, results
from .formatting import pct
from .plan import Job, check_models, default_out, plan, rerun_command, run_state

MAX_REASON = 200  # characters of a failed row's reason


class StudyInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the study; finished rows are saved. `code` is the exit status."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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

    from ..train import train

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
    from ..engine import Interrupted

    log = log or (lambda msg: None)
    models = check_models(models, seeds, preset)
    overrides = dict(overrides or {})
    study = Path(out) if out else default_out(preset)
    jobs = plan(models, preset, seeds, overrides, data_dir=data_dir, device=device, quiet=quiet, out=study)
    command = rerun_command(models, preset, seeds, study, data_dir, device, overrides, quiet)
    meta = _open(study, jobs, preset=preset, overrides=overrides, data_dir=data_dir, device=device, command=command)
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
            rows[(job.model, job.seed)] = results.read_row(study, job.run_dir, preset=preset)
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


def _open(study: Path, jobs: Sequence[Job], *, preset: str, overrides: Mapping[str, Any], data_dir: str,
          device: str, command: str) -> dict[str, Any]:
    """Check the data and create the study folder (one clear error each, before any run); the study's settings."""
    from ..data.datasets import resolve_files

    dataset = str(overrides.get("dataset", FIELDS["dataset"].default))
    resolve_files(dataset, data_dir or None)  # missing data: one clear error instead of one failed row per run
    try:
        study.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the study folder {study} ({e.strerror or e}); choose another with --out")
    return {"preset": preset, "preset_about": presets.ABOUT.get(preset, ""),
            "models": list(dict.fromkeys(j.model for j in jobs)), "seeds": sorted({j.seed for j in jobs}),
            "dataset": dataset, "overrides": dict(overrides), "data_dir": data_dir, "device": device,
            "command": command, "plan": {j.model: j.settings for j in jobs}}


def _run_job(study: Path, job: Job, state: str, preset: str, log: Callable[[str], None], head: str) -> dict:
    """Train one job and return its row; any exception but an interruption becomes a failed row."""
    from ..engine import Interrupted

    folder = study / job.run_dir
    try:
        summary = _train(job.cfg, folder, state)
        row = results.run_row(summary, job.cfg.to_dict(), run_dir=job.run_dir, preset=preset)
        accuracy = pct(row["test_accuracy"]) if row["test_accuracy"] is not None else "–"
        log(f"{head}: test accuracy {accuracy}, {row['train_seconds'] or 0:.1f} s of training")
        return row
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one model failing must not stop the study
        reason = one_line(e)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / ERROR, traceback.format_exc().encode())
        log(f"{head}: FAILED: {reason} (traceback in {job.run_dir}/{ERROR})")
        return results.failed_row(job.model, job.seed, preset=preset, run_dir=job.run_dir, error=reason)


def _interrupted(e: BaseException, job: Job, done: list[dict], study: Path, command: str) -> StudyInterrupted:
    """The StudyInterrupted that tells what was kept and how to go on."""
    from ..engine import Interrupted

    by_signal = isinstance(e, Interrupted)
    return StudyInterrupted(
        f"study stopped by {e if by_signal else 'Ctrl-C'} during {job.model} seed {job.seed}; "
        f"{sum(r['status'] == 'ok' for r in done)} finished run(s) are kept in {study / results.RESULTS_CSV}. "
        f"Continue with: {command}   (finished runs are skipped"
        + ("; the interrupted one resumes from its checkpoint" if by_signal else "")
        + f"). Report of the finished runs: mnistbench report {shlex.quote(str(study))}", getattr(e, "code", 130))


def _state(study: Path, job: Job, previous: dict[tuple[str, int], dict[str, Any]]) -> str:
    return run_state(study / job.run_dir, job.cfg, previous.get((job.model, job.seed)))


def _previous_rows(study: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of an earlier run of this study, by (model, seed); none if there was none."""
    try:
        rows = read_json(study / results.RESULTS_JSON)["rows"]
    except (UserError, KeyError, TypeError):
        return {}
    return {(r["model"], r["seed"]): r for r in rows}
