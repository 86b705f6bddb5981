"""Paired tests between the study's models on the same test images: exact McNemar, Holm over the study.

Two runs are compared only when they scored the same test images (the same official test-set indices
in predictions.json) with the same budget (seconds or training FLOPs); with several seeds, seed k of one model is paired with seed
k of the other (same data split and seed), one test per pair and seed. Holm's correction runs over every
test of the study, so "significant" holds for the whole table at once.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import discordant, holm, mcnemar_exact
from ..record import read_predictions

ALPHA = 0.05  # family-wise error rate of the study's comparisons


def load_predictions(study: Path, rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[int]] | None]:
    """Per finished row's run_dir, its predictions.json (None for a run from before they were written)."""
    return {r["run_dir"]: read_predictions(Path(study) / r["run_dir"]) for r in rows if r["status"] == "ok"}


def budget_order(budget: float | None) -> tuple[bool, float]:
    """Sort key of budgets: unbudgeted first, then by size."""
    return budget is not None, budget or 0.0


def comparisons(rows: Sequence[dict[str, Any]], predictions: dict[str, dict[str, list[int]] | None]
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """(tests, pairs left out and why). Each test: budget, model_a, model_b, seed, n (test images), b (A
    right, B wrong), c (A wrong, B right), accuracy_a/_b on those images, p (exact McNemar), p_holm, and
    better: the model that is significantly more accurate (Holm p < ALPHA), or None."""
    groups: dict[float | None, dict[str, dict[int, tuple]]] = {}
    for r in rows:
        pred = predictions.get(r["run_dir"]) if r["status"] == "ok" else None
        if pred:
            groups.setdefault(r.get("budget"), {}).setdefault(r["model"], {})[r["seed"]] = _by_index(pred)
    tests, skipped = [], []
    for budget in sorted(groups, key=budget_order):
        runs = groups[budget]
        for a, b in itertools.combinations(runs, 2):
            for seed in sorted(set(runs[a]) & set(runs[b])):
                test = _test(runs[a][seed], runs[b][seed])
                if test is None:
                    at = f", budget {budget:g}" if budget is not None else ""
                    skipped.append(f"{a} and {b} (seed {seed}{at}) scored different test images")
                    continue
                tests.append({"budget": budget, "model_a": a, "model_b": b, "seed": seed, **test})
    for t, p in zip(tests, holm([t["p"] for t in tests])):
        t["p_holm"] = p
        t["better"] = (t["model_a"] if t["b"] > t["c"] else t["model_b"]) if p < ALPHA else None
    return tests, skipped


def _by_index(pred: dict[str, list[int]]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(indices, targets, predictions) ordered by official test-set index."""
    rows = sorted(zip(pred["index"], pred["target"], pred["pred"]))
    return tuple(zip(*rows)) if rows else ((), (), ())


def _test(x: tuple, y: tuple) -> dict[str, Any] | None:
    """The paired test of two runs' predictions; None if they did not score the same images."""
    (index, target, pa), (index_b, target_b, pb) = x, y
    if index != index_b or target != target_b or not index:
        return None
    b, c = discordant(target, pa, pb)
    n = len(index)
    both = sum(1 for t, p in zip(target, pa) if p == t) - b  # right in both
    return {"n": n, "b": b, "c": c, "accuracy_a": (both + b) / n, "accuracy_b": (both + c) / n,
            "p": mcnemar_exact(b, c)}


def verdicts(tests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per pair of models and budget, over its seeds: budget, model_a, model_b, n, seeds, wins
    ({model: seeds where it is significantly more accurate}), p_holm (per seed, in seed order)."""
    out: dict[tuple, dict[str, Any]] = {}
    for t in tests:
        v = out.setdefault((t["budget"], t["model_a"], t["model_b"]), {
            "budget": t["budget"], "model_a": t["model_a"], "model_b": t["model_b"], "n": t["n"], "seeds": [],
            "wins": {t["model_a"]: 0, t["model_b"]: 0}, "p_holm": []})
        v["seeds"].append(t["seed"])
        v["p_holm"].append(t["p_holm"])
        if t["better"]:
            v["wins"][t["better"]] += 1
    return list(out.values())


def find(verdicts_: Sequence[dict[str, Any]], budget: float | None, x: str, y: str) -> dict[str, Any] | None:
    """The verdict of models x and y (either order) at `budget`, or None if they were not compared."""
    return next((v for v in verdicts_ if v["budget"] == budget and {v["model_a"], v["model_b"]} == {x, y}), None)


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
        scored = {m: {i: (t, p) for i, t, p in zip(*_by_index(rep["predictions"]))} for m, rep in chosen.items()}
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
