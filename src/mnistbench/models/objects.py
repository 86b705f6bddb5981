"""A model passed as a Python object (a class or builder function), made into a model reference.

A class or function defined in a notebook (or a script's __main__) is kept by its source: the text of its
definition, after the imports, constants and other notebook classes and functions it uses, written as a module
of its own (models/files.py keeps it by hash, and a run folder keeps a copy, so the run loads in a new kernel).
One from a plain module file is that file's reference, `path/to/module.py:NAME`.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import linecache
import sys
import textwrap
from typing import Any

from ..errors import UserError
from . import files, trust

LITERALS = (bool, int, float, complex, str, bytes, type(None))


def ref_of(model: Any) -> str:
    """The model reference of `model`: a string as it is; a class or function as described in the module doc."""
    if isinstance(model, str):
        return model
    if not (inspect.isclass(model) or inspect.isfunction(model)):
        raise UserError(f"{model!r}: pass a model name, 'path/to/file.py:NAME', or a class or function (def) that "
                        "builds an nn.Module")
    name = model.__name__
    if name == "<lambda>" or "<" in model.__qualname__ or "." in model.__qualname__:
        raise UserError(f"{model.__qualname__}: a lambda or a nested definition cannot be imported by name; define "
                        "the class or function (with def) at the top level of a cell or file")
    module = sys.modules.get(model.__module__)
    path = getattr(module, "__file__", None)
    if model.__module__ != "__main__" and path and path.endswith(".py") and not getattr(module, "__package__", ""):
        return f"{path}:{name}"
    if model.__module__ != "__main__":
        raise UserError(f"{name} comes from the package {model.__module__}; pass it as 'path/to/file.py:NAME', "
                        "install it as an entry point (docs/own-model.md), or wrap it in a class defined here")
    mf = files.register(files.ModelFile.of(files.NOTEBOOK, module_source(model)))
    ref = f"{files.NOTEBOOK}:{name}"
    files.set_latest(ref, mf.sha256)
    trust.trust(mf.sha256, files.NOTEBOOK)  # the user passed it: their own code
    return ref


def module_source(obj: Any) -> str:
    """A module's text that defines `obj` as its module did: the imports and constants it uses, the other classes
    and functions of its module it uses (before it), then its own definition."""
    namespace = vars(sys.modules[obj.__module__])
    header: list[str] = []
    bodies: list[str] = []
    seen: set[str] = set()

    def visit(o: Any) -> None:
        seen.add(o.__name__)
        text = source(o)
        for n in sorted(free_names(text)):
            if n in seen or n not in namespace:
                continue
            seen.add(n)
            value = namespace[n]
            if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == obj.__module__:
                visit(value)
            else:
                header.append(_binding(n, value, o.__name__))
        bodies.append(text)

    visit(obj)
    doc = f'"""{obj.__name__} as defined in a notebook, with what it uses from there (written by mnistbench)."""'
    lines = list(dict.fromkeys(header))
    imports = [h for h in lines if h.startswith(("import ", "from "))]  # imports first, then constants
    head = [doc, *imports, *(h for h in lines if h not in imports)]
    return "\n".join(head) + "\n\n\n" + "\n\n\n".join(b.rstrip() for b in bodies) + "\n"


def _binding(name: str, value: Any, user: str) -> str:
    """The line that gives `name` its value in the written module: an import or a literal."""
    if inspect.ismodule(value):
        return f"import {value.__name__}" if value.__name__ == name else f"import {value.__name__} as {name}"
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if module and qualname and _importable(value, module, qualname):
        return f"from {module} import {qualname}" + (f" as {name}" if name != qualname else "")
    if _literal(value):
        return f"{name} = {value!r}"
    raise UserError(f"{user} uses {name!r} (a {type(value).__name__}) from the notebook, which cannot be written as "
                    f"source; define it inside {user}, or put the model in a .py file and pass 'file.py:{user}'")


def _importable(value: Any, module: str, qualname: str) -> bool:
    if module == "__main__" or "<" in qualname:
        return False
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is value


def _literal(value: Any) -> bool:
    if isinstance(value, LITERALS):
        try:
            return ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            return False
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(_literal(v) for v in value)
    if isinstance(value, dict):
        return all(_literal(k) and _literal(v) for k, v in value.items())
    return False


def free_names(text: str) -> set[str]:
    """Names the code reads but never binds itself (its globals, roughly: what it needs from its module)."""
    tree = ast.parse(text)
    read, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not tree.body[0]:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return read - bound


def source(obj: Any) -> str:
    """The source text of a class or function, dedented; one UserError when it cannot be found."""
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):  # a notebook's class: inspect looks for a file its module does not have
        text = _class_source(obj) if inspect.isclass(obj) else None
    if not text:
        raise UserError(f"cannot find the source of {obj.__name__} (made by exec, or typed into a console?); put it "
                        f"in a .py file and pass 'path/to/file.py:{obj.__name__}'")
    return textwrap.dedent(text)


def _class_source(cls: type) -> str | None:
    """A class's source found through one of its methods: the cell (or file) the method's code came from, and the
    class statement there that holds the method."""
    methods = [v for v in vars(cls).values() if inspect.isfunction(getattr(v, "__func__", v))]
    for method in methods:
        code = getattr(method, "__func__", method).__code__
        lines = linecache.getlines(code.co_filename)
        if not lines:
            continue
        for node in ast.walk(ast.parse("".join(lines))):
            if (isinstance(node, ast.ClassDef) and node.name == cls.__name__
                    and node.lineno <= code.co_firstlineno <= node.end_lineno):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                return "".join(lines[start - 1:node.end_lineno])
    return None
