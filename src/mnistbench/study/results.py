"""A study's results: one row per run, results.csv/json, and the Analysis every report part reads.

Each finished run folder is read once (`analyse`); aggregates, the Pareto front, error sets and mean
per-class F1 are computed once there, and findings, figures and the report only read them.
"""
from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import read_json, write_bytes, write_json
from ..metrics import wilson_interval
from ..record import SUMMARY, read_config, read_metrics, read_summary, status
from . import paired

RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"

# One row per run (model, budget and seed), in study order. The last five columns label slices and schedules.
# A detector's loss and speed have their own columns (scenes, not 28×28 images; not a cross-entropy).
COLUMNS = ("model", "seed", "budget_s", "status", "error", "test_accuracy", "test_accuracy_low",
           "test_accuracy_high", "test_macro_f1", "test_loss", "test_detection_loss", "train_seconds", "time_to_99",
           "images_seen", "train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
           "inference_ms_per_scene", "inference_scenes_per_second", "params", "flops_per_image", "peak_memory_mb",
           "peak_memory_kind", "precision", "device", "pretrained", "map_50", "preset", "run_dir",
           "epochs", "train_images", "test_images", "train_limit", "test_limit")
NUMERIC = ("test_accuracy", "test_macro_f1", "test_loss", "test_detection_loss", "train_seconds", "time_to_99",
           "images_seen", "train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
           "inference_ms_per_scene", "inference_scenes_per_second", "params", "flops_per_image", "peak_memory_mb",
           "map_50")
SCENE_KEYS = {"test_loss": "test_detection_loss", "inference_images_per_second": "inference_scenes_per_second",
              "inference_ms_per_image": "inference_ms_per_scene"}  # a detector's summary from before its own units


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a data set; digits 0-9 for one this version does not know."""
    from ..data.datasets import DATASETS
    return DATASETS[dataset].classes if dataset in DATASETS else tuple(str(i) for i in range(10))


# --- rows ------------------------------------------------------------------------------------------
def run_row(summary: Mapping[str, Any], config: Mapping[str, Any], *, run_dir: str, preset: str,
            budget_s: float | None = None) -> dict[str, Any]:
    """The result row of a finished run from its summary and config (`run_dir` relative to the study).

    `budget_s`: the run's training budget in seconds; by default the summary's (or the config's), None
    for a run trained for a number of epochs.
    """
    s, cm, budget = dict(summary), summary.get("confusion_matrix"), summary.get("budget") or {}
    if s.get("map_50") is not None and "inference_scenes_per_second" not in s:
        s.update({new: s.pop(old, None) for old, new in SCENE_KEYS.items()})
    n = sum(map(sum, cm)) if cm else s.get("test_images")
    low, high = wilson_interval(round(s["test_accuracy"] * n), n) if n and s.get("test_accuracy") is not None \
        else (None, None)
    budget_s = budget_s if budget_s is not None else budget.get("budget_s") or config.get("budget_s") or None
    seen = s.get("images_seen", budget.get("images_seen"))
    return {
        "model": config["model"], "seed": config["seed"], "budget_s": budget_s, "status": "ok", "error": "",
        "test_accuracy": s.get("test_accuracy"), "test_accuracy_low": low, "test_accuracy_high": high,
        **{k: s.get(k) for k in ("test_macro_f1", "test_loss", "test_detection_loss", "train_seconds")},
        "time_to_99": (s.get("time_to_accuracy") or {}).get("0.99"),
        "images_seen": seen if seen is not None else _times(s.get("steps"), config.get("batch_size")),
        **{k: s.get(k) for k in ("train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
                                 "inference_ms_per_scene", "inference_scenes_per_second", "params",
                                 "flops_per_image", "peak_memory_mb", "peak_memory_kind", "precision", "device")},
        "pretrained": s.get("weights_source") is not None,
        "map_50": s.get("map_50"), "preset": preset, "run_dir": run_dir,
        "epochs": s.get("epochs_completed", config["epochs"]), "train_images": s.get("train_images"),
        "test_images": n, "train_limit": config.get("train_limit"), "test_limit": config.get("test_limit"),
    }


def _times(a: float | None, b: float | None) -> float | None:
    return a * b if a is not None and b is not None else None


def read_row(study: Path, run_dir: str, *, preset: str, budget_s: float | None = None) -> dict[str, Any]:
    """The row of a finished run, read from its folder."""
    folder = Path(study) / run_dir
    return run_row(read_summary(folder), read_config(folder), run_dir=run_dir, preset=preset, budget_s=budget_s)


def failed_row(model: str, seed: int, *, preset: str, run_dir: str, error: str,
               budget_s: float | None = None) -> dict[str, Any]:
    """The row of a run that raised: its one-line reason and no numbers."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, seed=seed, budget_s=budget_s or None, status="failed", error=error, preset=preset,
               run_dir=run_dir)
    return row


# --- results.csv / results.json --------------------------------------------------------------------
def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_results(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]],
                  comparisons: list[dict[str, Any]] | None = None) -> None:
    """Atomically rewrite results.json (study settings, rows, aggregates per model and budget, the paired
    comparisons) and results.csv. Without `comparisons` they are computed from the runs' predictions."""
    study = Path(study)
    if comparisons is None:
        comparisons = paired.comparisons(rows, paired.load_predictions(study, rows))[0]
    write_json(study / RESULTS_JSON, {"study": meta, "columns": list(COLUMNS), "rows": rows,
                                      "models": aggregate(rows), "comparisons": comparisons})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in COLUMNS])
    write_bytes(study / RESULTS_CSV, buf.getvalue().encode())


def read_results(study: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(study settings, rows) of results.json; without it, rows of every finished run under runs/. Rows of an
    older version get the columns they lack, empty."""
    study = Path(study)
    if (study / RESULTS_JSON).exists():
        doc = read_json(study / RESULTS_JSON, "study folder")
        return doc.get("study", {}), [{**dict.fromkeys(COLUMNS), **r} for r in doc.get("rows", [])]
    finished = sorted((study / "runs").glob(f"*/{SUMMARY}"))
    if not finished:
        raise UserError(f"{study} holds no {RESULTS_JSON} and no finished runs; is it a `mnistbench compare` folder?")
    rows = [read_row(study, str(p.parent.relative_to(study)), preset="") for p in finished]
    return {"preset": "", "seeds": sorted({r["seed"] for r in rows})}, rows


# --- across seeds and models -----------------------------------------------------------------------
def label(model: str, budget_s: float | None) -> str:
    """How the report names a model at a budget: 'cnn', or 'cnn @ 30 s' in a study with budgets."""
    return model if budget_s is None else f"{model} @ {budget_s:g} s"


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and budget, over its finished seeds: mean and sample std of every numeric column, the seed
    range of test accuracy; by budget, then most accurate first."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r.get("budget_s")), []).append(r)
    out = [_aggregate_model(model, budget, rs) for (model, budget), rs in groups.items()]
    return sorted(out, key=lambda a: (paired.budget_order(a["budget_s"]), a["test_accuracy"] is None,
                                      -(a["test_accuracy"] or 0.0)))


def _aggregate_model(model: str, budget: float | None, rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rs if r["status"] == "ok"]
    a: dict[str, Any] = {"model": model, "budget_s": budget, "label": label(model, budget), "runs": len(rs),
                         "ok": len(ok), "seeds": [r["seed"] for r in ok]}
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


def pareto_models(aggs: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """For each aggregate (by label) with accuracy and time: those that dominate it (faster or as fast, and
    more accurate or as accurate, better in one); an empty list means it is on the Pareto front."""
    pts = [a for a in aggs if a["test_accuracy"] is not None and a["train_seconds"]]
    return {p["label"]: [q["label"] for q in pts if q is not p
                         and q["train_seconds"] <= p["train_seconds"] and q["test_accuracy"] >= p["test_accuracy"]
                         and (q["train_seconds"] < p["train_seconds"] or q["test_accuracy"] > p["test_accuracy"])]
            for p in pts}


# --- the analysis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed once from the rows and the finished run folders.

    runs: per finished row, {"row", "folder", "summary", "config", "metrics", "predictions"} (each folder
    read once); aggs: aggregate(rows), one per model and budget; dominated: pareto_models(aggs), by label;
    reps: per model, its run with the largest budget and the lowest seed; errors, errors_n, targets:
    paired.error_sets() of the representatives; mean_f1: per model, per class, over the representative's
    budget; comparisons, uncompared: paired.comparisons(); verdicts: paired.verdicts(comparisons);
    budgets: the budgets of the study (empty without); planned: how many runs the study plans; missing:
    the planned runs without a row, each {"model", "seed", "budget_s", "run_dir", "state"}.
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
    planned: int
    missing: list[dict[str, Any]]

    @property
    def front(self) -> set[str]:
        """The labels (model, or model and budget) on the Pareto front of accuracy against training time."""
        return {m for m, by in self.dominated.items() if not by}

    @property
    def finished(self) -> int:
        """How many runs finished."""
        return sum(r["status"] == "ok" for r in self.rows)


def analyse(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Analysis:
    """Read each finished run folder once and compute every cross-run analysis the report needs."""
    study = Path(study)
    rows = [{**dict.fromkeys(COLUMNS), **r} for r in rows]  # rows of an older version lack some columns
    predictions = paired.load_predictions(study, rows)
    runs = []
    for r in rows:
        if r["status"] == "ok":
            folder = study / r["run_dir"]
            runs.append({"row": r, "folder": folder, "summary": read_summary(folder), "config": read_config(folder),
                         "metrics": read_metrics(folder), "predictions": predictions[r["run_dir"]]})
    reps: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda run: (paired.budget_order(run["row"]["budget_s"]), -run["row"]["seed"])):
        reps[run["row"]["model"]] = run  # the last one set wins: largest budget, lowest seed
    reps = {m: reps[m] for m in dict.fromkeys(r["model"] for r in rows) if m in reps}
    aggs = aggregate(rows)
    dataset = next((rep["summary"]["dataset"] for rep in reps.values()), meta.get("dataset", "mnist"))
    classes = class_names(dataset)
    errors, n, targets = paired.error_sets(reps)
    tests, uncompared = paired.comparisons(rows, predictions)
    budgets = sorted({float(b) for b in meta.get("budgets") or []} | {r["budget_s"] for r in rows if r["budget_s"]})
    planned = meta.get("planned") or []
    return Analysis(study, meta, rows, list(dict.fromkeys(r["model"] for r in rows)), runs, aggs,
                    pareto_models(aggs), reps, errors, n, targets, _mean_f1(runs, reps, len(classes)), dataset,
                    classes, tests, uncompared, paired.verdicts(tests), budgets, len(planned) or len(rows),
                    missing_runs(study, planned, rows))


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
        if per and len(per) == n_classes and run["row"]["budget_s"] == reps[model]["row"]["budget_s"]:
            per_model.setdefault(model, []).append([p["f1"] for p in per])
    return {m: [statistics.fmean(c) for c in zip(*v)] for m, v in per_model.items()}
