"""Figures of one run: loss and accuracy curves, the confusion matrix, a detector's scenes.

Figures are `matplotlib.figure.Figure` objects rendered straight to PNG: no pyplot, so no global
backend switch and no figure registry (a notebook that calls train() keeps its own backend).
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .fsio import write_bytes


def figure(**kw):
    """A new matplotlib Figure, not attached to pyplot."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def png(fig, dpi: int = 110) -> bytes:
    """Render `fig` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig, path: Path) -> None:
    """Render `fig` to PNG and write it atomically."""
    write_bytes(path, png(fig))


def curves(records: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """2x2: training/validation loss and validation accuracy, against step and against training seconds."""
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    fig = figure(figsize=(10, 7))
    axes = fig.subplots(2, 2)
    for col, x in enumerate(("step", "train_seconds")):
        ax = axes[0, col]
        ax.plot([r[x] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
        ax.plot([r[x] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
        ax.set_yscale("log")
        ax.set_ylabel("loss")
        ax.legend()
        ax = axes[1, col]
        ax.plot([r[x] for r in val], [100 * r["val_accuracy"] for r in val], "o-", color="C2")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_xlabel("training step" if x == "step" else "training seconds")
        for a in axes[:, col]:
            a.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    """The confusion matrix with counts (rows: true class; a detector's has a last "none" column); the colour
    scale is logarithmic so rare errors show."""
    import numpy as np
    from matplotlib.colors import LogNorm

    cm = np.asarray(matrix)
    fig = figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm())
    for i, j in np.ndindex(cm.shape):
        if cm[i, j]:
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    columns = list(classes) + ["none"] * (cm.shape[1] - len(classes))  # a detector's "no digit found" column
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="count + 1")
    save_figure(fig, path)


def detections(images, truth: Sequence[dict], preds: Sequence[dict], path: Path, *, count: int = 16,
               min_score: float = 0.3, title: str = "") -> None:
    """Predicted boxes (green, digit and score) over the first `count` images (N, 1, S, S) in [0, 1]; true
    boxes dashed grey. truth / preds: per image {"boxes", "labels"} (+ "scores" for preds), labels = digits."""
    from matplotlib.patches import Rectangle

    count = min(count, len(images))
    cols = min(4, count) or 1
    rows = max(math.ceil(count / cols), 1)
    fig = figure(figsize=(2.6 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    pixels = images[:count, 0].float().cpu()
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(pixels[k].numpy(), cmap="gray", vmin=0, vmax=1)
        for box in truth[k]["boxes"].cpu().tolist():
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="0.6", ls="--", lw=0.8))
        p = preds[k]
        keep = p["scores"].float() >= min_score
        for box, label, score in zip(p["boxes"][keep].float().cpu().tolist(), p["labels"][keep].cpu().tolist(),
                                     p["scores"][keep].float().cpu().tolist()):
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="lime", lw=1.2))
            above = box[1] >= 8  # else the label would leave the image: put it under the box
            ax.text(box[0], box[1] - 0.5 if above else box[3] + 0.5, f"{label} {score:.2f}", color="lime",
                    fontsize=7, va="bottom" if above else "top",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "lw": 0})
    fig.suptitle(title or f"detections (score >= {min_score}); dashed: true boxes")
    save_figure(fig, path)
