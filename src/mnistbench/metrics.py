"""Metrics from predictions: accuracy, macro-F1, per-class, confusion matrix; detection mAP (torchmetrics);
and the exact statistics that compare runs: Wilson intervals, McNemar tests, Holm's correction."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def classification_report(preds: torch.Tensor, target: torch.Tensor, num_classes: int = 10) -> dict[str, Any]:
    """Accuracy (micro), macro-F1, per-class precision/recall/F1/support, confusion matrix (rows = true).

    Computed from the confusion matrix with torch alone, by torchmetrics' definitions (a 0/0 precision, recall
    or F1 is 0; macro-F1 averages the classes that occur in the targets or the predictions); the suite checks
    them against torchmetrics. Importing torchmetrics costs more than a small run's whole test pass (it loads
    torchvision and matplotlib), so it is kept for detection mAP, where it does the work.
    """
    preds, target = preds.cpu().long(), target.cpu().long()
    cm = torch.bincount(target * num_classes + preds, minlength=num_classes * num_classes).view(num_classes, -1)
    tp = cm.diag().double()
    predicted, support = cm.sum(0).double(), cm.sum(1).double()
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    seen = (predicted + support) > 0
    return {
        "accuracy": float(tp.sum() / max(len(target), 1)),
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": [{"class": c, "precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                       "support": int(support[c])} for c in range(num_classes)],
        "confusion_matrix": cm.tolist(),
    }


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, 0 where b is 0."""
    return torch.where(b > 0, a / b.clamp(min=1e-300), torch.zeros_like(a))


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
    """P(X <= k) for X ~ Bin(n, 1/2), in O(min(k, n - k)) time, to about 1e-12 relative.

    The terms C(n, i) / 2^n are summed in ratio to the largest one of the tail (each the one after it times
    (i + 1) / (n - i)), so none overflows and the smallest underflow harmlessly; only the largest is taken
    from lgamma. Past the middle, the upper tail is summed instead and subtracted from 1.
    """
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if 2 * k >= n:
        return 1.0 - binomial_cdf_half(n - k - 1, n)  # the complement's tail is the short one
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    terms, term = [], 1.0
    for i in range(k, -1, -1):  # C(n, i - 1) = C(n, i) · i / (n - i + 1): terms fall away from the middle
        terms.append(term)
        term *= i / (n - i + 1)
        if term == 0.0:
            break
    return math.exp(log_top + math.log(math.fsum(terms)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of two classifiers on the same images.

    b: images A gets right and B wrong; c: the reverse. Under "equally accurate" each discordant image is
    a fair coin, so p = min(1, 2 P(X <= min(b, c))) for X ~ Bin(b + c, 1/2); no discordance gives 1.
    """
    return min(1.0, 2 * binomial_cdf_half(min(b, c), b + c)) if b + c else 1.0


def t_test_paired(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that the mean of `differences` is 0 (n - 1 degrees of freedom).

    Exact for normal differences, from Student's t distribution in closed form; 1.0 when all differences are
    0, and 0.0 when they are equal and not 0 (no spread: any t is exceeded). Needs at least 2 differences.
    """
    n = len(differences)
    if n < 2:
        raise ValueError("a paired t-test needs at least 2 differences")
    mean = math.fsum(differences) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0.0 or sd < 1e-12 * abs(mean):
        return 1.0 if mean == 0 else 0.0
    return student_t_two_sided(abs(mean) / (sd / math.sqrt(n)), n - 1)


def student_t_two_sided(t: float, df: int) -> float:
    """P(|T| >= t) for Student's t with `df` (a positive integer) degrees of freedom.

    The finite series of Abramowitz and Stegun 26.7.3 and 26.7.4 in theta = atan(t / sqrt(df)): no special
    functions, exact up to rounding.
    """
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2·4/(3·5) cos^4 + ...)), df - 2 terms of cos
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= (k - 1) / k * c2
            total += term
        inside = 2 / math.pi * (theta + s * math.cos(theta) * total)
    else:  # even: sin (1 + 1/2 cos^2 + 1·3/(2·4) cos^4 + ...)
        term = total = 1.0
        for k in range(2, df - 1, 2):
            term *= (k - 1) / k * c2
            total += term
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


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
