"""The library's face for Python and Jupyter: compare() returns a Study, train() a Run; both show inline.

    import mnistbench
    study = mnistbench.compare(models=["cnn", "vit", LeNet], budget=30)   # LeNet: a class of this notebook
    study                        # its summary, findings and accuracy table, in the notebook
    run = study.run("LeNet")     # a Run: run["test_accuracy"], run.predict(image), run.export()

A model is a name, a file reference 'path/to/file.py:NAME', or a class or builder function defined in the
notebook (kept by its source, models/objects.py). Runs go in this process by default, so progress bars are
tqdm's notebook widgets.
"""
from __future__ import annotations

import base64
import html
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, resolve
from ..data import images
from ..errors import UserError
from ..export import Exported, export_onnx
from ..models.objects import ref_of
from ..predict import Predictor, Result, predict_images
from ..record import CONFUSION, CURVES, read_summary
from ..run import train as train_config
from . import tables
from .about import about
from .compare import compare as compare_rows
from .compare import default_out
from .document import Doc
from .findings import findings
from .formatting import pct
from .report import REPORT_HTML
from .results import Analysis, analyse
from .rows import read_results


@dataclass
class Run(Mapping[str, Any]):
    """A finished run: its folder and summary (a mapping: `run["test_accuracy"]` reads summary.json), shown in a
    notebook as its numbers and figures; `predict` and `export` use its trained model."""

    folder: Path
    summary: dict[str, Any]
    trust_code: bool = False     # run the folder's copy of a model file even if it is not in the trust list
    _predictor: Predictor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, folder: str | Path, *, trust_code: bool = False) -> Run:
        """The finished run in `folder`."""
        return cls(Path(folder), read_summary(folder), trust_code)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.summary)

    def __len__(self) -> int:
        return len(self.summary)

    def __repr__(self) -> str:
        s, accuracy = self.summary, self.summary.get("test_accuracy")
        return (f"Run({str(self.folder)!r}: {s.get('model')} on {s.get('dataset')}, test accuracy "
                f"{pct(accuracy) if accuracy is not None else '–'})")

    def predict(self, image: Any, *, topk: int = 3) -> Result | list[Result]:
        """The answer for an image (a PIL image, a NumPy array, a file path or encoded bytes), or a list of answers
        for a list of them; preprocessed as `mnistbench predict` does."""
        if self._predictor is None:
            self._predictor = Predictor.load(self.folder, trust_code=self.trust_code)
        single = not isinstance(image, (list, tuple))
        items = [image] if single else list(image)
        prepared = [self._predictor.prepare(_pil(item)) for item in items]
        names = [str(item) if isinstance(item, (str, Path)) else f"image {i}" for i, item in enumerate(items)]
        results, _ = predict_images(self._predictor, prepared, names, topk=topk)
        return results[0] if single else results

    def export(self, out: str | Path | None = None, *, data_dir: str = "") -> Exported:
        """`mnistbench export`: the ONNX file, checked against PyTorch on real test images."""
        return export_onnx(self.folder, out=out, data_dir=data_dir, trust_code=self.trust_code)

    def _repr_html_(self) -> str:
        s = self.summary
        training = f"{s.get('train_seconds') or 0:.1f} s, {s.get('epochs_completed')} epochs, {s.get('precision')}"
        facts = [("model", s["model"]), ("data set", s["dataset"]),
                 ("test accuracy", pct(s["test_accuracy"]) if s.get("test_accuracy") is not None else "–"),
                 ("training", training), ("parameters", f"{s.get('params'):,}"), ("run folder", str(self.folder))]
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
        figures = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
                          f'alt="{name}" style="max-width:48%">' for name in (CURVES, CONFUSION)
                          if (p := self.folder / name).is_file())
        return f"<table>{rows}</table><div>{figures}</div>"


def _pil(item: Any):
    """A PIL image of what predict() was given."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return Image.fromarray(item if item.dtype == np.uint8 else (np.clip(item, 0, 1) * 255).astype(np.uint8))
    if isinstance(item, (str, Path)):
        return images.decode(Path(item).read_bytes())
    if isinstance(item, bytes):
        return images.decode(item)
    raise UserError(f"cannot predict on a {type(item).__name__}: give a PIL image, a NumPy array, a path or bytes")


@dataclass
class Study(Sequence[dict[str, Any]]):
    """A study's folder, rows (one per run: the sequence itself), verdicts and report, from its results; shown in
    a notebook as the report's summary, findings and accuracy table."""

    folder: Path
    rows: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    report: Path
    analysis: Analysis = field(repr=False, compare=False)

    @classmethod
    def load(cls, folder: str | Path) -> Study:
        """The study in `folder` (the `out` of compare) as its results say."""
        meta, rows = read_results(Path(folder))
        an = analyse(Path(folder), meta, rows)
        return cls(Path(folder), an.rows, an.verdicts, Path(folder) / REPORT_HTML, an)

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        ok = sum(r["status"] == "ok" for r in self.rows)
        return f"Study({str(self.folder)!r}: {ok} of {len(self.rows)} runs finished; report {str(self.report)!r})"

    def run(self, model: Any, *, seed: int | None = None, budget: float | None = None) -> Run:
        """The finished run of `model` (its name, as the rows name it, or the class): its lowest seed at its largest
        budget unless `seed` and `budget` say which."""
        name = model if isinstance(model, str) else getattr(model, "__name__", str(model))
        ok = [r for r in self.rows if r["model"] == name and r["status"] == "ok"
              and (seed is None or r["seed"] == seed) and (budget is None or r["budget"] == budget)]
        if not ok:
            raise UserError(f"no finished run of {name} in {self.folder}; models: "
                            f"{', '.join(dict.fromkeys(r['model'] for r in self.rows))}")
        best = max(ok, key=lambda r: (r["budget"] or 0, -r["seed"]))
        return Run.load(self.folder / best["run_dir"])

    def _repr_html_(self) -> str:
        an, doc = self.analysis, Doc()
        doc.h(3, f"mnistbench study: {', '.join(an.models)} on {an.dataset}")
        doc.p(" ".join(about(an)))
        doc.bullets(findings(an))
        doc.table(*tables.accuracy_table(an))
        doc.p(f"The whole report: `{self.report}`")
        return doc.body()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compare(models: Sequence[Any] | None = None, *, budget: float | None = None, budgets: Sequence[float] = (),
            budget_flops: float | None = None, budgets_flops: Sequence[float] = (), seeds: int = 1,
            out: str | Path | None = None, preset: str = "quick", data_dir: str = "", device: str = "auto",
            executor: str = "inline", quiet: bool = False, reuse_finished: bool = False,
            overrides: Mapping[str, Any] | None = None, address: str | None = None,
            log: Callable[[str], None] | None = _say, **settings: Any) -> Study:
    """`mnistbench compare` from Python: train every model × seed (× budget) into `out`, write the report, return
    the Study. `models`: names, 'path/to/file.py:NAME' or classes and functions of this notebook (default: every
    built-in and installed model); `budget` seconds (or `budgets`, or `budget_flops` / `budgets_flops` in training
    FLOPs; none: the preset's); `settings` (or `overrides`): config fields and model options for every model that
    takes them, as --set. Runs go in this process (`executor="local"`: each in its own, as the command does)."""
    if (budget is not None and budgets) or (budget_flops is not None and budgets_flops):
        raise UserError("give budget or budgets (budget_flops or budgets_flops), not both")
    compare_rows(None if models is None else [ref_of(m) for m in models], preset=preset, seeds=seeds,
                 budgets=[budget] if budget is not None else list(budgets),
                 budgets_flops=[budget_flops] if budget_flops is not None else list(budgets_flops),
                 out=out, data_dir=data_dir, device=device, overrides={**(overrides or {}), **settings},
                 quiet=quiet, executor=executor, address=address, reuse_finished=reuse_finished, log=log)
    return Study.load(Path(out) if out else default_out(preset))


def train(model: Any = "cnn", /, *, resume_from: str | Path | None = None, **settings: Any) -> Run:
    """Train one model and return its Run (a mapping of its summary). `model`: a resolved Config
    (`train(resolve({...}))`), a name, 'path/to/file.py:NAME', or a class or function of this notebook;
    `settings`: config fields and model options (budget_s=20, precision="fp32", out="runs/lenet", ...)."""
    if isinstance(model, Config):
        if settings:
            raise UserError(f"train(config, {', '.join(settings)}=...): put the settings in resolve({{...}})")
        cfg = model
    else:
        cfg = resolve({**settings, "model": ref_of(model)})
    summary = train_config(cfg, resume_from=resume_from)
    return Run(Path(summary["run_dir"]), summary)
