"""Pretrained weights for torchvision models: from the torch hub cache, a download, or a local file.

Rules, for every model that uses them:
- a local file (`weights=FILE`) is loaded with `weights_only=True` and checked key by key and shape
  by shape against the model it is meant for;
- torchvision weights are read from `torch.hub.get_dir()/checkpoints/<file name in the URL>` (where
  torchvision itself caches them; `TORCH_HOME` moves it) if that file exists, and downloaded there
  otherwise. The hash (the sha256 prefix in the file name) is checked at download time only, as
  torchvision does: a cached file is trusted, so a hand-placed copy works offline;
- a failed download stops with one line naming the expected cache file and the ways out; nothing
  ever falls back silently to random weights.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from ..errors import UserError

_SHOW = 4  # offending keys named in an error message


def cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision caches `weights`: <torch hub dir>/checkpoints/<file name from its URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def normalization(weights: WeightsEnum) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel that `weights` were trained with, from torchvision's own transforms."""
    t = weights.transforms()
    return tuple(t.mean), tuple(t.std)


def min_size(weights: WeightsEnum) -> int:
    """The smallest input side torchvision's metadata allows for the network of `weights`."""
    return max(weights.meta["min_size"])


def describe(weights: WeightsEnum) -> str:
    """A stable name for `weights`, e.g. 'torchvision:AlexNet_Weights.IMAGENET1K_V1'."""
    return f"torchvision:{type(weights).__name__}.{weights.name}"


def _reason(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _torch_load(path: Path, what: str, hint: str = "") -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean "not a usable file"
        raise UserError(f"cannot read {what} {path} ({_reason(e)}){hint}") from e


def load_torchvision(weights: WeightsEnum, *, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of `weights`: the cached file if present, else a hash-checked download."""
    path = cache_file(weights)
    if path.is_file():
        return _as_state_dict(_torch_load(path, "cached weights file", "; delete it to download it again"), path)
    try:
        # looked up at call time so tests can replace it; writes to a temp file, then moves it into place
        state = torch.hub.load_state_dict_from_url(weights.url, model_dir=str(path.parent), map_location="cpu",
                                                   progress=progress, check_hash=True, weights_only=True)
    except Exception as e:  # URLError, socket timeouts, hash mismatch: all end the same way
        raise UserError(f"pretrained weights {describe(weights)} are not in the cache ({path} is absent) and "
                        f"downloading {weights.url} failed ({_reason(e)}); put the file there, or use "
                        f"--set weights=FILE, or train from scratch with --set pretrained=false") from e
    return _as_state_dict(state, path)


def load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file: a raw state dict, or a dict holding one under 'state_dict' or 'model'."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    return _as_state_dict(_torch_load(path, "weights file"), path)


def _as_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return dict(obj)


def check_compatible(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Raise UserError unless `got` has exactly the keys and shapes of `expected`."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {tuple(got[k].shape)} (want {tuple(expected[k].shape)})"
              for k in expected if k in got and got[k].shape != expected[k].shape]
    problems = [f"{label} {len(keys)}: {', '.join(keys[:_SHOW])}{', ...' if len(keys) > _SHOW else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
    if problems:
        raise UserError(f"{source} does not fit this model: {'; '.join(problems)}")


def resolve(weights: WeightsEnum, *, pretrained: bool, file: str) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """(state dict or None, its source name or None) for the builder options pretrained and weights=FILE."""
    if file:
        if not pretrained:
            raise UserError("weights=FILE and pretrained=false contradict each other; drop one of them")
        return load_file(file), f"file:{Path(file).expanduser().resolve()}"
    if pretrained:
        return load_torchvision(weights), describe(weights)
    return None, None


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Check `state` against `model` (clear UserError on any mismatch), then load it strictly."""
    check_compatible(model.state_dict(), state, source=source)
    model.load_state_dict(state, strict=True)
