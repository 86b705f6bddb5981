"""`mnistbench compare` and `report` on tiny slices of the real data: files, rows, failures, resume, the HTML."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY
from torch import nn

import mnistbench.train
from mnistbench import models
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.errors import UserError
from mnistbench.models import ModelSpec
from mnistbench.study import presets
from mnistbench.study.compare import compare
from mnistbench.study.plan import run_state
from mnistbench.study.results import COLUMNS

SMALL = {k: v for k, v in TINY.items() if k != "quiet"}  # compare sets quiet itself
CHROMIUM = Path("/usr/bin/chromium")


def build_mlp(*, hidden: int = 16) -> nn.Module:
    """A tiny MLP: the fast second model of these studies."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


MLP = ModelSpec(name="mlp", build=build_mlp, about="tiny MLP for tests")


def _failing(exc: BaseException):
    def build(*, hidden: int = 4) -> nn.Module:
        raise exc
    return build


def _sets(**extra) -> list[str]:
    """--set flags of the small settings (and `extra`)."""
    return [a for k, v in {**SMALL, **extra}.items() for a in ("--set", f"{k}={v}")]


def _rows(study: Path) -> list[dict[str, str]]:
    with open(study / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> Path:
    """cnn and the tiny MLP, two seeds each, through the command line."""
    out = tmp_path_factory.mktemp("compare") / "study"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(models.MODELS, "mlp", MLP)
        rc = main(["compare", "--models", "cnn,mlp", "--seeds", "2", "--out", str(out), "--data-dir", str(data_dir),
                   "--quiet", *_sets(width=8)])
    assert rc == 0
    return out


def test_compare_writes_every_file_and_one_row_per_model_and_seed(study):
    for name in ("results.csv", "results.json", "report.md", "report.html"):
        assert (study / name).stat().st_size > 0, name
    rows = _rows(study)
    assert [(r["model"], r["seed"]) for r in rows] == [("cnn", "0"), ("mlp", "0"), ("cnn", "1"), ("mlp", "1")]
    assert tuple(rows[0]) == COLUMNS
    for r in rows:
        assert r["status"] == "ok" and r["error"] == "" and r["preset"] == "quick"
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and float(r["train_seconds"]) > 0
        assert r["test_images"] == str(SMALL["test_limit"]) and r["train_limit"] == str(SMALL["train_limit"])
        assert int(r["params"]) > 0 and int(r["flops_per_image"]) > 0 and r["pretrained"] == "false"
        assert (study / r["run_dir"] / "summary.json").exists() and r["run_dir"] == f"runs/{r['model']}-seed{r['seed']}"
    doc = json.loads((study / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in doc["rows"]] == [("cnn", 0), ("mlp", 0), ("cnn", 1), ("mlp", 1)]
    assert doc["study"]["preset"] == "quick" and doc["study"]["seeds"] == [0, 1]
    # same data split and seeds for every model: identical slices, seed k in run k of every model
    for r in doc["rows"]:
        cfg = json.loads((study / r["run_dir"] / "config.json").read_text())["config"]
        assert cfg["seed"] == r["seed"] and cfg["val_size"] == SMALL["val_size"]
        assert cfg["model_args"] == ({"width": 8, "dropout": 0.1} if r["model"] == "cnn" else {"hidden": 16})


def test_report_has_leaderboard_with_spread_findings_and_figures(study):
    md = (study / "report.md").read_text()
    assert "Preset **quick**" in md and "sliced" in md
    assert "## What this run shows" in md and "most accurate" in md
    board = md.split("## Leaderboard")[1].split("\n\n")[1].splitlines()
    assert board[0].startswith("| # | model |") and len(board) == 2 + 2
    assert all("±" in line and "2/2" in line for line in board[2:])
    accuracies = [float(line.split("|")[4].split("±")[0]) for line in board[2:]]
    assert accuracies == sorted(accuracies, reverse=True)
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (study / link).read_bytes()[:4] == b"\x89PNG", link
    assert {"figures/curves.png", "figures/pareto.png", "figures/confusions.png", "figures/per_class_f1.png",
            "figures/mistakes.png"} <= set(re.findall(r"\]\((figures/[^)]+)\)", md))


def test_report_html_is_self_contained(study):
    page = (study / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)


def _images_loaded(page: Path, tmp: Path) -> tuple[int, int]:
    """(images, images that failed to load) of `page` rendered in headless Chromium."""
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.setAttribute('data-check',im.length+'/'+"
             "im.filter(i=>!i.complete||i.naturalWidth===0).length);});</script>")
    checked = tmp / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="(\d+)/(\d+)"', proc.stdout)
    assert found, f"no result from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return int(found[1]), int(found[2])


@pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                    reason="needs /usr/bin/chromium (apt-get install chromium); required when CI=true")
def test_report_html_images_all_load_in_chromium(study, tmp_path):
    assert CHROMIUM.exists(), "CI=true but /usr/bin/chromium is missing: apt-get install chromium"
    total, broken = _images_loaded(study / "report.html", tmp_path)
    assert total >= 5 and broken == 0
    # the probe itself must see a broken image
    bad = tmp_path / "bad.html"
    bad.write_text((study / "report.html").read_text().replace("</body>", '<img src="data:image/png;base64,AAAA">'
                                                                          "</body>"))
    assert _images_loaded(bad, tmp_path) == (total + 1, 1)


def test_report_command_rebuilds_identical_tables(study, capsys):
    before = {name: (study / name).read_bytes() for name in ("results.csv", "results.json", "report.md")}
    os.utime(study / "results.csv", (0, 0))
    assert main(["report", str(study)]) == 0
    assert "4 of 4 runs finished" in capsys.readouterr().out
    assert (study / "results.csv").stat().st_mtime > 0  # really rewritten
    for name, data in before.items():
        assert (study / name).read_bytes() == data, name


def test_rerun_skips_finished_runs(study, data_dir, monkeypatch):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    calls = []
    monkeypatch.setattr(mnistbench.train, "train", lambda cfg, **kw: calls.append(cfg.model))
    before = _rows(study)
    rows = compare(["cnn", "mlp"], seeds=2, out=study, data_dir=str(data_dir), quiet=True,
                   overrides={**SMALL, "width": 8}, build_report=False, log=None)
    assert calls == [] and [r["status"] for r in rows] == ["ok"] * 4
    assert _rows(study) == before


def test_failing_models_become_failed_rows_and_the_others_run(tmp_path, data_dir, monkeypatch):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nsecond line of detail")
    failing = {"crash": RuntimeError("simulated crash\nwith a second line"), "oom": oom,
               "noweights": UserError("no ImageNet weights cached; pass --set weights=FILE")}
    for name, exc in failing.items():
        monkeypatch.setitem(models.MODELS, name, ModelSpec(name=name, build=_failing(exc), about="fails"))
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    out = tmp_path / "study"
    rows = compare(["crash", "mlp", "oom", "noweights"], out=out, data_dir=str(data_dir), quiet=True,
                   overrides=SMALL, log=None)
    assert [(r["model"], r["status"]) for r in rows] == [("crash", "failed"), ("mlp", "ok"), ("oom", "failed"),
                                                         ("noweights", "failed")]
    errors = {r["model"]: r["error"] for r in rows}
    assert errors == {"crash": "RuntimeError: simulated crash", "mlp": "",
                      "oom": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                      "noweights": "no ImageNet weights cached; pass --set weights=FILE"}
    assert "simulated crash" in (out / "runs/crash-seed0/error.txt").read_text()
    assert [r["status"] for r in _rows(out)] == ["failed", "ok", "failed", "failed"]
    md = (out / "report.md").read_text()
    assert "**crash** (seed 0) failed: RuntimeError: simulated crash" in md


def test_interrupted_compare_resumes_without_redoing_finished_runs(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    real_train, calls = mnistbench.train.train, []

    def interrupting_train(cfg, **kw):
        calls.append(cfg.model)
        if cfg.model == "mlp":
            raise KeyboardInterrupt
        return real_train(cfg, **kw)

    out = tmp_path / "study"
    args = ["compare", "--models", "cnn,mlp", "--out", str(out), "--data-dir", str(data_dir), "--quiet",
            *_sets(width=8)]
    monkeypatch.setattr(mnistbench.train, "train", interrupting_train)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "study stopped by Ctrl-C during mlp seed 0" in err and "Continue with: mnistbench compare" in err
    assert [(r["model"], r["status"]) for r in _rows(out)] == [("cnn", "ok")]
    assert not (out / "report.html").exists()
    cnn_summary = out / "runs/cnn-seed0/summary.json"
    stamp = cnn_summary.stat().st_mtime_ns

    def counting_train(cfg, **kw):
        calls.append(cfg.model)
        return real_train(cfg, **kw)

    calls.clear()
    monkeypatch.setattr(mnistbench.train, "train", counting_train)
    assert main(args) == 0
    assert calls == ["mlp"] and cnn_summary.stat().st_mtime_ns == stamp
    assert [(r["model"], r["status"]) for r in _rows(out)] == [("cnn", "ok"), ("mlp", "ok")]
    assert (out / "report.html").exists()


def test_ctrl_c_in_training_checkpoints_and_the_rerun_resumes_that_run(tmp_path, data_dir, monkeypatch, capsys):
    from mnistbench import engine

    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    real_step = engine.Trainer._step

    def step_then_ctrl_c(self, batch, window):
        real_step(self, batch, window)
        if self.state.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the engine checkpoints mid-epoch and raises Interrupted

    out = tmp_path / "study"
    args = ["compare", "--models", "mlp", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *_sets()]
    monkeypatch.setattr(engine.Trainer, "_step", step_then_ctrl_c)
    assert main(args) == 130
    assert "the interrupted one resumes from its checkpoint" in capsys.readouterr().err
    run = out / "runs/mlp-seed0"
    assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists() and not _rows(out)
    monkeypatch.setattr(engine.Trainer, "_step", real_step)
    assert main(args) == 0
    assert "resuming from its checkpoint" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == SMALL["train_limit"] // SMALL["batch_size"]
    assert [r["status"] for r in _rows(out)] == ["ok"]


def test_run_state_done_resume_fresh(study, tmp_path):
    folder = tmp_path / "cnn-seed0"
    shutil.copytree(study / "runs/cnn-seed0", folder)
    cfg = mnistbench.train.load_run_config(folder)
    ok, failed = {"status": "ok"}, {"status": "failed"}
    assert run_state(folder, cfg, ok) == "done" and run_state(folder, cfg, None) == "done"
    assert run_state(folder, cfg, failed) == "fresh"  # failed rows are retried
    changed = resolve({**cfg.flat(), "epochs": 2})
    assert run_state(folder, changed, ok) == "fresh"  # same folder, other config: retrain
    display_only = resolve({**cfg.flat(), "quiet": False, "data_dir": "/elsewhere"})
    assert run_state(folder, display_only, ok) == "done"
    (folder / "summary.json").unlink()
    assert run_state(folder, cfg, None) == "resume"  # interrupted after a checkpoint
    (folder / "checkpoint.pt").unlink()
    assert run_state(folder, cfg, None) == "fresh"


def test_set_keys_go_to_the_models_that_take_them(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    with pytest.raises(UserError, match="widht"):
        compare(["cnn", "mlp"], out=tmp_path, data_dir=str(data_dir), overrides={"widht": 8}, log=None)
    with pytest.raises(UserError, match="--models"):
        compare(["cnn"], out=tmp_path, data_dir=str(data_dir), overrides={"model": "mlp"}, log=None)
    with pytest.raises(UserError, match="unknown model"):
        compare(["cnn", "nosuch"], out=tmp_path, data_dir=str(data_dir), log=None)
    with pytest.raises(UserError, match="unknown preset"):
        compare(["cnn"], preset="huge", out=tmp_path, data_dir=str(data_dir), log=None)
    with pytest.raises(UserError, match="lr='abc'"):
        compare(["cnn", "mlp"], out=tmp_path, data_dir=str(data_dir), overrides={"lr": "abc"}, log=None)
    assert not list(tmp_path.iterdir())  # refused before any work


def test_presets_only_give_keys_a_model_takes(monkeypatch):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    from mnistbench.models.transfer import VGG16_SPEC
    monkeypatch.setitem(models.MODELS, "vgg16", VGG16_SPEC)
    for preset in presets.names():
        for m in models.list_models():
            cfg = resolve({**presets.preset_overrides(preset, m), "model": m})  # every key valid
            assert cfg.model == m
    assert presets.preset_overrides("quick", "cnn") == {}
    assert presets.preset_overrides("quick", "vgg16")["pretrained"] is False
    assert presets.preset_overrides("quick", "mlp") == {"train_limit": 5000, "epochs": 1}  # fallback, no pretrained
    assert presets.preset_overrides("standard", "cnn") == {"recipe": "gpu"}
    assert presets.preset_overrides("standard", "frcnn") == {"recipe": "long"}  # no gpu recipe: its long one
    assert presets.preset_overrides("standard", "mlp") == {}  # neither: its default
    nb = presets.preset_overrides("notebook", "vgg16")
    assert nb["image_size"] == 224 and nb["finetune"] == "full" and nb["batch_size"] == 128


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
