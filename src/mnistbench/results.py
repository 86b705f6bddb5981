"""A study's results: one row per run read from its folder, results.csv/json, per-model mean ± std, Pareto front."""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError
from .fsio import write_bytes, write_json
from .record import read_metrics  # noqa: F401 - part of the results API the report uses

RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"

# One row per model and seed, in study order. The last five columns label slices and schedules.
COLUMNS = ("model", "seed", "status", "error", "test_accuracy", "test_macro_f1", "test_loss", "train_seconds",
           "time_to_99", "train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
           "params", "flops_per_image", "peak_memory_mb", "device", "pretrained", "map_50", "preset", "run_dir",
           "epochs", "train_images", "test_images", "train_limit", "test_limit")
NUMERIC = ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds", "time_to_99", "train_images_per_second",
           "inference_ms_per_image", "inference_images_per_second", "params", "flops_per_image", "peak_memory_mb",
           "map_50")


# --- run folders -----------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """The JSON document at `path`; a UserError naming the file when it is missing or broken."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e})") from None


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, config) of a finished run folder."""
    return read_json(folder / "summary.json"), read_json(folder / "config.json")["config"]


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a data set; digits 0-9 for one this version does not know."""
    from .data.datasets import DATASETS
    return DATASETS[dataset].classes if dataset in DATASETS else tuple(str(i) for i in range(10))


def run_row(study: Path, run_dir: str, *, preset: str) -> dict[str, Any]:
    """The result row of a finished run, read from its folder (`run_dir` relative to the study folder)."""
    s, cfg = read_run(Path(study) / run_dir)
    cm = s.get("confusion_matrix")
    return {
        "model": cfg["model"], "seed": cfg["seed"], "status": "ok", "error": "",
        **{k: s.get(k) for k in ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds")},
        "time_to_99": (s.get("time_to_accuracy") or {}).get("0.99"),
        **{k: s.get(k) for k in ("train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
                                 "params", "flops_per_image", "peak_memory_mb", "device")},
        "pretrained": s.get("weights_source") is not None,
        "map_50": s.get("map_50"), "preset": preset, "run_dir": run_dir,
        "epochs": s.get("epochs_completed", cfg["epochs"]), "train_images": s.get("train_images"),
        "test_images": sum(map(sum, cm)) if cm else s.get("test_images"),
        "train_limit": cfg.get("train_limit"), "test_limit": cfg.get("test_limit"),
    }


def failed_row(model: str, seed: int, *, preset: str, run_dir: str, error: str) -> dict[str, Any]:
    """The row of a run that raised: its one-line reason and no numbers."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, seed=seed, status="failed", error=error, preset=preset, run_dir=run_dir)
    return row


def representatives(study: Path, rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model, its finished run with the lowest seed: row, folder, summary and config."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["seed"]):
        if r["model"] not in out:
            folder = study / r["run_dir"]
            summary, config = read_run(folder)
            out[r["model"]] = {"row": r, "folder": folder, "summary": summary, "config": config}
    return out


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
    path = study / RESULTS_JSON
    if path.exists():
        doc = read_json(path)
        return doc.get("study", {}), doc.get("rows", [])
    finished = sorted((study / "runs").glob("*/summary.json"))
    if not finished:
        raise UserError(f"{study} holds no {RESULTS_JSON} and no finished runs; is it a `mnistbench compare` folder?")
    rows = [run_row(study, str(p.parent.relative_to(study)), preset="") for p in finished]
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
    pts = [a for a in aggs if a["test_accuracy"] is not None and a["train_seconds"] is not None]
    return {p["model"]: [q["model"] for q in pts if q is not p
                         and q["train_seconds"] <= p["train_seconds"] and q["test_accuracy"] >= p["test_accuracy"]
                         and (q["train_seconds"] < p["train_seconds"] or q["test_accuracy"] > p["test_accuracy"])]
            for p in pts}
