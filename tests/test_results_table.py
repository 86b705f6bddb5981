"""The results tables trace to files: bench/results/*.json rendered by bench/results.py, checked up to date."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import new_result  # noqa: E402  (bench/ is a folder of scripts, not a package)
import results  # noqa: E402


def test_the_rendered_tables_match_the_results_files():
    stale = results.stale()
    assert not stale, (f"{', '.join(p.name for p in stale)}: the tables differ from bench/results/*.json; "
                       "run python bench/results.py")


def test_every_row_names_its_commit_machine_and_torch():
    rows = results.load()
    assert rows
    for row in rows:
        assert row["machine"].get("gpu") or row["machine"]["cpu"], row["_file"]
        assert row["software"]["torch"], row["_file"]
        for run in row["runs"]:
            assert run.get("commit") or run.get("recorded_at") or row.get("commit") or row.get("recorded_at")
    lines = results.readme_table(rows).splitlines()[2:]
    assert len(lines) == len(results.front_page(rows))
    assert {line.split("|")[1].strip() for line in lines} == {r["name"] for r in rows if not r.get("variant")}
    for line in lines:  # model | accuracy | whole command | precision | CPU | commit, date | command
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] and re.fullmatch(r"(recorded at )?[0-9a-f]{7}( / [0-9a-f]{7})*, \d{4}-\d{2}-\d{2}", cells[5])
        assert cells[6].startswith("`mnistbench ")


def _row(**changes) -> dict:
    row = {"name": "cnn", "variant": None, "command": "mnistbench train --model cnn --data-dir ../d --seed {seed} "
           "--set precision=fp32 --quiet", "precision": "fp32", "date": "2026-12-06", "commit": "c1f9b2f",
           "machine": {"cpu": "Some CPU", "cores": 2, "flags": ["avx2"], "gpu": None}, "software": {"torch": "2.5"},
           "runs": [{"seed": 0, "test_accuracy": 0.9917, "whole_command_seconds": 9.0},
                    {"seed": 1, "test_accuracy": 0.9924, "whole_command_seconds": 10.25}],
           "source": "a test", "_file": "x.json"}
    row.update(changes)
    return row


@pytest.mark.parametrize("change, message", [
    ({"commit": None}, "no commit"),
    ({"commit": "HEAD"}, "not a git hash"),
    ({"machine": {"cpu": "Some CPU"}}, "machine must name"),
    ({"software": {}}, "torch version"),
    ({"date": "6 Dec"}, "YYYY-MM-DD"),
    ({"runs": [{"seed": 0, "test_accuracy": 0.99}]}, "whole_command_seconds"),
    ({"runs": [{"seed": 0, "whole_command_seconds": 9.0}]}, "no test_accuracy"),
    ({"accuracy": 0.99}, "unknown accuracy"),
])
def test_a_row_that_cannot_trace_its_figures_is_refused(change, message):
    row = _row(**change)
    row.pop("_file")
    with pytest.raises(results.ResultError, match=message):
        results.check(row, "x.json")


def test_the_front_page_shows_the_newest_plain_row_of_each_name():
    old, new = _row(date="2026-11-29", _file="a.json"), _row(date="2026-12-06", _file="b.json")
    variant = _row(date="2026-12-07", variant="AVX2-only emulation", _file="c.json")
    vit = _row(name="vit", date="2026-11-01", _file="d.json")
    assert results.front_page([vit, variant, old, new]) == [new, vit]  # in ORDER: cnn before vit
    tied = _row(date="2026-12-06", _file="e.json")
    assert results.front_page([old, new, tied]) == [new, tied]  # both measurements of that day, none chosen


def test_cells_show_figures_as_recorded():
    row = _row()
    assert results.accuracy(row["runs"]) == "99.21 % (99.17–99.24; seeds 0, 1)"
    assert results.spread([r["whole_command_seconds"] for r in row["runs"]], "s") == "9.0–10.25 s"
    assert results.number(1351.6) == "1,351.6" and results.number(230) == "230"
    assert results.command(row) == "`mnistbench train --model cnn --set precision=fp32`"
    detector = [{"test_accuracy": 0.9779, "map_50": 0.991}]
    assert results.accuracy(detector) == "97.79 % by detection (1 run, seed not recorded)"
    assert results.commit(_row(commit=None, recorded_at="0563f79fe3")) == "recorded at 0563f79"


def test_render_replaces_only_the_marked_block():
    text = "hand-written\n<!-- results:readme begin (generated) -->\nold table\n<!-- results:readme end -->\nmore\n"
    out = results.render(text, {"readme": lambda rows: "NEW"}, [])
    assert out == "hand-written\n<!-- results:readme begin (generated) -->\nNEW\n<!-- results:readme end -->\nmore\n"
    with pytest.raises(results.ResultError, match="markers"):
        results.render("no markers", {"readme": lambda rows: ""}, [])


def _run_folder(path: Path, seed: int, commit: str | None, accuracy: float) -> str:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": {"seed": seed}, "git_commit": commit,
                                                  "versions": {"torch": "2.9.0", "python": "3.11.7"}}))
    (path / "summary.json").write_text(json.dumps({"test_accuracy": accuracy, "train_seconds": 3.5,
                                                   "precision": "fp32", "device": "cpu (2 threads)", "params": 1}))
    return str(path)


def test_new_result_writes_a_file_that_renders(tmp_path):
    commit = "c1f9b2f8cfc37cdafa3f9b0ba1bd3a606f166a34"
    runs = [_run_folder(tmp_path / f"s{s}", s, commit, acc) for s, acc in ((0, 0.9917), (1, 0.9924))]
    out = tmp_path / "results"
    out.mkdir()
    path = new_result.new_result("cnn", "mnistbench train --model cnn --seed {seed}", [9.1, 10.2], runs, folder=out)
    (row,) = results.load(out)
    assert row["_file"] == path.name and row["commit"] == commit and row["software"]["torch"] == "2.9.0"
    assert [(r["seed"], r["test_accuracy"], r["train_seconds"], r["whole_command_seconds"]) for r in row["runs"]] == \
        [(0, 0.9917, 3.5, 9.1), (1, 0.9924, 3.5, 10.2)]
    assert "params" not in row["runs"][0]
    with pytest.raises(results.ResultError, match="exists"):
        new_result.new_result("cnn", "mnistbench train --model cnn --seed {seed}", [9.1, 10.2], runs, folder=out)


def test_new_result_refuses_runs_it_cannot_trace(tmp_path):
    a = _run_folder(tmp_path / "a", 0, "c1f9b2f8", 0.99)
    b = _run_folder(tmp_path / "b", 1, "0563f79f", 0.99)
    c = _run_folder(tmp_path / "c", 2, None, 0.99)
    cmd = "mnistbench train --model cnn --seed {seed}"
    with pytest.raises(results.ResultError, match="different git commits"):
        new_result.new_result("cnn", cmd, [9.0, 9.0], [a, b], folder=tmp_path)
    with pytest.raises(results.ResultError, match="no git commits"):
        new_result.new_result("cnn", cmd, [9.0], [c], folder=tmp_path)
    with pytest.raises(results.ResultError, match="{seed}"):
        new_result.new_result("cnn", "mnistbench train --model cnn", [9.0, 9.0], [a, a], folder=tmp_path)
    with pytest.raises(results.ResultError, match="times"):
        new_result.new_result("cnn", cmd, [9.0], [a, b], folder=tmp_path)
