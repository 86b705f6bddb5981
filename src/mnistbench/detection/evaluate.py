"""Scoring the digit detector: batched detection, classification by detection, COCO mAP, loss, latency."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ..device import autocast, synchronize
from ..metrics import classification_report, misclassified
from .scenes import Scenes, centered, padded_targets, to_targets


@torch.no_grad()
def detect(model: nn.Module, images: torch.Tensor, *, batch_size: int, amp: torch.dtype | None
           ) -> list[dict[str, torch.Tensor]]:
    """Eval-mode detections of (N, 1, S, S) canvases: one {"boxes", "labels" (1..10), "scores"} per image."""
    was_training = model.training
    model.eval()
    out: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(images), batch_size):
        with autocast(images.device, amp):
            out.extend(model(images[i:i + batch_size]))
    model.train(was_training)
    return out


def top_labels(detections: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """(N,) the digit (0..9) of each image's highest-scoring box; -1 where the image has no box."""
    if not detections:
        return torch.empty(0, dtype=torch.int64)
    # padding to (N, max boxes) keeps this one batched op instead of N small ones
    scores = pad_sequence([d["scores"].float() for d in detections], batch_first=True, padding_value=-1.0)
    labels = pad_sequence([d["labels"] for d in detections], batch_first=True, padding_value=0)
    if scores.shape[1] == 0:
        return torch.full((len(detections),), -1, dtype=torch.int64, device=scores.device)
    best, at = scores.max(dim=1)
    top = labels.gather(1, at[:, None])[:, 0] - 1
    return torch.where(best >= 0, top, -1)


def classify_digits(model: nn.Module, digits: torch.Tensor, *, canvas: int, batch_size: int,
                    amp: torch.dtype | None) -> torch.Tensor:
    """Classification by detection: each (28, 28) digit alone at native size in the canvas centre; -1 = no box."""
    preds = [top_labels(detect(model, centered(digits[i:i + batch_size], canvas), batch_size=batch_size, amp=amp))
             for i in range(0, len(digits), batch_size)]
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=digits.device)


def classification_metrics(preds: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """classify.test_metrics' keys for detector predictions; a digit without a box counts as wrong.

    Such a digit enters accuracy, F1 and the confusion matrix as the class (target + 1) % 10, a
    prediction that is wrong by construction; `misclassified` lists it with pred -1, and
    `no_detection_count` says how many there were.
    """
    missing = preds < 0
    counted = torch.where(missing, (target + 1) % 10, preds)
    report = classification_report(counted, target, num_classes=10)
    wrong, wrong_count = misclassified(preds, target)
    return {
        "test_accuracy": report["accuracy"], "test_macro_f1": report["macro_f1"],
        "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"],
        "misclassified": wrong, "misclassified_count": wrong_count, "no_detection_count": int(missing.sum()),
    }


def detection_metrics(detections: list[dict[str, torch.Tensor]], scenes: Scenes) -> dict[str, Any]:
    """COCO box mAP over IoU 0.5:0.95 and at 0.5, overall and per digit, by torchmetrics (faster_coco_eval)."""
    from torchmetrics.detection import MeanAveragePrecision

    preds = [{"boxes": d["boxes"].float().cpu(), "scores": d["scores"].float().cpu(), "labels": d["labels"].cpu() - 1}
             for d in detections]
    targets = [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu() - 1} for t in to_targets(scenes)]
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


@torch.no_grad()
def detection_loss(model: nn.Module, scenes: Scenes, *, batch_size: int, amp: torch.dtype | None,
                   seed: int = 0) -> float:
    """The training loss (sum of the four Faster R-CNN losses), mean over batches of `scenes`.

    The heads run in train mode, since only there do they compute losses; batch norm stays in eval
    mode so its running statistics are not touched, and the random proposal sampling is seeded and
    kept off the global generator, so this is repeatable and training is not disturbed.
    """
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    devices = [scenes.images.device] if scenes.images.device.type == "cuda" else []
    total, batches = 0.0, 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(scenes), batch_size):
            part = Scenes(*(t[i:i + batch_size] for t in (scenes.images, scenes.boxes, scenes.labels, scenes.valid,
                                                          scenes.sources)))
            with autocast(scenes.images.device, amp):
                losses = model(part.images, padded_targets(part))
            total += float(sum(v.float() for v in losses.values()))
            batches += 1
    model.train(was_training)
    return total / max(batches, 1)


def latency_ms(model: nn.Module, images: torch.Tensor, *, amp: torch.dtype | None, budget_s: float) -> float:
    """Median eval-mode latency of one canvas (batch 1), over about `budget_s` seconds after a warm-up."""
    model.eval()
    device = images.device
    times: list[float] = []
    with torch.no_grad(), autocast(device, amp):
        model(images[:1])
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < budget_s or len(times) < 3:
            x = images[i % len(images)][None]
            synchronize(device)
            t = time.perf_counter()
            model(x)
            synchronize(device)
            times.append(time.perf_counter() - t)
            i += 1
    return 1000 * statistics.median(times)
