"""Classification metrics from predictions (torchmetrics): accuracy, macro-F1, per-class, confusion matrix."""
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


def misclassified(preds: torch.Tensor, target: torch.Tensor, limit: int = 200) -> tuple[list[dict[str, int]], int]:
    """The first `limit` wrong test images as {index, true, pred}, and how many are wrong in all."""
    wrong = (preds != target).nonzero().flatten()
    return ([{"index": int(i), "true": int(target[i]), "pred": int(preds[i])} for i in wrong[:limit].tolist()],
            len(wrong))


def time_to_accuracy(history: list[dict[str, Any]], thresholds=(0.98, 0.99, 0.995)) -> dict[str, float | None]:
    """Training seconds at the first validation record reaching each threshold, None if never."""
    return {f"{t:g}": next((h["train_seconds"] for h in history if h["val_accuracy"] >= t), None)
            for t in thresholds}
