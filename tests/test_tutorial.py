"""docs/tutorial.ipynb, executed top to bottom by a real Jupyter kernel (nbclient and ipykernel), as the test
suite runs it: the same cells with MNISTBENCH_TUTORIAL_SMALL=1 (slices of the data, a 2 s budget, smaller cnn and
vit: the notebook's first cell says what it shrinks)."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_tutorial_is_kept_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in _code_cells(nb))


def test_the_tutorial_runs_top_to_bottom_in_a_jupyter_kernel(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MNISTBENCH_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("MNISTBENCH_DATA", str(data_dir))  # the kernel inherits the environment (and the cache)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [c.outputs for c in _code_cells(nb)]
    text = ["".join(o.get("text", "") for o in out if o.output_type == "stream" and o.name == "stdout")
            for out in outputs]
    html = next(o.data["text/html"] for out in outputs for o in out if "text/html" in o.get("data", {}))
    assert "test accuracy (%)" in html and "<td>LeNet</td>" in html and "<td>vit</td>" in html  # Study, inline
    verdicts = next(t for t in text if " vs " in t)
    assert {line.split(":")[0] for line in verdicts.splitlines()} == {"cnn vs vit", "cnn vs LeNet", "vit vs LeNet"}
    assert any(t.startswith("LeNet reads a ") for t in text) and any("argmax identical" in t for t in text)
    run = tmp_path / "runs" / "tutorial" / "runs" / "LeNet-b2-seed0"
    assert "class LeNet(nn.Module):" in (run / "model_source.py").read_text() and (run / "model.onnx").is_file()
