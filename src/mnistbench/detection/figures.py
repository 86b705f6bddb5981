"""detections.png: a grid of test scenes with the predicted boxes, digits and scores."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..plots import pyplot, save_figure
from .scenes import Scenes


def detections(scenes: Scenes, preds: list[dict[str, torch.Tensor]], path: Path, *, count: int = 16,
               min_score: float = 0.3, title: str = "") -> None:
    """Predicted boxes (green, digit and score) over the first `count` scenes; true boxes dashed grey."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    count = min(count, len(scenes))
    cols = min(4, count) or 1
    rows = max(math.ceil(count / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    images = scenes.images[:count, 0].float().cpu()
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(images[k].numpy(), cmap="gray", vmin=0, vmax=1)
        for box in scenes.boxes[k][scenes.valid[k]].cpu().tolist():
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="0.6", ls="--", lw=0.8))
        p = preds[k]
        keep = p["scores"].float() >= min_score
        for box, label, score in zip(p["boxes"][keep].float().cpu().tolist(), p["labels"][keep].cpu().tolist(),
                                     p["scores"][keep].float().cpu().tolist()):
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="lime", lw=1.2))
            above = box[1] >= 8  # else the label would leave the image: put it under the box
            ax.text(box[0], box[1] - 0.5 if above else box[3] + 0.5, f"{label - 1} {score:.2f}", color="lime",
                    fontsize=7, va="bottom" if above else "top",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "lw": 0})
    fig.suptitle(title or f"detections (score >= {min_score}); dashed: true boxes")
    save_figure(fig, path)
