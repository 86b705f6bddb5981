"""Metrics from predictions (torchmetrics): accuracy, macro-F1, per-class, confusion matrix; detection mAP;
and the exact statistics that compare runs: Wilson intervals, McNemar tests, Holm's correction."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def classification_report(preds: torch.Tensor, target: torch.Tensor, num_classes: int = 10) -> dict[str, Any]:
    """Accuracy (micro), macro-F1, per-class precision/recall/F1/support, confusion matrix (rows = true)."""
    # imported here: torchmetrics is slow to import, which every CLI start would otherwise pay
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    preds, target = preds.cpu(), target.cpu()
    kw = {"num_classes": num_classes, "average": None, "zero_division": 0}
    precision = multiclass_precision(preds, target, **kw)
    recall = multiclass_recall(preds, target, **kw)
    f1 = multiclass_f1_score(preds, target, **kw)
    support = torch.bincount(target, minlength=num_classes)
    return {
        "accuracy": float(multiclass_accuracy(preds, target, num_classes=num_classes, average="micro")),
        "macro_f1": float(multiclass_f1_score(preds, target, num_classes=num_classes, average="macro",
                                              zero_division=0)),
        "per_class": [
            {"class": c, "precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
             "support": int(support[c])}
            for c in range(num_classes)
        ],
        "confusion_matrix": multiclass_confusion_matrix(preds, target, num_classes=num_classes).tolist(),
    }


def misclassified(preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None,
                  limit: int = 200) -> tuple[list[dict[str, int]], int]:
    """The first `limit` wrong images as {index, true, pred}, and how many are wrong in all; `index` maps
    positions to the images' places in the official test set."""
    preds, target = preds.cpu(), target.cpu()
    wrong = (preds != target).nonzero().flatten()
    where = index.cpu() if index is not None else torch.arange(len(target))
    return ([{"index": int(where[i]), "true": int(target[i]), "pred": int(preds[i])} for i in wrong[:limit].tolist()],
            len(wrong))


def time_to_accuracy(history: list[dict[str, Any]], thresholds=(0.98, 0.99, 0.995)) -> dict[str, float | None]:
    """Training seconds at the first validation record reaching each threshold, None if never."""
    return {f"{t:g}": next((h["train_seconds"] for h in history if h["val_accuracy"] >= t), None)
            for t in thresholds}


def detection_metrics(preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """COCO box mAP over IoU 0.5:0.95 and at 0.5, overall and per class, by torchmetrics (faster_coco_eval).

    preds: per image {"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,)}; targets: per image {"boxes", "labels"}.
    """
    from torchmetrics.detection import MeanAveragePrecision

    preds = [{"boxes": d["boxes"].float().cpu(), "scores": d["scores"].float().cpu(), "labels": d["labels"].cpu()}
             for d in preds]
    targets = [{"boxes": t["boxes"].float().cpu(), "labels": t["labels"].cpu()} for t in targets]
    out: dict[str, Any] = {}
    for thresholds, suffix in ((None, ""), ([0.5], "_50")):  # the second gives per-class AP at IoU 0.5
        # sync_on_compute=False: under torchrun only rank 0 evaluates; a gather would wait for the others
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=thresholds,
                                      class_metrics=True, backend="faster_coco_eval", sync_on_compute=False)
        metric.update(preds, targets)
        r = metric.compute()
        classes = r["classes"].flatten().tolist()
        per_class = r["map_per_class"].flatten().tolist()
        out[f"per_class_ap{suffix}"] = {str(c): round(ap, 6) for c, ap in zip(classes, per_class)}
        if thresholds is None:
            out["map"], out["map_50"], out["map_75"] = float(r["map"]), float(r["map_50"]), float(r["map_75"])
    return out


# --- statistics for comparing runs (exact, no scipy) ---------------------------------------------
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: two-sided 95 %


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy `correct / total` (95 % by default); (0, 1) when total is 0.

    Unlike p ± z·se it stays inside [0, 1] and keeps its coverage near 0 % and 100 %.
    """
    if total <= 0:
        return 0.0, 1.0
    p, z2 = correct / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * (p * (1 - p) / total + z2 / (4 * total * total)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Bin(n, 1/2), exactly: integer binomial sums, one division at the end."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n  # int / int rounds once, even for huge n


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of two classifiers on the same images.

    b: images A gets right and B wrong; c: the reverse. Under "equally accurate" each discordant image is
    a fair coin, so p = min(1, 2 P(X <= min(b, c))) for X ~ Bin(b + c, 1/2); no discordance gives 1.
    """
    return min(1.0, 2 * binomial_cdf_half(min(b, c), b + c)) if b + c else 1.0


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given), controlling the
    family-wise error rate: the i-th smallest (from 0) becomes max over j <= i of min(1, (m - j) p_(j))."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def discordant(target: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]) -> tuple[int, int]:
    """(b, c) of two classifiers' predictions on the same images: b = A right and B wrong, c = A wrong and
    B right (a prediction of -1, "nothing found", is wrong)."""
    b = c = 0
    for t, a, o in zip(target, pred_a, pred_b, strict=True):
        b += a == t and o != t
        c += a != t and o == t
    return b, c
