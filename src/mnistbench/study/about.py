"""What a study is, in sentences: preset, seeds, budgets and device, slices, weights, precision, what is missing."""
from __future__ import annotations

import math
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
    """Which numeric precision each model trained in, and why: set, the device's rule, or what precision=auto
    measured (both step times, against the rule that keeps bf16 only under BF16_MARGIN of fp32's step)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in an.runs:
        runs.setdefault(run["row"]["model"], []).append(run)
    said: dict[str, list[str]] = {}
    for model, mine in runs.items():
        clause = _why_precision(mine)
        if clause:
            said.setdefault(clause, []).append(model)
    if not said:
        return []
    return ["Training precision: " + "; ".join(c.replace("{models}", names(ms)) for c, ms in said.items()) + "."]


REASONS = {"set": "set explicitly", "cuda": "precision=auto on CUDA: bf16 autocast",
           "mps": "precision=auto on Apple MPS: fp32", "no native bf16": "precision=auto: this CPU has no native "
           "bf16, and emulated bf16 is several times slower", "deterministic": "deterministic=true: fp32, exact and "
           "never timed"}


def _why_precision(runs: Sequence[dict[str, Any]]) -> str | None:
    """'{models}' stands for the models the clause covers: 'fp32 for {models} (set explicitly)', or what auto
    measured: 'fp32 for {models} (precision=auto kept fp32: bf16's step was not under 85 % of fp32's …)'."""
    from ..calibrate import BF16_MARGIN

    precs = sorted({p for r in runs if (p := r["row"].get("precision") or r["summary"].get("precision"))})
    if not precs:
        return None
    prec = "/".join(precs)
    sources = {r["summary"].get("precision_source") or "" for r in runs}
    timed = next((t for r in runs if isinstance(t := r["summary"].get("precision_step_ms"), dict) and t), None)
    if timed and timed.get("fp32") and sources <= {"measured", "cached", ""}:
        bf16, fp32 = timed.get("bf16"), timed["fp32"]
        under = bf16 is not None and math.isfinite(bf16) and bf16 < BF16_MARGIN * fp32
        steps = (f"({bf16:.4g} against {fp32:.4g} ms)" if bf16 is not None and math.isfinite(bf16)
                 else f"(bf16 could not be timed; fp32 {fp32:.4g} ms)")
        rule = (f"its step was under {100 * BF16_MARGIN:.0f} % of fp32's" if under else
                f"bf16's step was not under {100 * BF16_MARGIN:.0f} % of fp32's")
        when = {frozenset({"cached"}): "; measured earlier on this machine and cached",
                frozenset({"measured", "cached"}): "; measured once on this machine, reused by its other runs"
                }.get(frozenset(sources - {""}), "")
        return f"{prec} for {{models}} (precision=auto kept {prec}: {rule} {steps}{when})"
    reasons = sorted({REASONS[s] for s in sources if s in REASONS})
    return f"{prec} for {{models}}" + (f" ({'; '.join(reasons)})" if reasons else "")


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
