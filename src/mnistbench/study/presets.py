"""Study presets: per-model config overrides for `mnistbench compare`, in one table to edit."""
from __future__ import annotations

from typing import Any

from ..config import FIELDS, option_keys
from ..errors import UserError
from ..models import get_spec

FALLBACK = "*"  # the entry for models a preset does not name (models registered later)

# preset -> model -> overrides. A key a model does not accept is skipped for that model, so a preset
# stays valid whichever models are registered. `recipe` is skipped where the model lacks that recipe.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The whole study on a 2-core CPU in about 15 minutes: slices and short schedules, from-scratch
    # transfer models (no ImageNet download offline). Budget per model: about 3 minutes.
    "quick": {
        "cnn": {},                                                        # full data, default recipe: ~15 s
        "vit": {"epochs": 8},                                             # full data, ~15 s per epoch
        "alexnet": {"pretrained": False, "epochs": 1},                    # 64 px, ~90 s per epoch
        "vgg16": {"pretrained": False, "train_limit": 15_000, "epochs": 1},   # 32 px, ~6 min per full epoch
        "frcnn": {"pretrained": False, "scenes_per_epoch": 12_000, "test_limit": 2_000, "epochs": 1},
        FALLBACK: {"pretrained": False, "train_limit": 5_000, "epochs": 1},
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
    "quick": "sliced training data and short schedules, sized to finish on a 2-core CPU in about 15 minutes; "
             "transfer models start from scratch; a smoke test of the comparison, not final numbers",
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
    return accepted(model, wanted)


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
