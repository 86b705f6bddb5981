"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, then os.replace.

Every write fails the same way: a WriteError naming the file and why (disk full, read-only, permission,
quota), with no temporary file left behind.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import UserError, WriteError, os_error_in


@contextlib.contextmanager
def writing(path: str | os.PathLike, *, folder: bool = False) -> Iterator[None]:
    """An OSError raised in the block, or a RuntimeError raised because of one (torch's zip writer), becomes a
    WriteError naming `path`."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, RuntimeError) as e:
        cause = os_error_in(e)
        if cause is None:
            raise
        raise WriteError(path, cause.errno, cause.strerror or "", folder=folder) from e


def write_atomic(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call write(f) on a temp file beside `path`, then move it into place; `path` is never half-written."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the error that matters is the one being raised
                os.unlink(tmp)
            raise


def append(path: str | os.PathLike, data: bytes) -> None:
    """Append `data` with one write(2) (a crash leaves no half line); a write the disk cuts short (full) is
    undone, so the file ends after its last whole line, and raised as a WriteError."""
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size, rest = os.fstat(fd).st_size, memoryview(data)
            try:
                while rest:  # a short write is followed by one that raises why (no space, quota)
                    rest = rest[os.write(fd, rest):]
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


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


def check_writable(folder: str | os.PathLike) -> None:
    """Create `folder` and prove a file can be written there (a WriteError naming the folder otherwise)."""
    folder = Path(folder)
    try:
        with writing(folder, folder=True):
            folder.mkdir(parents=True, exist_ok=True)
            write_bytes(folder / ".write-test", b"ok")
            (folder / ".write-test").unlink()
    except WriteError as e:  # the test file's failure is the folder's
        raise WriteError(folder, e.errno, e.detail, folder=True) from e


def cache_dir() -> Path:
    """This user's mnistbench cache: $MNISTBENCH_CACHE, else $XDG_CACHE_HOME/mnistbench, else ~/.cache/mnistbench."""
    if os.environ.get("MNISTBENCH_CACHE"):
        return Path(os.environ["MNISTBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mnistbench"
