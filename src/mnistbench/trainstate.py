"""Where a training run stands and how it is timed and stopped: TrainState (saved in every checkpoint), the
StepClock that counts training seconds, and the signals that stop a run after a checkpoint."""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field

from .device import Runtime
from .errors import UserError


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after a checkpoint; `code` is the exit status (130 / 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0              # epochs completed
    step_in_epoch: int = 0      # steps done in the current epoch
    global_step: int = 0
    train_seconds: float = 0.0  # training steps only (docs/run-folder.md: what the times include)
    compile_seconds: float = 0.0
    best_val_accuracy: float = -1.0
    best_epoch: float = 0.0     # epochs (fractional with a budget) at the best validation
    best_step: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)  # one record per validation
    window_loss: float = 0.0    # loss summed since the last logged step
    window_steps: int = 0
    metrics_lines: int = 0      # lines of metrics.jsonl that belong to this state


class Signals:
    """First SIGINT/SIGTERM: remember it and let the current step finish. Second SIGINT: exit at once."""

    def __enter__(self):
        self.signum = 0
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            print("\nsecond interrupt: exiting now without a checkpoint", file=sys.stderr, flush=True)
            os._exit(130)
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class StepClock:
    """Training seconds (TrainState.train_seconds): it runs while training steps run and is stopped around
    validation and checkpoints; every reading waits for the device's queued work first."""

    def __init__(self, state: TrainState, rt: Runtime):
        self.state, self.rt, self.since = state, rt, None

    def start(self) -> None:
        self.since = time.perf_counter()

    def stop(self) -> float:
        """Add the time since start() to the training seconds; returns their total."""
        self.rt.sync()
        if self.since is not None:
            self.state.train_seconds += time.perf_counter() - self.since
        self.since = None
        return self.state.train_seconds

    def peek(self) -> float:
        """The training seconds so far, without waiting for the device (a cheap, approximate reading)."""
        return self.state.train_seconds + (time.perf_counter() - self.since if self.since is not None else 0.0)

    def lap(self) -> float:
        """stop() and start() again: the training seconds so far, the clock still running."""
        total = self.stop()
        self.start()
        return total

    def discard(self) -> float:
        """The seconds since start(), not counted as training (the first compiled step); restarts the clock."""
        self.rt.sync()
        spent = time.perf_counter() - self.since
        self.start()
        return spent


def interactive() -> bool:
    """Whether progress bars have a screen to redraw: a terminal, or a Jupyter notebook (tqdm's widget)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules
