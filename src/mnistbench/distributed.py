"""One run on several processes: torch.distributed data parallelism (DDP) under torchrun, gloo on CPU, nccl on CUDA.

torchrun starts the processes and sets WORLD_SIZE, RANK and LOCAL_RANK (on one machine or, through its
rendezvous, on several); without them a run is one process and nothing here does anything. The config's
batch_size is the global batch: every rank builds the same seeded batch and trains on its shard (every
world-th sample), so the union of the shards is exactly the single-process batch, and DDP averages the
gradients. Rank 0 alone measures the plan, validates, tests and writes; the others follow what it broadcasts.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint
from .device import Runtime, pick_device
from .errors import UserError


@dataclass(frozen=True)
class Group:
    """This process's place among the run's processes; the collectives a run needs (no-ops for one process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""     # "gloo" (CPU) or "nccl" (CUDA); "" for one process
    device: str = ""      # the device of this rank ("cuda:<local rank>" on GPUs); "" = the config's

    @property
    def main(self) -> bool:
        """Rank 0: the process that measures, validates, tests and writes the run folder."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def describe(self, rt: Runtime) -> str:
        """The run's device in words, e.g. 'cpu (1 threads) x 2 processes (torchrun DDP, gloo)'."""
        return rt.describe() + (f" x {self.world} processes (torchrun DDP, {self.backend})" if self.active else "")

    def about(self) -> dict[str, Any]:
        """The summary's record of the processes: nothing for one process."""
        return {"distributed": {"world_size": self.world, "backend": self.backend}} if self.active else {}

    def shard(self, task: Any) -> Any:
        """`task` with its training batches cut to this rank's shard (itself for one process)."""
        return Sharded(task, self) if self.active else task

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps call: DDP over `model` (whose parameters it shares), or `model` itself.

        On CUDA, batch norm is synchronised (SyncBatchNorm: the global batch's statistics, as in one process);
        gloo on a CPU has no SyncBatchNorm, so there each rank normalises with its shard's statistics, and
        DDP gives every rank rank 0's running statistics before each forward pass.
        """
        if not self.active:
            return model
        if self.backend == "nccl":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module
            return nn.parallel.DistributedDataParallel(model, device_ids=[self.local_rank])
        return nn.parallel.DistributedDataParallel(model)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (any picklable object)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def mean_(self, t: torch.Tensor) -> torch.Tensor:
        """`t` replaced, in place, by its mean over the ranks."""
        if self.active:
            dist.all_reduce(t)
            t /= self.world
        return t

    def agree(self, signum: int, timed: bool, now: bool) -> tuple[int, bool]:
        """Stop (a signal seen by any rank) and checkpoint (rank clocks) decided together, at the steps that log
        (`now`), so every rank stops or checkpoints at the same step; one process decides alone at every step."""
        if not self.active:
            return signum, timed
        if not now:
            return 0, False
        flags = torch.tensor([signum, int(bool(timed))], device=self.device or "cpu")
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return int(flags[0]), bool(flags[1])

    def own_rng(self, seed: int, saved: list | None) -> None:
        """Ranks > 0 draw their dropout masks (and the detector's samples) from their own stream: the one their
        checkpoint saved, else one seeded from (seed, rank). Rank 0's stream is the single-process stream."""
        if not self.active or self.main:
            return
        if saved and len(saved) == self.world:
            checkpoint.set_rng_state(saved[self.rank])
        else:
            torch.manual_seed(seed * 1_000_003 + 999_983 * self.rank)


SOLO = Group()
TORCHRUN_ENV = {"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": 0}  # what torchrun sets in each process; else these


class Sharded:
    """A task whose training batches are this rank's shard; validation and test see the whole split.

    A task may cut its batches itself with `shard(batch, rank, world)` (classification draws augmentation for
    the whole batch first); otherwise a batch is sliced `batch[rank::world]` (an index tensor, or Scenes).
    """

    def __init__(self, task: Any, group: Group):
        self.task, self.group = task, group

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        rank, world, cut = self.group.rank, self.group.world, getattr(self.task, "shard", None)
        for batch in self.task.batches(epoch, start):
            yield cut(batch, rank, world) if cut else batch[rank::world]


def _env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    try:
        rank, world, local = (int(os.environ.get(name, default)) for name, default in TORCHRUN_ENV.items())
        return rank, world, local
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


@contextlib.contextmanager
def start(device: str, batch_size: int) -> Iterator[Group]:
    """The process group of this run under torchrun (joined here, left on exit), else the one-process SOLO."""
    rank, world, local = _env()
    if world <= 1:
        yield SOLO
        return
    if batch_size % world:
        raise UserError(f"batch_size={batch_size} is the global batch: it must divide evenly among the {world} "
                        f"processes of torchrun (e.g. --batch-size {batch_size - batch_size % world or world})")
    kind = pick_device(device).type
    if kind not in ("cpu", "cuda"):
        raise UserError(f"torchrun runs on CPUs (gloo) or CUDA GPUs (nccl); --device {device} is neither")
    if kind == "cuda":
        torch.cuda.set_device(local)  # before init: nccl binds this process to its GPU
    cuda = kind == "cuda"
    group = Group(rank, world, local, "nccl" if cuda else "gloo", f"cuda:{local}" if cuda else "cpu")
    joined = not dist.is_initialized()
    if joined:
        # rank 0 alone measures, validates, tests and profiles while the others wait: a generous timeout
        dist.init_process_group(group.backend, device_id=torch.device(group.device) if cuda else None,
                                timeout=datetime.timedelta(hours=1))
    try:
        yield group
    finally:
        if joined:
            dist.destroy_process_group()
