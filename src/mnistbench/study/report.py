"""The study report: report.md and a self-contained report.html with figures, from the rows of a study's runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from ..fsio import write_bytes
from ..record import DETECTIONS, status
from .document import FIGURES, Doc
from .findings import about, findings
from .formatting import cell, pct, value
from .results import (
    RESULTS_CSV,
    RESULTS_JSON,
    Analysis,
    analyse,
    classifiers,
    failed_row,
    read_results,
    read_row,
    write_results,
)

REPORT_MD, REPORT_HTML = "report.md", "report.html"
MISTAKES_SHOWN = 16
LEADERBOARD = (("test accuracy (%)", "test_accuracy"), ("macro-F1", "test_macro_f1"), ("test loss", "test_loss"),
               ("training (s)", "train_seconds"), ("time to 99 % (s)", "time_to_99"),
               ("train images/s", "train_images_per_second"),
               ("inference ms/image (batch 1)", "inference_ms_per_image"),
               ("inference images/s (large batch)", "inference_images_per_second"), ("parameters", "params"),
               ("FLOPs/image", "flops_per_image"), ("peak memory (MB)", "peak_memory_mb"))


def rebuild(study: str | Path) -> list[dict[str, Any]]:
    """`mnistbench report DIR`: re-read every finished run, rewrite results.csv/json and the report."""
    study = Path(study)
    if not study.is_dir():
        raise UserError(f"{study} is not a folder; pass the --out folder of `mnistbench compare`")
    meta, old = read_results(study)
    rows = []
    for r in old:
        if r["status"] == "ok" and status(study / r["run_dir"]) != "finished":
            r = failed_row(r["model"], r["seed"], preset=r["preset"], run_dir=r["run_dir"],
                           error=f"{r['run_dir']} no longer holds a finished run")
        elif r["status"] == "ok":
            r = read_row(study, r["run_dir"], preset=r["preset"])
        rows.append(r)
    write_results(study, meta, rows)
    build_report(study, meta, rows)
    return rows


def build_report(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write figures/, report.md and report.html for the study folder; returns the HTML path."""
    an = analyse(study, meta, rows)
    doc = Doc()
    title = f"mnistbench study: {', '.join(an.models)} on {an.dataset}"
    doc.h(1, title)
    doc.p(" ".join(about(meta, rows)))
    doc.h(2, "What this run shows")
    doc.bullets(findings(an))
    doc.h(2, "Leaderboard")
    doc.table(*leaderboard(an))
    doc.p("Test accuracy, macro-F1 and loss on the test set with the best-validation weights; training seconds "
          "count training steps only; time to 99 % is the training time at the first epoch end with 99 % "
          "validation accuracy; FLOPs are counted by torch.utils.flop_counter for one 28×28 image; ★ marks the "
          "Pareto front of accuracy against training time.")
    doc.h(2, "Settings per model")
    doc.table(*_settings_table(meta, rows))
    if an.reps:
        _figure_sections(doc, an)
    doc.h(2, "All runs")
    doc.table(*_runs_table(rows))
    doc.p(f"Every number above is in `{RESULTS_CSV}` and `{RESULTS_JSON}`; each run folder holds its config, "
          "metrics, summary, weights and figures. `mnistbench report DIR` rebuilds this report from the run folders.")
    return _write(doc, Path(study), title)


def _write(doc: Doc, study: Path, title: str) -> Path:
    fig_dir = study / FIGURES
    fig_dir.mkdir(exist_ok=True)
    for name, data in doc.figures():
        write_bytes(fig_dir / name, data)
    write_bytes(study / REPORT_MD, doc.markdown().encode())
    write_bytes(study / REPORT_HTML, doc.html(title).encode())
    return study / REPORT_HTML


# --- tables ----------------------------------------------------------------------------------------
def leaderboard(an: Analysis) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the leaderboard: finished models by mean test accuracy."""
    aggs, front = an.aggs, an.front
    cols = list(LEADERBOARD) + ([("mAP@0.5", "map_50")] if any(a["map_50"] is not None for a in aggs) else [])
    headers = ["#", "model", "runs ok"] + [h for h, _ in cols] + ["pretrained", "Pareto", "device"]
    rows = []
    for i, a in enumerate(a for a in aggs if a["test_accuracy"] is not None or a["map_50"] is not None):
        rows.append([str(i + 1), a["model"], f"{a['ok']}/{a['runs']}"] + [cell(a, c) for _, c in cols]
                    + ["yes" if a["pretrained"] else "no", "★" if a["model"] in front else "", a["device"] or "–"])
    return headers, rows


def _settings_table(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per model: its overrides, and the schedule and data sizes of its first finished run."""
    plan = meta.get("plan", {})
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = next((x for x in rows if x["model"] == model and x["status"] == "ok"),
                  next(x for x in rows if x["model"] == model))
        over = plan.get(model, {})
        out.append([model, ", ".join(f"{k}={v}" for k, v in over.items()) or "(none)",
                    _dash(ok["epochs"], str), _dash(ok["train_images"], "{:,}".format),
                    _dash(ok["test_images"], "{:,}".format),
                    "–" if ok["status"] != "ok" else ("yes" if ok["pretrained"] else "no")])
    return ["model", "preset and --set overrides", "epochs", "training images", "test images", "pretrained"], out


def _runs_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["model", "seed", "status", "test accuracy (%)", "training (s)", "time to 99 % (s)", "run folder",
               "error"]
    return headers, [[r["model"], str(r["seed"]), r["status"], value(r, "test_accuracy"), value(r, "train_seconds"),
                      value(r, "time_to_99"), r["run_dir"], r["error"] or ""] for r in rows]


def _dash(v: Any, fmt) -> str:
    return "–" if v is None else fmt(v)


# --- figures ---------------------------------------------------------------------------------------
def _label(model: str, rep: dict[str, Any]) -> str:
    return f"{model} (seed {rep['row']['seed']})"


def _figure_sections(doc: Doc, an: Analysis) -> None:
    """Curves, Pareto scatter, confusion matrices, per-class F1, mistakes and detector scenes."""
    from . import figures as figs

    doc.h(2, "Training curves")
    runs = [(run["row"]["model"], run["row"]["seed"], run["metrics"]) for run in an.runs]
    doc.figure("curves.png", figs.curves(runs, an.models), "Every run overlaid: training loss against step and "
               "against training seconds, validation accuracy against training seconds.")
    _pareto_section(doc, an)
    cms = [(f"{_label(m, rep)}: {pct(rep['summary']['test_accuracy'])}", rep["summary"]["confusion_matrix"])
           for m, rep in an.reps.items()
           if rep["summary"].get("confusion_matrix") and rep["summary"].get("test_accuracy") is not None]
    if cms:
        doc.h(2, "Confusion matrices")
        doc.figure("confusions.png", figs.confusions(cms, an.classes), "Confusion matrices (rows: true class, "
                   "columns: predicted; numbers: errors; log colour scale).")
    if an.mean_f1:
        doc.h(2, "Per-class F1")
        doc.figure("per_class_f1.png", figs.per_class_f1(an.mean_f1, an.classes), "Per-class F1 on the test set"
                   + (" (mean over seeds)." if any(a["ok"] > 1 for a in an.aggs) else "."))
    _mistakes_section(doc, an)
    for m, rep in an.reps.items():
        path = rep["folder"] / DETECTIONS
        if path.exists():
            doc.h(2, f"Detector scenes: {m}")
            doc.figure(f"detections-{m}.png", path.read_bytes(),
                       f"{_label(m, rep)}: detections on test scenes, from its run folder.")


def _pareto_section(doc: Doc, an: Analysis) -> None:
    from . import figures as figs

    timed = [a for a in an.aggs if a["model"] in an.dominated]
    if not timed:
        return
    points = [{"model": a["model"], "seconds": a["train_seconds"], "accuracy": a["test_accuracy"],
               "seconds_std": a["train_seconds_std"], "accuracy_std": a["test_accuracy_std"],
               "front": a["model"] in an.front} for a in timed]
    doc.h(2, "Accuracy against training time")
    doc.figure("pareto.png", figs.pareto(points, an.models), "Test accuracy against training seconds "
               "(mean ± std over seeds); stars and the dashed line: the Pareto front.")


def _test_images(rep: dict[str, Any]):
    """The test images of a representative run's data set (that one file, verified), or why they cannot load."""
    from ..data.datasets import load_test_images

    try:
        return load_test_images(rep["summary"]["dataset"], rep["config"].get("data_dir") or None), None
    except (UserError, OSError) as e:
        return None, str(e)


def _mistakes_section(doc: Doc, an: Analysis) -> None:
    """Grids of misclassified test digits per model and of those most models miss; the shared-error table."""
    from . import figures as figs

    wrong, classes = classifiers(an.reps), an.classes
    if not wrong:
        return
    doc.h(2, "Test digits the models get wrong")
    images, reason = _test_images(next(iter(wrong.values())))
    if images is None:
        doc.p(f"The test images could not be loaded, so the image grids are left out: {reason}")
        return
    rows = []
    for m, rep in wrong.items():
        mis = rep["summary"]["misclassified"][:MISTAKES_SHOWN]
        total = rep["summary"].get("misclassified_count", len(mis))
        rows.append((f"{_label(m, rep)}: {total} wrong, first {len(mis)} shown",
                     [(images[e["index"]], f"{classes[e['true']][:5]}→{classes[e['pred']][:5]}") for e in mis]))
    doc.figure("mistakes.png", figs.image_rows(rows, MISTAKES_SHOWN),
               "Misclassified test digits per model, in test-set order; captions: true→predicted.")
    errs, n = an.errors, an.errors_n
    if len(errs) < 2:
        return
    counts = Counter(i for e in errs.values() for i in e)
    hardest = sorted(counts, key=lambda i: (-counts[i], i))[:MISTAKES_SHOWN]
    truth = {e["index"]: e["true"] for rep in wrong.values() for e in rep["summary"]["misclassified"]}
    doc.figure("hardest.png", figs.image_rows([(f"the test digits most models get wrong (of the first {n})",
                                                [(images[i], f"#{i} {classes[truth[i]][:5]}: {counts[i]}/{len(errs)}")
                                                 for i in hardest])], MISTAKES_SHOWN),
               "Test digits wrong for the most models; captions: index, true class, how many models miss it.")
    models = list(errs)
    doc.p(f"Shared errors between models among the first {n} test images (diagonal: each model's own errors):")
    doc.table(["model"] + models, [[a] + [str(len(set(errs[a]) & set(errs[b]))) for b in models] for a in models])
