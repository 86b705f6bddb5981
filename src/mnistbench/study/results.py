"""A study's analysis: the per-model aggregates, the Pareto front, the paired tests and every other cross-run
result the report shows, computed once (`analyse`) from the rows and the finished run folders.

Each finished run folder is read once; findings, figures and the report only read the Analysis.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..record import read_config, read_metrics, read_summary, status
from . import paired, verdicts
from .formatting import budget_text
from .rows import NUMERIC, class_names, upgrade, write_results


def label(model: str, budget: float | None, unit: str | None = "s") -> str:
    """How the report names a model at a budget: 'cnn', or 'cnn @ 30 s' / 'cnn @ 5e13 FLOPs' with budgets."""
    return model if budget is None else f"{model} @ {budget_text(budget, unit)}"


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and budget, over its finished seeds: mean and sample std of every numeric column, the seed
    range of test accuracy; by budget, then most accurate first."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r.get("budget")), []).append(r)
    out = [_aggregate_model(model, budget, rs) for (model, budget), rs in groups.items()]
    return sorted(out, key=lambda a: (paired.budget_order(a["budget"]), a["test_accuracy"] is None,
                                      -(a["test_accuracy"] or 0.0)))


def _aggregate_model(model: str, budget: float | None, rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rs if r["status"] == "ok"]
    unit = next((r["budget_unit"] for r in rs if r.get("budget_unit")), None)
    a: dict[str, Any] = {"model": model, "budget": budget, "budget_unit": unit, "label": label(model, budget, unit),
                         "runs": len(rs), "ok": len(ok), "seeds": [r["seed"] for r in ok]}
    for c in NUMERIC:
        vals = [float(r[c]) for r in ok if r.get(c) is not None]
        a[c] = statistics.fmean(vals) if vals else None
        a[f"{c}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        a[f"{c}_n"] = len(vals)
    accs = [r["test_accuracy"] for r in ok if r.get("test_accuracy") is not None]
    a["test_accuracy_min"], a["test_accuracy_max"] = (min(accs), max(accs)) if accs else (None, None)
    one = ok[0] if len(ok) == 1 else {}  # one run: its Wilson interval; several: the seed range says more
    a["test_accuracy_low"], a["test_accuracy_high"] = one.get("test_accuracy_low"), one.get("test_accuracy_high")
    a["detector"] = any(r.get("map_50") is not None for r in ok)
    a["pretrained"] = any(r["pretrained"] for r in ok)
    for key in ("device", "precision", "peak_memory_kind"):
        a[key] = "/".join(sorted({str(r[key]) for r in ok if r.get(key)})) or None
    a["errors"] = [f"seed {r['seed']}: {r['error']}" for r in rs if r["status"] != "ok"]
    return a


# --- the analysis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed once from the rows and the finished run folders.

    runs: per finished row, {"row", "folder", "summary", "config", "metrics", "predictions"} (each folder
    read once); aggs: aggregate(rows), one per model and budget; dominated: verdicts.dominated(), by label
    (empty with one budget: no front);
    reps: per model, its run with the largest budget and the lowest seed; errors, errors_n, targets:
    paired.error_sets() of the representatives; mean_f1: per model, per class, over the representative's
    budget; comparisons, uncompared: paired.comparisons(); verdicts: verdicts.verdicts(comparisons);
    budgets: the budgets of the study (empty without), in budget_unit ("s" or "FLOPs"); planned: how many runs
    the study plans; missing: the planned runs without a row, each {"model", "seed", "budget", "run_dir",
    "state"}; val_spacing: per aggregate (by label), the longest training time between two validations of
    its runs, which is how precisely a time to 99 % is known.
    """

    study: Path
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    models: list[str]
    runs: list[dict[str, Any]]
    aggs: list[dict[str, Any]]
    dominated: dict[str, list[str]]
    reps: dict[str, dict[str, Any]]
    errors: dict[str, dict[int, int]]
    errors_n: int
    targets: dict[int, int]
    mean_f1: dict[str, list[float]]
    dataset: str
    classes: tuple[str, ...]
    comparisons: list[dict[str, Any]]
    uncompared: list[str]
    verdicts: list[dict[str, Any]]
    budgets: list[float]
    budget_unit: str | None
    planned: int
    missing: list[dict[str, Any]]
    val_spacing: dict[str, float]

    @property
    def front(self) -> set[str]:
        """The labels (model, or model and budget) on the Pareto front (verdicts.dominated); none with one budget."""
        return {m for m, by in self.dominated.items() if not by}

    @property
    def front_axis(self) -> str | None:
        """"budget", "seconds" or None: what the Pareto front trades accuracy against (verdicts.front_axis)."""
        return verdicts.front_axis(self.budgets)

    @property
    def finished(self) -> int:
        """How many runs finished."""
        return sum(r["status"] == "ok" for r in self.rows)


def analyse(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]], *,
            cache: paired.PredictionCache | None = None) -> Analysis:
    """Read each finished run folder once (predictions through `cache` when given) and compute every cross-run
    analysis the report needs."""
    study = Path(study)
    rows = [upgrade(r) for r in rows]  # rows of an older version lack some columns
    predictions = paired.load_predictions(study, rows, cache)
    runs = []
    for r in rows:
        if r["status"] == "ok":
            folder = study / r["run_dir"]
            runs.append({"row": r, "folder": folder, "summary": read_summary(folder), "config": read_config(folder),
                         "metrics": read_metrics(folder), "predictions": predictions[r["run_dir"]]})
    reps: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda run: (paired.budget_order(run["row"]["budget"]), -run["row"]["seed"])):
        reps[run["row"]["model"]] = run  # the last one set wins: largest budget, lowest seed
    reps = {m: reps[m] for m in dict.fromkeys(r["model"] for r in rows) if m in reps}
    aggs = aggregate(rows)
    dataset = next((rep["summary"]["dataset"] for rep in reps.values()), meta.get("dataset", "mnist"))
    classes = class_names(dataset)
    errors, n, targets = paired.error_sets(reps)
    tests, uncompared = paired.comparisons(rows, predictions)
    found = verdicts.verdicts(tests)
    budgets = sorted({float(b) for b in meta.get("budgets") or []} | {r["budget"] for r in rows if r["budget"]})
    unit = meta.get("budget_unit") or next((r["budget_unit"] for r in rows if r["budget_unit"]), None)
    planned = meta.get("planned") or []
    return Analysis(study, meta, rows, list(dict.fromkeys(r["model"] for r in rows)), runs, aggs,
                    verdicts.dominated(aggs, found, budgets), reps, errors, n, targets,
                    _mean_f1(runs, reps, len(classes)), dataset, classes, tests, uncompared, found, budgets, unit,
                    len(planned) or len(rows), missing_runs(study, planned, rows), _val_spacing(runs, aggs))


def _val_spacing(runs: Sequence[dict[str, Any]], aggs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per aggregate (by label): the longest training time between two validations (from 0 to the first, then
    between consecutive ones) of any of its runs."""
    gaps: dict[tuple[str, float | None], float] = {}
    for run in runs:
        times = sorted(r["train_seconds"] for r in run["metrics"]
                       if r.get("kind") == "val" and r.get("train_seconds") is not None)
        if times:
            key = (run["row"]["model"], run["row"]["budget"])
            gaps[key] = max(gaps.get(key, 0.0), max(b - a for a, b in zip([0.0, *times], times)))
    return {a["label"]: gaps[(a["model"], a["budget"])] for a in aggs if (a["model"], a["budget"]) in gaps}


def missing_runs(study: Path, planned: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[dict]:
    """The planned runs that have no row: 'interrupted' (a checkpoint to resume from) or 'not started'."""
    have = {r["run_dir"] for r in rows}
    out = []
    for p in planned:
        if p["run_dir"] not in have:
            state = status(Path(study) / p["run_dir"])
            out.append({**p, "state": {"interrupted": "interrupted", "finished": "finished, not yet recorded"}
                        .get(state, "not started")})
    return out


def _mean_f1(runs: Sequence[dict[str, Any]], reps: dict[str, dict[str, Any]], n_classes: int
             ) -> dict[str, list[float]]:
    """Per model, each class's F1 averaged over the seeds of its representative's budget."""
    per_model: dict[str, list[list[float]]] = {}
    for run in runs:
        model, per = run["row"]["model"], run["summary"].get("per_class")
        if per and len(per) == n_classes and run["row"]["budget"] == reps[model]["row"]["budget"]:
            per_model.setdefault(model, []).append([p["f1"] for p in per])
    return {m: [statistics.fmean(c) for c in zip(*v)] for m, v in per_model.items()}


def save_results(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]], *,
                 cache: paired.PredictionCache | None = None) -> None:
    """Write results.json and results.csv: the rows, their aggregates, the paired tests and their verdicts.
    Predictions come through `cache` when given: a study saving after every run reads each file once."""
    rows = [upgrade(r) for r in rows]
    tests, _ = paired.comparisons(rows, paired.load_predictions(Path(study), rows, cache))
    write_results(study, meta, rows, models=aggregate(rows), comparisons=tests, verdicts=verdicts.verdicts(tests))
