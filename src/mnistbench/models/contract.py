"""The contract of a model from outside the package, checked before any work, and its errors in one line.

A classifier takes a float batch (B, 1, 28, 28) scaled to [-1, 1], on the run's device, and returns logits
(B, classes). A model from a file or an installed package is built on the meta device (no memory, no weights)
and run on one meta batch of two images; an operation the meta device cannot run is tried again on the CPU.
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import UserError
from .spec import ModelSpec

SAMPLE = (2, 1, 28, 28)   # the batch the check runs: B = 2, as a batch of 1 could hide a flattening mistake
_CHECKED: set[tuple] = set()


def user_error(e: BaseException, code_file: str | None, doing: str) -> UserError:
    """One line for an exception raised by the user's code: `file:line` of its last frame in `code_file` (else
    where it was raised), the exception and what was being done. The exception is the UserError's cause, so
    `--debug` shows its traceback, which is the user's own code."""
    line, where = None, code_file
    if isinstance(e, SyntaxError) and (code_file is None or e.filename == code_file):
        where, line = e.filename, e.lineno
    else:
        frames = traceback.extract_tb(e.__traceback__)
        mine = [f for f in frames if f.filename == code_file] or frames[-1:]
        if mine:
            where, line = mine[-1].filename, mine[-1].lineno
    text = e.msg if isinstance(e, SyntaxError) else (str(e).strip().splitlines() or [""])[0]
    place = f"{where}:{line}" if line else str(where)
    error = UserError(f"{place}: {type(e).__name__}{': ' + text if text else ''} ({doing}; --debug shows the "
                      "traceback)")
    error.__cause__ = e
    return error


def label(spec: ModelSpec) -> str:
    """How errors name a model: its file reference, or an installed model's name and entry point."""
    return spec.name if spec.sha256 else f"{spec.name} ({spec.source})"


def check(spec: ModelSpec, options: Mapping[str, Any], classes: int) -> None:
    """Build `spec` with `options` and run one batch of SAMPLE through it; a model that raises, is not an
    nn.Module or does not return (B, classes) logits is one UserError naming its file. Checked once per process
    for each code, options and number of classes."""
    key = (spec.name, spec.sha256, spec.source, json.dumps(dict(options), sort_keys=True, default=str), classes)
    if key in _CHECKED:
        return
    out = _run_once(spec, options, "meta")
    if out is None:  # an operation the meta device lacks (e.g. .item()): the real thing, on the CPU
        out = _run_once(spec, options, "cpu")
    shape = tuple(out.shape) if hasattr(out, "shape") else None
    if shape != (SAMPLE[0], classes):
        what = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise UserError(f"{label(spec)} returns {what} for a batch of shape {SAMPLE}; a classifier must return "
                        f"logits of shape (B, {classes}) (input: (B, 1, 28, 28) in [-1, 1])")
    _CHECKED.add(key)


def _run_once(spec: ModelSpec, options: Mapping[str, Any], device: str) -> Any:
    """The model's output for a zero batch on `device`; None when the meta device cannot run the model."""
    import torch

    code_file = getattr(spec.build, "code_file", None)
    try:
        with torch.device(device):
            model = spec.build(**options)
    except UserError:
        raise
    except Exception as e:  # the user's code: any exception is theirs to read
        raise user_error(e, code_file, f"building {label(spec)}") from e
    if not isinstance(model, nn.Module):
        raise UserError(f"{label(spec)} gave an object of type {type(model).__name__}, not an nn.Module")
    try:
        with torch.device(device), torch.no_grad():
            return model.eval()(torch.zeros(SAMPLE))
    except Exception as e:  # the meta device's limits, or the user's mistake (then told on the CPU)
        if device == "meta":
            return None
        raise user_error(e, code_file, f"running {label(spec)} on a batch of shape {SAMPLE}") from e
