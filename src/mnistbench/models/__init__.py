"""The model registry: a plain dict from name to ModelSpec, filled by explicit imports; beside it, models from the
user's files (`path/to/file.py:NAME`, models/files.py) and from installed packages (models/plugins.py)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import UserError
from . import cnn, files, frcnn, plugins, transfer, vit
from .spec import ModelSpec

MODELS: dict[str, ModelSpec] = {s.name: s for s in (cnn.SPEC, vit.SPEC, transfer.ALEXNET_SPEC,
                                                    transfer.VGG16_SPEC, frcnn.SPEC)}

__all__ = ["MODELS", "ModelSpec", "display_name", "get_model", "get_spec", "list_models", "no_download_options"]


def list_models() -> list[str]:
    """Built-in model names in registry order, then the installed ones (entry points)."""
    plugins.check_clash(MODELS)
    return list(MODELS) + sorted(plugins.found())


def get_spec(name: str, sha256: str = "") -> ModelSpec:
    """The ModelSpec of a built-in or installed model's name, or of a file reference `path/to/file.py:NAME`
    (with `sha256`: the code kept under that hash, see models/files.py); else a UserError naming the models."""
    if files.is_ref(name):
        return files.file_spec(name, sha256)
    if name in MODELS:
        plugins.check_clash([name])
        return MODELS[name]
    spec = plugins.plugin_spec(name)
    if spec is None:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(list_models())}; "
                        "or a model file: path/to/file.py:NAME")
    return spec


def get_model(name: str, **options: Any) -> nn.Module:
    """Build model `name` with builder `options`; an option it does not take is a UserError."""
    return get_spec(name).create(**options)


def display_name(name: str) -> str:
    """How tables, folders and logs name a model: NAME for a file reference, else the name itself."""
    return files.split_ref(name)[1] if files.is_ref(name) else name


def no_download_options(name: str, options: Mapping[str, Any] | None = None, *, weights_file: bool = True,
                        sha256: str = "") -> dict[str, Any]:
    """Model `name`'s builder options (its defaults, then `options`) for a build that fetches no pretrained
    weights: counting parameters, checking a study's options, or loading a trained model.pt, which replaces every
    parameter anyway. A local weights file stays (reading it downloads nothing) unless `weights_file` is false;
    without one, pretrained=false, and a finetune the builder knows becomes full, the one it allows without a
    pretrained start (an unknown one stays, for the builder to refuse). `sha256`: a model file's code, as
    get_spec() takes it."""
    out = {**get_spec(name, sha256).arg_defaults(), **(options or {})}
    if not weights_file and "weights" in out:
        out["weights"] = ""
    if out.get("weights"):
        return out
    if "pretrained" in out:
        out["pretrained"] = False
    if out.get("finetune") in transfer.FINETUNES:
        out["finetune"] = "full"
    return out
