"""Models from installed packages: the entry-point group `mnistbench.models`.

A package declares `name = "package.module:NAME"` in that group (pyproject.toml:
`[project.entry-points."mnistbench.models"]`); NAME follows the same contract as a model file's
(models/files.py). Installed code is trusted as the package itself is: no --trust-code, no copy in the run folder.
"""
from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from ..errors import UserError
from .contract import user_error
from .files import spec_of
from .spec import ModelSpec

GROUP = "mnistbench.models"
_SPECS: dict[str, ModelSpec] = {}


@functools.cache
def found() -> dict[str, EntryPoint]:
    """The installed models by name (read once per process; refresh() reads again)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def refresh() -> None:
    """Forget what was found and loaded (after installing or removing a package in this process)."""
    found.cache_clear()
    _SPECS.clear()


def where(ep: EntryPoint) -> str:
    """'entry point package.module:NAME (dist 1.0)'."""
    dist = getattr(ep, "dist", None)
    return f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist is not None else "")


def check_clash(names: Iterable[str]) -> None:
    """An installed model with the name of a built-in one is an error naming both."""
    for name in sorted(set(found()) & set(names)):
        raise UserError(f"the installed model {name!r} ({where(found()[name])}, group {GROUP}) has the name of the "
                        f"built-in model {name!r}; rename its entry point or uninstall its package")


def plugin_spec(name: str) -> ModelSpec | None:
    """The ModelSpec of the installed model `name`, or None when no package provides it."""
    ep = found().get(name)
    if ep is None:
        return None
    if name not in _SPECS:
        try:
            obj = ep.load()
        except Exception as e:  # the package's code: any exception is its own to explain
            raise user_error(e, None, f"loading the installed model {name} = {ep.value}") from e
        module = sys.modules.get(getattr(obj, "__module__", ""), None)
        try:
            code_file = inspect.getsourcefile(obj)
        except TypeError:
            code_file = None
        _SPECS[name] = spec_of(obj, name=name, recipes=getattr(module, "RECIPES", None), code_file=code_file,
                               source=where(ep))
    return _SPECS[name]
