"""Where a study's runs execute: each in its own process (the default), or all in this one ("inline").

An executor takes (job, state) pairs and, for each, calls `started` before and `done` with an Outcome after
it ran: the run's summary, or the one-line reason it failed. A run in its own process owns its peak memory,
its crashes and its warm-up costs; it is the unit a distributed executor (Ray, Slurm) schedules too.
Interruption (Ctrl-C, SIGTERM) reaches the running run, which checkpoints; then engine.Interrupted is raised.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..fsio import write_bytes
from ..record import ERROR, read_summary
from .plan import Job

MAX_REASON = 200  # characters of a failed row's reason
EXECUTORS = ("local", "inline")


@dataclass(frozen=True)
class Outcome:
    """What became of one run: its summary when it finished, else the one-line reason it failed."""

    summary: dict[str, Any] | None
    error: str = ""


Started = Callable[[Job, str], None]
Done = Callable[[Job, Outcome], None]


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


def prepare(folder: Path, state: str) -> None:
    """A fresh run starts in an empty folder: metrics.jsonl is appended to, a new run must not inherit it."""
    if state == "fresh" and folder.exists():
        shutil.rmtree(folder)


def run_in_this_process(job: Job, folder: Path, state: str) -> Outcome:
    """train() here; any exception but an interruption becomes a failed Outcome with error.txt written."""
    import torch

    from ..engine import Interrupted
    from ..train import train

    prepare(folder, state)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return Outcome(train(job.cfg, resume_from=folder if state == "resume" else None))
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one model failing must not stop the study
        reason = one_line(e)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / ERROR, f"{reason}\n\n{traceback.format_exc()}".encode())
        return Outcome(None, reason)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def run_in_a_process(job: Job, folder: Path, state: str) -> Outcome:
    """`python -m mnistbench.study.worker` for this run, in its own session: a Ctrl-C or SIGTERM that reaches
    this process is passed on to the run (once per signal), which checkpoints before it exits."""
    from ..engine import Interrupted

    prepare(folder, state)
    spec = json.dumps({"config": job.cfg.to_dict(), "folder": str(folder), "resume": state == "resume"})
    proc = subprocess.Popen([sys.executable, "-m", "mnistbench.study.worker"], stdin=subprocess.PIPE,
                            start_new_session=True)
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc.communicate(spec.encode())
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    code = proc.returncode
    if code == 0:
        return Outcome(read_summary(folder))
    if received or code in (130, 143):
        raise Interrupted(received[0] if received else code - 128)
    return Outcome(None, _reason(folder, code))


def _reason(folder: Path, code: int) -> str:
    """The first line of error.txt the run wrote, or what killed its process."""
    try:
        return (folder / ERROR).read_text().splitlines()[0]
    except (OSError, IndexError):
        pass
    if code < 0:
        name = signal.Signals(-code).name
        return f"the run's process was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"the run's process exited with status {code} without saying why"


def run_all(executor: str, study: Path, work: list[tuple[Job, str]], started: Started, done: Done) -> None:
    """Run every (job, state) in order with the named executor."""
    one = {"local": run_in_a_process, "inline": run_in_this_process}[executor]
    for job, state in work:
        started(job, state)
        done(job, one(job, study / job.run_dir, state))
