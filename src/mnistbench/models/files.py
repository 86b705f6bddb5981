"""Models from the user's Python files (`path/to/file.py:NAME`) and from a notebook (`<notebook>:NAME`).

NAME is an nn.Module subclass or a function that returns one. Its keyword parameters with defaults are the
model's options (`--set key=value`); the file's RECIPES dict, if any, its recipes (the same form as the
built-ins'), else the cnn's default recipe; its task is classification (models/contract.py: the contract).

The code is read once and kept in this process by its sha256: from then on a run's config, a study's jobs and a
worker on another machine name the code by its hash (and carry its text), and a run folder keeps a copy of it,
so what trains, and what later loads the run, is the code that was read, whatever becomes of the file.
"""
from __future__ import annotations

import hashlib
import inspect
import linecache
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UserError
from . import cnn, trust
from .contract import user_error
from .spec import ModelSpec

NOTEBOOK = "<notebook>"   # the "path" of code defined in a notebook (or a script's __main__), kept by source


@dataclass(frozen=True)
class ModelFile:
    """A model file's code: where it came from (an absolute path, or NOTEBOOK), its text and its sha256."""

    path: str
    code: str
    sha256: str

    @classmethod
    def of(cls, path: str, code: str) -> ModelFile:
        return cls(path, code, hashlib.sha256(code.encode()).hexdigest())

    def to_dict(self) -> dict[str, str]:
        """What travels with a job to another process or machine."""
        return {"path": self.path, "code": self.code}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> ModelFile:
        return cls.of(d["path"], d["code"])


_FILES: dict[str, ModelFile] = {}                     # sha256 -> the code this process may import
_NAMESPACES: dict[tuple[str, str], dict[str, Any]] = {}  # (sha256, path) -> the globals of its imported code
_SPECS: dict[tuple[str, str, str], ModelSpec] = {}    # (sha256, path, reference) -> its spec
_LATEST: dict[str, str] = {}                          # "<notebook>:NAME" -> sha256 of its last definition


def is_ref(name: str) -> bool:
    """Whether a model name is a file reference: `path/to/file.py:NAME` or `<notebook>:NAME`."""
    path, sep, attr = name.rpartition(":")
    return bool(sep and attr.isidentifier() and (path.endswith(".py") or path == NOTEBOOK))


def split_ref(ref: str) -> tuple[str, str]:
    """(path, NAME) of a file reference."""
    path, _, name = ref.rpartition(":")
    return path, name


def read_file(path: str) -> ModelFile:
    """The code of the model file at `path` (made absolute), or one UserError."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"model file {path}: no such file")
    try:
        return ModelFile.of(str(p.resolve()), p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"model file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def register(mf: ModelFile) -> ModelFile:
    """Keep `mf`'s code in this process under its hash (a job's code, a run folder's copy, a notebook class)."""
    _FILES[mf.sha256] = mf
    return mf


def registered(sha256: str) -> ModelFile:
    """The code this process keeps under `sha256` (KeyError if none)."""
    return _FILES[sha256]


def set_latest(ref: str, sha256: str) -> None:
    """Make `ref` ("<notebook>:NAME") name the code with this hash until it is defined again."""
    _LATEST[ref] = sha256


def file_spec(ref: str, sha256: str = "") -> ModelSpec:
    """The ModelSpec of a file reference: the code kept under `sha256` when given, else the file as it is now
    (the user named it: it is read, kept and trusted)."""
    path, name = split_ref(ref)
    mf = _FILES.get(sha256) if sha256 else None
    if mf is None:
        mf = _current(ref, path)
        if sha256 and mf.sha256 != sha256:
            raise UserError(f"{mf.path} has changed since it was read (sha256 {sha256} then, {mf.sha256} now)")
    key = (mf.sha256, mf.path, ref)
    if key not in _SPECS:
        namespace = _namespace(mf)
        if name not in namespace:
            found = [k for k, v in namespace.items() if _defines(v, namespace) and not k.startswith("_")]
            raise UserError(f"{mf.path}: no {name} in it" + (f"; it defines {', '.join(found)}" if found else ""))
        _SPECS[key] = spec_of(namespace[name], name=ref, recipes=namespace.get("RECIPES"), code_file=mf.path,
                              source=mf.path, sha256=mf.sha256)
    return _SPECS[key]


def _current(ref: str, path: str) -> ModelFile:
    if path == NOTEBOOK:
        if ref not in _LATEST:
            raise UserError(f"{ref}: no class or function {split_ref(ref)[1]} was passed from a notebook in this "
                            "session; pass the class itself (models=[MyNet])")
        return _FILES[_LATEST[ref]]
    mf = register(read_file(path))
    trust.trust(mf.sha256, mf.path)
    return mf


def _defines(value: Any, namespace: dict[str, Any]) -> bool:
    """Whether `value` is a class or function the file itself defines (a candidate NAME)."""
    return (isinstance(value, type) or inspect.isfunction(value)) and value.__module__ == namespace["__name__"]


def _namespace(mf: ModelFile) -> dict[str, Any]:
    """The globals of `mf`'s code, imported once per hash and path as a module of its own; its errors name the
    file."""
    if (mf.sha256, mf.path) not in _NAMESPACES:
        name = f"mnistbench_model_{mf.sha256[:16]}_{len(_NAMESPACES)}"
        module = types.ModuleType(name)
        module.__file__ = mf.path
        # tracebacks and inspect show the code that ran, even after the file changed or went
        linecache.cache[mf.path] = (len(mf.code), None, mf.code.splitlines(True), mf.path)
        sys.modules[name] = module  # dataclasses and pickling look classes up by their module
        try:
            exec(compile(mf.code, mf.path, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the point
        except Exception as e:  # the user's code: any exception is theirs to read
            del sys.modules[name]
            raise user_error(e, mf.path, "importing the model file") from e
        _NAMESPACES[mf.sha256, mf.path] = module.__dict__
    return _NAMESPACES[mf.sha256, mf.path]


def spec_of(obj: Any, *, name: str, recipes: Any, code_file: str | None, source: str, sha256: str = "") -> ModelSpec:
    """The ModelSpec of a model class or builder function from outside the package (a file or a package)."""
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)) and (inspect.isclass(obj) or not callable(obj)):
        raise UserError(f"{name} is a {type(obj).__name__}, not an nn.Module subclass or a function that returns one")
    options = _options(obj, name)

    def build(**kwargs: Any) -> nn.Module:
        return obj(**kwargs)

    build.__signature__ = inspect.Signature([inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
                                             for k, v in options.items()])
    build.code_file = code_file  # where its frames are the user's (contract.user_error)
    doc = (obj.__doc__ or "").strip()
    return ModelSpec(name=name, build=build, about=doc.splitlines()[0] if doc else f"{obj.__name__} from {source}",
                     recipes=_recipes(recipes, name), task="classify", source=source, sha256=sha256)


def _options(obj: Any, name: str) -> dict[str, Any]:
    """The keyword parameters of a class or function and their defaults; a parameter without one is an error."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return {}
    named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [p.name for p in named if p.default is p.empty or p.kind is p.POSITIONAL_ONLY]
    if missing:
        raise UserError(f"{name} takes {', '.join(missing)} without a default (or positional-only); give each "
                        "parameter a default: it becomes an option, set with --set key=value")
    return {p.name: p.default for p in named}


def default_recipe() -> dict[str, Any]:
    """The recipe of a model without RECIPES: the cnn's default recipe, less the cnn's own options."""
    return {k: v for k, v in cnn.SPEC.recipes["default"].items() if k not in cnn.SPEC.arg_defaults()}


def _recipes(recipes: Any, name: str) -> dict[str, dict[str, Any]]:
    if recipes is None:
        return {"default": default_recipe()}
    if not (isinstance(recipes, Mapping) and "default" in recipes
            and all(isinstance(k, str) and isinstance(v, Mapping) for k, v in recipes.items())):
        raise UserError(f"{name}: RECIPES must map recipe names to dicts of settings, one of them 'default' "
                        "(e.g. RECIPES = {'default': {'epochs': 2, 'lr': 3e-3}})")
    return {k: dict(v) for k, v in recipes.items()}
