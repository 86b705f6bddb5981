"""`mnistbench compare`: every planned run trained into one study folder, resumable, then reported."""
from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import FIELDS
from ..errors import UserError
from ..fsio import read_json
from . import presets, report, results
from .executor import Outcome, check_executor, run_all
from .formatting import pct
from .plan import (
    Job,
    StudySpec,
    check_builds,
    check_models,
    plan,
    rerun_command,
    run_state,
)


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
            budgets: Sequence[float] = (), out: str | Path | None = None, data_dir: str = "", device: str = "auto",
            overrides: dict[str, Any] | None = None, quiet: bool = False, executor: str = "local",
            address: str | None = None, build_report: bool = True,
            log: Callable[[str], None] | None = _stderr) -> list[dict[str, Any]]:
    """Train every model × seed (× budget) into `out`/runs/, one result row each, then write the report.

    Every run's settings are checked before the first one starts. Each run executes in its own process
    (executor "local"; "inline" keeps them in this one). Rows are saved (results.json, results.csv,
    atomically) after every run; a rerun skips runs finished with the same config, resumes an interrupted
    one from its checkpoint and retries failed ones. A run that fails becomes a failed row with its reason,
    and the study goes on. Ctrl-C or SIGTERM raises StudyInterrupted.
    """
    spec = _spec(models, preset, seeds, budgets, out, data_dir, device, overrides, quiet, executor, address)
    jobs = plan(spec)
    check_builds(jobs)
    meta = _open(spec, jobs)
    return _execute(spec, jobs, meta, log or (lambda msg: None), build_report)


def _spec(models, preset, seeds, budgets, out, data_dir, device, overrides, quiet, executor, address) -> StudySpec:
    """The study's parameters, checked: models, seeds, preset, budgets, executor."""
    check_executor(executor)  # an unknown one, or ray / submitit not installed
    budgets = tuple(float(b) for b in budgets)
    if any(not b > 0 for b in budgets) or len(set(budgets)) != len(budgets):
        raise UserError(f"--budgets {','.join(f'{b:g}' for b in budgets)}: need distinct budgets > 0 seconds")
    models = tuple(check_models(models, seeds, preset))
    return StudySpec(models, preset, seeds, budgets, dict(overrides or {}), Path(out) if out else default_out(preset),
                     data_dir, device, quiet, executor, address)


def _open(spec: StudySpec, jobs: Sequence[Job]) -> dict[str, Any]:
    """Check the data and create the study folder (one clear error each, before any run); the study's settings."""
    from ..data.datasets import resolve_files

    dataset = str(spec.overrides.get("dataset", FIELDS["dataset"].default))
    resolve_files(dataset, spec.data_dir or None)  # missing data: one clear error instead of a failed row per run
    try:
        spec.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the study folder {spec.out} ({e.strerror or e}); "
                        "choose another with --out") from None
    return {"preset": spec.preset, "preset_about": presets.ABOUT.get(spec.preset, ""), "models": list(spec.models),
            "seeds": sorted({j.seed for j in jobs}),
            "budgets": sorted({j.cfg.budget_s for j in jobs if j.cfg.budget_s}),
            "dataset": dataset, "overrides": dict(spec.overrides), "data_dir": spec.data_dir, "device": spec.device,
            "executor": spec.executor, "command": rerun_command(spec), "plan": {j.model: j.settings for j in jobs},
            "planned": [{"model": j.model, "seed": j.seed, "budget_s": j.cfg.budget_s or None, "run_dir": j.run_dir}
                        for j in jobs]}


def _execute(spec: StudySpec, jobs: list[Job], meta: dict[str, Any], log: Callable[[str], None],
             build_report: bool) -> list[dict[str, Any]]:
    """Run what is not done yet, saving the rows after every run; then the report."""
    from ..engine import Interrupted

    previous = _previous_rows(spec.out)
    states = {j.run_dir: run_state(spec.out / j.run_dir, j.cfg, previous.get(j.run_dir)) for j in jobs}
    rows: dict[str, dict[str, Any]] = {}
    clock = _Clock(sum(s != "done" for s in states.values()))

    def save() -> list[dict[str, Any]]:
        ordered = [rows[j.run_dir] for j in jobs if j.run_dir in rows]
        results.write_results(spec.out, meta, ordered)
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

    log(f"compare: {len(spec.models)} models × {spec.seeds} seed{'s' * (spec.seeds > 1)}"
        + (f" × {len(spec.budgets)} budgets" if spec.budgets else "") + f", preset {spec.preset}, in {spec.out} "
        f"({len(jobs) - clock.todo} of {len(jobs)} runs already done)")
    for job in jobs:
        if states[job.run_dir] == "done":
            rows[job.run_dir] = results.read_row(spec.out, job.run_dir, preset=spec.preset)
    save()
    current: list[Job] = []
    try:
        run_all(spec.executor, spec.out, [(j, states[j.run_dir]) for j in jobs if states[j.run_dir] != "done"],
                lambda j, s: (current.append(j), started(j, s)), done, address=spec.address)
    except (Interrupted, KeyboardInterrupt) as e:
        raise _interrupted(e, current[-1], save(), spec) from None
    final = save()
    if build_report:
        path = report.build_report(spec.out, meta, final)
        log(f"compare: {sum(r['status'] == 'ok' for r in final)} of {len(final)} runs finished in "
            f"{_clock(clock.elapsed())}; report: {path}")
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


def _head(jobs: Sequence[Job], job: Job) -> str:
    budget = f", budget {job.cfg.budget_s:g} s" if job.cfg.budget_s else ""
    return f"[{jobs.index(job) + 1}/{len(jobs)}] {job.model}, seed {job.seed}{budget}"


def _row(job: Job, outcome: Outcome, preset: str) -> dict[str, Any]:
    if outcome.summary is not None:
        return results.run_row(outcome.summary, job.cfg.to_dict(), run_dir=job.run_dir, preset=preset)
    row = results.failed_row(job.model, job.seed, preset=preset, run_dir=job.run_dir, error=outcome.error)
    return {**row, "budget_s": job.cfg.budget_s or None}


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
        f"{sum(r['status'] == 'ok' for r in done)} finished run(s) are kept in {spec.out / results.RESULTS_CSV}. "
        f"Continue with: {rerun_command(spec)}   (finished runs are skipped"
        + ("; the interrupted one resumes from its checkpoint" if by_signal else "")
        + f"). Report of the finished runs: mnistbench report {shlex.quote(str(spec.out))}", getattr(e, "code", 130))


def failed_runs(rows: Sequence[dict[str, Any]]) -> list[str]:
    """'model seed k (reason)' for every failed row."""
    return [f"{r['model']} seed {r['seed']} ({r['error']})" for r in rows if r["status"] != "ok"]


def _previous_rows(study: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run of this study, by run folder; none if there was none."""
    try:
        rows = read_json(study / results.RESULTS_JSON)["rows"]
    except (UserError, KeyError, TypeError):
        return {}
    return {r["run_dir"]: r for r in rows if "run_dir" in r}

