"""The study report on a small real study: tables, paired tests, findings, budgets, partial studies, the
detector's units, a self-contained HTML page that fits a 1400 px window, rebuild."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import records

from mnistbench.cli import main
from mnistbench.metrics import holm, mcnemar_exact, t_test_paired
from mnistbench.study import claims, figures, paired, tables, verdicts
from mnistbench.study.findings import findings
from mnistbench.study.results import analyse
from mnistbench.study.rows import read_results, read_row, run_row

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                                    reason="needs /usr/bin/chromium (apt-get install chromium); required when CI=true")


@pytest.fixture
def study(small_study: Path) -> Path:
    """The session's small real study (conftest.small_study): cnn and vit, two seeds each."""
    return small_study


def _tables(md: str) -> list[list[str]]:
    """Every Markdown table of `md` as its lines."""
    return [block.strip().splitlines() for block in md.split("\n\n") if block.strip().startswith("| ")]


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n")[1].split("\n## ")[0]


def _copy(study: Path, tmp_path: Path) -> Path:
    """A copy of the small study to doctor (the session's one stays as it is)."""
    out = tmp_path / "study"
    shutil.copytree(study, out)
    return out


def _doctor(study: Path, edit) -> None:
    path = study / "results.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_report_sections_narrow_tables_and_figures(study):
    md = (study / "report.md").read_text()
    assert "Preset **quick**" in md and "sliced" in md and "Training precision:" in md
    heads = re.findall(r"^## (.+)$", md, flags=re.M)
    assert heads[:5] == ["What this run shows", "Accuracy", "Paired comparisons", "Cost", "Settings per model"]
    assert heads[-1] == "All runs" and "This study is partial" not in md
    board = _tables(_section(md, "Accuracy"))[0]
    assert board[0] == ("| model | runs ok | test accuracy (%) | seed range (%) | macro-F1 | time to 99 % val (s) |")
    assert len(board) == 2 + 2 and all("±" in line and "2/2" in line for line in board[2:])
    accuracies = [float(line.split("|")[3].split("±")[0]) for line in board[2:]]
    assert accuracies == sorted(accuracies, reverse=True)
    cost = _tables(_section(md, "Cost"))[0]
    assert len(cost) == 4 and all("images/s" in line for line in cost[2:])
    assert all(len(t[0].split(" | ")) <= 9 for t in _tables(md)), "a table wider than 9 columns"
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (study / link).read_bytes()[:4] == b"\x89PNG", link
    assert {"figures/curves.png", "figures/pareto.png", "figures/confusions.png", "figures/per_class_f1.png",
            "figures/mistakes.png"} <= set(re.findall(r"\]\((figures/[^)]+)\)", md))
    assert "figures/accuracy_vs_budget.png" not in md  # no budgets in this study


def test_results_json_pairs_the_models_seed_by_seed_on_their_predictions(study):
    doc = json.loads((study / "results.json").read_text())
    for r in doc["rows"]:
        assert r["test_accuracy_low"] <= r["test_accuracy"] <= r["test_accuracy_high"]
        assert r["precision"] in ("bf16", "fp32") and r["budget"] is None and r["images_seen"] > 0
    tests = doc["comparisons"]
    assert [(t["kind"], t["model_a"], t["budget_a"], t["model_b"], t["budget_b"], t["seed"]) for t in tests] == [
        ("models", "cnn", None, "vit", None, 0), ("models", "cnn", None, "vit", None, 1)]
    for t in tests:
        a, b = (json.loads((study / f"runs/{m}-seed{t['seed']}/predictions.json").read_text()) for m in ("cnn", "vit"))
        assert a["index"] == b["index"] and len(a["index"]) == t["n"] == 256
        right_a = [p == y for p, y in zip(a["pred"], a["target"])]
        right_b = [p == y for p, y in zip(b["pred"], b["target"])]
        assert t["b"] == sum(x and not y for x, y in zip(right_a, right_b))
        assert t["c"] == sum(y and not x for x, y in zip(right_a, right_b))
        assert t["p"] == pytest.approx(mcnemar_exact(t["b"], t["c"]))
        assert t["better"] == (None if t["p_holm"] >= 0.05 else "a" if t["b"] > t["c"] else "b")
    assert [t["p_holm"] for t in tests] == pytest.approx(holm([t["p"] for t in tests]))
    [v] = doc["verdicts"]  # one pair, over its two seeds; no test across 2 seeds
    assert (v["model_a"], v["model_b"], v["budget"], v["n"], v["seeds"]) == ("cnn", "vit", None, 256, [0, 1])
    assert v["wins_a"] + v["wins_b"] + v["ties"] == 2 and v["seed_test_p"] is None
    assert v["verdict"] == ("a" if v["wins_a"] == 2 else "b" if v["wins_b"] == 2 else
                            "mixed" if v["wins_a"] and v["wins_b"] else "none")
    md = (study / "report.md").read_text()
    assert len(_tables(_section(md, "Paired comparisons"))[0]) == 2 + 2 and "Holm" in md


def _with_predictions(an, wrong: dict[tuple[str, int], int]):
    """The analysis with doctored predictions: each run right on every test image but the first
    `wrong[(model, seed)]` (default 0)."""
    preds = {}
    for run in an.runs:
        r, real = run["row"], run["predictions"]
        k = wrong.get((r["model"], r["seed"]), 0)
        preds[r["run_dir"]] = {"index": real["index"], "target": real["target"],
                               "pred": [(t + 1) % 10 if i < k else t for i, t in enumerate(real["target"])]}
    tests, _ = paired.comparisons(an.rows, preds)
    return dataclasses.replace(an, comparisons=tests, verdicts=verdicts.verdicts(tests))


def _mirror(v: dict) -> dict:
    """The same verdict with A and B swapped."""
    swap = {"a": "b", "b": "a"}
    out = {**v, **{f"{k}_a": v[f"{k}_b"] for k in ("model", "budget", "wins")},
           **{f"{k}_b": v[f"{k}_a"] for k in ("model", "budget", "wins")}}
    out.update(better=[swap.get(x, x) for x in v["better"]], differences=[-d for d in v["differences"]],
               verdict=swap.get(v["verdict"], v["verdict"]))
    return out


def test_findings_name_a_winner_only_when_every_seed_does_and_a_reversal_as_mixed(study):
    an = analyse(study, *read_results(study))
    one_image = _with_predictions(an, {("vit", 0): 1, ("vit", 1): 1})
    # b = 1, c = 0 in each seed: p = 1; no winner from a one-image gap
    assert [v["verdict"] for v in one_image.verdicts] == ["none"]
    text = " ".join(findings(one_image))
    assert "no significant difference between cnn and vit in these runs on these 256 test images (p = 1 in each " \
           "of 2 seeds)" in text and "is more accurate than" not in text
    large = _with_predictions(an, {("vit", 0): 40, ("vit", 1): 40})
    # b = 40, c = 0: p = 2 / 2^40, Holm over 2 tests: 4 / 2^40 < 0.001
    assert [(v["wins_a"], v["wins_b"], v["ties"], v["verdict"]) for v in large.verdicts] == [(2, 0, 0, "a")]
    assert "cnn is more accurate than vit in these runs (p < 0.001 in each of 2 seeds)" in " ".join(findings(large))
    partial = _with_predictions(an, {("vit", 0): 40, ("vit", 1): 1})
    assert partial.verdicts[0]["verdict"] == "none"
    assert "cnn is more accurate than vit in 1 of 2 seeds only (p < 0.001), with no significant difference in " \
           "the other: no winner" in " ".join(findings(partial))
    reversal = _with_predictions(an, {("vit", 0): 40, ("cnn", 1): 40})  # cnn wins seed 0, vit seed 1
    [v] = reversal.verdicts
    assert (v["wins_a"], v["wins_b"], v["ties"], v["verdict"]) == (1, 1, 0, "mixed")
    text = " ".join(findings(reversal))
    assert "cnn is more accurate than vit in 1 seed and vit than cnn in 1 seed: mixed, no winner (p < 0.001 in " \
           "each of those seeds)" in text and "more accurate than vit in these runs" not in text
    for case in (one_image, large, partial, reversal):  # the same sentence whichever model is A
        v = case.verdicts[0]
        assert claims.relation(_mirror(v)) == claims.relation(v)


def test_a_reversal_in_the_predictions_files_is_mixed_and_a_one_image_gap_none(study, tmp_path):
    out = _copy(study, tmp_path)

    def edit(run: str, wrong: int) -> None:
        path = out / "runs" / run / "predictions.json"
        doc = json.loads(path.read_text())
        doc["pred"] = [(t + 1) % 10 if i < wrong else t for i, t in enumerate(doc["target"])]
        path.write_text(json.dumps(doc))

    for run, wrong in (("cnn-seed0", 0), ("vit-seed0", 40), ("cnn-seed1", 40), ("vit-seed1", 0)):
        edit(run, wrong)  # cnn wins seed 0 (40 images to 0), vit wins seed 1
    assert main(["report", str(out)]) == 0
    [v] = json.loads((out / "results.json").read_text())["verdicts"]
    assert (v["model_a"], v["model_b"], v["wins_a"], v["wins_b"], v["ties"], v["verdict"]) == \
        ("cnn", "vit", 1, 1, 0, "mixed")
    md = (out / "report.md").read_text()
    assert "mixed, no winner" in md and "| cnn vs vit | 1 / 1 / 0 | mixed: no winner |" in md
    for run, wrong in (("vit-seed0", 1), ("cnn-seed1", 0)):
        edit(run, wrong)  # now they differ on one image in seed 0 and agree in seed 1
    assert main(["report", str(out)]) == 0
    [v] = json.loads((out / "results.json").read_text())["verdicts"]
    assert (v["wins_a"], v["wins_b"], v["ties"], v["verdict"]) == (0, 0, 2, "none")


def test_time_to_99_states_the_spacing_and_does_not_rank_within_it(study):
    an = analyse(study, *read_results(study))
    for label in ("cnn", "vit"):  # one validation per run (one epoch): the spacing is that validation's time
        times = [max(r["train_seconds"] for r in records(run["folder"], "val"))
                 for run in an.runs if run["row"]["model"] == label]
        assert an.val_spacing[label] == pytest.approx(max(times))
    aggs = [dict(a) for a in an.aggs]
    spacing = {"cnn": 5.0, "vit": 5.0}
    aggs[0].update(time_to_99=12.0, time_to_99_n=2)
    aggs[1].update(time_to_99=14.0, time_to_99_n=2)  # 2 s later, within one 5 s spacing: not ranked
    close = " ".join(findings(dataclasses.replace(an, aggs=aggs, val_spacing=spacing)))
    assert "**cnn** and **vit** reached 99 % validation accuracy within one validation spacing of each other " \
           "(12.0 and 14.0 s): too close to rank" in close and "accuracy first" not in close
    assert "validations every 5.00 s of training at most" in close
    aggs[1].update(time_to_99=30.0)
    apart = " ".join(findings(dataclasses.replace(an, aggs=aggs, val_spacing=spacing)))
    assert "**cnn** reached 99 % validation accuracy first, after 12.0 s of training; then vit (30.0 s)" in apart
    aggs[1].update(time_to_99_n=1)  # reached in one of its two seeds
    some = " ".join(findings(dataclasses.replace(an, aggs=aggs, val_spacing=spacing)))
    assert "in only some seeds: vit (1 of 2, 30.0 s)" in some
    assert tables.accuracy_table(dataclasses.replace(an, aggs=aggs))[1][1][-1] == "30.0 (1/2 seeds)"


def test_a_detector_is_shown_in_its_own_units(study):
    an = analyse(study, *read_results(study))
    aggs = [dict(a) for a in an.aggs]
    aggs[1].update(detector=True, map_50=0.9, inference_ms_per_scene=12.5, inference_scenes_per_second=80.0,
                   inference_scenes_per_second_n=1, images_seen=1000.0, train_images_per_second=50.0)
    aggs[1]["inference_ms_per_scene_n"] = aggs[1]["ok"]
    _, rows = tables.cost_table(dataclasses.replace(an, aggs=aggs))
    assert "12.5 ms/scene" in rows[1] and "80 scenes/s (1/2 seeds)" in rows[1]
    assert rows[1][3].startswith("1 K scenes (")  # and the training FLOPs
    assert "50 scenes/s" in rows[1] and "images/s" in rows[0][4]
    acc_headers, _ = tables.accuracy_table(dataclasses.replace(an, aggs=aggs))
    assert acc_headers[-1] == "mAP@0.5 (scenes)"
    # a detector summary from before the split units: its loss and speeds move to their own columns
    old = {"test_accuracy": 0.5, "confusion_matrix": [[1, 1]], "map_50": 0.4, "test_loss": 1.2,
           "inference_images_per_second": 30.0, "inference_ms_per_image": 9.0}
    row = run_row(old, {"model": "frcnn", "seed": 0, "epochs": 1}, run_dir="runs/frcnn-seed0", preset="quick")
    assert (row["test_detection_loss"], row["inference_scenes_per_second"], row["inference_ms_per_scene"]) == \
        (1.2, 30.0, 9.0)
    assert row["test_loss"] is None and row["inference_images_per_second"] is None
    cm = [[5 if i == j else 0 for j in range(10)] + [2] for i in range(10)]  # 10 x 11, last column "none"
    assert figures.confusions([("frcnn", cm)], tuple(map(str, range(10))))[:4] == b"\x89PNG"


def test_report_of_a_partial_study_names_the_missing_runs(study, tmp_path, capsys):
    out = _copy(study, tmp_path)
    interrupted = out / "runs/vit-seed2"
    interrupted.mkdir()
    (interrupted / "config.json").write_text("{}")
    (interrupted / "checkpoint.pt").write_bytes(b"")

    def plan_six(doc):
        doc["study"]["planned"] = [{"model": m, "seed": s, "budget": None, "run_dir": f"runs/{m}-seed{s}"}
                                   for s in range(3) for m in ("cnn", "vit")]
    _doctor(out, plan_six)
    assert main(["report", str(out)]) == 0
    assert "4 of 6 planned runs finished" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "**This study is partial**: 4 of 6 planned runs finished; no result yet for cnn seed 2 (not started), " \
           "vit seed 2 (interrupted)" in md
    runs = _tables(_section(md, "All runs"))[0]
    assert any("| vit | 2 | interrupted |" in line for line in runs)


def _restudy(study: Path, tmp_path: Path, plan: list[tuple[str, str, int, float | None]]) -> Path:
    """A new study folder made of the small study's finished runs, each (source run, new run folder, seed,
    seconds budget): the run's config says that seed and budget, its summary is written after it (a finished
    run), and results.json lists the rows and the budgets; nothing is trained."""
    out = tmp_path / "restudy"
    (out / "runs").mkdir(parents=True)
    for src, dst, seed, budget in plan:
        shutil.copytree(study / "runs" / src, out / "runs" / dst)
        config, summary = (out / "runs" / dst / name for name in ("config.json", "summary.json"))
        doc = json.loads(config.read_text())
        doc["config"].update(seed=seed, budget_s=budget or 0)
        config.write_text(json.dumps(doc))
        done = json.loads(summary.read_text())
        done["budget_error"] = done["train_seconds"] / budget - 1 if budget else None
        summary.write_text(json.dumps(done))
    meta, _ = read_results(study)
    budgets = sorted({b for *_, b in plan if b})
    meta.update(budgets=budgets, budget_unit="s" if budgets else None, command=None,
                planned=[{"model": dst.split("-")[0], "seed": seed, "budget": b, "run_dir": f"runs/{dst}"}
                         for _, dst, seed, b in plan])
    rows = [read_row(out, f"runs/{dst}", preset="quick") for _, dst, _, _ in plan]
    (out / "results.json").write_text(json.dumps({"study": meta, "rows": rows}))
    return out


def test_one_budget_ranks_nothing_by_the_seconds_spent(study, tmp_path):
    out = _restudy(study, tmp_path, [(f"{m}-seed{k}", f"{m}-seed{k}", k, 60.0) for k in (0, 1) for m in ("cnn", "vit")])
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Each model had 60 s of training on cpu" in md
    for banned in ("less training", "trains faster", "Pareto front of", "★"):
        assert banned not in md, banned
    assert "Every model had the same budget, so nothing is ranked by the training seconds actually spent" in md
    assert "the spread in seconds is the budget's tolerance, so no front is drawn" in md
    an = analyse(out, *read_results(out))
    assert an.front_axis is None and an.dominated == {} and an.front == set()


def test_two_budgets_test_each_gain_and_put_the_pareto_front_on_paired_tests(study, tmp_path):
    # each model at 30 s (its seed-0 run) and 60 s (its seed-1 run, relabelled seed 0): one seed per budget
    out = _restudy(study, tmp_path, [(f"{m}-seed{k}", f"{m}-b{b}-seed0", 0, float(b))
                                     for k, b in ((0, 30), (1, 60)) for m in ("cnn", "vit")])
    assert main(["report", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [(t["kind"], t["model_a"], t["budget_a"], t["model_b"], t["budget_b"], t["budget"])
            for t in doc["comparisons"]] == [
        ("models", "cnn", 30.0, "vit", 30.0, 30.0), ("models", "cnn", 60.0, "vit", 60.0, 60.0),
        ("budgets", "cnn", 30.0, "cnn", 60.0, None), ("budgets", "vit", 30.0, "vit", 60.0, None),
        ("across", "cnn", 30.0, "vit", 60.0, None), ("across", "vit", 30.0, "cnn", 60.0, None)]
    tests = doc["comparisons"]
    assert [t["p_holm"] for t in tests] == pytest.approx(holm([t["p"] for t in tests]))  # one family
    md = (out / "report.md").read_text()
    assert "Each model had 30 s and 60 s of training (one set of runs per budget) on cpu" in md
    assert (out / "figures/accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Accuracy against training budget" in md and "### 30 s of training" in md
    assert "### Budget gains: each model at the next budget" in md and "| cnn @ 30 s vs cnn @ 60 s | 0 |" in md
    assert _tables(_section(md, "Accuracy"))[0][0].startswith("| model | budget (s) | runs ok |")
    for gain in (v for v in doc["verdicts"] if v["kind"] == "budgets"):
        said = {"b": "a significant gain (p", "a": "a significant loss (p", "none": "not significant (p"}
        assert f"{gain['model_a']} " in md and said[gain["verdict"]] in md
    an = analyse(out, *read_results(out))
    assert an.front_axis == "budget"
    for label, by in an.dominated.items():  # dominated: at no more budget and significantly more accurate
        mine = next(a for a in an.aggs if a["label"] == label)
        for other in by:
            theirs = next(a for a in an.aggs if a["label"] == other)
            v = verdicts.between(an.verdicts, (theirs["model"], theirs["budget"]), (mine["model"], mine["budget"]))
            assert theirs["budget"] <= mine["budget"] and verdicts.winner(v) == (theirs["model"], theirs["budget"])
    off = [m for m, by in an.dominated.items() if by]
    assert "On the Pareto front of accuracy against training budget" in md and "less training" not in md
    assert all(f"{m} (dominated by" in md for m in off) and "vit @ 30 s" in off  # cnn beats vit at 30 s
    cost = _tables(_section(md, "Cost"))[0]
    assert {line.split(" | ")[0][2:].removesuffix(" ★") for line in cost[2:] if " ★ |" in line} == an.front
    assert all(len(t[0].split(" | ")) <= 9 for t in _tables(md))
    if CHROMIUM.exists():  # the README's pictures, made by the bench script
        proc = subprocess.run([sys.executable, str(REPO / "bench/report_pictures.py"), str(out), "--out",
                               str(tmp_path / "docs")], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        for name in ("report-top.png", "accuracy-vs-budget.png"):
            assert (tmp_path / "docs" / name).read_bytes()[:4] == b"\x89PNG", name


def test_three_seeds_add_a_test_across_seeds_to_every_pair(study, tmp_path):
    out = _restudy(study, tmp_path, [(f"{m}-seed{k}", f"{m}-seed{seed}", seed, None)
                                     for seed, k in ((0, 0), (1, 1), (2, 0)) for m in ("cnn", "vit")])
    assert main(["report", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    [v] = doc["verdicts"]
    assert v["seeds"] == [0, 1, 2] and v["seed_test_p"] == pytest.approx(t_test_paired(v["differences"]))
    assert v["seed_test_p_holm"] == pytest.approx(v["seed_test_p"])  # one across-seed test: Holm leaves it
    assert v["verdict"] == ("a" if v["wins_a"] == 3 and v["seed_test_p_holm"] < 0.05 else "none")
    md = (out / "report.md").read_text()
    assert "across seeds (paired t-test p" in md and "| mean A − B (points) |" in md
    assert "2 / 2^n (0.25 with 3 seeds" in md and "in these runs" not in md
    # every seed significant but the test across seeds not: no claim about the architectures
    doubt = {**v, "seed_test_p": 0.2, "seed_test_p_holm": 0.2, "wins_a": 3, "wins_b": 0, "ties": 0,
             "better": ["a"] * 3, "p_holm": [1e-4] * 3}
    doubt["verdict"] = verdicts._verdict(doubt)
    assert doubt["verdict"] == "none" and "but not across seeds (paired t-test p = 0.2): no claim about the " \
        "architectures" in claims.relation(doubt)


def test_the_precision_sentence_says_what_auto_did(study):
    from mnistbench.study.about import _why_precision

    def runs(precision, source, step_ms=None):
        return [{"row": {"precision": precision}, "summary": {"precision_source": s, "precision_step_ms": step_ms}}
                for s in source]
    slow = {"fp32": 164.4, "bf16": 176.9}
    assert _why_precision(runs("fp32", ["measured", "cached"], slow)) == (
        "fp32 for {models} (precision=auto kept fp32: bf16's step was not under 85 % of fp32's (176.9 against "
        "164.4 ms); measured once on this machine, reused by its other runs)")
    assert _why_precision(runs("bf16", ["cached"], {"fp32": 15.1, "bf16": 12.0})) == (
        "bf16 for {models} (precision=auto kept bf16: its step was under 85 % of fp32's (12 against 15.1 ms); "
        "measured earlier on this machine and cached)")
    # 13.5 ms is 89 % of 15.1: faster, but not by the margin, so fp32
    assert "bf16's step was not under 85 % of fp32's (13.5 against 15.1 ms))" in _why_precision(
        runs("fp32", ["measured"], {"fp32": 15.1, "bf16": 13.5}))
    assert _why_precision(runs("fp32", ["deterministic"])) == "fp32 for {models} (deterministic=true: fp32, exact " \
        "and never timed)"
    assert _why_precision(runs("fp32", ["set"])) == "fp32 for {models} (set explicitly)"
    md = (study / "report.md").read_text()
    assert "kept the faster" not in md and "Training precision: fp32 for cnn and vit (" in md


def test_a_study_save_reads_each_predictions_file_once(study, tmp_path, monkeypatch):
    from mnistbench.study.results import save_results

    out = _copy(study, tmp_path)
    meta, rows = read_results(out)
    reads = []
    real = paired.read_predictions
    monkeypatch.setattr(paired, "read_predictions", lambda folder: reads.append(folder) or real(folder))
    cache = paired.PredictionCache()
    for k in range(1, len(rows) + 1):  # as compare saves: after every finished run
        save_results(out, meta, rows[:k], cache=cache)
    assert len(reads) == len(rows)
    assert json.loads((out / "results.json").read_text())["comparisons"] == \
        json.loads((study / "results.json").read_text())["comparisons"]
    run = out / rows[0]["run_dir"] / "predictions.json"
    run.write_text(run.read_text() + " ")  # a changed file is read again
    save_results(out, meta, rows, cache=cache)
    assert len(reads) == len(rows) + 1


def test_report_html_is_self_contained(study):
    page = (study / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)


def _rendered(page: Path, tmp: Path) -> tuple[int, int, int]:
    """(images, images that failed to load, widest table overflow in px) of `page` in a 1400 px Chromium."""
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "const over=Math.max(0,...[...document.querySelectorAll('.scroll')].map(d=>d.scrollWidth-d.clientWidth));"
             "document.body.setAttribute('data-check',im.length+'/'+"
             "im.filter(i=>!i.complete||i.naturalWidth===0).length+'/'+over);});</script>")
    checked = tmp / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,1000",
                           "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="(\d+)/(\d+)/(\d+)"', proc.stdout)
    assert found, f"no result from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return int(found[1]), int(found[2]), int(found[3])


@needs_chromium
def test_report_html_images_load_and_tables_fit_1400px_in_chromium(study, tmp_path):
    assert CHROMIUM.exists(), "CI=true but /usr/bin/chromium is missing: apt-get install chromium"
    total, broken, overflow = _rendered(study / "report.html", tmp_path)
    assert total >= 5 and broken == 0 and overflow == 0
    # the probe itself must see a broken image
    bad = tmp_path / "bad.html"
    bad.write_text((study / "report.html").read_text().replace("</body>", '<img src="data:image/png;base64,AAAA">'
                                                                          "</body>"))
    assert _rendered(bad, tmp_path)[:2] == (total + 1, 1)


def test_report_command_rebuilds_identical_tables(study, capsys):
    before = {name: (study / name).read_bytes() for name in ("results.csv", "results.json", "report.md")}
    os.utime(study / "results.csv", (0, 0))
    assert main(["report", str(study)]) == 0
    assert "4 of 4 planned runs finished" in capsys.readouterr().out
    assert (study / "results.csv").stat().st_mtime > 0  # really rewritten
    for name, data in before.items():
        assert (study / name).read_bytes() == data, name


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
