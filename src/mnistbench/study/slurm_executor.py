"""`compare --executor slurm`: one Slurm job-array task per run, submitted with submitit.

compare submits the runs as one job array and writes each row as its job ends, so report, resume and failed
rows behave as with the local executor. A job is worker.attempt() on a compute node; a job whose process
died (killed, out of memory, a failed node) is submitted again, up to RETRIES times, and resumes from the
run's checkpoint; a job that reaches its time limit or is preempted is requeued by submitit (Checkpointable)
and resumes the same way. Job logs go to <study>/submitit/. The study folder and --data-dir must be on a
filesystem the compute nodes see (as home and project folders are on most clusters).

Job options: submitit's AutoExecutor parameters as JSON in $MNISTBENCH_SLURM, e.g.
'{"slurm_partition": "gpu", "timeout_min": 720, "cpus_per_task": 16}'.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from ..errors import UserError
from . import worker
from .outcome import Done, Started, one_line, outcome_of, prepare, remote_args
from .plan import Job

CLUSTER: str | None = None  # None: Slurm, refused where sbatch is missing; "local": submitit's LocalExecutor
RETRIES = 2                 # submissions after the first for a run whose job died or was stopped by a signal
POLL_S = 10.0               # seconds between looks at the jobs' states
LOGS = "submitit"           # the jobs' folder (scripts, pickles, stdout and stderr) in the study folder
DEFAULTS = {"name": "mnistbench", "timeout_min": 240, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 8}


class Run(submitit.helpers.Checkpointable):
    """One study run as a submitit job. At a time limit or preemption submitit calls checkpoint(), which
    requeues the same call: the requeued job resumes the run from its last checkpoint."""

    def __init__(self, attempt: Callable[[dict[str, Any], str], dict[str, Any]]):
        self.attempt = attempt

    def __call__(self, config: dict[str, Any], folder: str) -> dict[str, Any]:
        return self.attempt(config, folder)


def require_slurm() -> None:
    """Slurm's sbatch on this machine (unless CLUSTER names another of submitit's executors)."""
    if CLUSTER is None and shutil.which("sbatch") is None:
        raise UserError("--executor slurm: no Slurm on this machine (sbatch not found); submit from a login "
                        "node, or use --executor local or ray")


def executor(study: Path, device: str) -> submitit.AutoExecutor:
    """submitit's executor for this study's jobs: Slurm (or CLUSTER), with DEFAULTS and $MNISTBENCH_SLURM."""
    require_slurm()
    try:
        extra = json.loads(os.environ.get("MNISTBENCH_SLURM") or "{}")
        ex = submitit.AutoExecutor(folder=study / LOGS, cluster=CLUSTER)
        ex.update_parameters(**{**DEFAULTS, "gpus_per_node": 0 if device == "cpu" else 1, **extra})
    except (ValueError, TypeError, NameError, AssertionError) as e:
        raise UserError(f"$MNISTBENCH_SLURM: {one_line(e)} (expected submitit's AutoExecutor parameters as a "
                        "JSON object)") from None
    return ex


def run_on_slurm(study: Path, work: list[tuple[Job, str]], started: Started, done: Done) -> None:
    """Every (job, state) as a task of one job array; rows as jobs end."""
    if not work:
        return
    ex = executor(study, work[0][0].cfg.device)
    for job, state in work:
        prepare(study / job.run_dir, state)
    with ex.batch():  # one job array
        submitted = [(job, ex.submit(Run(worker.attempt), *remote_args(job, study / job.run_dir))) for job, _ in work]
    for job, state in work:
        started(job, state)
    pending = dict(enumerate(submitted))
    tries = {job.run_dir: 1 for job, _ in work}
    try:
        while pending:
            for key, (job, sj) in list(pending.items()):
                if not sj.done():
                    continue
                del pending[key]
                result = _result(sj)
                if ("died" in result or "interrupted" in result) and tries[job.run_dir] <= RETRIES:
                    tries[job.run_dir] += 1  # the run goes on from its checkpoint
                    pending[key] = (job, ex.submit(Run(worker.attempt), *remote_args(job, study / job.run_dir)))
                    continue
                done(job, outcome_of(result, "Slurm job"))
            if pending:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for _, sj in pending.values():
            sj.cancel(check=False)  # SIGTERM: each run checkpoints and stops
        raise


def _result(sj: submitit.Job) -> dict[str, Any]:
    """What the job returned, or {"died": why} when its process ended without a result."""
    try:
        return sj.result()
    except Exception as e:  # noqa: BLE001 - submitit's FailedJobError / UncompletedJobError: the process died
        return {"died": one_line(e)}
