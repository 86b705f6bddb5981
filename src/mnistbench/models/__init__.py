"""The model registry: a plain dict from name to ModelSpec, filled by explicit imports."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import UserError
from . import cnn, frcnn, transfer, vit
from .spec import ModelSpec

MODELS: dict[str, ModelSpec] = {s.name: s for s in (cnn.SPEC, vit.SPEC, transfer.ALEXNET_SPEC,
                                                    transfer.VGG16_SPEC, frcnn.SPEC)}

__all__ = ["MODELS", "ModelSpec", "get_model", "get_spec", "list_models", "no_download_options"]


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


def no_download_options(name: str, options: Mapping[str, Any] | None = None, *,
                        weights_file: bool = True) -> dict[str, Any]:
    """Model `name`'s builder options (its defaults, then `options`) for a build that fetches no pretrained
    weights: counting parameters, checking a study's options, or loading a trained model.pt, which replaces every
    parameter anyway. A local weights file stays (reading it downloads nothing) unless `weights_file` is false;
    without one, pretrained=false, and a finetune the builder knows becomes full, the one it allows without a
    pretrained start (an unknown one stays, for the builder to refuse)."""
    out = {**get_spec(name).arg_defaults(), **(options or {})}
    if not weights_file and "weights" in out:
        out["weights"] = ""
    if out.get("weights"):
        return out
    if "pretrained" in out:
        out["pretrained"] = False
    if out.get("finetune") in transfer.FINETUNES:
        out["finetune"] = "full"
    return out
