"""One frozen run configuration: global defaults < the model's recipe < the user's flags and --set."""
from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .data.datasets import get_info
from .errors import UserError
from .models import ModelSpec, get_spec
from .models.contract import check
from .tasks import TASKS, option_defaults

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


@dataclass(frozen=True)
class Config:
    """Every setting of a run. Field comments say what a value means."""

    model: str = "cnn"               # a built-in or installed model's name, or a model file: path/to/file.py:NAME
    model_sha256: str = ""            # a model file's code, by its sha256 (set by resolve; "" for other models)
    dataset: str = "mnist"            # mnist | fashion-mnist
    data_dir: str = ""                # "" = $MNISTBENCH_DATA, else ~/.cache/mnistbench
    out: str = ""                     # run folder; "" = runs/<timestamp>-<model>
    recipe: str = "default"           # which of the model's recipes sets the defaults below
    epochs: float = 2.0               # may be fractional (1.5: the last epoch stops half-way)
    batch_size: int = 256
    eval_batch_size: int = 1000
    lr: float = 3e-3                  # peak learning rate
    weight_decay: float = 5e-4
    optimizer: str = "adamw"
    momentum: float = 0.9             # SGD only
    beta1: float = 0.9                # AdamW only: its running-mean decay rates (torch's defaults)
    beta2: float = 0.999
    schedule: str = "onecycle"        # onecycle | cosine (linear warmup, cosine decay) | constant
    warmup: float = 0.1               # fraction of all steps spent warming up
    label_smoothing: float = 0.0
    grad_clip: float = 0.0            # max gradient norm; 0 = off
    augment: str = "none"             # none | translate (integer shifts) | affine (shift, rotate, scale)
    translate: float = 2.0            # pixels
    rotate: float = 10.0              # degrees (affine only)
    scale: float = 0.1                # ± fraction (affine only)
    tta: str = "none"                 # test-time augmentation of classifiers' test and predict (not of validation):
                                      #   shift = mean softmax of the image and its 1-px shifts in 4 directions
    device: str = "auto"
    precision: str = "auto"           # auto: bf16 autocast on CUDA and on CPUs with native bf16
    channels_last: bool = True        # NHWC memory layout (measured faster on CPU and CUDA)
    compile: bool = False             # torch.compile; compile time is reported apart
    compile_mode: str = "default"
    seed: int = 0
    deterministic: bool = False       # torch.use_deterministic_algorithms; exact resume on CPU
    val_size: int = 5000              # held out of the training set for model selection
    train_limit: int = 0              # use only this many training images (0 = all)
    test_limit: int = 0               # score on a fixed random sample of N test images (0 = all)
    target_accuracy: float = 0.0      # stop once validation accuracy reaches this (0 = off)
    budget_s: float = 0.0             # > 0: train for this many seconds of training steps (planned from measured
                                      #   steps, re-planned as it trains); epochs is then ignored. 0: train for `epochs`
    budget_flops: float = 0.0         # > 0: train for this many training FLOPs (3 x forward FLOPs per sample x
                                      #   samples seen), planned exactly; epochs is then ignored
    val_points: int = 4               # budgeted runs: validations at this many evenly spaced steps
    log_every: int = 50               # training steps per logged loss
    checkpoint_minutes: float = 5.0   # also checkpoint mid-epoch this often (0 = epoch ends only)
    checkpoints: bool = True          # false: no checkpoint.pt at all (throwaway benchmark runs)
    inference_benchmark: bool = True  # time batch-1 latency and large-batch throughput after training
    tensorboard: bool = False         # also write TensorBoard event files in the run folder (mnistbench[tensorboard])
    quiet: bool = False
    model_args: Mapping[str, Any] = field(default_factory=dict)  # the model builder's options, all of them
    task_args: Mapping[str, Any] = field(default_factory=dict)   # the options of the model's task, all of them

    @property
    def spec(self) -> ModelSpec:
        """The model's ModelSpec (a model file's: the code this config names by its hash)."""
        return get_spec(self.model, self.model_sha256)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, JSON-ready."""
        d = dataclasses.asdict(self)
        d["model_args"], d["task_args"] = dict(self.model_args), dict(self.task_args)
        return d

    def flat(self) -> dict[str, Any]:
        """Fields, model options and task options in one mapping, as resolve() takes them."""
        d = self.to_dict()
        model_args, task_args = d.pop("model_args"), d.pop("task_args")
        return {**d, **model_args, **task_args}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        """The Config of a saved to_dict() (e.g. config.json), re-resolved and re-validated."""
        flat = {k: v for k, v in d.items() if k not in ("model_args", "task_args")}
        return resolve({**flat, **d.get("model_args", {}), **d.get("task_args", {})})


NESTED = ("model_args", "task_args")
FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in NESTED}
_DEFAULTS = Config()


def parse_value(key: str, text: Any, default: Any) -> Any:
    """Convert `text` to the type of `default`; strings from the command line, values from JSON.

    NaN and infinite numbers are refused here, for every field and option: no setting means either.
    """
    value = _parse(key, text, default)
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}={text!r}: must be a finite number")
    return value


_KIND = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _parse(key: str, text: Any, default: Any) -> Any:
    if not isinstance(text, str):
        if isinstance(default, float) and isinstance(text, int) and not isinstance(text, bool):
            return float(text)
        if default is None or type(text) is type(default):
            return text
        raise UserError(f"{key}={text!r}: expected {_KIND.get(type(default), type(default).__name__)}")
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise UserError(f"{key}={text!r}: expected {_KIND.get(type(default), type(default).__name__)}") from None
    return text


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_sets(items: list[str]) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def option_keys(model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(builder options, task options) that `model` takes beyond the Config fields, with their defaults."""
    spec = get_spec(model)
    return spec.arg_defaults(), option_defaults(spec.task)


def resolve(overrides: Mapping[str, Any]) -> Config:
    """Build the frozen Config from user overrides (strings or values), validating every key and value."""
    model = str(overrides.get("model", _DEFAULTS.model))
    spec = get_spec(model, str(overrides.get("model_sha256") or ""))
    recipe = str(overrides.get("recipe", _DEFAULTS.recipe))
    if recipe not in spec.recipes:
        raise UserError(f"model {model!r} has no recipe {recipe!r}; it has: {', '.join(spec.recipes)}")
    arg_defaults, task_defaults = spec.arg_defaults(), option_defaults(spec.task)
    if spec.source != "built-in" and set(arg_defaults) & set(FIELDS):
        raise UserError(f"{model}: its option(s) {sorted(set(arg_defaults) & set(FIELDS))} have the names of config "
                        "fields (mnistbench train --help); rename them")
    known = sorted(set(FIELDS) | set(arg_defaults) | set(task_defaults))
    values: dict[str, Any] = {}
    model_args, task_args = dict(arg_defaults), dict(task_defaults)
    for source in (spec.recipes[recipe], overrides):
        for key, raw in source.items():
            if key in FIELDS:
                values[key] = parse_value(key, raw, getattr(_DEFAULTS, key))
            elif key in arg_defaults:
                model_args[key] = parse_value(key, raw, arg_defaults[key])
            elif key in task_defaults:
                task_args[key] = parse_value(key, raw, task_defaults[key])
            else:
                takes = f"{model} takes {sorted(arg_defaults)}; " if spec.source != "built-in" else ""
                raise UserError(f"unknown config key {key!r}{_suggest(key, known)}; {takes}"
                                f"see `mnistbench models` and `mnistbench train --help`")
    values["model_sha256"] = spec.sha256  # the code that was read, whatever was passed in
    cfg = Config(**values, model_args=model_args, task_args=task_args)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject impossible values before any work is done."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"{key}={getattr(cfg, key)!r}: choose one of {', '.join(allowed)}")
    positive = ("epochs", "batch_size", "eval_batch_size", "lr", "log_every", "val_points")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise UserError(f"{key}={getattr(cfg, key)} must be > 0")
    non_negative = ("weight_decay", "momentum", "grad_clip", "translate", "rotate", "scale", "val_size",
                    "train_limit", "test_limit", "checkpoint_minutes", "budget_s", "budget_flops")
    for key in non_negative:
        if getattr(cfg, key) < 0:
            raise UserError(f"{key}={getattr(cfg, key)} must be >= 0")
    if not 0 <= cfg.warmup < 1 or not 0 <= cfg.label_smoothing < 1 or not 0 <= cfg.target_accuracy <= 1:
        raise UserError("warmup and label_smoothing must be in [0, 1), target_accuracy in [0, 1]")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise UserError(f"beta1={cfg.beta1}, beta2={cfg.beta2}: AdamW's betas must be in [0, 1)")
    spec = cfg.spec
    if cfg.tta != "none" and spec.task != "classify":
        raise UserError(f"tta={cfg.tta} is for classifiers; {cfg.model} detects digits (use tta=none)")
    if cfg.budget_s and cfg.budget_flops:
        raise UserError(f"budget_s={cfg.budget_s:g} and budget_flops={cfg.budget_flops:g}: give one budget, "
                        "in seconds or in training FLOPs")
    if cfg.val_size < 1:
        raise UserError("val_size must be >= 1: model selection needs a validation split")
    TASKS[spec.task].Options(**cfg.task_args)  # the task checks its own options
    if spec.source != "built-in":  # code from outside the package: built and run once on the meta device
        check(spec, cfg.model_args, len(get_info(cfg.dataset).classes))


def effective_settings(cfg: Config) -> dict[str, Any]:
    """Fields that decide the result: everything except where things are read and written and display."""
    d = cfg.to_dict()
    for key in ("data_dir", "out", "quiet", "epochs", "device", "checkpoint_minutes", "checkpoints", "tensorboard"):
        d.pop(key)
    return d
