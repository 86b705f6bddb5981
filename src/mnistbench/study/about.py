"""What a study is, in sentences: preset, seeds, budgets and device, slices, weights, precision, what is missing."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .formatting import budget_text, names
from .results import Analysis


def about(an: Analysis) -> list[str]:
    """Sentences that label the study: preset, seeds, budget and device, slices, pretrained weights, precision
    (the command that reproduces it is the report's own line)."""
    meta, rows = an.meta, an.rows
    ok = [r for r in rows if r["status"] == "ok"]
    preset = meta.get("preset") or "unknown"
    out = [f"Preset **{preset}**" + (f": {meta['preset_about']}." if meta.get("preset_about") else ".")]
    seeds = sorted({r["seed"] for r in rows} | set(meta.get("seeds") or []))
    out.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} per model ({', '.join(map(str, seeds))}): "
               "every model gets the same data split and seeds"
               + ("; tables show mean ± sample standard deviation over seeds." if len(seeds) > 1 else "."))
    devices = names(sorted({r["device"] for r in ok if r["device"]})) or "an unknown device"
    if an.budgets:
        out.append(f"Each model had {names([budget_text(b, an.budget_unit) for b in an.budgets])} of training"
                   + (" (one set of runs per budget)" if len(an.budgets) > 1 else "") + f" on {devices}: "
                   + ("a time budget, so models differ in how many training images they see (the cost table), not "
                      "in the time they get." if an.budget_unit == "s" else
                      "a budget in training FLOPs (3 × forward FLOPs per sample × samples seen, the same on every "
                      "machine), so models differ in how many images they see and in how long they train."))
    elif ok:
        out.append(f"Device: {devices}.")
    out += _code(an)
    out += _slices(ok)
    pre = sorted({r["model"] for r in ok if r["pretrained"]})
    out.append(f"Started from pretrained weights: {names(pre)}." if pre else
               "No model started from pretrained weights.")
    return out + _precision(an)


def _code(an: Analysis) -> list[str]:
    """Which code made the runs: the study's own, and every run kept from other code (--reuse-finished)."""
    code = an.meta.get("code") or {}
    if not code:
        return []
    commit = code.get("git_commit")
    text = f"Made by mnistbench {code.get('mnistbench_version')}" + (f" at commit {commit[:10]}" if commit else "")
    kept = an.meta.get("reused") or []
    if kept:
        text += ("; runs kept from other code (--reuse-finished): "
                 + ", ".join(f"{k['run_dir']} (mnistbench {k.get('mnistbench_version')}, "
                             f"commit {(k.get('git_commit') or 'unknown')[:10]})" for k in kept))
    return [text + "."]


def _slices(ok: Sequence[dict[str, Any]]) -> list[str]:
    """Which models train or test on a slice of their split."""
    out = []
    sliced = sorted({(r["model"], r["train_images"]) for r in ok if r["train_limit"]})
    full = sorted({r["model"] for r in ok if not r["train_limit"]})
    if sliced:
        text = "Training data is sliced (train_limit): " + ", ".join(f"{m} {n:,} images" for m, n in sliced)
        verb = "trains" if len(full) == 1 else "train"
        out.append(text + (f"; {names(full)} {verb} on the full training split." if full else "."))
    sizes = sorted({r["test_images"] for r in ok if r["test_images"]})
    if any(r["test_limit"] for r in ok):
        out.append("The test set is sliced (test_limit): a fixed random sample of "
                   + " / ".join(f"{n:,}" for n in sizes) + " test images, the same for every run with that size, "
                   "so accuracy intervals are wider than on the full test set.")
    elif ok:
        out.append(f"Every model is tested on all {max(sizes or [0]):,} test images.")
    return out


def _precision(an: Analysis) -> list[str]:
    """Which numeric precision each model trained in, and whether `auto` chose it by timing both."""
    by: dict[str, list[str]] = {}
    timed = False
    for run in an.runs:
        prec = run["row"].get("precision") or run["summary"].get("precision")
        if prec and run["row"]["model"] not in by.get(prec, []):
            by.setdefault(prec, []).append(run["row"]["model"])
        timed = timed or bool(run["summary"].get("precision_step_ms"))
    if not by:
        return []
    text = "Training precision: " + "; ".join(f"{p} for {names(ms)}" for p, ms in sorted(by.items()))
    if timed:
        text += " (precision=auto timed fp32 and bf16 steps on this device and kept the faster; each run's "\
                "times are in the table of all runs)"
    return [text + "."]


def partial(an: Analysis) -> str | None:
    """For a study with planned runs that have no result: how many finished, which are missing and why."""
    if not an.missing:
        return None
    gone = [f"{m['model']} seed {m['seed']}"
            + (f", {budget_text(m['budget'], an.budget_unit)}" if m.get("budget") is not None else "")
            + f" ({m['state']})"
            for m in an.missing]
    text = (f"**This study is partial**: {progress(an)}; no result yet for {', '.join(gone)}. Every number below "
            "covers the finished runs only.")
    if an.meta.get("command"):
        text += " Running the command below again continues it (finished runs are skipped, an interrupted one " \
                "resumes from its checkpoint)."
    return text


def progress(an: Analysis) -> str:
    """'k of N planned runs finished' (N from the study's plan; the rows' count for an older study)."""
    return f"{an.finished} of {an.planned} planned runs finished"
