"""The exception types whose message is shown to the user as a single line, and the exit status of each."""
from __future__ import annotations

import errno as E
import os
from pathlib import Path

EXIT_USER = 2   # bad input or settings (UserError)
EXIT_IO = 74    # EX_IOERR of sysexits.h: a file could not be written (or read): disk full, read-only, permission


class UserError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


# The one place an OSError's errno becomes words: why the write failed, and the condition under which to go on.
_WHY = {E.ENOSPC: "no space left on device", getattr(E, "EDQUOT", -1): "disk quota exceeded",
        E.EROFS: "read-only file system", E.EACCES: "permission denied", E.EPERM: "permission denied"}
WRITE_FAULTS = frozenset(_WHY) - {-1}  # the errnos of a disk that refuses writes
_ONCE = {E.ENOSPC: "space is freed there", getattr(E, "EDQUOT", -1): "you are under your disk quota again",
         E.EROFS: "it is writable", E.EACCES: "you may write there", E.EPERM: "you may write there"}


class WriteError(Exception):
    """A file or folder could not be written. str(): which one and why, in words (a failed study run's row);
    told(): the whole line for the command line, with what is intact (`kept`) and how to go on (`then`),
    filled in by the layer that knows them (the run, the study). Exit status EXIT_IO."""

    def __init__(self, path: str | os.PathLike, errno: int | None, detail: str = "", *, folder: bool = False):
        self.path, self.errno, self.folder = Path(path), errno, folder
        self.detail = detail or (os.strerror(errno) if errno else "I/O error")
        self.kept = ""   # e.g. "the last checkpoint, step 856 of 1720, is intact"
        self.then = ""   # e.g. "go on with: mnistbench train --resume runs/cnn"
        super().__init__(str(self.path))

    def why(self) -> str:
        """'no space left on device (the disk mounted at /data is full)', 'read-only file system (...)', ..."""
        why = _WHY.get(self.errno, self.detail[:1].lower() + self.detail[1:])
        if self.errno == E.ENOSPC:
            return f"{why} (the disk mounted at {mount_point(self.path)} is full)"
        if self.errno == E.EROFS:
            return f"{why} (mounted at {mount_point(self.path)})"
        return why

    def __str__(self) -> str:
        return f"cannot write {'to ' if self.folder else ''}{self.path}: {self.why()}"

    def told(self) -> str:
        """The one line: what failed and why; what is intact; once the cause is gone, the command that goes on."""
        then = f"once {_ONCE.get(self.errno, 'that is fixed')}, {self.then or 'run the same command again'}"
        return "; ".join(filter(None, (str(self), self.kept, then)))


class NoRoom(WriteError):
    """Checked before any work: the free space of the disk does not cover what the run or study will write."""

    def __init__(self, folder: str | os.PathLike, need: int, free: int, who: str, detail: str):
        super().__init__(folder, E.ENOSPC, folder=True)
        self.need, self.free, self.who, self.parts = need, free, who, detail

    def __str__(self) -> str:
        return (f"not enough free space on the disk mounted at {mount_point(self.path)} ({mb(self.free)} free): "
                f"{self.who} about {mb(self.need)} in {self.path} ({self.parts})")


def mb(n: int) -> str:
    """Bytes in MB (10^6), one decimal; GB above 10 GB."""
    return f"{n / 1e9:.1f} GB" if n >= 1e10 else f"{n / 1e6:.1f} MB"


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system that holds `path` (or would: its nearest existing folder)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind `e`: itself, or one it was raised from or while handling (torch's zip writer raises
    RuntimeError 'unexpected pos ...' after the file's write() failed with ENOSPC)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None
