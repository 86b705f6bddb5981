"""`mnistbench compare`: every planned run trained into one study folder, resumable, then reported."""
from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import FIELDS
from ..errors import UserError, WriteError
from ..fsio import check_writable, read_json
from ..models import display_name
from ..record import code_identity, read_code_identity
from ..storage import check_study
from . import presets, report, results
from .executor import Outcome, check_executor, run_all
from .formatting import budget_text, pct
from .paired import PredictionCache
from .plan import (
    Job,
    StudySpec,
    check_builds,
    check_models,
    plan,
    rerun_command,
    run_state,
)
from .rows import RESULTS_CSV, RESULTS_JSON, budget_of, failed_row, off_budget, read_row, run_row


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


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def compare(models: Sequence[str] | None = None, *, preset: str = "quick", seeds: int = 1,
            budgets: Sequence[float] = (), budgets_flops: Sequence[float] = (), out: str | Path | None = None,
            data_dir: str = "", device: str = "auto", overrides: dict[str, Any] | None = None, quiet: bool = False,
            executor: str = "local", address: str | None = None, reuse_finished: bool = False,
            build_report: bool = True, log: Callable[[str], None] | None = _stderr) -> list[dict[str, Any]]:
    """Train every model × seed (× budget) into `out`/runs/, one result row each, then write the report.

    `budgets` in seconds of training, or `budgets_flops` in training FLOPs (one kind per study); none: the
    preset's. Every run's settings are checked before the first one starts. Each run executes in its own
    process (executor "local"; "inline" keeps them in this one). Rows are saved (results.json, results.csv,
    atomically) after every run; a rerun skips runs finished with the same config by the same code (with
    `reuse_finished`, by any code: the report names them), resumes an interrupted one from its checkpoint
    and retries failed ones. A run that fails becomes a failed row with its reason, and the study goes on.
    Ctrl-C or SIGTERM raises StudyInterrupted.
    """
    if budgets and budgets_flops:
        raise UserError("budgets in seconds and in training FLOPs: give one kind per study")
    unit = "FLOPs" if budgets_flops else "s"
    spec = _spec(models, preset, seeds, budgets or budgets_flops, unit, out, data_dir, device, overrides, quiet,
                 executor, address, reuse_finished)
    jobs = plan(spec)
    check_builds(jobs)
    meta = _open(spec, jobs)
    try:
        return _execute(spec, jobs, meta, log or (lambda msg: None), build_report)
    except WriteError as e:  # the study's own files (results, report): it stops, and the same command goes on
        e.kept = e.kept or f"the finished runs and the last {RESULTS_JSON} are intact"
        e.then = e.then or f"go on with: {rerun_command(spec)}   (finished runs are skipped)"
        raise


def _spec(models, preset, seeds, budgets, unit, out, data_dir, device, overrides, quiet, executor, address,
          reuse_finished) -> StudySpec:
    """The study's parameters, checked: models, seeds, preset, budgets, executor."""
    check_executor(executor)  # an unknown one, or ray / submitit not installed
    budgets = tuple(float(b) for b in budgets)
    if any(not b > 0 for b in budgets) or len(set(budgets)) != len(budgets):
        what = "seconds" if unit == "s" else "training FLOPs"
        raise UserError(f"budgets {', '.join(f'{b:g}' for b in budgets)}: need distinct budgets > 0 {what}")
    models = tuple(check_models(models, seeds, preset))
    return StudySpec(models, preset, seeds, budgets, unit, dict(overrides or {}),
                     Path(out) if out else default_out(preset), data_dir, device, quiet, executor, address,
                     reuse_finished)


def _open(spec: StudySpec, jobs: Sequence[Job]) -> dict[str, Any]:
    """Check the data and create the study folder (one clear error each, before any run); the study's settings."""
    from ..data.datasets import resolve_files

    dataset = str(spec.overrides.get("dataset", FIELDS["dataset"].default))
    resolve_files(dataset, spec.data_dir or None)  # missing data: one clear error instead of a failed row per run
    check_writable(spec.out)
    return {"preset": spec.preset, "preset_about": presets.ABOUT.get(spec.preset, ""),
            "models": [display_name(m) for m in spec.models],
            "seeds": sorted({j.seed for j in jobs}), "budgets": sorted({b for j in jobs if (b := _budget(j)[0])}),
            "budget_unit": next((u for j in jobs if (u := _budget(j)[1])), None),
            "dataset": dataset, "overrides": dict(spec.overrides), "data_dir": spec.data_dir, "device": spec.device,
            "executor": spec.executor, "command": rerun_command(spec), "plan": {j.model: j.settings for j in jobs},
            "planned": [{"model": j.model, "seed": j.seed, "budget": _budget(j)[0], "run_dir": j.run_dir}
                        for j in jobs], "code": code_identity(), "reused": []}


def _budget(job: Job) -> tuple[float | None, str | None]:
    return budget_of(job.cfg.to_dict())


def _execute(spec: StudySpec, jobs: list[Job], meta: dict[str, Any], log: Callable[[str], None],
             build_report: bool) -> list[dict[str, Any]]:
    """Run what is not done yet, saving the rows after every run; then the report."""
    from ..engine import Interrupted

    previous = _previous_rows(spec.out)
    states = {j.run_dir: run_state(spec.out / j.run_dir, j.cfg, previous.get(j.run_dir)) for j in jobs}
    for folder, state in states.items():
        if state == "other code":  # finished by another mnistbench: run again, or keep it and say so
            states[folder] = "done" if spec.reuse_finished else "fresh"
            if spec.reuse_finished:
                meta["reused"].append({"run_dir": folder, **read_code_identity(spec.out / folder)})
    check_study(spec.out, [(j.cfg, spec.out / j.run_dir) for j in jobs if states[j.run_dir] != "done"])
    rows: dict[str, dict[str, Any]] = {}
    clock = _Clock(sum(s != "done" for s in states.values()))
    cache = PredictionCache()  # each predictions.json is read once, however often the rows are saved

    def save() -> list[dict[str, Any]]:
        ordered = [rows[j.run_dir] for j in jobs if j.run_dir in rows]
        results.save_results(spec.out, meta, ordered, cache=cache)
        return ordered

    def started(job: Job, state: str) -> None:
        clock.start()
        verb = "resuming from its checkpoint" if state == "resume" else "training"
        log(f"{_head(jobs, job)}: {verb} ({clock.progress()})")

    def done(job: Job, outcome: Outcome) -> None:
        rows[job.run_dir] = _row(job, outcome, spec.preset)
        save()
        clock.stop()
        log(f"{_head(jobs, job)}: {_said(rows[job.run_dir])}")

    budgets = f" × {len(spec.budgets)} budget{'s' * (len(spec.budgets) > 1)}" if spec.budgets else ""
    log(f"compare: {len(spec.models)} models × {spec.seeds} seed{'s' * (spec.seeds > 1)}{budgets}, "
        f"preset {spec.preset}, in {spec.out} ({len(jobs) - clock.todo} of {len(jobs)} runs already done)")
    for job in jobs:
        if states[job.run_dir] == "done":
            rows[job.run_dir] = read_row(spec.out, job.run_dir, preset=spec.preset)
    save()
    current: list[Job] = []
    try:
        run_all(spec.executor, spec.out, [(j, states[j.run_dir]) for j in jobs if states[j.run_dir] != "done"],
                lambda j, s: (current.append(j), started(j, s)), done, address=spec.address)
    except (Interrupted, KeyboardInterrupt) as e:
        raise _interrupted(e, current[-1], save(), spec) from None
    final = save()
    if build_report:
        path = report.build_report(spec.out, meta, final, cache=cache)
        log(f"compare: {sum(r['status'] == 'ok' for r in final)} of {len(final)} runs finished in "
            f"{_clock(clock.elapsed())}; report: {path}" + _off_budget(final))
    return final


class _Clock:
    """Elapsed time and an estimate of what is left, from the runs done so far."""

    def __init__(self, todo: int):
        self.t0, self.todo, self.ran, self.ran_seconds, self._started = time.perf_counter(), todo, 0, 0.0, 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> None:
        self.ran, self.todo = self.ran + 1, self.todo - 1
        self.ran_seconds += time.perf_counter() - self._started

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def progress(self) -> str:
        eta = f", about {_clock(self.ran_seconds / self.ran * self.todo)} left" if self.ran else ""
        return f"elapsed {_clock(self.elapsed())}{eta}"


def _off_budget(rows: Sequence[dict[str, Any]]) -> str:
    """'; outside the budget tolerance: …' naming every finished run whose training missed its budget."""
    off = [f"{r['model']} seed {r['seed']} ({r['train_seconds']:.1f} s for "
           f"{budget_text(r['budget'], r['budget_unit'])}, {100 * r['budget_error']:+.1f} %)"
           for r in rows if off_budget(r)]
    return "; outside the budget's tolerance (±3 % or ±1 s): " + ", ".join(off) if off else ""


def _head(jobs: Sequence[Job], job: Job) -> str:
    b, unit = _budget(job)
    budget = f", budget {budget_text(b, unit)}" if b else ""
    return f"[{jobs.index(job) + 1}/{len(jobs)}] {job.model}, seed {job.seed}{budget}"


def _row(job: Job, outcome: Outcome, preset: str) -> dict[str, Any]:
    if outcome.summary is not None:
        return run_row(outcome.summary, job.cfg.to_dict(), run_dir=job.run_dir, preset=preset, code=code_identity())
    return failed_row(job.model, job.seed, preset=preset, run_dir=job.run_dir, error=outcome.error,
                      budget=_budget(job))


def _said(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"FAILED: {row['error']} (traceback in {row['run_dir']}/error.txt when there is one)"
    accuracy = pct(row["test_accuracy"]) if row["test_accuracy"] is not None else "–"
    return f"test accuracy {accuracy}, {row['train_seconds'] or 0:.1f} s of training"


def _interrupted(e: BaseException, job: Job, done: list[dict], spec: StudySpec) -> StudyInterrupted:
    """The StudyInterrupted that tells what was kept and how to go on."""
    from ..engine import Interrupted

    by_signal = isinstance(e, Interrupted)
    return StudyInterrupted(
        f"study stopped by {e if by_signal else 'Ctrl-C'} during {job.model} seed {job.seed}; "
        f"{sum(r['status'] == 'ok' for r in done)} finished run(s) are kept in {spec.out / RESULTS_CSV}. "
        f"Continue with: {rerun_command(spec)}   (finished runs are skipped"
        + ("; the interrupted one resumes from its checkpoint" if by_signal else "")
        + f"). Report of the finished runs: mnistbench report {shlex.quote(str(spec.out))}", getattr(e, "code", 130))


def failed_runs(rows: Sequence[dict[str, Any]]) -> list[str]:
    """'model seed k (reason)' for every failed row."""
    return [f"{r['model']} seed {r['seed']} ({r['error']})" for r in rows if r["status"] != "ok"]


def _previous_rows(study: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run of this study, by run folder; none if there was none."""
    try:
        rows = read_json(study / RESULTS_JSON)["rows"]
    except (UserError, KeyError, TypeError):
        return {}
    return {r["run_dir"]: r for r in rows if "run_dir" in r}

