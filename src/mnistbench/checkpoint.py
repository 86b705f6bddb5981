"""Training checkpoints: every piece of state a resumed run needs, saved atomically, loaded safely."""
from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError, first_line
from .fsio import save_torch


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from: Python, NumPy, torch CPU and CUDA (as tensors and plain lists)."""
    np_state = np.random.get_state()
    return {
        "python": _py_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temp file, fsync, os.replace): the previous one survives any crash."""
    save_torch(path, state)


def load(path: Path, map_location="cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; any unreadable, truncated or unsafe file is one clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused, it needs arbitrary unpickling which weights_only loading forbids "
                        f"({first_line(e, 120)}); only load files you trust, re-saved as plain state dicts") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt: "
                        f"{first_line(e, 120)})") from None
