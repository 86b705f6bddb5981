"""What a study run gives back to the executor that ran it, and what a run in another tool's process needs.

Shared by the executors (executor.py, ray_executor.py, slurm_executor.py) and the run's own process
(worker.py), so that none of them imports another.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WriteError, first_line
from ..fsio import write_bytes
from ..models import files
from ..record import ERROR
from .plan import Job

MAX_REASON = 200  # characters of a failed row's reason
CODE = "model_code"  # a job's config key carrying its model file's code ({"path", "code"}) to the run's process


@dataclass(frozen=True)
class Outcome:
    """What became of one run: its summary when it finished, else the one-line reason it failed."""

    summary: dict[str, Any] | None
    error: str = ""


Started = Callable[[Job, str], None]
Done = Callable[[Job, Outcome], None]


def one_line(e: BaseException) -> str:
    """The reason for a failed row: errors.first_line() at the row's length."""
    return first_line(e, MAX_REASON)


def failed(folder: Path, e: BaseException, trace: str) -> str:
    """The one-line reason of a run that raised `e`; error.txt (the reason, a blank line, the traceback) in its
    folder where the disk takes it: a full disk must not turn the run's reason into another failure."""
    reason = one_line(e)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / ERROR, f"{reason}\n\n{trace}".encode())
    except (OSError, WriteError):
        pass
    return reason


def prepare(folder: Path, state: str) -> None:
    """A fresh run starts in an empty folder: metrics.jsonl is appended to, a new run must not inherit it."""
    if state == "fresh" and folder.exists():
        shutil.rmtree(folder)


def job_config(job: Job) -> dict[str, Any]:
    """The job's config as the run's process receives it: a model file's code travels in it (CODE), so a process
    on another machine imports the code the study read, not whatever is at that path there."""
    config = job.cfg.to_dict()
    if job.cfg.model_sha256:
        config[CODE] = files.registered(job.cfg.model_sha256).to_dict()
    return config


def remote_args(job: Job, folder: Path) -> tuple[dict[str, Any], str]:
    """(config, run folder) for worker.attempt() in a process another tool starts (Ray, Slurm): paths made
    absolute, since its working directory may be another; out and data_dir do not change a run's result."""
    config = job_config(job)
    config["out"] = os.path.abspath(folder)
    data_dir = config["data_dir"] or os.environ.get("MNISTBENCH_DATA", "")
    config["data_dir"] = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else ""
    return config, config["out"]


def outcome_of(result: dict[str, Any], where: str) -> Outcome:
    """The Outcome of what worker.attempt() returned, or of a process that died {"died": reason} in `where`."""
    if "summary" in result:
        return Outcome(result["summary"])
    if "error" in result:
        return Outcome(None, result["error"])
    if "died" in result:
        return Outcome(None, f"its {where} died on every try: {result['died']}"[:MAX_REASON])
    return Outcome(None, f"stopped by a signal (exit status {result['interrupted']}) on every try in its {where}")
