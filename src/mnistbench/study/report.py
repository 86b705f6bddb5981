"""The study report: report.md and a self-contained report.html with figures, from the rows of a study's runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import write_bytes, writing
from ..record import DETECTIONS, status
from . import captions, tables
from .about import about, partial
from .document import FIGURES, Doc
from .findings import findings
from .formatting import budget_text, pct
from .paired import PredictionCache, classifiers
from .results import Analysis, analyse
from .rows import (
    RESULTS_CSV,
    RESULTS_JSON,
    failed_row,
    read_results,
    read_row,
    write_results,
)

REPORT_MD, REPORT_HTML = "report.md", "report.html"
MISTAKES_SHOWN = 16


def rebuild(study: str | Path) -> Analysis:
    """`mnistbench report DIR`: re-read every finished run, rewrite results.csv/json and the report."""
    study = Path(study)
    if not study.is_dir():
        raise UserError(f"{study} is not a folder; pass the --out folder of `mnistbench compare`")
    meta, old = read_results(study)
    rows = []
    for r in old:
        if r["status"] == "ok" and status(study / r["run_dir"]) != "finished":
            r = failed_row(r["model"], r["seed"], preset=r["preset"], run_dir=r["run_dir"],
                           budget=(r["budget"], r["budget_unit"]), error=f"{r['run_dir']} no longer holds a finished run")
        elif r["status"] == "ok":
            r = read_row(study, r["run_dir"], preset=r["preset"])
        rows.append(r)
    an = analyse(study, meta, rows)
    write_results(study, meta, an.rows, models=an.aggs, comparisons=an.comparisons, verdicts=an.verdicts)
    build_report(study, meta, rows, analysis=an)
    return an


def build_report(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]], *,
                 analysis: Analysis | None = None, cache: PredictionCache | None = None) -> Path:
    """Write figures/, report.md and report.html for the study folder (predictions through `cache` when
    given); returns the HTML path."""
    an = analysis or analyse(study, meta, rows, cache=cache)
    doc = Doc()
    title = f"mnistbench study: {', '.join(an.models)} on {an.dataset}"
    doc.h(1, title)
    doc.p(" ".join(about(an)))
    if partial(an):
        doc.p(partial(an))
    if meta.get("command"):
        doc.p(f"Reproduce (finished runs are skipped): `{meta['command']}`")
    doc.h(2, "What this run shows")
    doc.bullets(findings(an))
    _tables(doc, an)
    doc.h(2, "Settings per model")
    doc.table(*tables.settings_table(meta, rows))
    if an.reps:
        _figure_sections(doc, an)
    doc.h(2, "All runs")
    doc.table(*tables.runs_table(an))
    doc.p(f"Every number above is in `{RESULTS_CSV}` and `{RESULTS_JSON}` (the paired tests under `comparisons`); "
          "each run folder holds its config, metrics, summary, predictions, weights and figures. "
          "`mnistbench report DIR` rebuilds this report from the run folders.")
    return _write(doc, Path(study), title)


def _write(doc: Doc, study: Path, title: str) -> Path:
    fig_dir = study / FIGURES
    with writing(fig_dir, folder=True):
        fig_dir.mkdir(exist_ok=True)
    for name, data in doc.figures():
        write_bytes(fig_dir / name, data)
    write_bytes(study / REPORT_MD, doc.markdown().encode())
    write_bytes(study / REPORT_HTML, doc.html(title).encode())
    return study / REPORT_HTML


# --- tables ----------------------------------------------------------------------------------------
def _tables(doc: Doc, an: Analysis) -> None:
    """Accuracy, accuracy against budget, the paired tests and the cost of each model."""
    doc.h(2, "Accuracy")
    doc.table(*tables.accuracy_table(an))
    several = any(a["ok"] > 1 for a in an.aggs)
    doc.p("Test accuracy and macro-F1 on the test set with the best-validation weights"
          + (", mean ± sample std over seeds; the seed range is the lowest and highest seed" if several else
             "; the 95 % CI is the Wilson score interval of the accuracy on these test images")
          + ". Time to 99 % is the training time at the first validation with 99 % validation accuracy, known "
          "only to within the training time between two validations"
          + (", averaged over the seeds that reached it (k/n)" if several else "") + "."
          + (" A detector's accuracy is classification by detection (its best box per test digit; no box counts "
             "as wrong) on the classifiers' test images; its mAP is on test scenes." if any(
                 a["detector"] for a in an.aggs) else ""))
    if len(an.budgets) >= 2:
        _budget_section(doc, an)
    doc.h(2, "Paired comparisons")
    _comparisons(doc, an)
    doc.h(2, "Cost")
    doc.table(*tables.cost_table(an))
    doc.p("Training seconds count training steps only" + (" (of the budget)" if an.budgets else "")
          + "; throughput and latency are in each model's own unit: images for classifiers, scenes (canvases of "
          "several digits) for a detector. FLOPs are counted by torch.utils.flop_counter for one 28×28 image. "
          f"Peak memory: {tables.memory_kinds(an)}. Speeds and sizes are means over seeds (every run's are in "
          f"`{RESULTS_CSV}`). " + _front_note(an))


def _front_note(an: Analysis) -> str:
    """What the cost table's ★ means, or why there is none."""
    if an.front_axis is None:
        return ("Every model had the same budget, so nothing is ranked by the training seconds actually spent: "
                "their differences are the budget's tolerance, not a finding.")
    if an.front_axis == "budget":
        return ("★ marks the Pareto front of accuracy against budget: no point at no more budget is significantly "
                "more accurate (paired tests above).")
    return ("★ marks the Pareto front of accuracy against training time: no model trained in no more time and is "
            "significantly more accurate (paired tests above).")


def _comparisons(doc: Doc, an: Analysis) -> None:
    if not an.comparisons:
        doc.p("No pair of models could be tested: it needs two finished runs with per-image predictions "
              "(predictions.json) on the same test images.")
    for heading, table in tables.comparison_tables(an):
        if heading:
            doc.h(3, heading)
        doc.table(*table)
    if an.comparisons:
        doc.p(" ".join(captions.comparisons(an)))
    if an.comparisons and max(len(v["seeds"]) for v in an.verdicts) > 1:
        doc.h(3, "Verdicts over seeds")
        doc.table(*tables.verdict_table(an))
        doc.p(captions.verdicts(an))
    if an.uncompared:
        doc.p("Not compared: " + "; ".join(an.uncompared) + ".")


def _budget_section(doc: Doc, an: Analysis) -> None:
    from . import figures as figs

    series: dict[str, list[tuple[float, float, float | None]]] = {}
    for a in an.aggs:
        if a["budget"] is not None and a["test_accuracy"] is not None:
            series.setdefault(a["model"], []).append((a["budget"], a["test_accuracy"], a["test_accuracy_std"]))
    if series:
        doc.h(2, "Accuracy against training budget")
        doc.figure(BUDGET_FIGURE, figs.accuracy_vs_budget(series, an.models, an.budget_unit or "s"),
                   "Test accuracy against training budget, one line per model (mean ± std over seeds; log budget "
                   "axis): what more training buys.")


BUDGET_FIGURE = "accuracy_vs_budget.png"


# --- figures ---------------------------------------------------------------------------------------
def _label(model: str, rep: dict[str, Any]) -> str:
    budget = rep["row"].get("budget")
    return f"{model} (seed {rep['row']['seed']}" + (f", {budget_text(budget, rep['row']['budget_unit'])})"
                                                    if budget is not None else ")")


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
                   "columns: predicted, and for a detector a last column \"none\": no digit found; numbers: errors; "
                   "log colour scale).")
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
    """Accuracy against the training seconds actually spent, and against training FLOPs; stars only where the
    study has a Pareto front on that axis (several budgets in that unit, or a study trained for epochs)."""
    from . import figures as figs

    timed = [a for a in an.aggs if a["test_accuracy"] is not None and a["train_seconds"]]
    if not timed:
        return
    front = an.front if an.front_axis == "seconds" or an.budget_unit == "s" else set()
    points = [{"model": a["model"], "label": a["label"], "seconds": a["train_seconds"], "accuracy": a["test_accuracy"],
               "seconds_std": a["train_seconds_std"], "accuracy_std": a["test_accuracy_std"],
               "front": a["label"] in front} for a in timed]
    doc.h(2, "Accuracy against training time")
    doc.figure("pareto.png", figs.pareto(points, an.models), captions.training_time(an))
    front = an.front if an.budget_unit == "FLOPs" else set()
    counted = [{"model": a["model"], "label": a["label"], "flops": a["train_flops"], "accuracy": a["test_accuracy"],
                "flops_std": a["train_flops_std"], "accuracy_std": a["test_accuracy_std"], "front": a["label"] in front}
               for a in timed if a["train_flops"]]
    if counted:
        doc.h(2, "Accuracy against training FLOPs")
        doc.figure("accuracy_vs_flops.png", figs.pareto(counted, an.models, x="flops", xlabel="training FLOPs",
                                                          title="accuracy against training FLOPs"),
                   "Test accuracy against training FLOPs (3 × forward FLOPs per sample × samples seen; mean ± std "
                   "over seeds): the same on every machine, so studies made on different machines compare here"
                   + ("; stars: the Pareto front of accuracy against budget." if front else "."))


def _test_images(rep: dict[str, Any]):
    """The test images of a representative run's data set (that one file, verified), or why they cannot load."""
    from ..data.datasets import load_test_images

    try:
        return load_test_images(rep["summary"]["dataset"], rep["config"].get("data_dir") or None), None
    except (UserError, OSError) as e:
        return None, str(e)


def _predicted(classes, pred: int) -> str:
    return "none" if pred < 0 else classes[pred][:5]


def _of(an: Analysis) -> str:
    """Which test images the error sets cover: all that every model scored, or the first n of them."""
    first = an.errors_n < max(an.reps[m]["row"]["test_images"] or 0 for m in an.errors)
    return f"of the first {an.errors_n} test images" if first else f"of the {an.errors_n} test images they all scored"


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
                     [(images[e["index"]], f"{classes[e['true']][:5]}→{_predicted(classes, e['pred'])}")
                      for e in mis]))
    doc.figure("mistakes.png", figs.image_rows(rows, MISTAKES_SHOWN),
               "Misclassified test digits per model, in test-set order; captions: true→predicted (none: a "
               "detector found no digit).")
    errs = an.errors
    if len(errs) < 2:
        return
    counts = Counter(i for e in errs.values() for i in e)
    hardest = sorted(counts, key=lambda i: (-counts[i], i))[:MISTAKES_SHOWN]
    truth, of = an.targets, _of(an)
    doc.figure("hardest.png", figs.image_rows([(f"the test digits most models get wrong ({of})",
                                                [(images[i], f"#{i} {classes[truth[i]][:5]}: {counts[i]}/{len(errs)}")
                                                 for i in hardest])], MISTAKES_SHOWN),
               "Test digits wrong for the most models; captions: index, true class, how many models miss it.")
    models = list(errs)
    doc.p(f"Shared errors between models ({of}; diagonal: each model's own errors):")
    doc.table(["model"] + models, [[a] + [str(len(set(errs[a]) & set(errs[b]))) for b in models] for a in models])
