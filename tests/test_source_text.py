"""Code comments and docstrings give the reason for a choice, not its measured timings or accuracies: those live
in docs/BENCHMARKS.md, where they say on which hardware and when, and do not drift apart in copies."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistbench"
FILES = sorted(SRC.rglob("*.py"))

NUMBER = r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?[kM]?"  # 7, 1,660, 98.89, 13k; not the 5 of md5s
MEASURED = re.compile(
    rf"{NUMBER}\s*(?:(?:-|–|to|->|→|against|vs\.?)\s*{NUMBER}\s*)?"  # a figure, a range or a before -> after ...
    r"(?:ms|us|µs|s|sec|secs|seconds?|min|minutes?|h|hours?|%|images/s|img/s|steps/s)(?![\w/])"  # ... in a unit
    rf"|{NUMBER}\s*(?:-\s*{NUMBER}\s*)?[x×]\s*(?i:faster|slower|speed-?up|quicker)")  # a speed-up

# Figures in comments that are not measurements, each with why. Keep this short: a measured figure belongs in
# docs/BENCHMARKS.md, and the comment points there.
NOT_MEASURED = {
    "95 %": "the confidence level of an interval",
    "97.5 %": "a normal quantile",
    "85 %": "calibrate.BF16_MARGIN, a threshold",
    "5 %": "Fashion-MNIST's trim level (Xiao et al. 2017), a recipe constant",
    "2 %": "the border ring's width, a recipe constant",
    "99 %": "the accuracy a run's time-to-accuracy is measured to, a threshold",
    "2 s": "calibrate.MAX_SECONDS, a time limit",
    "3 %": "budget.TOLERANCE, a seconds budget's tolerance",
    "1 s": "budget.TOLERANCE_S, a seconds budget's tolerance",
    "0 %": "an end of the scale",
    "100 %": "an end of the scale",
}
QUOTED = re.compile(r"'[^'\n]*'")  # an example of output ('98.50 %', 'cnn @ 30 s') shows a format, not a result


def comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring in `path`."""
    text = path.read_text()
    out = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)
           if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((node.body[0].lineno, doc))
    return out


def measured_figures(text: str) -> list[str]:
    """The figures in `text` that read as measured timings, accuracies or speed-ups."""
    text = QUOTED.sub("''", text)
    return [m.group(0).strip() for m in MEASURED.finditer(text)
            if not any(m.group(0).strip() == allowed for allowed in NOT_MEASURED)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_measured_figure_in_comments_or_docstrings(path):
    found = [f"{path.name}:{line}: {figure!r}" for line, text in comments_and_docstrings(path)
             for figure in measured_figures(text)]
    assert not found, "measured figures belong in docs/BENCHMARKS.md (point there instead): " + "; ".join(found)


@pytest.mark.parametrize("text", [
    "# AlexNet's CPU step 580 -> 400 ms", "took 48–53 ms instead of ~4", "reached 82.6 % on the validation split",
    "10.9 s per epoch", "emulates it 5-8x slower", "trains at 13-17k images/s", "over 5 minutes in 5 of 8",
    "a 3.2× speedup", "the whole command took 218 s",
])
def test_the_check_catches_measurements(text):
    assert measured_figures(text)


@pytest.mark.parametrize("text", [
    "the Wilson 95 % interval", "(B, 1, S, S)", "28 x 28 canvas", "IoU 0.5", "'12.5 ms/scene (1/2 seeds)'",
    "2 s", "the 5x5 kernel", "docs/BENCHMARKS.md",
])
def test_the_check_leaves_non_measurements_alone(text):
    assert not measured_figures(text)
