"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, then os.replace."""
from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import UserError


def write_atomic(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call write(f) on a temp file beside `path`, then move it into place; `path` is never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str = "file") -> Any:
    """The JSON document at `path`; a UserError naming the file when it is missing or broken."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); is {Path(path).parent} a mnistbench {what}?") from None


def write_bytes(path, data: bytes) -> None:
    """Atomically write `data` to `path`."""
    write_atomic(path, lambda f: f.write(data))


def write_json(path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def save_torch(path, obj: Any) -> None:
    """Atomically torch.save `obj` to `path`."""
    write_atomic(path, lambda f: torch.save(obj, f))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there (raises OSError otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / ".write-test", b"ok")
    (folder / ".write-test").unlink()


def cache_dir() -> Path:
    """This user's mnistbench cache: $MNISTBENCH_CACHE, else $XDG_CACHE_HOME/mnistbench, else ~/.cache/mnistbench."""
    if os.environ.get("MNISTBENCH_CACHE"):
        return Path(os.environ["MNISTBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mnistbench"
