"""Paired tests on the same test images: exact McNemar between two runs, Holm over the whole study.

Two runs are compared only when they scored the same test images (the same official test-set indices in
predictions.json), seed k of one against seed k of the other (same data split and seed). A point is a model
at a budget (seconds or training FLOPs; None for a run trained for epochs). Three kinds of pairs:
- "models": two models at the same budget (budget_a == budget_b == budget);
- "budgets": one model at consecutive budgets of the study, the smaller as A (is the gain significant?);
- "across": two models at different budgets, the smaller budget as A (does one dominate the other on the
  Pareto front of accuracy against budget?).
Holm's correction runs over every test of the study, of every kind, so "significant" holds for everything
the report says at once.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import holm, mcnemar_exact
from ..record import PREDICTIONS, read_predictions

ALPHA = 0.05  # family-wise error rate of the study's comparisons
KINDS = ("models", "budgets", "across")


class PredictionCache:
    """Each run folder's predictions.json, read once: read again only when the file changed (size or time)."""

    def __init__(self) -> None:
        self._read: dict[Path, tuple[tuple[int, int] | None, dict[str, list[int]] | None]] = {}

    def get(self, folder: Path) -> dict[str, list[int]] | None:
        try:
            st = (Path(folder) / PREDICTIONS).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        hit = self._read.get(Path(folder))
        if hit is None or hit[0] != stamp:
            hit = self._read[Path(folder)] = (stamp, read_predictions(folder) if stamp else None)
        return hit[1]


def load_predictions(study: Path, rows: Sequence[dict[str, Any]], cache: PredictionCache | None = None
                     ) -> dict[str, dict[str, list[int]] | None]:
    """Per finished row's run_dir, its predictions.json (None for a run from before they were written);
    through `cache` when given, so a study that saves after every run reads each file once."""
    cache = cache or PredictionCache()
    return {r["run_dir"]: cache.get(Path(study) / r["run_dir"]) for r in rows if r["status"] == "ok"}


def budget_order(budget: float | None) -> tuple[bool, float]:
    """Sort key of budgets: unbudgeted first, then by size."""
    return budget is not None, budget or 0.0


Point = tuple[str, "float | None"]  # (model, budget)


def comparisons(rows: Sequence[dict[str, Any]], predictions: dict[str, dict[str, list[int]] | None]
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """(tests, pairs left out and why). Each test: kind, model_a, budget_a, model_b, budget_b, budget (the
    shared budget of a "models" pair, else None), seed, n (test images), b (A right, B wrong), c (A wrong, B
    right), accuracy_a/_b on those images, p (exact McNemar), p_holm (over every test), better: "a" or "b"
    when that side is significantly more accurate (Holm p < ALPHA), else None."""
    runs: dict[Point, dict[int, tuple]] = {}
    for r in rows:
        pred = predictions.get(r["run_dir"]) if r["status"] == "ok" else None
        if pred:
            runs.setdefault((r["model"], r.get("budget")), {})[r["seed"]] = _scored(pred)
    tests, skipped = [], []
    for kind, x, y in pairs(list(runs)):
        for seed in sorted(set(runs[x]) & set(runs[y])):
            test = _test(runs[x][seed], runs[y][seed])
            if test is None:
                skipped.append(f"{_name(x)} and {_name(y)} (seed {seed}) scored different test images")
                continue
            tests.append({"kind": kind, "model_a": x[0], "budget_a": x[1], "model_b": y[0], "budget_b": y[1],
                          "budget": x[1] if kind == "models" else None, "seed": seed, **test})
    for t, p in zip(tests, holm([t["p"] for t in tests])):
        t["p_holm"] = p
        t["better"] = ("a" if t["b"] > t["c"] else "b") if p < ALPHA else None
    return tests, skipped


def pairs(points: Sequence[Point]) -> list[tuple[str, Point, Point]]:
    """The pairs of points the study tests, (kind, A, B), in report order: every two models at each budget;
    each model at consecutive budgets; two models at different budgets (smaller budget first)."""
    budgets = sorted({b for _, b in points}, key=budget_order)
    models = list(dict.fromkeys(m for m, _ in points))
    out = [("models", x, y) for b in budgets for x, y in itertools.combinations([p for p in points if p[1] == b], 2)]
    for m in models:
        mine = sorted((p for p in points if p[0] == m), key=lambda p: budget_order(p[1]))
        out += [("budgets", x, y) for x, y in itertools.pairwise(mine)]
    for bx, by in itertools.combinations(budgets, 2):
        out += [("across", x, y) for x in points if x[1] == bx for y in points if y[1] == by and y[0] != x[0]]
    return out


def _name(point: Point) -> str:
    model, budget = point
    return model if budget is None else f"{model} at budget {budget:g}"


def _scored(pred: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, targets, whether each prediction is right) ordered by official test-set index."""
    index = np.asarray(pred["index"], dtype=np.int64)
    order = np.argsort(index, kind="stable")
    target = np.asarray(pred["target"], dtype=np.int64)[order]
    return index[order], target, np.asarray(pred["pred"], dtype=np.int64)[order] == target


def _test(x: tuple, y: tuple) -> dict[str, Any] | None:
    """The paired test of two runs' predictions; None if they did not score the same images. A prediction
    of -1 ("nothing found") is wrong."""
    (index, target, right_a), (index_b, target_b, right_b) = x, y
    if not len(index) or not (np.array_equal(index, index_b) and np.array_equal(target, target_b)):
        return None
    b, c = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    n, both = len(index), int(np.sum(right_a & right_b))
    return {"n": n, "b": b, "c": c, "accuracy_a": (both + b) / n, "accuracy_b": (both + c) / n,
            "p": mcnemar_exact(b, c)}


# --- where the models go wrong -----------------------------------------------------------------------
def classifiers(reps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The representatives whose summaries list misclassified test images and a confusion matrix."""
    return {m: rep for m, rep in reps.items()
            if rep["summary"].get("misclassified") is not None and rep["summary"].get("confusion_matrix")}


def error_sets(reps: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[int, int]], int, dict[int, int]]:
    """Per classifier, {official test index: predicted class (-1: nothing found)} of its errors on the `n`
    test images every one of them scored; `n`; and the true class of each of those images.

    From predictions.json; when a run has none (older runs), from the summaries' misclassified lists, which
    hold only the first errors of a model with many: then the images up to where every list is complete.
    """
    chosen = classifiers(reps)
    if chosen and all(rep.get("predictions") for rep in chosen.values()):
        preds = {m: rep["predictions"] for m, rep in chosen.items()}
        scored = {m: dict(zip(p["index"], zip(p["target"], p["pred"]))) for m, p in preds.items()}
        common = set.intersection(*(set(s) for s in scored.values()))
        errors = {m: {i: p for i, (t, p) in s.items() if i in common and p != t} for m, s in scored.items()}
        return errors, len(common), {i: t for i, (t, _) in next(iter(scored.values())).items() if i in common}
    lists, n, targets = {}, None, {}
    for model, rep in chosen.items():
        s = rep["summary"]
        mis = s["misclassified"]
        complete = len(mis) >= s.get("misclassified_count", len(mis))
        covered = rep["row"]["test_images"] if complete or not mis else mis[-1]["index"] + 1
        n = covered if n is None else min(n, covered)
        lists[model] = {m["index"]: m["pred"] for m in mis}
        targets.update({m["index"]: m["true"] for m in mis})
    if n is None:
        return {}, 0, {}
    return {m: {i: p for i, p in errs.items() if i < n} for m, errs in lists.items()}, n, targets


def error_overlaps(errs: dict[str, dict[int, int]]) -> list[tuple[float, str, str, int, int]]:
    """Per pair of models, most similar first: (Jaccard of their error sets, a, b, shared errors, of them
    with the same wrong label)."""
    pairs = []
    for a, b in itertools.combinations(errs, 2):
        union = set(errs[a]) | set(errs[b])
        shared = set(errs[a]) & set(errs[b])
        same = sum(1 for i in shared if errs[a][i] == errs[b][i])
        pairs.append((len(shared) / len(union) if union else 0.0, a, b, len(shared), same))
    return sorted(pairs, reverse=True)
