"""Where a study's runs execute: each in its own process (the default), all in this one ("inline"), as Ray
tasks across GPUs and machines ("ray", ray_executor.py) or as Slurm jobs ("slurm", slurm_executor.py).

An executor takes (job, state) pairs and, for each, calls `started` before and `done` with an Outcome after
it ran: the run's summary, or the one-line reason it failed. A run in its own process owns its peak memory
and its crashes (the local executor forks it from a server that imported torch once per study, warm.py); it
is the unit a distributed executor (Ray, Slurm) schedules too.
Interruption (Ctrl-C, SIGTERM) reaches the running run, which checkpoints; then engine.Interrupted is raised.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..record import ERROR, read_summary
from . import warm, worker
from .outcome import Done, Outcome, Started, failed, job_config, prepare
from .plan import Job

__all__ = ["EXECUTORS", "Outcome", "check_executor", "run_all"]

EXECUTORS = ("local", "inline", "ray", "slurm")
PACKAGES = {"ray": "ray", "slurm": "submitit"}  # what an executor needs beyond the base install (its extra)


def check_executor(name: str) -> None:
    """An unknown executor, or one whose package is not installed, is one clear error before any work."""
    if name not in EXECUTORS:
        raise UserError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    package = PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise UserError(f"--executor {name} needs the {package} package: pip install 'mnistbench[{name}]'")
    if name == "slurm":
        from .slurm_executor import require_slurm
        require_slurm()


def run_in_this_process(job: Job, folder: Path, state: str) -> Outcome:
    """train() here; any exception but an interruption becomes a failed Outcome with error.txt written."""
    import torch

    from ..engine import Interrupted
    from ..run import train

    prepare(folder, state)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return Outcome(train(job.cfg, resume_from=folder if state == "resume" else None))
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one model failing must not stop the study
        return Outcome(None, failed(folder, e, traceback.format_exc()))
    finally:
        torch.use_deterministic_algorithms(deterministic)


def run_in_a_process(job: Job, folder: Path, state: str) -> Outcome:
    """This run in a process of its own (forked warm, warm.py), in its own session: a Ctrl-C or SIGTERM that
    reaches this process is passed on to the run (once per signal), which checkpoints before it exits. A failed
    run tells its reason through a pipe too: on a full disk its error.txt cannot be written."""
    from ..engine import Interrupted

    prepare(folder, state)
    spec = {"config": job_config(job), "folder": str(folder), "resume": state == "resume"}
    said, tell = os.pipe() if os.name == "posix" else (None, None)
    try:
        code, received = _run_worker(spec, tell)
        reason = _drain(said)
    finally:
        if said is not None:
            os.close(said)
    if code == 0:
        return Outcome(read_summary(folder))
    if received or code in (130, 143):
        raise Interrupted(received[0] if received else code - 128)
    return Outcome(None, reason or _reason(folder, code))


def _run_worker(spec: dict, tell: int | None) -> tuple[int, list[int]]:
    """Start the run's process and wait for its end, forwarding SIGINT / SIGTERM from before it starts (one that
    arrives while it starts is passed on as soon as it runs); (its exit status, the signals received)."""
    received: list[int] = []
    running: list[Callable[[int], None]] = []  # how to signal the run's process, once there is one

    def forward(signum, _frame):
        received.append(signum)
        for send in running:
            send(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            send, wait = _start(spec, tell)
        finally:
            if tell is not None:
                os.close(tell)  # the run's process holds its own copy; the reader sees the end when it exits
        running.append(send)
        for signum in list(received):
            send(signum)
        return wait(), received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _start(spec: dict, tell: int | None) -> tuple[Callable[[int], None], Callable[[], int]]:
    """The run's process, forked warm where it can be, else `python -m mnistbench.study.worker`: (how to signal
    it, how to wait for its exit status)."""
    if warm.available():
        with contextlib.suppress(OSError, EOFError):  # the server could not start or fork: this run starts cold
            proc = warm.start(worker.forked, spec, tell)
            send, forget = _signaller(proc.pid)

            def wait() -> int:
                proc.join()
                code = proc.exitcode
                proc.close()
                forget()
                return code
            return send, wait
    cold = subprocess.Popen([sys.executable, "-m", "mnistbench.study.worker"], stdin=subprocess.PIPE,
                            start_new_session=True, pass_fds=(tell,) if tell is not None else ())

    def wait_cold() -> int:
        cold.communicate(json.dumps({**spec, "reason_fd": tell}).encode())
        return cold.returncode
    return cold.send_signal, wait_cold


def _signaller(pid: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(send a signal to process `pid`, forget it). Not our child (the server forked it and reaps it), so it is
    held by a pidfd where the kernel has them: a signal never reaches another process that reused the pid."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd on this kernel, or the process already ended
        fd = None

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if fd is not None:
                signal.pidfd_send_signal(fd, signum)
            else:
                os.kill(pid, signum)

    def forget() -> None:
        if fd is not None:
            os.close(fd)
    return send, forget


def _drain(fd: int | None) -> str:
    """What the run's process, now ended, wrote to the pipe `fd`: its one-line reason, or nothing. Read without
    waiting: a process it started may still hold the pipe open."""
    if fd is None:
        return ""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace").strip()


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


def run_all(executor: str, study: Path, work: list[tuple[Job, str]], started: Started, done: Done, *,
            address: str | None = None) -> None:
    """Run every (job, state) with the named executor (`address`: the Ray cluster to join)."""
    if executor == "ray":
        from .ray_executor import run_on_ray
        return run_on_ray(study, work, started, done, address=address)
    if executor == "slurm":
        from .slurm_executor import run_on_slurm
        return run_on_slurm(study, work, started, done)
    if executor == "local" and work:
        warm.warm_up()
    one = {"local": run_in_a_process, "inline": run_in_this_process}[executor]
    for job, state in work:
        started(job, state)
        done(job, one(job, study / job.run_dir, state))
