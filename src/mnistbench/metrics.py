"""Metrics from predictions (torchmetrics): accuracy, macro-F1, per-class, confusion matrix; detection mAP."""
from __future__ import annotations

from typing import Any

import torch


def classification_report(preds: torch.Tensor, target: torch.Tensor, num_classes: int = 10) -> dict[str, Any]:
    """Accuracy (micro), macro-F1, per-class precision/recall/F1/support, confusion matrix (rows = true)."""
    # imported here: torchmetrics takes ~2 s to import, which every CLI start would otherwise pay
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
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=thresholds,
                                      class_metrics=True, backend="faster_coco_eval")
        metric.update(preds, targets)
        r = metric.compute()
        classes = r["classes"].flatten().tolist()
        per_class = r["map_per_class"].flatten().tolist()
        out[f"per_class_ap{suffix}"] = {str(c): round(ap, 6) for c, ap in zip(classes, per_class)}
        if thresholds is None:
            out["map"], out["map_50"], out["map_75"] = float(r["map"]), float(r["map_50"]), float(r["map_75"])
    return out
