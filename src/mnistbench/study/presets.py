"""Study presets: per-model config overrides for `mnistbench compare`, in one table to edit."""
from __future__ import annotations

from typing import Any

from ..config import FIELDS, option_keys
from ..errors import UserError
from ..models import get_spec

FALLBACK = "*"  # the entry for models a preset does not name (models registered later)

# preset -> model -> overrides. A key a model does not accept is skipped for that model, so a preset
# stays valid whichever models are registered. `recipe` is skipped where the model lacks that recipe.
# The quick preset's training budget per model, in seconds of training steps. Sized so that the whole
# five-model study (with calibration, validation, testing, profiling and the report) finishes in about
# 10 minutes on a 2-core CPU, with or without native bf16 (docs/BENCHMARKS.md).
QUICK_BUDGET_S = 60.0
_QUICK = {"budget_s": QUICK_BUDGET_S, "val_points": 2, "pretrained": False}

# Every preset tests each network alone, on the image as it is: a recipe's test-time augmentation (tta) would
# give some models five forward passes and others one, and cost the quick study ~50 s on a 2-core CPU
# (AlexNet's 50,000 test passes); `--set tta=shift` turns it back on for a study.
SINGLE_VIEW = {"tta": "none"}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # An equal training budget for every model, each with its default recipe laid over that budget;
    # transfer models and the detector from scratch (no ImageNet download offline).
    # VGG16 trains at batch 32 there: in 60 s of fp32 steps from scratch it reached 82.6 % on the validation
    # split against 27.6 % at its default batch 128 (30 steps); AlexNet's batch 64 and 128 tied (96.1 / 96.0 %)
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
             "batch 32); transfer models and the detector start from scratch; sized to finish on a 2-core CPU "
             "in about 10 minutes",
    "standard": "full data and each model's GPU recipe (else its long, else its default recipe); sized for a GPU",
    "notebook": "the original notebook's settings: 224 px RGB input for VGG16 and AlexNet, full fine-tuning, "
                "ResNet50-FPN Faster R-CNN, batch 128",
}


def names() -> list[str]:
    """The preset names."""
    return list(PRESETS)


def preset_overrides(preset: str, model: str) -> dict[str, Any]:
    """The overrides `preset` gives `model`, keeping only keys the model accepts."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    table = PRESETS[preset]
    wanted = table.get(model, table.get(FALLBACK, {}))
    return accepted(model, {**SINGLE_VIEW, **wanted})


def accepted(model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The part of `overrides` that `model` accepts: config fields, its builder options, its recipes."""
    spec = get_spec(model)
    keys = set(FIELDS).union(*option_keys(model))
    out = {k: v for k, v in overrides.items() if k in keys and k != "recipe"}
    wanted = overrides.get("recipe", ())
    # a recipe, or a tuple of recipes in order of preference: the first the model has is used
    recipe = next((r for r in ((wanted,) if isinstance(wanted, str) else wanted) if r in spec.recipes), None)
    if recipe:
        out["recipe"] = recipe
    return out
