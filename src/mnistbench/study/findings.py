"""The report's computed sentences: what the study shows (`findings`), read from the Analysis.

A difference in accuracy is called a difference only when the paired tests say so (exact McNemar on the same
test images, Holm-corrected over the study, alpha 0.05; with 3 seeds or more, also a test across seeds): the
wording is in claims.py. Nothing here is fixed text about a particular model.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from . import claims
from .formatting import budget_text, interval, names, pct, ratio, si
from .paired import error_overlaps
from .results import Analysis
from .rows import class_names
from .verdicts import SEED_TEST_MIN, find


def findings(an: Analysis) -> list[str]:
    """Sentences computed from the analysis, most important first."""
    groups = _groups(an)
    out = [s for budget, done in groups for s in _accuracy(an, budget, done)]
    if not groups:
        out = ["No model finished, so there is nothing to compare yet; the failures are listed below."]
    else:
        budget, done = groups[-1]
        out.append(claims.time_to_99(an, done, _with(an, budget)))
    done = [a for a in an.aggs if a["test_accuracy"] is not None]
    out += claims.budget_gains(an) + claims.pareto(an) + _size(done) + _inference(done)
    out += _class_findings(an.reps) + _disagreement_findings(an) + _detector_findings(an)
    out += [f"**{r['model']}** (seed {r['seed']}{_at(an, r.get('budget'))}) failed: {r['error']}"
            for r in an.rows if r["status"] != "ok"]
    return out


def _at(an: Analysis, budget: float | None) -> str:
    return f", {budget_text(budget, an.budget_unit)}" if budget is not None else ""


def _with(an: Analysis, budget: float | None) -> str:
    """'With 60 s of training, ' (or '… 5e13 FLOPs …'): the prefix of a budget's sentences."""
    return f"With {budget_text(budget, an.budget_unit)} of training, " if budget is not None else ""


def _sentence(at: str, text: str) -> str:
    """`text` after the budget prefix `at`, or capitalised when there is none."""
    return at + text if at else text[:1].upper() + text[1:]


def _groups(an: Analysis) -> list[tuple[float | None, list[dict[str, Any]]]]:
    """The finished aggregates per budget (most accurate first), budgets in order."""
    groups: dict[float | None, list[dict[str, Any]]] = {}
    for a in an.aggs:
        if a["test_accuracy"] is not None:
            groups.setdefault(a["budget"], []).append(a)
    return list(groups.items())


# --- accuracy, with its paired tests ---------------------------------------------------------------
def accuracy_text(a: dict[str, Any]) -> str:
    """'98.20 % (95 % CI 97.91–98.47 %)' for one run; '98.20 % (mean of 3 seeds, range 98.1–98.3 %)' else."""
    if a["ok"] > 1 and a["test_accuracy_min"] is not None:
        return (f"{pct(a['test_accuracy'])} (mean of {a['ok']} seeds, range "
                f"{interval(a['test_accuracy_min'], a['test_accuracy_max'])} %)")
    if a.get("test_accuracy_low") is not None:
        return f"{pct(a['test_accuracy'])} (95 % CI {interval(a['test_accuracy_low'], a['test_accuracy_high'])} %)"
    return pct(a["test_accuracy"])


def _accuracy(an: Analysis, budget: float | None, done: list[dict[str, Any]]) -> list[str]:
    """The most accurate model of a budget, and how it and the others compare in the paired tests."""
    best, at = done[0], _with(an, budget)
    head = f"{at}**{best['model']}** has the highest test accuracy: {accuracy_text(best)}"
    if len(done) == 1:
        return [head + "."]
    pairs = [(a, find(an.verdicts, budget, best["model"], a["model"])) for a in done[1:]]
    tested = [(a, v) for a, v in pairs if v]
    if not tested:
        return [head + "; the runs have no per-image predictions on common test images, so the differences are "
                "not tested and this is not a ranking."]
    n_tests = len(an.comparisons)
    text = (head + f". Paired exact McNemar tests on the same test images (p Holm-corrected over the study's "
            f"{n_tests} test{'s' * (n_tests > 1)}{_across_note(an)}): "
            + "; ".join(claims.relation(v, an.budget_unit) for _, v in tested))
    untested = [a["model"] for a, v in pairs if not v]
    out = [text + (f"; {names(untested)} not tested (no common test images)" if untested else "") + "."]
    others = [find(an.verdicts, budget, a["model"], b["model"]) for i, a in enumerate(done[1:], 1)
              for b in done[i + 1:]]
    others = [v for v in others if v]
    if others:
        told = [claims.relation(v, an.budget_unit) for v in others if v["wins_a"] or v["wins_b"]]
        same = [f"{v['model_a']} and {v['model_b']}" for v in others if not (v["wins_a"] or v["wins_b"])]
        parts = told + (["no significant difference between " + ", nor between ".join(same)] if same else [])
        out.append(_sentence(at, "among the others: " + "; ".join(parts) + "."))
    return out


def _across_note(an: Analysis) -> str:
    """How the sentences read across seeds: with fewer than SEED_TEST_MIN seeds they claim these runs only."""
    seeds = max((len(v["seeds"]) for v in an.verdicts), default=0)
    return "" if seeds >= SEED_TEST_MIN else "; they cover these trained networks, not another training run"


# --- sizes and speeds ------------------------------------------------------------------------------
def _size(done: Sequence[dict[str, Any]]) -> list[str]:
    sized = list({a["model"]: a for a in done if a["params"]}.values())
    if len(sized) < 2:
        return []
    big, small = max(sized, key=lambda a: a["params"]), min(sized, key=lambda a: a["params"])
    if big["params"] == small["params"]:
        return []

    def flops(a):
        return f" and {si(a['flops_per_image'])}FLOPs per image" if a["flops_per_image"] else ""
    return [f"Largest: {big['model']} with {si(big['params'])} parameters{flops(big)}; smallest: "
            f"{small['model']} with {si(small['params'])}{flops(small)}, "
            f"{ratio(big['params'] / small['params'])}× fewer parameters."]


def _inference(done: Sequence[dict[str, Any]]) -> list[str]:
    """Inference speed of the classifiers, in images (the detector's, in scenes, is its own finding)."""
    lat = [a for a in done if a["inference_ms_per_image"] and not a["detector"]]
    thr = [a for a in done if a["inference_images_per_second"] and not a["detector"]]
    if len(lat) < 2 or len(thr) < 2:
        return []
    fast = min(lat, key=lambda a: a["inference_ms_per_image"])
    bulk = max(thr, key=lambda a: a["inference_images_per_second"])
    return [f"Fastest single-image inference: {fast['label']} ({fast['inference_ms_per_image']:.3g} ms per "
            f"image); highest large-batch throughput: {bulk['label']} "
            f"({bulk['inference_images_per_second']:,.0f} images/s)."]


def _detector_findings(an: Analysis) -> list[str]:
    out = []
    for a in an.aggs:
        if a["map_50"] is None or an.reps.get(a["model"], {}).get("row", {}).get("budget") != a["budget"]:
            continue
        rep = an.reps[a["model"]]["summary"]
        extra = f", mAP@[.5:.95] {rep['map']:.3f}" if rep.get("map") is not None else ""
        text = f"**{a['model']}** finds digits in scenes with mAP@0.5 {a['map_50']:.3f}{extra}"
        if a["inference_ms_per_scene"]:
            text += f"; {a['inference_ms_per_scene']:.3g} ms per scene at batch 1"
        if a["inference_scenes_per_second"]:
            text += f", {a['inference_scenes_per_second']:,.0f} scenes/s in batches"
        none = rep.get("no_detection_count")
        if a["test_accuracy"] is not None:
            text += (f". Classifying each test digit by its best box, it is scored on the classifiers' test images "
                     f"(paired tests above): {pct(a['test_accuracy'])}"
                     + (f", with {none} digits where it found nothing (counted wrong)" if none else ""))
        out.append(text + ".")
    return out


# --- where the classifiers go wrong ----------------------------------------------------------------
def _class_findings(reps: dict[str, dict[str, Any]]) -> list[str]:
    """The class with the lowest F1, per model, and whether the models agree on it."""
    worst: dict[str, list[str]] = {}
    for model, rep in reps.items():
        per = rep["summary"].get("per_class")
        if per:
            c = min(per, key=lambda p: p["f1"])
            cls = class_names(rep["summary"]["dataset"])[c["class"]]
            worst.setdefault(cls, []).append(f"{model} (F1 {c['f1']:.3f})")
    if not worst:
        return []
    n = sum(map(len, worst.values()))
    cls, models = max(worst.items(), key=lambda kv: len(kv[1]))
    if n > 1 and len(models) == 1:
        return ["The hardest class (lowest per-class F1) differs by model: "
                + "; ".join(f"{c} for {names(ms)}" for c, ms in worst.items()) + "."]
    who = f"all {n} models" if len(models) == n else f"{len(models)} of {n} models"
    text = f"Class {cls} is the hardest (lowest per-class F1) for {who}: {names(models)}"
    others = [f"{c} for {names(ms)}" for c, ms in worst.items() if c != cls]
    return [text + (f"; the hardest class is {'; '.join(others)}" if others else "") + "."]


def _disagreement_findings(an: Analysis) -> list[str]:
    """The test images most models get wrong, and the pairs of models with the most and least shared errors."""
    errs, n = an.errors, an.errors_n
    if len(errs) < 2 or not n:
        return []
    models = list(errs)
    where = f"Among the first {n:,} test images" if n < max(an.reps[m]["row"]["test_images"] for m in models) \
        else f"Among the {n:,} test images"
    counts = Counter(i for e in errs.values() for i in e)
    out = []
    if counts:
        k = max(counts.values())
        hardest = sorted(i for i, c in counts.items() if c == k)
        examples = ", ".join(f"#{i}" for i in hardest[:5])
        who = "both" if k == len(models) == 2 else f"all {k}" if k == len(models) else f"{k} of {len(models)}"
        out.append(f"{where}, {len(hardest)} are misclassified by {who} models (e.g. {examples}); "
                   f"{sum(1 for c in counts.values() if c == 1)} are missed by only one model.")
    return out + [_overlap(error_overlaps(errs))]


def _overlap(pairs: list[tuple[float, str, str, int, int]]) -> str:
    """Which two models share the most errors (Jaccard), and which two the fewest."""
    j, a, b, shared, same = pairs[0]
    text = (f"{a} and {b} make the most similar mistakes: {shared} shared errors, {100 * j:.0f} % of the "
            f"images either gets wrong ({same} of them with the same wrong label)")
    if len(pairs) > 1:
        j2, c, d, shared2, _ = pairs[-1]
        text += f"; {c} and {d} overlap least ({shared2} shared, {100 * j2:.0f} %)"
    return text + "."
