"""The layout is the architecture: each folder a layer, imports flow one way, files and functions stay small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistbench"

# Lower layers first; a module may import its own layer and the ones before it, never a later one.
LAYERS = [
    {"errors", "fsio", "schema"},
    {"device", "data"},
    {"models"},
    {"metrics", "profile", "plots", "record", "checkpoint"},
    {"tasks"},
    {"config"},
    {"optim", "budget", "calibrate", "trainstate", "engine", "distributed", "storage"},
    {"run", "predict", "export"},
    {"study", "serve"},
    {"cli", "cli_runs", "__main__", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """mnistbench modules `path` imports anywhere: lazy imports and imports for type hints (under TYPE_CHECKING)
    included, since a type a module names is a dependency of it as much as a function it calls."""
    tree = ast.parse(path.read_text())
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names]
            out |= {n if _exists(n) else target for n in names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.split(".")[0] == "mnistbench"}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


FILES = sorted(SRC.rglob("*.py"))
GRAPH = {_module(p): _imports(p) for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_from_a_higher_layer(path):
    me = _module(path)
    for target in GRAPH[me]:
        assert RANK[_top(target)] <= RANK[_top(me)], f"{me} imports {target}, a higher layer"


def test_the_named_rules():
    def imports(src: str, dst: str) -> list[str]:
        return [f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if _top(m) == src and _top(t) == dst]

    for src, dst in (("models", "tasks"), ("models", "engine"), ("models", "study"), ("data", "models"),
                     ("metrics", "data")):
        assert not imports(src, dst), f"{src} must not import {dst}"
    study_users = {_top(m) for m, ts in GRAPH.items() for t in ts if _top(t) == "study"} - {"study"}
    assert study_users <= {"cli", "__init__", "serve"}


def test_every_layer_name_is_a_module_or_package_and_every_module_has_a_layer():
    tops = {_top(m) for m in GRAPH}
    assert not set(RANK) - tops, f"layer names that match no module or package: {sorted(set(RANK) - tops)}"
    assert not tops - set(RANK), f"modules or packages in no layer: {sorted(tops - set(RANK))}"


def test_no_import_cycle():
    """Between modules, package faces (__init__) included."""
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in GRAPH.get(m, ()):
            if t not in GRAPH or t == m:
                continue
            assert state.get(t) != 1, "import cycle: " + " -> ".join(path + [t])
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])


MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60
# Functions allowed over MAX_FUNCTION_LINES, each with its reason: {(file under src/mnistbench, function): why}.
# None today. An exemption that no longer applies (the function is gone or back under the limit) fails the test.
EXEMPT: dict[tuple[str, str], str] = {}


def _function_lengths(path: Path) -> dict[str, int]:
    """The length in lines of every function and method defined in `path` (the longest of any same-named)."""
    lengths: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lengths[node.name] = max(lengths.get(node.name, 0), node.end_lineno - node.lineno + 1)
    return lengths


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_files_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    rel = str(path.relative_to(SRC))
    for name, length in _function_lengths(path).items():
        if (rel, name) not in EXEMPT:
            assert length <= MAX_FUNCTION_LINES, f"{rel}: {name} is {length} lines"


def test_every_exemption_still_applies():
    stale = []
    for rel, name in EXEMPT:
        path = SRC / rel
        lengths = _function_lengths(path) if path.exists() else {}
        if name not in lengths:
            stale.append(f"{rel}:{name} no longer exists")
        elif lengths[name] <= MAX_FUNCTION_LINES:
            stale.append(f"{rel}:{name} is {lengths[name]} lines, within the limit")
    assert not stale, f"remove these exemptions: {'; '.join(stale)}"
