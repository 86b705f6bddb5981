"""The model registry: a plain dict from name to ModelSpec, filled by explicit imports below."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    `build` takes keyword-only arguments with defaults; each one is a config key a user can set
    (`--set patch_size=4`). `recipes` maps a recipe name ("default", "long", ...) to training-config
    overrides (epochs, lr, batch_size, ...) applied over the global defaults.
    Every classifier built here takes `(B, 1, 28, 28)` input scaled to [-1, 1] and returns `(B, 10)`
    logits; anything else it needs (3 channels, resizing, ImageNet normalisation) happens inside it.
    Optional model attributes the engine reads: `weights_source` (str or None: where pretrained
    weights came from) and `param_groups(lr) -> list[dict]` (per-group learning rates).
    """

    name: str
    build: Callable[..., nn.Module]
    about: str
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    task: str = "classify"  # "classify" or "detect"

    def arg_defaults(self) -> dict[str, Any]:
        """The builder's keyword-only arguments and their defaults."""
        params = inspect.signature(self.build).parameters.values()
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def _specs() -> dict[str, ModelSpec]:
    from ..detection import model as frcnn
    from . import cnn, transfer, vit

    specs = [cnn.SPEC, vit.SPEC, transfer.ALEXNET_SPEC, transfer.VGG16_SPEC, frcnn.SPEC]
    return {s.name: s for s in specs}


MODELS: dict[str, ModelSpec] = _specs()


def list_models() -> list[str]:
    """Registered model names, in registry order."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec for `name`, or a UserError naming the registered models."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}")
    return MODELS[name]


def get_model(name: str, **cfg: Any) -> nn.Module:
    """Build model `name`; `cfg` holds builder arguments (unknown keys are ignored only if absent)."""
    spec = get_spec(name)
    allowed = spec.arg_defaults()
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise UserError(f"model {name!r} takes no option(s) {unknown}; it takes {sorted(allowed)}")
    return spec.build(**cfg)
