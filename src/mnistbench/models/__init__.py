"""The model registry: a plain dict from name to ModelSpec, filled by explicit imports."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import UserError
from . import cnn, frcnn, transfer, vit
from .spec import ModelSpec

MODELS: dict[str, ModelSpec] = {s.name: s for s in (cnn.SPEC, vit.SPEC, transfer.ALEXNET_SPEC,
                                                    transfer.VGG16_SPEC, frcnn.SPEC)}

__all__ = ["MODELS", "ModelSpec", "get_model", "get_spec", "list_models"]


def list_models() -> list[str]:
    """Registered model names, in registry order."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec for `name`, or a UserError naming the registered models."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}")
    return MODELS[name]


def get_model(name: str, **options: Any) -> nn.Module:
    """Build model `name` with builder `options`; an option it does not take is a UserError."""
    spec = get_spec(name)
    allowed = spec.arg_defaults()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"model {name!r} takes no option(s) {unknown}; it takes {sorted(allowed)}")
    return spec.build(**options)
