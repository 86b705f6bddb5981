"""The README is a front page that cannot drift: its code path names real functions in the layers that
tests/test_architecture.py knows, its test command is the one CI runs, and every link in the docs resolves."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mnistbench"
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# the steps of one `train`, in order, and the layer (a name in test_architecture.LAYERS) each lives in
STEPS = {"cli": "cli", "config": "config", "data": "data", "model": "models", "plan": "calibrate",
         "task": "tasks", "fit": "engine", "test": "tasks", "run folder": "record"}


def _layers() -> list[set[str]]:
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tests" / "test_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LAYERS


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _steps() -> list[tuple[str, str]]:
    """(step name, its text) of the numbered list under README's 'Reading the code'."""
    steps: list[tuple[str, str]] = []
    for line in _section(README.read_text(), "Reading the code").splitlines():
        if m := re.match(r"\d+\. \*\*(.+?)\*\*(.*)", line):
            steps.append((m.group(1), m.group(2)))
        elif steps and line.startswith("   "):
            steps[-1] = (steps[-1][0], steps[-1][1] + " " + line.strip())
    return steps


def _defined(path: Path, name: str) -> bool:
    """Whether `name` (a function, class or assignment; Class.method for a method) is defined in `path`."""
    body = ast.parse(path.read_text()).body
    for part in name.split("."):
        found = [n for n in body if (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                     and n.name == part)
                 or (isinstance(n, ast.Assign) and any(getattr(t, "id", None) == part for t in n.targets))]
        if not found:
            return False
        body = getattr(found[0], "body", [])
    return True


def test_the_code_path_is_the_steps_of_one_train_in_order():
    assert [name for name, _ in _steps()] == list(STEPS)


@pytest.mark.parametrize("step", list(STEPS))
def test_each_step_names_real_functions_in_its_layer(step):
    rank = {name for layer in _layers() for name in layer}
    assert STEPS[step] in rank, f"{STEPS[step]} is no longer a layer in tests/test_architecture.py's LAYERS"
    text = dict(_steps())[step]
    refs = re.findall(r"`([\w/]+\.py):([\w.]+)`", text)
    assert refs, f"step {step!r} names no file:function"
    layers = set()
    for file, name in refs:
        path = SRC / file
        assert path.is_file(), f"README, step {step!r}: src/mnistbench/{file} does not exist"
        assert _defined(path, name), f"README, step {step!r}: {file} defines no {name}"
        layers.add(Path(file).parts[0].removesuffix(".py"))
    assert STEPS[step] in layers, f"README, step {step!r}: none of {refs} is in the {STEPS[step]} layer"
    assert layers <= rank, f"README, step {step!r}: {layers - rank} are not layers of test_architecture.LAYERS"


def test_the_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    assert "../shared" not in text
    first = re.search(r"```bash\n(.+?)\n", text).group(1)
    assert "mnistbench train --model cnn" in first, "the first command is the quick CNN run"


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# The README's test command, verbatim:") + 1]
    assert command in README.read_text().splitlines()


def test_the_code_map_names_every_module():
    block = re.search(r"```\nsrc/mnistbench/\n(.+?)```", (ROOT / "docs" / "code.md").read_text(), re.S).group(1)
    named, folder = set(), ""
    for line in block.splitlines():
        words = line.split()
        if not words:
            continue
        if len(line) - len(line.lstrip()) == 2:  # a new entry: a folder ("data/") or files of the package root
            folder = words[0] if words[0].endswith("/") else ""
        named |= {folder + w for w in words if w.endswith(".py")}
    real = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    assert real - named == set(), f"docs/code.md misses {sorted(real - named)}"
    assert named - real == set(), f"docs/code.md names modules that do not exist: {sorted(named - real)}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: link to {target}: no such heading"
