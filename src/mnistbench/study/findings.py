"""The report's computed sentences: what the study is (`about`) and what it shows (`findings`)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from .formatting import names, pct, ratio, secs, si
from .results import Analysis, class_names, error_overlaps


# --- about the study -------------------------------------------------------------------------------
def about(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Sentences that label the study: preset, seeds, slices, pretrained weights, device."""
    ok = [r for r in rows if r["status"] == "ok"]
    preset = meta.get("preset") or "unknown"
    out = [f"Preset **{preset}**" + (f": {meta['preset_about']}." if meta.get("preset_about") else ".")]
    seeds = sorted({r["seed"] for r in rows})
    out.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} per model ({', '.join(map(str, seeds))}): "
               "every model gets the same data split and seeds"
               + ("; tables show mean ± sample standard deviation over seeds." if len(seeds) > 1 else "."))
    out += _slices(ok)
    pre = sorted({r["model"] for r in ok if r["pretrained"]})
    out.append(f"Started from pretrained weights: {names(pre)}." if pre else
               "No model started from pretrained weights.")
    devices = sorted({r["device"] for r in ok if r["device"]})
    if devices:
        out.append(f"Device: {', '.join(devices)}.")
    if meta.get("command"):
        out.append(f"Reproduce (finished runs are skipped): `{meta['command']}`")
    return out


def _slices(ok: Sequence[dict[str, Any]]) -> list[str]:
    """Which models train or test on a slice of their split."""
    out = []
    sliced = sorted({(r["model"], r["train_images"]) for r in ok if r["train_limit"]})
    full = sorted({r["model"] for r in ok if not r["train_limit"]})
    if sliced:
        text = "Training data is sliced (train_limit): " + ", ".join(f"{m} {n:,} images" for m, n in sliced)
        verb = "trains" if len(full) == 1 else "train"
        out.append(text + (f"; {names(full)} {verb} on the full training split." if full else "."))
    test_sliced = sorted({(r["model"], r["test_images"]) for r in ok if r["test_limit"]})
    if test_sliced:
        out.append("The test set is sliced (test_limit, the first images): "
                   + ", ".join(f"{m} {n:,} images" for m, n in test_sliced) + "; compare those models' numbers "
                   "with care.")
    elif ok:
        out.append(f"Every model is tested on all {max(r['test_images'] or 0 for r in ok):,} test images.")
    return out


# --- what it shows ---------------------------------------------------------------------------------
def findings(an: Analysis) -> list[str]:
    """Sentences computed from the analysis (aggregates most accurate first, each model's representative
    run, error sets): nothing here is fixed text about a particular model."""
    done = [a for a in an.aggs if a["test_accuracy"] is not None]
    if done:
        out = [_accuracy(done), _time_to_99(done)]
    else:
        out = ["No model finished, so there is nothing to compare yet; the failures are listed below."]
    out += _training_cost(done, an.dominated) + _size(done) + _inference(done)
    out += _class_findings(an.reps) + _disagreement_findings(an) + _detector_findings(an.aggs, an.reps)
    out += [f"**{r['model']}** (seed {r['seed']}) failed: {r['error']}" for r in an.rows if r["status"] != "ok"]
    return out


def _accuracy(done: Sequence[dict[str, Any]]) -> str:
    several = any(a["ok"] > 1 for a in done)
    best = done[0]
    text = (f"**{best['model']}** is the most accurate: {pct(best['test_accuracy'])} test accuracy"
            + (" (mean over seeds)" if several else ""))
    if len(done) > 1:
        second = done[1]
        gap = 100 * (best["test_accuracy"] - second["test_accuracy"])
        text += f", {gap:.2f} points ahead of {second['model']} ({pct(second['test_accuracy'])})"
        stds = (best["test_accuracy_std"] or 0.0) + (second["test_accuracy_std"] or 0.0)
        if several and stds and gap / 100 <= stds:
            text += ", a gap within their seed-to-seed spread"
    if len(done) > 2:
        worst = done[-1]
        text += f"; {worst['model']} is the least accurate ({pct(worst['test_accuracy'])})"
    return text + "."


def _time_to_99(done: Sequence[dict[str, Any]]) -> str:
    reached = sorted((a for a in done if a["time_to_99"] is not None), key=lambda a: a["time_to_99"])
    if not reached:
        best = done[0]
        return (f"No model reached 99 % validation accuracy within this preset's schedule; the best test "
                f"accuracy is {pct(best['test_accuracy'])} ({best['model']}).")
    a = reached[0]
    text = (f"**{a['model']}** reached 99 % validation accuracy fastest: after {secs(a['time_to_99'])} s of "
            f"training (checked at epoch ends)")
    if len(reached) > 1:
        text += "; then " + ", ".join(f"{b['model']} ({secs(b['time_to_99'])} s)" for b in reached[1:])
    never = [a["model"] for a in done if a["time_to_99"] is None]
    if never:
        text += f"; {names(never)} never reached it in this preset's schedule"
    return text + "."


def _training_cost(done: Sequence[dict[str, Any]], dominated: dict[str, list[str]]) -> list[str]:
    """Accuracy per training second, and the Pareto front of accuracy against training time."""
    timed = [a for a in done if a["train_seconds"]]
    if len(timed) < 2:
        return []
    rate = max(timed, key=lambda a: a["test_accuracy"] / a["train_seconds"])
    slow = max(timed, key=lambda a: a["train_seconds"])
    longer = ratio(slow["train_seconds"] / rate["train_seconds"])
    out = [f"Per second of training, **{rate['model']}** gives the most accuracy "
           f"({pct(rate['test_accuracy'])} in {secs(rate['train_seconds'])} s); {slow['model']} trained "
           f"longest ({secs(slow['train_seconds'])} s, {longer}× as long) for {pct(slow['test_accuracy'])}."]
    seconds = {a["model"]: a["train_seconds"] for a in timed}
    front = sorted((m for m, by in dominated.items() if not by), key=seconds.get)
    text = f"On the Pareto front of accuracy against training time: {names(front)}"
    losers = [(m, by) for m, by in dominated.items() if by]
    if losers:
        text += "; " + "; ".join(f"{m} is both slower and less accurate than {names(by)}" for m, by in losers)
    return out + [text + "."]


def _size(done: Sequence[dict[str, Any]]) -> list[str]:
    sized = [a for a in done if a["params"]]
    if len(sized) < 2:
        return []
    big, small = max(sized, key=lambda a: a["params"]), min(sized, key=lambda a: a["params"])

    def flops(a):
        return f" and {si(a['flops_per_image'])}FLOPs per image" if a["flops_per_image"] else ""
    return [f"Largest: {big['model']} with {si(big['params'])} parameters{flops(big)}; smallest: "
            f"{small['model']} with {si(small['params'])}{flops(small)}, "
            f"{ratio(big['params'] / small['params'])}× fewer parameters."]


def _inference(done: Sequence[dict[str, Any]]) -> list[str]:
    lat = [a for a in done if a["inference_ms_per_image"]]
    thr = [a for a in done if a["inference_images_per_second"]]
    if len(lat) < 2 or len(thr) < 2:
        return []
    fast = min(lat, key=lambda a: a["inference_ms_per_image"])
    bulk = max(thr, key=lambda a: a["inference_images_per_second"])
    return [f"Fastest single-image inference: {fast['model']} ({fast['inference_ms_per_image']:.3g} ms per "
            f"image); highest large-batch throughput: {bulk['model']} "
            f"({bulk['inference_images_per_second']:,.0f} images/s)."]


def _detector_findings(aggs: Sequence[dict[str, Any]], reps: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for a in aggs:
        if a["map_50"] is not None:
            rep = reps.get(a["model"], {}).get("summary", {})
            extra = f", mAP@[.5:.95] {rep['map']:.3f}" if rep.get("map") is not None else ""
            none = rep.get("no_detection_count")
            out.append(f"**{a['model']}** finds digits in scenes with mAP@0.5 {a['map_50']:.3f}{extra}"
                       + (f"; {none} test images got no detection at all." if none is not None else "."))
    return out


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


# --- where the classifiers go wrong ----------------------------------------------------------------
def _disagreement_findings(an: Analysis) -> list[str]:
    """The test images most models get wrong, and the pairs of models with the most and least shared errors."""
    errs, n = an.errors, an.errors_n
    if len(errs) < 2 or not n:
        return []
    models = list(errs)
    where = f"Among the first {n} test images" if n < max(an.reps[m]["row"]["test_images"] for m in models) \
        else f"Among the {n} test images"
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
