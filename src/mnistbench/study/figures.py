"""Figures of a study report, each returned as PNG bytes: curves, Pareto scatter, accuracy against budget,
confusions, F1, mistakes."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import plots
from .formatting import short


def png(fig) -> bytes:
    """Render `fig` to PNG bytes (report resolution) and close it."""
    return plots.png(fig, dpi=100)


def _plain_log_ticks(axis) -> None:
    """Log-axis tick labels as plain numbers (0.5, 2, 300); minor ticks labelled only on short ranges."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos) -> str:
        lo, hi = sorted(axis.get_view_interval())
        if v <= 0 or lo <= 0 or math.log10(hi / lo) > 1.2:
            return ""
        mantissa = round(v / 10 ** math.floor(math.log10(v)), 6)
        return f"{v:g}" if math.log10(hi / lo) < 0.6 or mantissa in (2, 3, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _colors(models: Sequence[str]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(models)}


def curves(runs: Sequence[tuple[str, int, list[dict[str, Any]]]], models: Sequence[str]) -> bytes:
    """Every run overlaid: train loss vs step and vs training seconds, validation accuracy vs seconds.

    `runs` holds (model, seed, metrics records); seeds of one model share its colour.
    """
    color = _colors(models)
    fig = plots.figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    labelled: set[str] = set()
    for model, _seed, records in runs:
        train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
        val = [r for r in records if r.get("kind") == "val" and r.get("val_accuracy") is not None]
        label = None if model in labelled else model
        labelled.add(model)
        kw = {"color": color[model], "lw": 1.2, "alpha": 0.85, "marker": "." if len(train) < 20 else None}
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label=label, **kw)
        axes[1].plot([r["train_seconds"] for r in train], [r["loss"] for r in train], label=label, **kw)
        kw.pop("marker")
        axes[2].plot([r["train_seconds"] for r in val], [100 * r["val_accuracy"] for r in val], "o-",
                     label=label, ms=4, **kw)
    for ax, xlabel, ylabel in zip(axes, ("training step", "training seconds", "training seconds"),
                                  ("train loss", "train loss", "validation accuracy (%)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    for ax in axes[1:]:
        ax.set_xscale("log")  # runs differ by orders of magnitude in time
        _plain_log_ticks(ax.xaxis)
    axes[2].legend(fontsize=8)
    axes[0].set_title("training loss by step")
    axes[1].set_title("training loss by time")
    axes[2].set_title("validation accuracy by time (epoch ends)")
    return png(fig)


def pareto(points: Sequence[dict[str, Any]], models: Sequence[str], *, x: str = "seconds",
           xlabel: str = "training seconds", title: str = "accuracy against training time") -> bytes:
    """Test accuracy against training cost per point (mean ± std), points on the Pareto front as stars.

    Each point: model, label, `x` (seconds or flops), its `x`_std, accuracy, accuracy_std, front (bool). No line
    joins the front: it is decided by paired tests, so it need not rise monotonically.
    """
    color = _colors(models)
    fig = plots.figure(figsize=(7.5, 5))
    ax = fig.subplots()
    for p in points:
        ax.errorbar(p[x], 100 * p["accuracy"], xerr=p.get(f"{x}_std") or None,
                    yerr=100 * p["accuracy_std"] if p.get("accuracy_std") else None,
                    fmt="*" if p["front"] else "o", ms=14 if p["front"] else 8, color=color[p["model"]],
                    capsize=3, zorder=3)
        ax.annotate(p.get("label", p["model"]), (p[x], 100 * p["accuracy"]), textcoords="offset points",
                    xytext=(8, 6), fontsize=9)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + ("; stars: Pareto front" if any(p["front"] for p in points) else ""))
    ax.grid(alpha=0.3, which="both")
    return png(fig)


def accuracy_vs_budget(series: dict[str, Sequence[tuple[float, float, float | None]]], models: Sequence[str],
                       unit: str = "s") -> bytes:
    """Test accuracy against training budget, one line per model: `series[model]` holds (budget in `unit`,
    mean accuracy, std over seeds or None) points; log x, since budgets grow by factors."""
    color = _colors(models)
    fig = plots.figure(figsize=(7.5, 5))
    ax = fig.subplots()
    for model, pts in series.items():
        pts = sorted(pts)
        ax.errorbar([b for b, _, _ in pts], [100 * acc for _, acc, _ in pts],
                    yerr=[100 * (sd or 0.0) for _, _, sd in pts], fmt="o-", color=color[model], capsize=3, ms=6,
                    lw=1.5, label=model)
    budgets = sorted({b for pts in series.values() for b, _, _ in pts})
    ax.set_xscale("log")
    ax.set_xticks(budgets, [short(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel(f"training budget ({'seconds' if unit == 's' else 'training FLOPs'}, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy against training budget (mean ± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return png(fig)


def confusions(matrices: Sequence[tuple[str, Sequence[Sequence[int]]]], classes: Sequence[str]) -> bytes:
    """Small multiples of confusion matrices (rows = true), log colour so rare errors show; errors counted.
    A matrix with one column more than `classes` (a detector's) has its last column labelled "none"."""
    from matplotlib.colors import LogNorm

    n = len(matrices)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = plots.figure(figsize=(4.3 * cols, 4.1 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, matrix) in zip(axes.flat, matrices):
        cm = np.asarray(matrix)
        ax.imshow(cm + 1, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(2, cm.max() + 1)))
        for i, j in np.ndindex(cm.shape):
            if cm[i, j] and i != j:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6)
        short = [c[:5] for c in classes]
        columns = short + ["none"] * (cm.shape[1] - len(short))
        ax.set_xticks(range(len(columns)), columns, fontsize=6, rotation=90 if max(map(len, columns)) > 1 else 0)
        ax.set_yticks(range(len(short)), short, fontsize=6)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png(fig)


def per_class_f1(f1: dict[str, Sequence[float]], classes: Sequence[str]) -> bytes:
    """Grouped bars: per-class F1 of every model side by side."""
    models = list(f1)
    color = _colors(models)
    fig = plots.figure(figsize=(min(16, max(8, 0.3 * len(classes) * len(models) + 4)), 4.2))
    ax = fig.subplots()
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(classes))
    for i, m in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, f1[m], width, label=m, color=color[m])
    values = [v for vs in f1.values() for v in vs]
    low = min(values) if values else 0.0
    ax.set_ylim(max(0.0, low - 0.05 * (1 - low) - 0.02), 1.0)  # zoom on the differences
    ax.set_xticks(x, classes, rotation=30 if max(map(len, classes)) > 2 else 0)
    ax.set_ylabel("F1 on the test set")
    ax.set_title("per-class F1")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=min(len(models), 6), loc="upper center", bbox_to_anchor=(0.5, -0.12 if
              max(map(len, classes)) <= 2 else -0.3), frameon=False)
    return png(fig)


def image_rows(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], columns: int = 16) -> bytes:
    """One row of up to `columns` small 28x28 images per entry: (row title, [(image, caption), ...])."""
    n = max(len(rows), 1)
    fig = plots.figure(figsize=(columns * 0.85, n * 1.15 + 0.2))
    axes = fig.subplots(n, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (title, images) in enumerate(rows):
        axes[r, 0].set_title(title, loc="left", fontsize=9, fontweight="bold", x=0.0, y=1.18)
        for c, (img, caption) in enumerate(images[:columns]):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
            ax.text(0.5, -0.08, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7)
        if not images:
            axes[r, 0].text(0.0, 0.5, "no mistakes", transform=axes[r, 0].transAxes, fontsize=8)
    fig.subplots_adjust(hspace=0.9, wspace=0.1)
    return png(fig)
