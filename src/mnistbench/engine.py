"""The training loop every model shares: fit() with validation, model selection, checkpoints, signals."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint
from .budget import Plan
from .config import Config
from .device import Runtime
from .distributed import SOLO, Group
from .optim import lr_factor, make_optimizer, set_lr
from .record import CHECKPOINT, MODEL, RunRecord, versions
from .trainstate import Interrupted, NonFiniteLoss, Signals, StepClock, TrainState, interactive

__all__ = ["Interrupted", "NonFiniteLoss", "StepClock", "Task", "TrainState", "Trainer", "fit"]


class Task(Protocol):
    """What fit() needs from a kind of problem (classification, detection)."""

    steps_per_epoch: int

    def batches(self, epoch: int, start: int) -> Iterator[Any]: ...  # batches of `epoch` from number `start`

    def loss(self, net: nn.Module, batch: Any, step: int) -> torch.Tensor: ...  # scalar, under autocast

    def validate(self, model: nn.Module, whole: bool = False) -> dict[str, float]: ...  # val_loss, val_accuracy


class Trainer:
    """Holds model, optimizer, plan and state for one fit; see fit().

    Under torchrun (`group`), the steps run through DDP on every rank; rank 0 validates, re-plans a seconds
    budget and broadcasts both, and writes the checkpoints; the logged loss is the mean over the ranks.
    """

    def __init__(self, model: nn.Module, task: Task, cfg: Config, rt: Runtime, run: RunRecord, plan: Plan,
                 group: Group = SOLO):
        self.model, self.task, self.cfg, self.rt, self.run, self.plan = model, task, cfg, rt, run, plan
        self.group = group
        self.opt = make_optimizer(model, cfg)
        self.lr = 0.0  # the head's learning rate at the current step
        self.net = group.wrap(model)  # DDP under torchrun, else the model itself
        self.net = torch.compile(self.net, mode=cfg.compile_mode) if cfg.compile else self.net
        self.state = TrainState()
        self.clock = StepClock(self.state, rt)
        self.replay: list[dict[str, Any]] = []  # re-plans recorded by an interrupted process, made again on resume
        self.best_weights: dict | None = None
        self._best_dirty = False
        self._compiled = False
        self.run_loss = float("nan")  # the last logged training loss, shown on the progress bar

    @property
    def epochs(self) -> int:
        """Epochs the plan touches (the last one may be partial)."""
        return math.ceil(self.plan.total_steps / self.task.steps_per_epoch)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self, rng_ranks: list | None = None) -> dict[str, Any]:
        out = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "rng": checkpoint.rng_state(),
               "state": asdict(self.state), "config": self.cfg.to_dict(), "plan": self.plan.to_dict(),
               "versions": versions()}
        return {**out, "rng_ranks": rng_ranks} if self.group.active else out  # under torchrun: every rank's RNG

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        checkpoint.set_rng_state(ckpt["rng"])
        self.state = TrainState(**ckpt["state"])
        self.clock = StepClock(self.state, self.rt)
        # re-plans logged after the checkpoint are made again, as recorded: the resumed run trains the steps
        # the interrupted one planned (the learning rate is a function of the plan and the step)
        later = self.run.read_metrics()[self.state.metrics_lines:]
        self.replay = [{k: v for k, v in r.items() if k != "kind"} for r in later if r.get("kind") == "replan"]
        self.run.truncate_metrics(self.state.metrics_lines)
        if self.group.main and self.run.path(MODEL).exists():
            self.best_weights = checkpoint.load(self.run.path(MODEL))

    def save_checkpoint(self) -> None:
        if not self.cfg.checkpoints:
            return
        rng_ranks = self.group.gather(checkpoint.rng_state()) if self.group.active else None
        if not self.group.main:
            return
        if self._best_dirty:
            checkpoint.save(self.run.path(MODEL), self.best_weights)
            self._best_dirty = False
        self.state.metrics_lines = self.run.metrics_lines()
        checkpoint.save(self.run.path(CHECKPOINT), self.state_dict(rng_ranks))

    # --- the loop ----------------------------------------------------------------------------
    def fit(self) -> tuple[TrainState, Plan]:
        st = self.state
        with Signals() as sig:
            while st.global_step < self.plan.total_steps and not st.stopped_early:
                self._train_epoch(sig)
        if self.cfg.val_subset and self.group.main:
            self._select_on_the_whole_split()
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        if self.group.main and (self.best_weights is None or self._best_dirty):  # else the last checkpoint wrote it
            checkpoint.save(self.run.path(MODEL), self.model.state_dict())
        return st, self.plan

    def _train_epoch(self, sig: Signals) -> None:
        """Steps of the current epoch until its end, the planned total or an early stop: re-plans at the plan's
        re-plan steps, validation (and a checkpoint) at its validation steps, checkpoints every
        checkpoint_minutes and on a signal."""
        cfg, st, task = self.cfg, self.state, self.task
        self.model.train()
        bar = tqdm(total=self._epoch_steps(), initial=st.step_in_epoch, leave=False, dynamic_ncols=True,
                   disable=cfg.quiet or not self.group.main or not interactive(),
                   desc=f"epoch {st.epoch + 1}/{self.epochs}")
        window = torch.tensor(st.window_loss, device=self.rt.device)
        last_ckpt = time.monotonic()
        self.clock.start()
        for batch in task.batches(st.epoch, st.step_in_epoch):
            self._step(batch, window)
            if cfg.compile and not self._compiled:  # this process's first compiled step compiles: apart
                st.compile_seconds += self.clock.discard()
                self._compiled = True
            if self._replan_due():
                self._replan()
                bar.total = self._epoch_steps()
            end = st.step_in_epoch == task.steps_per_epoch or st.global_step >= self.plan.total_steps
            validate = st.global_step in self.plan.val_steps
            logged = st.global_step % cfg.log_every == 0 or end or validate
            if logged:
                self._log_train(window)
                bar.update(st.step_in_epoch - bar.n)
                bar.set_postfix(loss=f"{self.run_loss:.4f}")
            if st.step_in_epoch == task.steps_per_epoch:
                st.epoch, st.step_in_epoch = st.epoch + 1, 0
            signum, timed = self._agree(sig, last_ckpt, logged)
            if validate or signum or timed:
                self.clock.stop()
                self._validate() if validate else self._checkpoint_mid_epoch(window)
                last_ckpt = time.monotonic()
                self.clock.start()
            if signum:
                bar.close()
                raise Interrupted(signum)
            if end or st.stopped_early:
                break
        self.clock.stop()
        bar.close()

    def _epoch_steps(self) -> int:
        """Steps of the current epoch the plan trains."""
        st = self.state
        return min(self.task.steps_per_epoch, self.plan.total_steps - st.global_step + st.step_in_epoch)

    def _agree(self, sig: Signals, last_ckpt: float, logged: bool) -> tuple[int, bool]:
        """(signal to stop at, whether a timed checkpoint is due); under torchrun every rank decides the same at
        the same logged step (distributed.Group.agree)."""
        timed = bool(self.cfg.checkpoint_minutes) and time.monotonic() - last_ckpt > 60 * self.cfg.checkpoint_minutes
        return self.group.agree(sig.signum, timed, logged)

    def _step(self, batch: Any, window: torch.Tensor) -> None:
        cfg = self.cfg
        at, total = self.plan.schedule_step(self.state.global_step)
        self.lr = set_lr(self.opt, lr_factor(cfg.schedule, cfg.warmup, at, total))
        with self.rt.autocast():
            loss = self.task.loss(self.net, batch, self.state.global_step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        window += loss.detach().float()
        self.state.global_step += 1
        self.state.step_in_epoch += 1
        self.state.window_steps += 1

    def _replan_due(self) -> bool:
        """A re-plan now: one an interrupted process recorded at this step, else when the plan says so (under
        torchrun, decided by rank 0 at the steps that log, so that every rank re-plans at the same step)."""
        st = self.state
        if self.replay:
            return st.global_step == self.replay[0]["step"]
        if self.group.active:
            at_log = st.global_step % self.cfg.log_every == 0
            return at_log and self.group.broadcast(self.plan.replan_due(st.global_step, self.clock.peek()))
        return self.plan.replan_due(st.global_step, self.clock.peek())

    def _replan(self) -> None:
        """Re-plan a seconds budget from the mean step time since the previous re-plan (rank 0 measures and
        broadcasts), or make again the re-plan an interrupted process recorded at this step; logged."""
        st = self.state
        seconds = self.clock.lap()
        if self.replay and self.replay[0]["step"] == st.global_step:
            plan = self.plan.with_replan(self.replay.pop(0))
        elif self.group.main:
            since = self.plan.replans[-1] if self.plan.replans else {"step": 0, "train_seconds": 0.0}
            per_step = (seconds - since["train_seconds"]) / (st.global_step - since["step"])
            plan = self.plan.replanned(st.global_step, per_step, seconds)
        else:
            plan = None
        self.plan = self.group.broadcast(plan)
        self.run.log({"kind": "replan", **self.plan.replans[-1]})

    def _select_on_the_whole_split(self) -> None:
        """With val_subset, an earlier checkpoint that beat the last one on the subset is kept only if it also
        beats it on the whole validation split (both scored there, logged as a "select" record)."""
        st = self.state
        if self.best_weights is None or st.best_step == st.global_step:
            return
        last = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        scores = {}
        for step, weights in ((st.best_step, self.best_weights), (st.global_step, last)):
            self.model.load_state_dict(weights)
            scores[step] = self.task.validate(self.model, whole=True)["val_accuracy"]
        keep = st.best_step if scores[st.best_step] > scores[st.global_step] else st.global_step
        self.run.log({"kind": "select", "split": "whole", "candidates": {str(k): v for k, v in scores.items()},
                      "kept_step": keep})
        if keep == st.global_step:
            self.best_weights, self._best_dirty = last, True
            st.best_step, st.best_epoch = keep, round(keep / self.task.steps_per_epoch, 4)
        st.best_val_accuracy = scores[keep]
        self.model.load_state_dict(last)

    def _check_finite(self, mean: float) -> None:
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"training loss became {mean} (cross-entropy / task loss) at step "
                                f"{self.state.global_step}, learning rate {self.lr:.3g}; stopped, the last good "
                                f"checkpoint is kept; try a lower --lr or --set grad_clip=1")

    def _log_train(self, window: torch.Tensor) -> None:
        st = self.state
        self.group.mean_(window)  # torchrun: the mean over the ranks' shards, i.e. the global batch's loss
        self.run_loss = mean = window.item() / max(st.window_steps, 1)  # the host sync logging needs
        self.clock.lap()
        self._check_finite(mean)
        self.run.log({"kind": "train", "step": st.global_step,
                      "epoch": st.epoch + st.step_in_epoch / self.task.steps_per_epoch, "loss": mean,
                      "lr": self.lr, "train_seconds": round(st.train_seconds, 4),
                      "time": time.time()})
        window.zero_()
        st.window_steps = 0

    def _checkpoint_mid_epoch(self, window: torch.Tensor) -> None:
        self.state.window_loss = self.group.mean_(window).item()  # every rank resumes with the same window
        self._check_finite(self.state.window_loss)
        self.save_checkpoint()

    def _validate(self) -> None:
        """Validate, keep the best weights, stop early at the target accuracy, checkpoint."""
        st, cfg = self.state, self.cfg
        st.window_loss = 0.0  # just logged
        t_val = time.perf_counter()
        val = self.group.broadcast(self.task.validate(self.model) if self.group.main else None)  # rank 0, full split
        self.model.train()
        epoch = round(st.global_step / self.task.steps_per_epoch, 4)
        record = {"kind": "val", "step": st.global_step, "epoch": epoch, **val,
                  "train_seconds": round(st.train_seconds, 4), "val_seconds": round(time.perf_counter() - t_val, 4),
                  "time": time.time()}
        self.run.log(record)
        st.history.append(record)
        if val["val_accuracy"] > st.best_val_accuracy:
            st.best_val_accuracy, st.best_epoch, st.best_step = val["val_accuracy"], epoch, st.global_step
            if self.group.main:  # the only rank that tests and writes model.pt
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
                self._best_dirty = True
        if cfg.target_accuracy and val["val_accuracy"] >= cfg.target_accuracy:
            st.stopped_early = True
        if not cfg.quiet and self.group.main:
            tqdm.write(f"epoch {epoch:g}/{self.epochs}: val_loss {val['val_loss']:.4f}  "
                       f"val_acc {val['val_accuracy']:.4f}  train {st.train_seconds:.1f}s")
        self.save_checkpoint()


def fit(model: nn.Module, task: Task, cfg: Config, rt: Runtime, run: RunRecord, plan: Plan,
        resume: dict[str, Any] | None = None, group: Group = SOLO) -> tuple[TrainState, Plan]:
    """Train `model` on `task` for the plan's steps; returns the final state and plan (with its re-plans). On
    return the model holds the best-validation weights and so does model.pt, written by the checkpoint that
    found them, else once at the end (on rank 0 under torchrun; the other ranks hold the last weights)."""
    trainer = Trainer(model, task, cfg, rt, run, plan, group)
    if resume is not None:
        trainer.load_state_dict(resume)
    group.own_rng(cfg.seed, resume.get("rng_ranks") if resume else None)
    return trainer.fit()

