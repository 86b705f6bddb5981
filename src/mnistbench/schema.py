"""The shape of a run's configuration: the frozen Config, its fields grouped in sections, and allowed choices.

Only data here: config.py resolves a Config (defaults < recipe < preset < flags) from the model registry and the
task options. Every layer may read a Config; none below config.py needs to build one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The sections of a Config, in the order `mnistbench config` prints them.
DATA, MODEL, OPTIMISER, SCHEDULE = "data", "model", "optimiser", "schedule"
AUGMENTATION, PRECISION, EVALUATION, RUN = "augmentation", "precision and device", "evaluation", "run bookkeeping"
SECTIONS = (DATA, MODEL, OPTIMISER, SCHEDULE, AUGMENTATION, PRECISION, EVALUATION, RUN)

# Allowed values of the string fields that are choices.
CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("onecycle", "cosine", "constant"),
    "augment": ("none", "translate", "affine"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "precision": ("auto", "fp32", "bf16"),
    "compile_mode": ("default", "reduce-overhead", "max-autotune"),
    "tta": ("none", "shift"),
}


def _in(section: str, default: Any) -> Any:
    """A Config field in `section` with `default`."""
    return field(default=default, metadata={"section": section})


@dataclass(frozen=True)
class Config:
    """Every setting of a run, by section. Field comments say what a value means."""

    dataset: str = _in(DATA, "mnist")              # mnist | fashion-mnist
    data_dir: str = _in(DATA, "")                  # "" = $MNISTBENCH_DATA, else MNIST's copy in the package
                                                   #   (Fashion-MNIST: ~/.cache/mnistbench, downloaded on first use)
    val_size: int = _in(DATA, 5000)                # held out of the training set for model selection
    train_limit: int = _in(DATA, 0)                # use only this many training images (0 = all)
    model: str = _in(MODEL, "cnn")                 # a built-in or installed model's name, or path/to/file.py:NAME
    model_sha256: str = _in(MODEL, "")             # a model file's code, by its sha256 (set by resolve)
    recipe: str = _in(MODEL, "default")            # which of the model's recipes sets the defaults below
    optimizer: str = _in(OPTIMISER, "adamw")
    lr: float = _in(OPTIMISER, 3e-3)               # peak learning rate
    weight_decay: float = _in(OPTIMISER, 5e-4)
    momentum: float = _in(OPTIMISER, 0.9)          # SGD only
    beta1: float = _in(OPTIMISER, 0.9)             # AdamW only: its running-mean decay rates (torch's defaults)
    beta2: float = _in(OPTIMISER, 0.999)
    label_smoothing: float = _in(OPTIMISER, 0.0)
    grad_clip: float = _in(OPTIMISER, 0.0)         # max gradient norm; 0 = off
    epochs: float = _in(SCHEDULE, 2.0)             # may be fractional (1.5: the last epoch stops half-way)
    batch_size: int = _in(SCHEDULE, 256)
    schedule: str = _in(SCHEDULE, "onecycle")      # onecycle | cosine (linear warmup, cosine decay) | constant
    warmup: float = _in(SCHEDULE, 0.1)             # fraction of all steps spent warming up
    budget_s: float = _in(SCHEDULE, 0.0)           # > 0: train for this many seconds of training steps (planned
                                                   #   from measured steps, re-planned as it trains); not epochs
    budget_flops: float = _in(SCHEDULE, 0.0)       # > 0: train for this many training FLOPs (3 x forward FLOPs per
                                                   #   sample x samples seen), planned exactly; not epochs
    target_accuracy: float = _in(SCHEDULE, 0.0)    # stop once validation accuracy reaches this (0 = off)
    augment: str = _in(AUGMENTATION, "none")       # none | translate (integer shifts) | affine (shift, rotate, scale)
    translate: float = _in(AUGMENTATION, 2.0)      # pixels
    rotate: float = _in(AUGMENTATION, 10.0)        # degrees (affine only)
    scale: float = _in(AUGMENTATION, 0.1)          # ± fraction (affine only)
    device: str = _in(PRECISION, "auto")
    precision: str = _in(PRECISION, "auto")        # auto: bf16 on CUDA; on a CPU with native bf16 if measured faster
    channels_last: bool = _in(PRECISION, True)     # NHWC memory layout (measured faster on CPU and CUDA)
    compile: bool = _in(PRECISION, False)          # torch.compile; compile time is reported apart
    compile_mode: str = _in(PRECISION, "default")
    deterministic: bool = _in(PRECISION, False)    # torch.use_deterministic_algorithms; exact resume on CPU
    eval_batch_size: int = _in(EVALUATION, 1000)
    val_points: int = _in(EVALUATION, 4)           # budgeted runs: validations at this many evenly spaced steps
    val_subset: int = _in(EVALUATION, 0)           # > 0: validate while training on a fixed seeded subset of this
                                                   #   many validation images; choosing an earlier checkpoint over
                                                   #   the last is then decided on the whole split (0 = whole)
    test_limit: int = _in(EVALUATION, 0)           # score on a fixed random sample of N test images (0 = all)
    tta: str = _in(EVALUATION, "none")             # test-time augmentation of classifiers' test and predict (not
                                                   #   of validation): shift = mean softmax of the image and its
                                                   #   1-px shifts in 4 directions
    inference_benchmark: bool = _in(EVALUATION, True)  # time batch-1 latency (throughput: the test pass)
    seed: int = _in(RUN, 0)                        # the split, initialisation, batch order and augmentation
    out: str = _in(RUN, "")                        # run folder; "" = runs/<timestamp>-<model>
    log_every: int = _in(RUN, 50)                  # training steps per logged loss
    checkpoint_minutes: float = _in(RUN, 5.0)      # also checkpoint mid-epoch this often (0 = epoch ends only)
    checkpoints: bool = _in(RUN, True)             # false: no checkpoint.pt at all (throwaway benchmark runs)
    tensorboard: bool = _in(RUN, False)            # also write TensorBoard event files (mnistbench[tensorboard])
    quiet: bool = _in(RUN, False)
    model_args: Mapping[str, Any] = field(default_factory=dict)  # the model builder's options, all of them
    task_args: Mapping[str, Any] = field(default_factory=dict)   # the options of the model's task, all of them

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, JSON-ready."""
        d = dataclasses.asdict(self)
        d["model_args"], d["task_args"] = dict(self.model_args), dict(self.task_args)
        return d

    def flat(self) -> dict[str, Any]:
        """Fields, model options and task options in one mapping, as config.resolve() takes them."""
        d = self.to_dict()
        model_args, task_args = d.pop("model_args"), d.pop("task_args")
        return {**d, **model_args, **task_args}


NESTED = ("model_args", "task_args")
FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in NESTED}


def section_of(name: str) -> str:
    """The section of Config field `name`."""
    return FIELDS[name].metadata["section"]
