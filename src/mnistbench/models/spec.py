"""ModelSpec: what the registry knows about one model."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import UserError


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
    A model from a user's file or an installed package (models/files.py, models/plugins.py) says where it came
    from in `source`; a file's also carries the sha256 of the code it was built from.
    """

    name: str
    build: Callable[..., nn.Module]
    about: str
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    task: str = "classify"  # a key of mnistbench.tasks.TASKS: "classify" or "detect"
    source: str = "built-in"  # or "entry point pkg.module:NAME (dist 1.0)", or the model file's path
    sha256: str = ""          # a model file's code (its sha256); "" for built-in and installed models

    def arg_defaults(self) -> dict[str, Any]:
        """The builder's keyword-only arguments and their defaults."""
        params = inspect.signature(self.build).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}

    def create(self, **options: Any) -> nn.Module:
        """The model built with builder `options`; an option it does not take is a UserError."""
        allowed = self.arg_defaults()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(f"model {self.name!r} takes no option(s) {unknown}; it takes {sorted(allowed)}")
        return self.build(**options)
