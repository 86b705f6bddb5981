"""The model code a user trusts: sha256 hashes of model files, in a list kept per user in the cache folder.

Loading a run folder whose model is a file runs that file's code. `train` and `compare` trust the file the user
names and add its hash here; loading a run (evaluate, predict, export, serve, --resume) runs its copy of the
file only when its hash is here or with --trust-code. Built-in and installed models need neither.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import cache_dir, write_json

TRUSTED = "trusted-code.json"   # {sha256: {"path": where the code came from, "trusted": ISO time}}


def trusted_list() -> Path:
    """The trust list of this user."""
    return cache_dir() / TRUSTED


def _read() -> dict[str, Any]:
    try:
        doc = json.loads(trusted_list().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def is_trusted(sha256: str) -> bool:
    """Whether code with this hash is in the user's trust list."""
    return sha256 in _read()


def trust(sha256: str, path: str) -> None:
    """Add code (by its hash, with the path it came from) to the user's trust list. A cache folder that cannot be
    written only means that loading the run later asks for --trust-code."""
    doc = _read()
    if sha256 in doc:
        return
    doc[sha256] = {"path": path, "trusted": datetime.now().isoformat(timespec="seconds")}
    try:
        trusted_list().parent.mkdir(parents=True, exist_ok=True)
        write_json(trusted_list(), doc)
    except OSError:
        pass


def require(sha256: str, what: str, trust_code: bool) -> None:
    """Refuse, in one line naming `what`, its hash and the flag, to run code that is not trusted."""
    if not trust_code and not is_trusted(sha256):
        raise UserError(f"{what} (sha256 {sha256}) is not in your list of trusted code ({trusted_list()}), and "
                        "loading the run would run it; read it, and if you trust it pass --trust-code")
