"""A study's run processes, started warm: each forked from one server process that imported torch, torchvision,
matplotlib and mnistbench once for the whole study (multiprocessing's forkserver), instead of each run paying
those imports again. Every run still has a process of its own: its own crashes, its own peak memory, its own
session (so that a Ctrl-C reaches it only through the study, which forwards it).

The server has imported modules but computed nothing, so no thread pool exists before a fork. What a run needs
from the study's process comes with it: the environment as it is now (the server has the one it started
with), the working directory and sys.path (multiprocessing sends these), the standard output and error, and
the pipe for its one-line reason (passed as file descriptors).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from typing import Any

# what every run imports; a module that fails to import here is imported, or fails, in the run itself
PRELOAD = ("torch", "torch._dynamo", "torchvision", "matplotlib.figure", "matplotlib.backends.backend_agg",
           "mnistbench.run", "mnistbench.study.worker")


def available() -> bool:
    """Whether run processes are forked warm: on Linux without CUDA. Elsewhere each run starts cold: a CUDA
    driver that an import may have touched does not survive a fork, macOS frameworks are not safe to use in a
    process forked after they were loaded, and Windows cannot fork."""
    import torch

    return (sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()
            and not torch.cuda.is_available())


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def warm_up() -> None:
    """Start the server now, so that its imports overlap the study's own set-up (a no-op when it runs)."""
    if available():
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()


def start(target: Callable[..., Any], spec: dict[str, Any], reason_fd: int | None) -> multiprocessing.Process:
    """A started process running target(spec, env, stdout, stderr, reason_fd), forked from the server."""
    fds = [_Fd(1), _Fd(2), _Fd(reason_fd) if reason_fd is not None else None]
    proc = _context().Process(target=target, args=(spec, dict(os.environ), *fds), name="mnistbench-run")
    proc.start()
    return proc


def enter(env: dict[str, str], stdout: int, stderr: int) -> None:
    """In the forked run process, first: its own session, the study's environment and standard streams."""
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    for fd, into in ((stdout, 1), (stderr, 2)):
        sys.stdout.flush() if into == 1 else sys.stderr.flush()
        os.dup2(fd, into)
        os.close(fd)


class _Fd:
    """A file descriptor of the study's process, passed to the forked process (which gets its own copy)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing import reduction

        return _detach, (reduction.DupFd(self.fd),)


def _detach(dup: Any) -> int:
    return dup.detach()
