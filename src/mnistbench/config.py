"""One frozen run configuration: global defaults < the model's recipe < a study preset < the user's flags and --set.

The Config itself (its fields, sections and choices) is declared in schema.py; this module resolves and validates
one, and can say where each value came from.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .data.datasets import get_info
from .errors import UserError
from .models import ModelSpec, get_spec
from .models.contract import check
from .schema import CHOICES, FIELDS, NESTED, SECTIONS, Config, section_of
from .tasks import TASKS, option_defaults

__all__ = ["CHOICES", "FIELDS", "NESTED", "RESULT_NEUTRAL", "Config", "from_dict", "model_spec", "parse_sets",
           "parse_value", "resolve", "resolve_traced", "result_settings", "validate"]

_DEFAULTS = Config()
DEFAULT, FLAG = "default", "flag"  # sources of a value, besides "recipe NAME" and "preset NAME"

# Fields that never change a run's result, only where its files are and what it shows while running. A finished
# study run whose config differs only in these still counts as done; a resumed run may change them.
RESULT_NEUTRAL = ("out", "data_dir", "quiet", "checkpoint_minutes", "checkpoints", "tensorboard")


def result_settings(config: Mapping[str, Any], *, also_ignoring: Sequence[str] = ()) -> dict[str, Any]:
    """A config (Config.to_dict()) without its RESULT_NEUTRAL fields and `also_ignoring`: what decides the result."""
    return {k: v for k, v in config.items() if k not in RESULT_NEUTRAL and k not in also_ignoring}


def from_dict(d: Mapping[str, Any]) -> Config:
    """The Config of a saved Config.to_dict() (e.g. config.json), re-resolved and re-validated."""
    flat = {k: v for k, v in d.items() if k not in NESTED}
    return resolve({**flat, **d.get("model_args", {}), **d.get("task_args", {})})


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
    return resolve_traced([(FLAG, overrides)])[0]


def resolve_traced(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[Config, dict[str, str]]:
    """The Config of `layers` of overrides, lowest first, each a (source name, overrides) pair laid over the
    model's recipe; and the source of every field and option: "default", "recipe NAME" or a layer's name."""
    merged = {k: v for _, layer in layers for k, v in layer.items()}
    model = str(merged.get("model", _DEFAULTS.model))
    spec = get_spec(model, str(merged.get("model_sha256") or ""))
    recipe = str(merged.get("recipe", _DEFAULTS.recipe))
    if recipe not in spec.recipes:
        raise UserError(f"model {model!r} has no recipe {recipe!r}; it has: {', '.join(spec.recipes)}")
    arg_defaults, task_defaults = spec.arg_defaults(), option_defaults(spec.task)
    if spec.source != "built-in" and set(arg_defaults) & set(FIELDS):
        raise UserError(f"{model}: its option(s) {sorted(set(arg_defaults) & set(FIELDS))} have the names of config "
                        "fields (mnistbench train --help); rename them")
    known = sorted(set(FIELDS) | set(arg_defaults) | set(task_defaults))
    values: dict[str, Any] = {}
    model_args, task_args = dict(arg_defaults), dict(task_defaults)
    sources = dict.fromkeys(known, DEFAULT)
    for source, layer in ((f"recipe {recipe}", spec.recipes[recipe]), *layers):
        for key, raw in layer.items():
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
            sources[key] = source
    values["model_sha256"] = spec.sha256  # the code that was read, whatever was passed in
    sources["model_sha256"] = "the model file" if spec.sha256 else DEFAULT
    cfg = Config(**values, model_args=model_args, task_args=task_args)
    validate(cfg)
    return cfg, sources


def by_section(cfg: Config, sources: Mapping[str, str]) -> list[tuple[str, list[tuple[str, Any, str]]]]:
    """(section, [(key, value, source)]) for every Config section, then the model's and its task's options."""
    rows = [(title, [(k, getattr(cfg, k), sources[k]) for k in FIELDS if section_of(k) == title])
            for title in SECTIONS]
    rows.append((f"model options ({cfg.model})", [(k, v, sources[k]) for k, v in cfg.model_args.items()]))
    task = model_spec(cfg).task
    rows.append((f"task options ({task})", [(k, v, sources[k]) for k, v in cfg.task_args.items()]))
    return rows


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
    spec = model_spec(cfg)
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


def model_spec(cfg: Config) -> ModelSpec:
    """The ModelSpec of a config's model (a model file's: the code the config names by its hash)."""
    return get_spec(cfg.model, cfg.model_sha256)
