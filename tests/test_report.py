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

from mnistbench.cli import main
from mnistbench.metrics import holm, mcnemar_exact
from mnistbench.study import figures, paired, tables
from mnistbench.study.findings import findings
from mnistbench.study.results import analyse
from mnistbench.study.rows import read_results, run_row

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
    assert [(t["model_a"], t["model_b"], t["seed"]) for t in tests] == [("cnn", "vit", 0), ("cnn", "vit", 1)]
    for t in tests:
        a, b = (json.loads((study / f"runs/{m}-seed{t['seed']}/predictions.json").read_text()) for m in ("cnn", "vit"))
        assert a["index"] == b["index"] and len(a["index"]) == t["n"] == 256
        right_a = [p == y for p, y in zip(a["pred"], a["target"])]
        right_b = [p == y for p, y in zip(b["pred"], b["target"])]
        assert t["b"] == sum(x and not y for x, y in zip(right_a, right_b))
        assert t["c"] == sum(y and not x for x, y in zip(right_a, right_b))
        assert t["p"] == pytest.approx(mcnemar_exact(t["b"], t["c"]))
        assert t["better"] == (None if t["p_holm"] >= 0.05 else "cnn" if t["b"] > t["c"] else "vit")
    assert [t["p_holm"] for t in tests] == pytest.approx(holm([t["p"] for t in tests]))
    md = (study / "report.md").read_text()
    assert len(_tables(_section(md, "Paired comparisons"))[0]) == 2 + 2 and "Holm" in md


def _with_predictions(an, wrong_b: dict[int, int]):
    """The analysis with doctored predictions: cnn right on every test image; vit wrong on the first
    `wrong_b[seed]` of them and right on the rest."""
    preds = {}
    for run in an.runs:
        r, real = run["row"], run["predictions"]
        k = 0 if r["model"] == "cnn" else wrong_b[r["seed"]]
        preds[r["run_dir"]] = {"index": real["index"], "target": real["target"],
                               "pred": [(t + 1) % 10 if i < k else t for i, t in enumerate(real["target"])]}
    tests, _ = paired.comparisons(an.rows, preds)
    return dataclasses.replace(an, comparisons=tests, verdicts=paired.verdicts(tests))


def test_findings_name_a_winner_only_when_the_corrected_test_does(study):
    an = analyse(study, *read_results(study))
    one_image = " ".join(findings(_with_predictions(an, {0: 1, 1: 1})))
    # b = 1, c = 0 in each seed: p = 1; no winner from a one-image gap
    assert "no significant difference between" in one_image and "on these 256 test images (p ≥ 1 in each of 2" \
           " seeds)" in one_image
    assert "is more accurate than" not in one_image and "points ahead" not in one_image
    large = " ".join(findings(_with_predictions(an, {0: 40, 1: 40})))
    # b = 40, c = 0: p = 2 / 2^40, Holm over 2 tests: 4 / 2^40 < 0.001
    assert "cnn is more accurate than vit (p < 0.001 in each of 2 seeds)" in large
    mixed = " ".join(findings(_with_predictions(an, {0: 40, 1: 1})))
    assert "cnn is more accurate than vit in 1 of 2 seeds (p < 0.001), with no significant difference in the " \
           "other" in mixed


def test_time_to_99_says_in_how_many_seeds(study):
    an = analyse(study, *read_results(study))
    aggs = [dict(a) for a in an.aggs]
    aggs[0].update(time_to_99=12.0, time_to_99_n=1)  # reached in one of its two seeds
    text = " ".join(findings(dataclasses.replace(an, aggs=aggs)))
    assert f"**{aggs[0]['model']}** reached 99 % validation accuracy first: after 12.0 s, in 1 of 2 seeds" in text
    assert tables.accuracy_table(dataclasses.replace(an, aggs=aggs))[1][0][-1] == "12.0 (1/2 seeds)"


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


def test_budgets_give_a_budget_column_per_budget_tests_and_the_trade_off_figure(study, tmp_path):
    out = _copy(study, tmp_path)

    def two_budgets(doc):
        doc["study"]["budgets"], doc["study"]["budget_unit"] = [30, 60], "s"
        for r in doc["rows"]:  # each run's budget is its config's: seed 0 trained for 30 s, seed 1 for 60 s
            config = out / r["run_dir"] / "config.json"
            made, run = config.stat(), json.loads(config.read_text())
            run["config"]["budget_s"] = 30.0 if r["seed"] == 0 else 60.0
            config.write_text(json.dumps(run))
            os.utime(config, ns=(made.st_atime_ns, made.st_mtime_ns))  # still older than its summary
    _doctor(out, two_budgets)
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Each model had 30 s and 60 s of training (one set of runs per budget) on cpu" in md
    assert (out / "figures/accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Accuracy against training budget" in md and "### 30 s of training" in md
    assert _tables(_section(md, "Accuracy"))[0][0].startswith("| model | budget (s) | runs ok |")
    assert "Accuracy against training budget (mean over seeds): cnn" in md
    doc = json.loads((out / "results.json").read_text())
    assert [(t["budget"], t["seed"]) for t in doc["comparisons"]] == [(30.0, 0), (60.0, 1)]
    assert all(len(t[0].split(" | ")) <= 9 for t in _tables(md))
    if CHROMIUM.exists():  # the README's pictures, made by the bench script
        proc = subprocess.run([sys.executable, str(REPO / "bench/report_pictures.py"), str(out), "--out",
                               str(tmp_path / "docs")], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        for name in ("report-top.png", "accuracy-vs-budget.png"):
            assert (tmp_path / "docs" / name).read_bytes()[:4] == b"\x89PNG", name


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
