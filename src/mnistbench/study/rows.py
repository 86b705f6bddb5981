"""A study's rows, one per run, and its result files: results.json and results.csv (their writer and reader).

A row's `budget` is the run's training budget in the study's unit (`budget_unit`: "s" for seconds, "FLOPs"
for training FLOPs; None for a run trained for a number of epochs); models are compared budget by budget.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..budget import within_tolerance
from ..errors import UserError
from ..fsio import read_json, write_bytes, write_json
from ..metrics import wilson_interval
from ..models import display_name
from ..record import SUMMARY, read_code_identity, read_config, read_summary

RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"

# One row per run (model, budget and seed), in study order. The last columns label slices, schedules and code.
# A detector's loss and speed have their own columns (scenes, not 28×28 images; not a cross-entropy).
COLUMNS = ("model", "seed", "budget", "budget_unit", "status", "error", "test_accuracy", "test_accuracy_low",
           "test_accuracy_high", "test_macro_f1", "test_loss", "test_detection_loss", "train_seconds",
           "budget_error", "train_flops", "time_to_99", "images_seen", "train_images_per_second",
           "inference_ms_per_image", "inference_images_per_second", "inference_ms_per_scene",
           "inference_scenes_per_second", "params", "flops_per_image", "flops_per_sample", "peak_memory_mb",
           "peak_memory_kind", "precision", "device", "pretrained", "map_50", "preset", "run_dir", "epochs",
           "train_images", "test_images", "train_limit", "test_limit", "budget_s", "budget_flops", "git_commit")
NUMERIC = ("test_accuracy", "test_macro_f1", "test_loss", "test_detection_loss", "train_seconds", "budget_error",
           "train_flops", "time_to_99", "images_seen", "train_images_per_second", "inference_ms_per_image",
           "inference_images_per_second", "inference_ms_per_scene", "inference_scenes_per_second", "params",
           "flops_per_image", "flops_per_sample", "peak_memory_mb", "map_50")
SCENE_KEYS = {"test_loss": "test_detection_loss", "inference_images_per_second": "inference_scenes_per_second",
              "inference_ms_per_image": "inference_ms_per_scene"}  # a detector's summary from before its own units


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a data set; digits 0-9 for one this version does not know."""
    from ..data.datasets import DATASETS
    return DATASETS[dataset].classes if dataset in DATASETS else tuple(str(i) for i in range(10))


def budget_of(config: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """(budget, unit) of a run's config: seconds ("s"), training FLOPs ("FLOPs"), or (None, None) for epochs."""
    if config.get("budget_flops"):
        return float(config["budget_flops"]), "FLOPs"
    if config.get("budget_s"):
        return float(config["budget_s"]), "s"
    return None, None


def off_budget(row: Mapping[str, Any]) -> bool:
    """Whether a finished run's realized budget is outside the tolerance (budget.within_tolerance)."""
    return row.get("status") == "ok" and not within_tolerance(row.get("budget_s"), row.get("budget_error"))


# --- rows ------------------------------------------------------------------------------------------
def run_row(summary: Mapping[str, Any], config: Mapping[str, Any], *, run_dir: str, preset: str,
            code: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The result row of a finished run from its summary, config and code identity (`run_dir` relative to the
    study)."""
    s, cm = dict(summary), summary.get("confusion_matrix")
    if s.get("map_50") is not None and "inference_scenes_per_second" not in s:
        s.update({new: s.pop(old, None) for old, new in SCENE_KEYS.items()})
    n = sum(map(sum, cm)) if cm else s.get("test_images")
    low, high = wilson_interval(round(s["test_accuracy"] * n), n) if n and s.get("test_accuracy") is not None \
        else (None, None)
    budget, unit = budget_of(config)
    seen = s.get("images_seen", (s.get("budget") or {}).get("images_seen"))
    return {
        "model": display_name(config["model"]), "seed": config["seed"], "budget": budget, "budget_unit": unit,
        "status": "ok", "error": "", "test_accuracy": s.get("test_accuracy"), "test_accuracy_low": low,
        "test_accuracy_high": high,
        **{k: s.get(k) for k in ("test_macro_f1", "test_loss", "test_detection_loss", "train_seconds",
                                 "budget_error", "train_flops")},
        "time_to_99": (s.get("time_to_accuracy") or {}).get("0.99"),
        "images_seen": seen if seen is not None else _times(s.get("steps"), config.get("batch_size")),
        **{k: s.get(k) for k in ("train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
                                 "inference_ms_per_scene", "inference_scenes_per_second", "params",
                                 "flops_per_image", "flops_per_sample", "peak_memory_mb", "peak_memory_kind",
                                 "precision", "device")},
        "pretrained": s.get("weights_source") is not None,
        "map_50": s.get("map_50"), "preset": preset, "run_dir": run_dir,
        "epochs": s.get("epochs_completed", config["epochs"]), "train_images": s.get("train_images"),
        "test_images": n, "train_limit": config.get("train_limit"), "test_limit": config.get("test_limit"),
        "budget_s": config.get("budget_s") or None, "budget_flops": config.get("budget_flops") or None,
        "git_commit": (code or {}).get("git_commit"),
    }


def _times(a: float | None, b: float | None) -> float | None:
    return a * b if a is not None and b is not None else None


def read_row(study: Path, run_dir: str, *, preset: str) -> dict[str, Any]:
    """The row of a finished run, read from its folder."""
    folder = Path(study) / run_dir
    return run_row(read_summary(folder), read_config(folder), run_dir=run_dir, preset=preset,
                   code=read_code_identity(folder))


def failed_row(model: str, seed: int, *, preset: str, run_dir: str, error: str,
               budget: tuple[float | None, str | None] = (None, None)) -> dict[str, Any]:
    """The row of a run that raised: its one-line reason and no numbers; `budget` as budget_of() gives it."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, seed=seed, budget=budget[0], budget_unit=budget[1], status="failed", error=error,
               preset=preset, run_dir=run_dir)
    return row


def upgrade(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with every column (an older version's rows lack some; a seconds budget was only `budget_s`)."""
    out = {**dict.fromkeys(COLUMNS), **row}
    if out["budget"] is None and out["budget_s"]:
        out["budget"], out["budget_unit"] = out["budget_s"], "s"
    return out


# --- results.csv / results.json --------------------------------------------------------------------
def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_results(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]], *,
                  models: list[dict[str, Any]], comparisons: list[dict[str, Any]],
                  verdicts: list[dict[str, Any]]) -> None:
    """Atomically rewrite results.json (study settings, rows, aggregates per model and budget, the paired
    comparisons and verdicts) and results.csv."""
    study = Path(study)
    write_json(study / RESULTS_JSON, {"study": meta, "columns": list(COLUMNS), "rows": rows, "models": models,
                                      "comparisons": comparisons, "verdicts": verdicts})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in COLUMNS])
    write_bytes(study / RESULTS_CSV, buf.getvalue().encode())


def read_results(study: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(study settings, rows) of results.json; without it, rows of every finished run under runs/. Rows of an
    older version get the columns they lack (upgrade())."""
    study = Path(study)
    if (study / RESULTS_JSON).exists():
        doc = read_json(study / RESULTS_JSON, "study folder")
        return doc.get("study", {}), [upgrade(r) for r in doc.get("rows", [])]
    finished = sorted((study / "runs").glob(f"*/{SUMMARY}"))
    if not finished:
        raise UserError(f"{study} holds no {RESULTS_JSON} and no finished runs; is it a `mnistbench compare` folder?")
    rows = [read_row(study, str(p.parent.relative_to(study)), preset="") for p in finished]
    return {"preset": "", "seeds": sorted({r["seed"] for r in rows})}, rows
