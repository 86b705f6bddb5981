"""The runs a server answers with: found in run or study folders, loaded once, asked in turn for each image.

One request decodes the image once, makes it ready once per kind of input (the MNIST recipe, the
Fashion-MNIST recipe, a detector canvas: `Predictor.prepare`, the same code as `mnistbench predict`), then
asks every model. Each model answers under its own lock: its forward pass already uses every core, and the
lock makes sharing one module between request threads safe by construction (no request sees another's
state). Decoding and preprocessing need no lock and run in parallel.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import images
from ..errors import UserError
from ..models import display_name
from ..predict import MIN_SCORE, Predictor, predict_images, unique_name
from ..record import CONFIG, read_summary, status
from ..study.rows import read_results

MAIN_VIEW = ("classify", "mnist")  # the picture the API returns as `input`, when an MNIST classifier is loaded


def run_folders(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The run folders named by `paths`: a run folder itself, or every finished run of a study folder
    (rows with status ok in its results.json, else every run folder with a summary.json)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if (path / CONFIG).is_file():
            found.append(path)
        elif path.is_dir():
            try:
                _, rows = read_results(path)
            except UserError as e:
                raise UserError(f"{path}: neither a run folder (no {CONFIG}) nor a study folder ({e})") from None
            ok = [path / r["run_dir"] for r in rows if r.get("status") == "ok" and r.get("run_dir")]
            if not ok:
                raise UserError(f"{path}: the study has no finished run to serve")
            found += ok
        else:
            raise UserError(f"{path}: no such run or study folder")
    unique = {p.resolve(): p for p in found}  # a run named twice is served once
    return list(unique.values())


@dataclass
class Served:
    """One loaded run: what /api/models says of it, its predictor, and the lock its model answers under."""

    run: str                      # the run folder's name (made unique among the served runs)
    predictor: Predictor
    test_accuracy: float | None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def view(self) -> tuple[str, Any]:
        """What this model needs its input made into: a data set's 28 x 28 recipe or a detector canvas."""
        p = self.predictor
        return ("detect", p.canvas) if p.kind == "detect" else ("classify", p.cfg.dataset)

    def describe(self) -> dict[str, Any]:
        """The run as GET /api/models lists it."""
        p = self.predictor
        return {"model": display_name(p.cfg.model), "run": self.run, "dataset": p.cfg.dataset, "kind": p.kind,
                "classes": list(p.classes), "test_accuracy": self.test_accuracy, "device": str(p.rt.device),
                "precision": p.rt.precision}

    def answer(self, prepared: Any, min_score: float) -> dict[str, Any]:
        """This model's answer for one prepared image; `ms` times the model alone (not waiting for the lock)."""
        p = self.predictor
        with self.lock:
            start = time.perf_counter()
            (res,), _ = predict_images(p, [prepared], ["request"], topk=len(p.classes), min_score=min_score)
            ms = (time.perf_counter() - start) * 1e3
        out = {"model": display_name(p.cfg.model), "run": self.run, "dataset": p.cfg.dataset, "kind": p.kind,
               "ms": round(ms, 3)}
        if p.kind == "detect":
            best = max(res.digits, key=lambda d: d.score, default=None)
            return {**out, "label": None if best is None else str(best.digit), "probabilities": None,
                    "text": res.text, "digits": [{"digit": d.digit, "score": round(d.score, 6),
                                                  "box": [round(v, 1) for v in d.box]} for d in res.digits]}
        by_class = dict(res.topk)
        return {**out, "label": res.label, "probabilities": [round(by_class[c], 6) for c in p.classes]}

    def warm_up(self) -> None:
        """One answer for a blank input, at start-up: the first request's `ms` is then the model's usual time."""
        p, side = self.predictor, self.predictor.canvas
        if p.kind == "detect":
            blank = (np.zeros((side, side), np.float32), images.Placement(1.0, 1.0, (0, 0), (0, 0), (side, side)))
        else:
            blank = np.zeros((images.SIDE, images.SIDE), np.uint8)
        self.answer(blank, 1.0)


def _picture(prepared: Any) -> list[list[float]]:
    """What a model saw as rows of floats in [0, 1] (ink = 1): a uint8 28 x 28 image or a detector canvas."""
    x = prepared[0] if isinstance(prepared, tuple) else prepared.astype(np.float32) / 255.0
    return np.round(x, 4).tolist()


class Models:
    """The served runs, in the order they were named, and the per-request work of POST /api/predict."""

    def __init__(self, served: list[Served], *, max_pixels: int = images.SERVED_MAX_PIXELS,
                 min_score: float = MIN_SCORE):
        if not served:
            raise UserError("no run to serve")
        self.served, self.max_pixels, self.min_score = served, max_pixels, min_score

    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike], *, device: str = "auto",
             max_pixels: int = images.SERVED_MAX_PIXELS, min_score: float = MIN_SCORE,
             trust_code: bool = False) -> Models:
        """Load every run named by `paths` (run or study folders) once, weights only, in eval mode; a run of a model
        file only if its copy is trusted, or with `trust_code` (decided here, at start-up, never per request)."""
        served, names = [], set()
        for folder in run_folders(paths):
            predictor = Predictor.load(folder, device=device, trust_code=trust_code)
            accuracy = read_summary(folder).get("test_accuracy") if status(folder) == "finished" else None
            served.append(Served(unique_name(folder.name, names), predictor, accuracy))
            served[-1].warm_up()
        return cls(served, max_pixels=max_pixels, min_score=min_score)

    def describe(self) -> list[dict[str, Any]]:
        """Every served run as GET /api/models lists it."""
        return [s.describe() for s in self.served]

    def predict(self, data: bytes) -> dict[str, Any]:
        """POST /api/predict's answer for encoded image bytes; bad input is one UserError. Blocking: run it in a
        worker thread."""
        start = time.perf_counter()
        img = images.decode(data, max_pixels=self.max_pixels)
        views: dict[tuple[str, Any], Any] = {}
        for s in self.served:
            if s.view not in views:
                views[s.view] = s.predictor.prepare(img)
        classifier_views = [v for v in views if v[0] == "classify"]
        main = MAIN_VIEW if MAIN_VIEW in views or not classifier_views else classifier_views[0]
        if main not in views:  # only detectors: the page still shows the MNIST recipe's picture
            views[main] = images.preprocess(img, main[1])
        prepare_ms = (time.perf_counter() - start) * 1e3
        predictions = []
        for s in self.served:
            answer = s.answer(views[s.view], self.min_score)
            if s.view != main:  # a model that saw something else says what
                answer["input"] = _picture(views[s.view])
            predictions.append(answer)
        return {"predictions": predictions, "input": _picture(views[main]), "input_dataset": main[1],
                "image_size": list(img.size), "preprocess_ms": round(prepare_ms, 3)}
