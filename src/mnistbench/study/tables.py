"""The report's tables, each (headers, rows) of strings from the Analysis: accuracy, paired tests, cost, runs.

Each table stays narrow enough (at most 9 columns) to read without scrolling sideways; a detector's
speeds and sizes carry their own unit (scenes) in the cell.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .claims import point_name
from .formatting import budget_text, cell, interval, short, si, value
from .paired import KINDS, budget_order
from .results import Analysis
from .rows import off_budget

Table = tuple[list[str], list[list[str]]]


def _shown(an: Analysis) -> list[dict[str, Any]]:
    return [a for a in an.aggs if a["test_accuracy"] is not None or a["map_50"] is not None]


def _unit(text: str, unit: str) -> str:
    """'12.5 ms/scene', or '12.5 ms/scene (1/2 seeds)': the unit goes before a seed count."""
    value, sep, seeds = text.partition(" (")
    return text if text == "–" else f"{value} {unit}{sep}{seeds}"


# --- accuracy --------------------------------------------------------------------------------------
def accuracy_table(an: Analysis) -> Table:
    """Per model (and budget): finished runs, test accuracy with its interval, macro-F1, time to 99 %, mAP."""
    aggs = _shown(an)
    several = any(a["ok"] > 1 for a in aggs)
    detector = any(a["map_50"] is not None for a in aggs)
    headers = (["model"] + ([_budget_header(an)] if an.budgets else []) + ["runs ok", "test accuracy (%)",
               "seed range (%)" if several else "95 % CI (%)", "macro-F1", "time to 99 % val (s)"]
               + (["mAP@0.5 (scenes)"] if detector else []))
    rows = []
    for a in aggs:
        rows.append([a["model"]] + ([_budget(a["budget"])] if an.budgets else [])
                    + [f"{a['ok']}/{a['runs']}", cell(a, "test_accuracy"), _spread(a), cell(a, "test_macro_f1"),
                       _time_to_99(a)] + ([cell(a, "map_50")] if detector else []))
    return headers, rows


def _budget_header(an: Analysis) -> str:
    return "budget (s)" if an.budget_unit == "s" else "budget (training FLOPs)"


def _budget(b: float | None) -> str:
    return "–" if b is None else short(b)


def _spread(a: dict[str, Any]) -> str:
    """The seed range of test accuracy with several seeds; the Wilson 95 % interval of a single run."""
    if a["ok"] > 1 and a["test_accuracy_min"] is not None:
        return interval(a["test_accuracy_min"], a["test_accuracy_max"])
    if a.get("test_accuracy_low") is not None:
        return interval(a["test_accuracy_low"], a["test_accuracy_high"]) + (" (95 % CI)" if a["runs"] > 1 else "")
    return "–"


def _time_to_99(a: dict[str, Any]) -> str:
    if not a["ok"]:
        return "–"
    if not a["time_to_99_n"]:
        return "not reached"
    text = cell({**a, "time_to_99_n": a["ok"]}, "time_to_99")
    return text + (f" ({a['time_to_99_n']}/{a['ok']} seeds)" if a["ok"] > 1 else "")


# --- paired tests ----------------------------------------------------------------------------------
def comparison_tables(an: Analysis) -> list[tuple[str | None, Table]]:
    """The paired tests as (heading, table): one table per budget of models at that budget (one table, no
    heading, for a study without budgets), then the budget gains and the pairs across budgets."""
    by: dict[tuple[int, tuple], list[dict[str, Any]]] = {}
    for t in an.comparisons:
        key = (0, budget_order(t["budget"])) if t["kind"] == "models" else (KINDS.index(t["kind"]), ())
        by.setdefault(key, []).append(t)
    headers = ["A vs B", "seed", "test images", "A right, B wrong (b)", "A wrong, B right (c)", "p", "Holm p",
               "verdict"]
    out = []
    for key in sorted(by):
        tests = by[key]
        heading = (None if tests[0]["budget"] is None else f"{budget_text(tests[0]['budget'], an.budget_unit)} "
                   "of training") if tests[0]["kind"] == "models" else HEADINGS[tests[0]["kind"]]
        out.append((heading, (headers, [_comparison_row(t, an.budget_unit) for t in tests])))
    return out


HEADINGS = {"budgets": "Budget gains: each model at the next budget", "across": "Across budgets: two models at "
            "different budgets (the Pareto front)"}


def _comparison_row(t: dict[str, Any], unit: str | None) -> list[str]:
    a = point_name(t["model_a"], t["budget_a"], unit, t["kind"])
    b = point_name(t["model_b"], t["budget_b"], unit, t["kind"])
    verdict = f"{a if t['better'] == 'a' else b} more accurate" if t["better"] else "no significant difference"
    return [f"{a} vs {b}", str(t["seed"]), f"{t['n']:,}", str(t["b"]), str(t["c"]), _p(t["p"]), _p(t["p_holm"]),
            verdict]


def verdict_table(an: Analysis) -> Table:
    """Per pair of points, over its seeds: the seeds each side wins, the test across seeds and the verdict."""
    across = any(v["seed_test_p"] is not None for v in an.verdicts)
    headers = (["A vs B", "seeds: A more accurate / B / neither"]
               + (["mean A − B (points)", "across seeds: t-test p (Holm)"] if across else []) + ["verdict"])
    rows = []
    for v in an.verdicts:
        a, b = (point_name(v[f"model_{s}"], v[f"budget_{s}"], an.budget_unit) for s in "ab")
        mean = 100 * sum(v["differences"]) / len(v["differences"])
        seed_p = "–" if v["seed_test_p"] is None else f"{_p(v['seed_test_p'])} ({_p(v['seed_test_p_holm'])})"
        rows.append([f"{a} vs {b}", f"{v['wins_a']} / {v['wins_b']} / {v['ties']}"]
                    + ([f"{mean:+.2f}", seed_p] if across else [])
                    + [{"a": f"{a} more accurate", "b": f"{b} more accurate", "mixed": "mixed: no winner",
                        "none": "no winner"}[v["verdict"]]])
    return headers, rows


def _p(p: float) -> str:
    return "< 1e-6" if p < 1e-6 else f"{p:.2g}"


# --- cost ------------------------------------------------------------------------------------------
def cost_table(an: Analysis) -> Table:
    """Per model (and budget): what its accuracy cost, each speed in the model's own unit."""
    headers = ["model", "training (s)", "precision", "images seen (training FLOPs)", "training speed",
               "inference latency (batch 1)", "inference throughput (large batch)", "params / FLOPs per sample",
               "peak memory (MB)"]
    rows = []
    for a in _shown(an):
        unit = "scene" if a["detector"] else "image"
        seconds_budget = a["budget"] is not None and a["budget_unit"] == "s"
        trained = cell(a, "train_seconds") + (f" of {a['budget']:g}" if seconds_budget else "")
        per_sample = a["flops_per_sample"] or a["flops_per_image"]
        flops = f"{si(per_sample)} per {unit}" if per_sample else "–"
        seen = _unit(cell(a, "images_seen", False), unit + "s") + (f" ({_budget(a['train_flops'])})"
                                                                   if a["train_flops"] else "")
        rows.append([a["label"] + (" ★" if a["label"] in an.front else ""), trained, a["precision"] or "–",
                     seen,
                     _unit(cell(a, "train_images_per_second", False), f"{unit}s/s"),
                     _unit(cell(a, f"inference_ms_per_{unit}", False), f"ms/{unit}"),
                     _unit(cell(a, f"inference_{unit}s_per_second", False), f"{unit}s/s"),
                     f"{si(a['params']) if a['params'] else '–'} / {flops}", cell(a, "peak_memory_mb", False)])
    return headers, rows


def memory_kinds(an: Analysis) -> str:
    """What the peak memory column measures, from the runs' own labels."""
    kinds = sorted({r["peak_memory_kind"] for r in an.rows if r.get("peak_memory_kind")})
    return " / ".join(kinds) if kinds else "as the run recorded it"


# --- settings and runs -----------------------------------------------------------------------------
def settings_table(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> Table:
    """Per model: its overrides, and the schedule and data sizes of its first finished run."""
    plan = meta.get("plan", {})
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = next((x for x in rows if x["model"] == model and x["status"] == "ok"),
                  next(x for x in rows if x["model"] == model))
        over = plan.get(model, {})
        out.append([model, ", ".join(f"{k}={v}" for k, v in over.items()) or "(none)",
                    _dash(ok["epochs"], "{:g}".format), _dash(ok["train_images"], "{:,}".format),
                    _dash(ok["test_images"], "{:,}".format),
                    "–" if ok["status"] != "ok" else ("yes" if ok["pretrained"] else "no")])
    return ["model", "preset and --set overrides", "epochs", "training images", "test images", "pretrained"], out


def runs_table(an: Analysis) -> Table:
    """Every planned run: finished, failed, interrupted or not started; its accuracy, time and precision."""
    summaries = {run["row"]["run_dir"]: run["summary"] for run in an.runs}
    budget = bool(an.budgets)
    headers = (["model", "seed"] + ([_budget_header(an)] if budget else [])
               + ["status", "test accuracy (%) [95 % CI]", "training (s)", "precision", "run folder", "error"])
    out = []
    for r in an.rows:
        acc = value(r, "test_accuracy") + (f" [{interval(r['test_accuracy_low'], r['test_accuracy_high'])}]"
                                           if r.get("test_accuracy_low") is not None else "")
        out.append([r["model"], str(r["seed"])] + ([_budget(r.get("budget"))] if budget else [])
                   + [r["status"], acc, _realized(r), _precision(r, summaries.get(r["run_dir"], {})),
                      r["run_dir"], r["error"] or ""])
    for m in an.missing:
        out.append([m["model"], str(m["seed"])] + ([_budget(m.get("budget"))] if budget else [])
                   + [m["state"], "–", "–", "–", m["run_dir"], ""])
    return headers, out


def _realized(row: dict[str, Any]) -> str:
    """The training seconds of a run; with a budget, how far from it, flagged when outside the tolerance."""
    text = value(row, "train_seconds")
    err = row.get("budget_error")
    if err is None:
        return text
    return text + f" ({100 * err:+.1f} %" + (": **outside the budget's tolerance**)" if off_budget(row) else ")")


def _precision(row: dict[str, Any], summary: dict[str, Any]) -> str:
    """'bf16', with the step times when precision=auto measured both ('bf16 (fp32 15.1, bf16 12.0 ms/step)')."""
    prec = row.get("precision") or summary.get("precision") or "–"
    timed = summary.get("precision_step_ms")
    if isinstance(timed, dict) and timed:
        prec += " (" + ", ".join(f"{k} {v:.3g}" for k, v in sorted(timed.items()) if v) + " ms/step)"
    return prec


def _dash(v: Any, fmt) -> str:
    return "–" if v is None else fmt(v)
