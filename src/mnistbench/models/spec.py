"""ModelSpec: what the registry knows about one model."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    `build` takes keyword-only arguments with defaults; each one is a config key a user can set
    (`--set patch_size=4`). `recipes` maps a recipe name ("default", "long", ...) to training-config
    overrides (epochs, lr, batch_size, ...) applied over the global defaults; a recipe may also set
    builder options and the options of the model's task.
    Every classifier built here takes `(B, 1, 28, 28)` input scaled to [-1, 1] and returns `(B, 10)`
    logits; anything else it needs (3 channels, resizing, ImageNet normalisation) happens inside it.
    Optional model attributes the engine reads: `weights_source` (str or None: where pretrained
    weights came from) and `param_groups(lr) -> list[dict]` (per-group learning rates).
    """

    name: str
    build: Callable[..., nn.Module]
    about: str
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    task: str = "classify"  # a key of mnistbench.tasks.TASKS: "classify" or "detect"

    def arg_defaults(self) -> dict[str, Any]:
        """The builder's keyword-only arguments and their defaults."""
        params = inspect.signature(self.build).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
