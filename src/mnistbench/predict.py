"""Predict on your own images with a trained run: load it once, preprocess, batch on the device, format.

Classifier runs give each image's class, probability and top-k; detector runs (frcnn) every digit in
the image with its box (in the image's pixels) and score, read left to right. The preprocessing is
`data.images` (the recipe of the run's data set); `--backend onnx` runs `export`'s model.onnx instead.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from .config import Config, model_spec
from .data import images
from .data.datasets import get_info
from .device import Runtime
from .errors import UserError
from .export import onnx_logits, onnx_session
from .fsio import check_writable, write_bytes
from .record import ONNX
from .run import load_run_config, load_trained, runtime
from .tasks.classify import combine, view_logits
from .tasks.classify import predict as classify_logits

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_SCORE = 0.5     # detections below this score are not reported as digits
OVERLAP = 0.5       # a box overlapping a better one by more than this IoU is the same digit
CHUNK = 256         # images decoded and predicted together


@dataclass
class Predictor:
    """A run loaded once for prediction: its config, where it computes, and the model or ONNX session."""

    cfg: Config
    rt: Runtime
    model: nn.Module | None = None
    session: Any = None        # onnxruntime.InferenceSession with --backend onnx
    kind: str = "classify"     # the run's task: "classify" or "detect"
    classes: tuple[str, ...] = ()
    canvas: int = 0            # detector canvas side (detect runs)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, device: str = "auto", backend: str = "torch",
             onnx_file: str | os.PathLike | None = None, trust_code: bool = False) -> Predictor:
        """Load the run in `run_dir` for `backend` ("torch" or "onnx") on `device` (`trust_code`: run_dir's copy of
        a model file may run though it is not in the user's trust list)."""
        if not Path(run_dir).is_dir():
            raise UserError(f"{run_dir}: no such run folder")
        cfg = load_run_config(run_dir, trust_code=trust_code)
        rt = runtime(cfg, device, run_dir=run_dir)
        p = cls(cfg, rt, kind=model_spec(cfg).task, classes=get_info(cfg.dataset).classes,
                canvas=int(cfg.model_args.get("image_size", 0)))
        if backend == "onnx":
            if p.kind != "classify":
                raise UserError(f"{cfg.model} runs have no ONNX export; predict with --backend torch")
            p.session = onnx_session(onnx_file or Path(run_dir) / ONNX, rt.device)
        elif backend == "torch":
            p.model = load_trained(run_dir, cfg, rt)
        else:
            raise UserError(f"unknown backend {backend!r}; use torch or onnx")
        return p

    def prepare(self, img) -> np.ndarray | tuple[np.ndarray, images.Placement]:
        """What the model sees of a decoded image: uint8 (28, 28), or the detector's float canvas and where
        the image went on it."""
        if self.kind == "detect":
            return images.to_canvas(img, self.canvas)
        return images.preprocess(img, self.cfg.dataset)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, classes) softmax probabilities of uint8 images (N, 28, 28)."""
        bs, images = self.cfg.eval_batch_size, torch.from_numpy(x)
        if self.session is not None:  # the run's test-time views, as its test scored them
            views = view_logits(lambda v: torch.from_numpy(onnx_logits(self.session, v.numpy(), bs)), images,
                                self.cfg.tta)
            logits = combine(views)
        else:
            logits = classify_logits(self.model, images, rt=self.rt, batch_size=bs, tta=self.cfg.tta).cpu()
        return logits.float().softmax(dim=1).numpy()

    @torch.no_grad()
    def detect(self, canvases: np.ndarray, min_score: float) -> list[list[Digit]]:
        """Per (S, S) canvas its digits (canvas coordinates), left to right, one box per digit."""
        from torchvision.ops import nms

        x = torch.from_numpy(canvases)[:, None].to(self.rt.device)
        out = []
        for i in range(0, len(x), self.cfg.eval_batch_size):
            with self.rt.autocast():
                dets = self.model(x[i:i + self.cfg.eval_batch_size])
            for d in dets:
                boxes, scores = d["boxes"].float(), d["scores"].float()
                keep = nms(boxes, scores, OVERLAP)  # class-agnostic: two classes on one digit is one digit
                keep = keep[scores[keep] >= min_score]
                # the detector's class 0 is the background: its class k is digit k - 1
                found = [Digit(int(d["labels"][k]) - 1, float(scores[k]), tuple(boxes[k].tolist())) for k in keep]
                out.append(sorted(found, key=lambda g: (g.box[0] + g.box[2]) / 2))
        return out


@dataclass(frozen=True)
class Digit:
    """One detected digit: its class, score and box (x1, y1, x2, y2)."""

    digit: int
    score: float
    box: tuple[float, float, float, float]


@dataclass
class Result:
    """The answer for one file: a class with top-k (classifier runs) or the digits read (detector runs)."""

    file: str
    label: str = ""
    probability: float = 0.0
    topk: list[tuple[str, float]] = field(default_factory=list)
    digits: list[Digit] | None = None

    @property
    def text(self) -> str:
        """The digits read left to right (detector runs)."""
        return "".join(str(d.digit) for d in self.digits or [])


def gather(inputs: list[str], err: TextIO) -> tuple[list[Path], int]:
    """The image files named by `inputs` (a folder: its image files sorted by name), and how many inputs failed."""
    files, failed = [], 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES),
                           key=lambda p: p.name)
            if not found:
                failed += _fail(err, item, f"folder holds no images ({', '.join(SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            failed += _fail(err, item, "no such file or folder")
    return files, failed


def _fail(err: TextIO, name: Any, message: Any) -> int:
    print(f"mnistbench: error: {name}: {message}", file=err)
    return 1


def run(run_dir: str, inputs: list[str], *, topk: int = 3, fmt: str = "table", save_dir: str | None = None,
        draw_dir: str | None = None, backend: str = "torch", onnx_file: str | None = None, device: str = "auto",
        min_score: float = MIN_SCORE, out: TextIO | None = None, err: TextIO | None = None,
        trust_code: bool = False) -> int:
    """`mnistbench predict`: answer every readable file on `out`, one error line per bad one on `err`;
    returns the exit status (1 when any input failed)."""
    out, err = out or sys.stdout, err or sys.stderr
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    if topk < 1:
        raise UserError(f"--topk must be at least 1; got {topk}")
    p = Predictor.load(run_dir, device=device, backend=backend, onnx_file=onnx_file, trust_code=trust_code)
    if draw_dir and p.kind != "detect":
        raise UserError("--draw draws detected boxes: it needs a detector run (frcnn)")
    for folder in filter(None, (save_dir, draw_dir)):
        check_writable(Path(folder))  # before any image: a WriteError (exit 74) naming the folder
    files, failed = gather(inputs, err)
    results, names = [], set()
    for start in range(0, len(files), CHUNK):
        ready = []
        for path in files[start:start + CHUNK]:
            try:
                data = path.read_bytes()
                ready.append((path, data, p.prepare(images.decode(data))))
            except (UserError, OSError) as e:
                failed += _fail(err, path, e.strerror if isinstance(e, OSError) and e.strerror else e)
        if ready:
            results += _answer(p, ready, topk, min_score, save_dir, draw_dir, names)
    FORMATS[fmt](results, p, out, topk)
    return 1 if failed else 0


def predict_images(p: Predictor, prepared: list, files: list[str], *, topk: int = 3,
                   min_score: float = MIN_SCORE) -> tuple[list[Result], np.ndarray]:
    """Answers for images made ready by `p.prepare`, predicted together on the device, and uint8 pictures of
    what the model saw (28 x 28, or the detector's canvas)."""
    if p.kind == "detect":
        canvases = np.stack([canvas for canvas, _ in prepared])  # (N, S, S) float in [0, 1]
        found = p.detect(canvases, min_score)
        out = [Result(f, digits=_in_image(d, placement)) for f, (_, placement), d in zip(files, prepared, found)]
        return out, (canvases * 255).round().astype(np.uint8)
    seen = np.stack(prepared)  # (N, 28, 28) uint8
    probs = p.probabilities(seen)
    order = np.argsort(-probs, axis=1)[:, :max(1, min(topk, probs.shape[1]))]
    return [Result(f, p.classes[o[0]], float(pr[o[0]]), [(p.classes[j], float(pr[j])) for j in o])
            for f, pr, o in zip(files, probs, order)], seen


def _answer(p: Predictor, ready: list, topk: int, min_score: float, save_dir: str | None, draw_dir: str | None,
            names: set[str]) -> list[Result]:
    """Predict one chunk of (path, bytes, prepared) together; write what the model saw and the drawings."""
    out, seen = predict_images(p, [r[2] for r in ready], [str(r[0]) for r in ready], topk=topk, min_score=min_score)
    for (path, data, _), res, img in zip(ready, out, seen):
        stem = unique_name(path.stem, names)
        if save_dir:
            write_bytes(Path(save_dir) / f"{stem}.png", images.encode_png(img))
        if draw_dir:
            boxes = [(f"{d.digit} {d.score:.2f}", d.box) for d in res.digits]
            write_bytes(Path(draw_dir) / f"{stem}.png", images.draw_boxes(images.decode(data), boxes))
    return out


def _in_image(digits: list[Digit], placement: images.Placement) -> list[Digit]:
    """Canvas detections in the image's pixels; boxes that lie wholly off the image (on the canvas margin) go."""
    moved = [Digit(d.digit, d.score, placement.to_image(d.box)) for d in digits]
    return [d for d in moved if d.box[2] > d.box[0] and d.box[3] > d.box[1]]


def unique_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem`-2, -3, ...: the first not in `taken`, which it joins."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


# --- output formats -------------------------------------------------------------------------------
def _box(b) -> list[float]:
    return [round(float(v), 1) for v in b]


def as_dicts(results: list[Result], p: Predictor) -> list[dict[str, Any]]:
    """Results as JSON-ready dicts."""
    if p.kind == "detect":
        return [{"file": r.file, "text": r.text, "digits": [{**asdict(d), "box": _box(d.box)} for d in r.digits]}
                for r in results]
    return [{"file": r.file, "class": r.label, "probability": round(r.probability, 6),
             "topk": [{"class": c, "probability": round(q, 6)} for c, q in r.topk]} for r in results]


def write_json(results: list[Result], p: Predictor, out: TextIO, topk: int) -> None:
    """One JSON list, one object per file."""
    out.write(json.dumps(as_dicts(results, p), indent=2) + "\n")


def write_csv(results: list[Result], p: Predictor, out: TextIO, topk: int) -> None:
    """Classifiers: file, class, probability, topk ("class:p;..."); detectors: one row per digit."""
    w = csv.writer(out, lineterminator="\n")
    if p.kind == "detect":
        w.writerow(["file", "text", "index", "digit", "score", "x1", "y1", "x2", "y2"])
        for r in results:
            rows = [[i, d.digit, f"{d.score:.4f}", *_box(d.box)] for i, d in enumerate(r.digits)] or [[""] * 7]
            w.writerows([r.file, r.text, *row] for row in rows)
        return
    w.writerow(["file", "class", "probability", "topk"])
    for r in results:
        w.writerow([r.file, r.label, f"{r.probability:.4f}", ";".join(f"{c}:{q:.4f}" for c, q in r.topk)])


def write_table(results: list[Result], p: Predictor, out: TextIO, topk: int) -> None:
    """An aligned table: file, class, probability, top-k (classifiers) or file, digits, boxes (detectors)."""
    if p.kind == "detect":
        rows = [(r.file, r.text or "-", "; ".join(f"{d.digit} {d.score:.2f} [{', '.join(f'{v:.0f}' for v in d.box)}]"
                                                   for d in r.digits)) for r in results]
        head = ("file", "digits", "digit score [x1, y1, x2, y2], left to right")
    else:
        rows = [(r.file, r.label, f"{r.probability:.4f}", ", ".join(f"{c} {q:.3f}" for c, q in r.topk))
                for r in results]
        head = ("file", "class", "prob", f"top-{min(topk, len(p.classes))}")
    if not rows:
        return
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    out.writelines("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in (head, *rows))


FORMATS = {"table": write_table, "json": write_json, "csv": write_csv}
