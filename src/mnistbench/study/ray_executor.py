"""`compare --executor ray`: every run a Ray task in a process of its own, on this machine or across a cluster.

compare submits one task per run and writes each row as its result arrives, so report, resume ("finished
runs are skipped") and failed rows behave as with the local executor. A task is worker.attempt() in a fresh
worker process (max_calls=1), with one GPU where the cluster has GPUs, else a whole machine's CPUs. A worker
process killed mid-run (out of memory, a lost node) is started again by Ray (max_retries) and the run resumes
from its checkpoint; a run stopped by a signal after its checkpoint is submitted again the same way.

Without --address, `ray.init()` joins the cluster of `ray start` on this machine ($RAY_ADDRESS) or starts a
local one; `--address auto` must join one. Workers write the run folders: on a cluster the study folder and
--data-dir must be on a filesystem every node sees, at the same path.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import worker
from .outcome import Done, Started, one_line, outcome_of, prepare, remote_args
from .plan import Job

RETRIES = 3  # tries after the first for a run whose worker process died or was stopped by a signal


def run_on_ray(study: Path, work: list[tuple[Job, str]], started: Started, done: Done, *,
               address: str | None = None) -> None:
    """Every (job, state) as a Ray task; rows as results arrive. Joins (or starts) Ray unless already connected."""
    import ray

    own, sigterm = not ray.is_initialized(), signal.getsignal(signal.SIGTERM)
    if own:
        try:
            ray.init(address=address)
        except ConnectionError as e:
            raise UserError(f"--address {address}: no Ray cluster to join ({one_line(e)}); start one with "
                            "`ray start --head`, or leave out --address to run Ray on this machine") from None
    try:
        if work:
            _run(ray, study, work, started, done)
    finally:
        if own:
            ray.shutdown()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, sigterm)  # ray.init installs its own (sys.exit) in the main thread


def resources(ray: Any, device: str) -> dict[str, float]:
    """One GPU per run where the cluster has GPUs (and --device allows them); else the CPUs of its smallest
    machine, so a run has a machine to itself (its threads: Ray sets OMP_NUM_THREADS to this number)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and gpus < 1:
        raise UserError("--device cuda, but the Ray cluster has no GPU; use --device auto or cpu")
    if device in ("auto", "cuda") and gpus >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    return {"num_cpus": max(1, int(min(cpus, default=1)))}


def _run(ray: Any, study: Path, work: list[tuple[Job, str]], started: Started, done: Done) -> None:
    task = ray.remote(max_retries=RETRIES, retry_exceptions=False, max_calls=1,
                      **resources(ray, work[0][0].cfg.device))(worker.attempt)
    pending: dict[Any, Job] = {}
    tries: dict[str, int] = {}

    def submit(job: Job) -> None:
        tries[job.run_dir] = tries.get(job.run_dir, 0) + 1
        pending[task.options(name=Path(job.run_dir).name).remote(*remote_args(job, study / job.run_dir))] = job

    for job, state in work:
        prepare(study / job.run_dir, state)
        started(job, state)
        submit(job)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            result = _result(ray, ready[0])
            if "interrupted" in result and tries[job.run_dir] <= RETRIES:
                submit(job)  # e.g. its node was drained: the run goes on from its checkpoint
                continue
            done(job, outcome_of(result, "Ray worker"))
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM through Ray's handler
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in each running task; its last checkpoint is kept
        raise


def _result(ray: Any, ref: Any) -> dict[str, Any]:
    """What the task returned, or {"died": why} when its worker died more often than Ray retries."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        return {"died": one_line(e)}
