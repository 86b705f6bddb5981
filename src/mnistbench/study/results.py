"""A study's results: one row per run, results.csv/json, and the Analysis every report part reads.

Each finished run folder is read once (`analyse`); aggregates, the Pareto front, error sets and mean
per-class F1 are computed once there, and findings, figures and the report only read them.
"""
from __future__ import annotations

import csv
import io
import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..fsio import read_json, write_bytes, write_json
from ..record import SUMMARY, read_config, read_metrics, read_summary

RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"

# One row per model and seed, in study order. The last five columns label slices and schedules.
COLUMNS = ("model", "seed", "status", "error", "test_accuracy", "test_macro_f1", "test_loss", "train_seconds",
           "time_to_99", "train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
           "params", "flops_per_image", "peak_memory_mb", "device", "pretrained", "map_50", "preset", "run_dir",
           "epochs", "train_images", "test_images", "train_limit", "test_limit")
NUMERIC = ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds", "time_to_99", "train_images_per_second",
           "inference_ms_per_image", "inference_images_per_second", "params", "flops_per_image", "peak_memory_mb",
           "map_50")


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a data set; digits 0-9 for one this version does not know."""
    from ..data.datasets import DATASETS
    return DATASETS[dataset].classes if dataset in DATASETS else tuple(str(i) for i in range(10))


# --- rows ------------------------------------------------------------------------------------------
def run_row(summary: Mapping[str, Any], config: Mapping[str, Any], *, run_dir: str, preset: str) -> dict[str, Any]:
    """The result row of a finished run from its summary and config (`run_dir` relative to the study)."""
    s, cm = summary, summary.get("confusion_matrix")
    return {
        "model": config["model"], "seed": config["seed"], "status": "ok", "error": "",
        **{k: s.get(k) for k in ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds")},
        "time_to_99": (s.get("time_to_accuracy") or {}).get("0.99"),
        **{k: s.get(k) for k in ("train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
                                 "params", "flops_per_image", "peak_memory_mb", "device")},
        "pretrained": s.get("weights_source") is not None,
        "map_50": s.get("map_50"), "preset": preset, "run_dir": run_dir,
        "epochs": s.get("epochs_completed", config["epochs"]), "train_images": s.get("train_images"),
        "test_images": sum(map(sum, cm)) if cm else s.get("test_images"),
        "train_limit": config.get("train_limit"), "test_limit": config.get("test_limit"),
    }


def read_row(study: Path, run_dir: str, *, preset: str) -> dict[str, Any]:
    """The row of a finished run, read from its folder."""
    folder = Path(study) / run_dir
    return run_row(read_summary(folder), read_config(folder), run_dir=run_dir, preset=preset)


def failed_row(model: str, seed: int, *, preset: str, run_dir: str, error: str) -> dict[str, Any]:
    """The row of a run that raised: its one-line reason and no numbers."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, seed=seed, status="failed", error=error, preset=preset, run_dir=run_dir)
    return row


# --- results.csv / results.json --------------------------------------------------------------------
def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_results(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Atomically rewrite results.json (study settings, rows, per-model aggregates) and results.csv."""
    write_json(Path(study) / RESULTS_JSON, {"study": meta, "columns": list(COLUMNS), "rows": rows,
                                            "models": aggregate(rows)})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in COLUMNS])
    write_bytes(Path(study) / RESULTS_CSV, buf.getvalue().encode())


def read_results(study: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(study settings, rows) of results.json; without it, rows of every finished run under runs/."""
    study = Path(study)
    if (study / RESULTS_JSON).exists():
        doc = read_json(study / RESULTS_JSON, "study folder")
        return doc.get("study", {}), doc.get("rows", [])
    finished = sorted((study / "runs").glob(f"*/{SUMMARY}"))
    if not finished:
        raise UserError(f"{study} holds no {RESULTS_JSON} and no finished runs; is it a `mnistbench compare` folder?")
    rows = [read_row(study, str(p.parent.relative_to(study)), preset="") for p in finished]
    return {"preset": "", "seeds": sorted({r["seed"] for r in rows})}, rows


# --- across seeds and models -----------------------------------------------------------------------
def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, over its finished seeds: mean and sample std of every numeric column; most accurate first."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    out = [_aggregate_model(model, rs) for model, rs in by_model.items()]
    return sorted(out, key=lambda a: (a["test_accuracy"] is None, -(a["test_accuracy"] or 0.0)))


def _aggregate_model(model: str, rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rs if r["status"] == "ok"]
    a: dict[str, Any] = {"model": model, "runs": len(rs), "ok": len(ok), "seeds": [r["seed"] for r in ok]}
    for c in NUMERIC:
        vals = [float(r[c]) for r in ok if r.get(c) is not None]
        a[c] = statistics.fmean(vals) if vals else None
        a[f"{c}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        a[f"{c}_n"] = len(vals)
    a["pretrained"] = any(r["pretrained"] for r in ok)
    a["device"] = ok[0]["device"] if ok else None
    a["errors"] = [f"seed {r['seed']}: {r['error']}" for r in rs if r["status"] != "ok"]
    return a


def pareto_models(aggs: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """For each model with accuracy and time: the models that dominate it (faster or as fast, and more
    accurate or as accurate, better in one); an empty list means it is on the Pareto front."""
    pts = [a for a in aggs if a["test_accuracy"] is not None and a["train_seconds"]]
    return {p["model"]: [q["model"] for q in pts if q is not p
                         and q["train_seconds"] <= p["train_seconds"] and q["test_accuracy"] >= p["test_accuracy"]
                         and (q["train_seconds"] < p["train_seconds"] or q["test_accuracy"] > p["test_accuracy"])]
            for p in pts}


# --- the analysis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed once from the rows and the finished run folders.

    runs: per finished row, {"row", "folder", "summary", "config", "metrics"} (each folder read once);
    reps: per model, its run with the lowest seed; dominated: pareto_models(aggs);
    errors, errors_n: error_sets() of the classifiers' representatives; mean_f1: per model, per class.
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
    mean_f1: dict[str, list[float]]
    dataset: str
    classes: tuple[str, ...]

    @property
    def front(self) -> set[str]:
        """The models on the Pareto front of accuracy against training time."""
        return {m for m, by in self.dominated.items() if not by}


def analyse(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Analysis:
    """Read each finished run folder once and compute every cross-run analysis the report needs."""
    study = Path(study)
    runs = []
    for r in rows:
        if r["status"] == "ok":
            folder = study / r["run_dir"]
            runs.append({"row": r, "folder": folder, "summary": read_summary(folder),
                         "config": read_config(folder), "metrics": read_metrics(folder)})
    reps: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda run: run["row"]["seed"]):
        reps.setdefault(run["row"]["model"], run)
    aggs = aggregate(rows)
    dataset = next((rep["summary"]["dataset"] for rep in reps.values()), meta.get("dataset", "mnist"))
    classes = class_names(dataset)
    errors, n = error_sets(reps)
    return Analysis(study, meta, rows, list(dict.fromkeys(r["model"] for r in rows)), runs, aggs,
                    pareto_models(aggs), reps, errors, n, _mean_f1(runs, len(classes)), dataset, classes)


def classifiers(reps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The representatives whose summaries list misclassified test images and a confusion matrix."""
    return {m: rep for m, rep in reps.items()
            if rep["summary"].get("misclassified") is not None and rep["summary"].get("confusion_matrix")}


def error_sets(reps: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[int, int]], int]:
    """Per classifier, {test index: predicted class} of its errors among the first `n` test images, and `n`.

    Summaries list only the first errors (by index) of a model with many, so the comparison covers the
    test images up to where every model's list is complete.
    """
    lists, n = {}, None
    for model, rep in classifiers(reps).items():
        s = rep["summary"]
        mis = s["misclassified"]
        complete = len(mis) >= s.get("misclassified_count", len(mis))
        covered = rep["row"]["test_images"] if complete or not mis else mis[-1]["index"] + 1
        n = covered if n is None else min(n, covered)
        lists[model] = {m["index"]: m["pred"] for m in mis}
    if n is None:
        return {}, 0
    return {m: {i: p for i, p in errs.items() if i < n} for m, errs in lists.items()}, n


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


def _mean_f1(runs: Sequence[dict[str, Any]], n_classes: int) -> dict[str, list[float]]:
    """Per model, each class's F1 averaged over its finished seeds."""
    per_model: dict[str, list[list[float]]] = {}
    for run in runs:
        per = run["summary"].get("per_class")
        if per and len(per) == n_classes:
            per_model.setdefault(run["row"]["model"], []).append([p["f1"] for p in per])
    return {m: [statistics.fmean(c) for c in zip(*v)] for m, v in per_model.items()}
