"""Study presets: per-model config overrides for `mnistbench compare`, in one table to edit."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import FIELDS, FLAG, by_section, option_keys, resolve_traced
from ..errors import UserError
from ..models import get_spec

FALLBACK = "*"  # the entry for models a preset does not name (models registered later)

# preset -> model -> overrides. A key a model does not accept is skipped for that model, so a preset
# stays valid whichever models are registered. `recipe` is skipped where the model lacks that recipe.
# The quick preset's training budget per model, in seconds of training steps. Sized so that the whole
# five-model study (with calibration, validation, testing, profiling and the report) meets the quick study's time
# target on a 2-core CPU without native bf16, where everything else costs the most (the target and its
# measurements: docs/BENCHMARKS.md).
QUICK_BUDGET_S = 80.0
# validations while training on a seeded 1,000 of the 5,000 validation images (a choice between checkpoints on
# all of them): a large network's validation passes would otherwise cost a good part of its budget
_QUICK = {"budget_s": QUICK_BUDGET_S, "val_points": 2, "pretrained": False, "val_subset": 1000}

# Every preset tests each network alone, on the image as it is: a recipe's test-time augmentation (tta) would
# give some models five forward passes and others one, and cost the quick study a large part of its time on a
# 2-core CPU (AlexNet's 50,000 test passes); `--set tta=shift` turns it back on for a study.
SINGLE_VIEW = {"tta": "none"}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # An equal training budget for every model, each with its default recipe laid over that budget;
    # transfer models and the detector from scratch (no ImageNet download offline).
    # VGG16 trains at batch 32 there: in the quick budget of fp32 steps from scratch it reached a far higher
    # validation accuracy than at its default batch 128, which gets few steps; AlexNet's batch 64 and 128
    # tied (docs/BENCHMARKS.md)
    "quick": {
        FALLBACK: _QUICK,
        "vgg16": {**_QUICK, "batch_size": 32},
    },
    # Full data; each model's GPU recipe where it has one, else its long recipe, else its default.
    "standard": {
        FALLBACK: {"recipe": ("gpu", "long")},
    },
    # The original notebook's settings: 224 px RGB ImageNet models fine-tuned in full, batch 128.
    "notebook": {
        "cnn": {"batch_size": 128},
        "vit": {"batch_size": 128, "patch_size": 7, "dim": 128},
        "alexnet": {"batch_size": 128, "image_size": 224, "finetune": "full", "in_adapter": "repeat"},
        "vgg16": {"batch_size": 128, "image_size": 224, "finetune": "full", "in_adapter": "repeat"},
        "frcnn": {"batch_size": 128, "backbone": "resnet50_fpn"},
        FALLBACK: {"batch_size": 128},
    },
}

ABOUT = {
    "quick": f"the same training budget for every model ({QUICK_BUDGET_S:g} s of training steps on this machine "
             "unless --budget says otherwise), each with its default recipe laid over that budget (VGG16 at "
             "batch 32); transfer models and the detector start from scratch; sized to finish within 10 minutes on "
             "a 2-core CPU",
    "standard": "full data and each model's GPU recipe (else its long, else its default recipe); sized for a GPU",
    "notebook": "the original notebook's settings: 224 px RGB input for VGG16 and AlexNet, full fine-tuning, "
                "ResNet50-FPN Faster R-CNN, batch 128",
}


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


def preset_overrides(preset: str, model: str) -> dict[str, Any]:
    """The overrides `preset` gives `model`, keeping only keys the model accepts."""
    return split(model, wanted(preset, model))[0]


def wanted(preset: str, model: str) -> dict[str, Any]:
    """Everything `preset` asks of `model`, whether the model takes it or not."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    table = PRESETS[preset]
    return {**SINGLE_VIEW, **table.get(model, table.get(FALLBACK, {}))}


def accepted(model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The part of `overrides` that `model` accepts: config fields, its builder options, its recipes."""
    return split(model, overrides)[0]


def split(model: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the overrides `model` accepts, the ones it does not take). `recipe` may be a recipe or a tuple of
    recipes in order of preference: the first the model has is used; none of them is a dropped key."""
    spec = get_spec(model)
    keys = set(FIELDS).union(*option_keys(model))
    out = {k: v for k, v in overrides.items() if k in keys and k != "recipe"}
    dropped = {k: v for k, v in overrides.items() if k not in keys and k != "recipe"}
    if "recipe" in overrides:
        wanted_recipe = overrides["recipe"]
        choices = (wanted_recipe,) if isinstance(wanted_recipe, str) else wanted_recipe
        recipe = next((r for r in choices if r in spec.recipes), None)
        if recipe:
            out["recipe"] = recipe
        else:
            dropped["recipe"] = wanted_recipe
    return out, dropped


def explain(preset: str | None, flags: Mapping[str, Any]) -> list[str]:
    """The resolved config under `preset` (None: as `train` runs it) and the user's `flags` (--model and --set),
    as text lines: each section's values with their source (default, recipe NAME, preset NAME, flag), then the
    preset's keys this model does not take."""
    model = str(flags.get("model", FIELDS["model"].default))
    layers, dropped = [], {}
    if preset is not None:
        given, dropped = split(model, wanted(preset, model))
        layers.append((f"preset {preset}", given))
    cfg, sources = resolve_traced([*layers, (FLAG, flags)])
    lines = [f"{cfg.model}, recipe {cfg.recipe}" + (f", preset {preset}" if preset else "")
             + "  (each value's source: default < recipe < preset < flag)"]
    for title, rows in by_section(cfg, sources):
        lines += ["", title] + [f"  {k:20s} {_shown(v):24s} {source}" for k, v, source in rows]
        if not rows:
            lines.append("  (none)")
    if preset is not None:
        told = ", ".join(f"{k}={_shown(v)}" for k, v in dropped.items()) or "none"
        lines += ["", f"preset {preset} keys {cfg.model} does not take (left out): {told}"]
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, tuple):
        return " or ".join(map(_shown, value))
    return repr(value)
