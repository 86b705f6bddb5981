"""Figures of one run: loss and accuracy curves (vs step and vs time) and the confusion matrix."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from .fsio import write_bytes


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt
    return plt


def png(fig, dpi: int = 110) -> bytes:
    """Render `fig` to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig, path: Path) -> None:
    """Render `fig` to PNG and write it atomically."""
    write_bytes(path, png(fig))


def curves(records: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """2x2: training/validation loss and validation accuracy, against step and against training seconds."""
    plt = pyplot()
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
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
    """The confusion matrix with counts; the colour scale is logarithmic so rare errors show."""
    import numpy as np
    from matplotlib.colors import LogNorm

    plt = pyplot()
    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm())
    for i, j in np.ndindex(cm.shape):
        if cm[i, j]:
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="count + 1")
    save_figure(fig, path)
