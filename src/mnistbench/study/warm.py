"""A study's run processes, started warm: on a Linux machine without CUDA each run's process is forked from one
server process that imported torch, torchvision and matplotlib once for the study (multiprocessing's
forkserver; preload.py), instead of each run paying those imports again. Every run still has a process of its
own: its own crashes, its own session (so that a Ctrl-C reaches it only through the study, which forwards it),
its own peak resident memory (which counts the imports it shares with the server).

The server has imported modules but computed nothing, so no thread pool exists before a fork. What a run needs
from the study's process comes with it: the environment as it is now (the server has the one it started with;
settings that libraries read when they load, such as OMP_NUM_THREADS, stay as they were then), the working
directory and sys.path (multiprocessing sends these), the standard output and error, and the pipe for its
one-line reason (passed as file descriptors). The study's own script is not run again in the run's process.
The server ignores SIGINT and SIGTERM, so that a signal to the whole process group reaches the run only through
the study; it ends with the study's process.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import types
from collections.abc import Callable
from typing import Any

PRELOAD = ("mnistbench.study.preload",)


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
    """Start the server now, so that its imports overlap the study's own set-up (a no-op when it runs). It is
    started with SIGTERM ignored (a disposition that survives exec); it ignores SIGINT itself."""
    if not available():
        return
    from multiprocessing import forkserver

    _context()
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGTERM, old)


def start(target: Callable[..., Any], spec: dict[str, Any], reason_fd: int | None) -> multiprocessing.Process:
    """A started process running target(spec, env, stdout, stderr, reason_fd), forked from the server.
    OSError or EOFError: the server could not start or fork the process."""
    warm_up()
    fds = [_Fd(1), _Fd(2), _Fd(reason_fd) if reason_fd is not None else None]
    proc = _context().Process(target=target, args=(spec, dict(os.environ), *fds), name="mnistbench-run")
    main = sys.modules["__main__"]
    # multiprocessing would run the study's script (or module) again in the run's process, as __mp_main__: the
    # target lives in mnistbench, so the process starts as if the study ran from an interactive session
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        proc.start()
    finally:
        sys.modules["__main__"] = main
    return proc


def enter(env: dict[str, str], stdout: int, stderr: int) -> None:
    """In the forked run process, first: its own session, SIGTERM's default, the study's environment and
    standard streams."""
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(env)
    for fd, into, stream in ((stdout, 1, sys.stdout), (stderr, 2, sys.stderr)):
        stream.flush()
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
