"""`mnistbench compare` on tiny slices of the real data: files, rows, failures, resume, settings per model."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import MLP, SMALL, STUDY_SETS, build_mlp, records
from torch import nn

import mnistbench.run
from mnistbench import models
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.errors import UserError
from mnistbench.models import ModelSpec
from mnistbench.study import warm
from mnistbench.study.compare import compare
from mnistbench.study.plan import run_state
from mnistbench.study.rows import COLUMNS


def _failing(exc: BaseException):
    def build(*, hidden: int = 4, pretrained: bool = True) -> nn.Module:
        if pretrained or not isinstance(exc, UserError):  # like a transfer model: no weights, no model
            raise exc
        return build_mlp(hidden=hidden)
    return build


def _sets(**extra) -> list[str]:
    """--set flags of the small settings (and `extra`)."""
    return [a for k, v in {**SMALL, **extra}.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def study(small_study: Path) -> Path:
    """The session's small real study (conftest.small_study): cnn and vit, two seeds each."""
    return small_study


def _rows(study: Path) -> list[dict[str, str]]:
    with open(study / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_every_file_and_one_row_per_model_and_seed(study):
    for name in ("results.csv", "results.json", "report.md", "report.html"):
        assert (study / name).stat().st_size > 0, name
    rows = _rows(study)
    assert [(r["model"], r["seed"]) for r in rows] == [("cnn", "0"), ("vit", "0"), ("cnn", "1"), ("vit", "1")]
    assert tuple(rows[0]) == COLUMNS
    for r in rows:
        assert r["status"] == "ok" and r["error"] == "" and r["preset"] == "quick"
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and float(r["train_seconds"]) > 0
        assert r["test_images"] == str(SMALL["test_limit"]) and r["train_limit"] == str(SMALL["train_limit"])
        assert int(r["params"]) > 0 and int(r["flops_per_image"]) > 0 and r["pretrained"] == "false"
        assert (study / r["run_dir"] / "summary.json").exists() and r["run_dir"] == f"runs/{r['model']}-seed{r['seed']}"
    doc = json.loads((study / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in doc["rows"]] == [("cnn", 0), ("vit", 0), ("cnn", 1), ("vit", 1)]
    assert doc["study"]["preset"] == "quick" and doc["study"]["seeds"] == [0, 1]
    # same data split and seeds for every model: identical slices, seed k in run k of every model
    for r in doc["rows"]:
        cfg = json.loads((study / r["run_dir"] / "config.json").read_text())["config"]
        assert cfg["seed"] == r["seed"] and cfg["val_size"] == SMALL["val_size"]
        key = "width" if r["model"] == "cnn" else "dim"
        assert cfg["model_args"][key] == STUDY_SETS[key]


def test_rerun_skips_finished_runs(study, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(mnistbench.run, "train", lambda cfg, **kw: calls.append(cfg.model))
    before = _rows(study)
    rows = compare(["cnn", "vit"], seeds=2, out=study, data_dir=str(data_dir), quiet=True,
                   overrides=STUDY_SETS, build_report=False, log=None)
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
    rows = compare(["crash", "mlp", "oom", "noweights"], preset="standard", out=out, data_dir=str(data_dir),
                   quiet=True, overrides=SMALL, log=None, executor="inline")  # standard: pretrained weights wanted
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
    real_train, calls = mnistbench.run.train, []

    def interrupting_train(cfg, **kw):
        calls.append(cfg.model)
        if cfg.model == "mlp":
            raise KeyboardInterrupt
        return real_train(cfg, **kw)

    out = tmp_path / "study"
    args = ["compare", "--models", "cnn,mlp", "--out", str(out), "--data-dir", str(data_dir), "--quiet",
            "--executor", "inline", *_sets(width=8)]
    monkeypatch.setattr(mnistbench.run, "train", interrupting_train)
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
    monkeypatch.setattr(mnistbench.run, "train", counting_train)
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
    args = ["compare", "--models", "mlp", "--out", str(out), "--data-dir", str(data_dir), "--quiet",
            "--executor", "inline", *_sets()]
    monkeypatch.setattr(engine.Trainer, "_step", step_then_ctrl_c)
    assert main(args) == 130
    assert "the interrupted one resumes from its checkpoint" in capsys.readouterr().err
    run = out / "runs/mlp-seed0"
    assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists() and not _rows(out)
    monkeypatch.setattr(engine.Trainer, "_step", real_step)
    assert main(args) == 0
    assert "resuming from its checkpoint" in capsys.readouterr().err
    steps = [r["step"] for r in records(run, "train")]
    assert steps == sorted(set(steps)) and steps[-1] == SMALL["train_limit"] // SMALL["batch_size"]
    assert [r["status"] for r in _rows(out)] == ["ok"]


def test_run_state_done_resume_fresh(study, tmp_path):
    folder = tmp_path / "cnn-seed0"
    shutil.copytree(study / "runs/cnn-seed0", folder)
    cfg = mnistbench.run.load_run_config(folder)
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
    for bad, needle in (({"seed": "abc"}, "seed='abc'"), ({"patch_size": 5}, "patch_size"),
                        ({"lr": "nan"}, "finite"), ({"lr": "inf"}, "finite")):
        with pytest.raises(UserError, match=needle):  # vit's patch size is checked by building it, before any run
            compare(["cnn", "vit"], out=tmp_path, data_dir=str(data_dir), overrides=bad, log=None)
    assert not list(tmp_path.iterdir())  # refused before any work


# --- one process per run ---------------------------------------------------------------------------
def test_each_run_has_its_own_process_and_peak_memory(tmp_path, data_dir):
    """AlexNet (61 M parameters) then a tiny CNN in one study: each run's peak memory is its own process's."""
    out = tmp_path / "study"
    rows = compare(["alexnet", "cnn"], out=out, data_dir=str(data_dir), quiet=True, log=None, build_report=False,
                   overrides={**SMALL, "train_limit": 128, "val_size": 64, "test_limit": 64, "width": 4,
                              "pretrained": False, "precision": "fp32"})
    mem = {r["model"]: r["peak_memory_mb"] for r in rows}
    assert all(r["status"] == "ok" for r in rows)
    # AlexNet's weights, gradients and two AdamW moments alone are 61 M x 16 bytes = 0.98 GB; the CNN is tiny
    # ... and the CNN's is not the running maximum of the study's processes, which ran AlexNet first
    assert mem["alexnet"] > mem["cnn"] + 800, mem


def _probe(spec, env, stdout, stderr, reason_fd):
    """A forked run process's target: says what it was given, on its stdout and through its reason pipe."""
    # imported by the server, not by this module's imports (which the process runs to find this function)
    warm_imports = all(m in sys.modules for m in ("torchvision", "matplotlib.backends.backend_agg"))
    warm.enter(env, stdout, stderr)
    print(json.dumps({"probe": os.environ.get("MNISTBENCH_PROBE"), "spec": spec, "warm": warm_imports,
                      "own_session": os.getsid(0) == os.getpid()}), flush=True)
    with open(reason_fd, "w") as f:
        f.write("said through the pipe")
    sys.exit(3)


@pytest.mark.skipif(not warm.available(), reason="run processes fork warm on Linux without CUDA only")
def test_a_warm_run_process_gets_the_study_s_environment_streams_and_pipe(monkeypatch, capfd):
    warm.warm_up()  # the server starts with the environment as it is now ...
    monkeypatch.setenv("MNISTBENCH_PROBE", "set after the server started")  # ... the run gets the later one
    said, tell = os.pipe()
    proc = warm.start(_probe, {"run": 1}, tell)
    os.close(tell)
    proc.join(timeout=120)
    assert proc.exitcode == 3
    told = json.loads(capfd.readouterr().out.splitlines()[-1])
    assert told == {"probe": "set after the server started", "spec": {"run": 1}, "warm": True, "own_session": True}
    assert os.read(said, 100) == b"said through the pipe"
    os.close(said)


def test_a_run_failing_in_its_process_is_a_failed_row_and_compare_exits_1(tmp_path, data_dir, capsys):
    # the detector's canvas check happens when its task is made, inside the run's process
    out = tmp_path / "study"
    args = ["compare", "--models", "cnn,frcnn", "--out", str(out), "--data-dir", str(data_dir), "--quiet",
            *_sets(width=4, image_size=30, max_scale=1.15)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 of 2 runs failed: frcnn seed 0 (image_size=30 is smaller than the largest digit patch" in err
    rows = _rows(out)
    assert [(r["model"], r["status"]) for r in rows] == [("cnn", "ok"), ("frcnn", "failed")]
    assert rows[1]["error"].startswith("image_size=30")
    assert "Traceback" in (out / "runs/frcnn-seed0/error.txt").read_text()


def test_what_killed_a_run_process_is_its_reason(tmp_path):
    from mnistbench.study.executor import _reason

    assert _reason(tmp_path, -signal.SIGKILL) == "the run's process was killed by SIGKILL (out of memory?)"
    assert "status 3" in _reason(tmp_path, 3)


def test_sigint_to_compare_reaches_the_running_run_and_the_rerun_resumes_it(tmp_path, data_dir):
    """Ctrl-C on the command: the run's process checkpoints and exits, compare says how to go on (exit 130)."""
    out = tmp_path / "study"
    args = [sys.executable, "-m", "mnistbench", "compare", "--models", "cnn", "--out", str(out),
            "--data-dir", str(data_dir), "--quiet",
            *_sets(width=8, train_limit=4096, batch_size=16, epochs=3, checkpoint_minutes=0.0001)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    run = out / "runs/cnn-seed0"
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the run never checkpointed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "study stopped by SIGINT during cnn seed 0" in err and "resumes from its checkpoint" in err
    assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from its checkpoint" in done.stderr and (run / "summary.json").exists()


def test_budgets_train_every_model_at_each_budget_and_draw_accuracy_against_budget(tmp_path, data_dir):
    out = tmp_path / "study"
    sets = {k: v for k, v in {**STUDY_SETS, "val_points": 2}.items() if k != "budget_s"}
    args = ["compare", "--models", "cnn,vit", "--budgets", "1,2", "--out", str(out), "--data-dir", str(data_dir),
            "--quiet", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    assert main(args) == 0
    rows = _rows(out)
    assert [(r["model"], r["budget"], r["budget_unit"], r["run_dir"]) for r in rows] == [
        ("cnn", "1.0", "s", "runs/cnn-b1-seed0"), ("vit", "1.0", "s", "runs/vit-b1-seed0"),
        ("cnn", "2.0", "s", "runs/cnn-b2-seed0"), ("vit", "2.0", "s", "runs/vit-b2-seed0")]
    for r in rows:
        s = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert s["budget"]["budget_s"] == float(r["budget"]) and s["steps"] == s["planned_steps"]
        assert float(r["budget_error"]) == pytest.approx(s["train_seconds"] / float(r["budget"]) - 1)
    doc = json.loads((out / "results.json").read_text())
    assert doc["study"]["budgets"] == [1.0, 2.0] and len(doc["study"]["planned"]) == 4
    assert (out / "figures/accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "accuracy_vs_budget.png" in md
    gains = [(t["model_a"], t["budget_a"], t["model_b"], t["budget_b"], t["seed"]) for t in doc["comparisons"]
             if t["kind"] == "budgets"]  # each model against itself at the next budget, same seed
    assert gains == [("cnn", 1.0, "cnn", 2.0, 0), ("vit", 1.0, "vit", 2.0, 0)]
    assert "each step up tested by McNemar" in md and "### Budget gains: each model at the next budget" in md


def test_a_flops_budget_gives_every_model_the_same_training_flops(tmp_path, data_dir):
    out = tmp_path / "study"
    args = ["compare", "--models", "cnn,vit", "--budget-flops", "2e9", "--out", str(out), "--data-dir",
            str(data_dir), "--quiet", "--executor", "inline",
            *[a for k, v in STUDY_SETS.items() if k != "budget_s" for a in ("--set", f"{k}={v}")]]
    assert main(args) == 0
    rows = _rows(out)
    assert [(r["model"], float(r["budget"]), r["budget_unit"]) for r in rows] == [("cnn", 2e9, "FLOPs"),
                                                                                  ("vit", 2e9, "FLOPs")]
    for r in rows:  # planned exactly: the most whole steps within the budget
        one_step = 3 * int(r["flops_per_sample"]) * STUDY_SETS["batch_size"]
        assert 0 <= 2e9 - float(r["train_flops"]) < one_step and r["run_dir"] == f"runs/{r['model']}-f2e9-seed0"
    md = (out / "report.md").read_text()
    assert "Each model had 2e9 FLOPs of training on cpu" in md and "a budget in training FLOPs" in md
    assert "figures/accuracy_vs_flops.png" in md and "--budgets-flops 2e9" in md


def test_a_run_made_by_other_code_runs_again_unless_kept_and_named(study, tmp_path, data_dir, monkeypatch):
    out = tmp_path / "study"
    shutil.copytree(study, out)
    config = out / "runs/cnn-seed0/config.json"
    doc = json.loads(config.read_text())
    doc.update(git_commit="0" * 40, mnistbench_version="0.0.9")
    made = config.stat()
    config.write_text(json.dumps(doc))
    os.utime(config, ns=(made.st_atime_ns, made.st_mtime_ns))  # written before its summary, as a run writes it
    real_train, calls = mnistbench.run.train, []

    def counting(cfg, **kw):
        calls.append((cfg.model, cfg.seed))
        return real_train(cfg, **kw)

    monkeypatch.setattr(mnistbench.run, "train", counting)
    kw = dict(seeds=2, out=out, data_dir=str(data_dir), quiet=True, overrides=STUDY_SETS, log=None, executor="inline")
    compare(["cnn", "vit"], reuse_finished=True, **kw)
    assert calls == []
    md = (out / "report.md").read_text()
    assert "runs kept from other code (--reuse-finished): runs/cnn-seed0 (mnistbench 0.0.9, commit 0000000000)" in md
    compare(["cnn", "vit"], **kw)
    assert calls == [("cnn", 0)]
    assert "runs kept from other code" not in (out / "report.md").read_text()


def test_a_run_outside_its_budget_is_flagged_in_the_runs_table_and_the_last_line(study, tmp_path):
    from mnistbench.study.compare import _off_budget
    from mnistbench.study.rows import upgrade

    row = upgrade({"model": "cnn", "seed": 0, "status": "ok", "budget": 60.0, "budget_unit": "s", "budget_s": 60.0,
                   "train_seconds": 63.0, "budget_error": 0.05})
    assert _off_budget([row, {**row, "train_seconds": 61.0, "budget_error": 1 / 60}]) == \
        "; outside the budget's tolerance (±3 % or ±1 s): cnn seed 0 (63.0 s for 60 s, +5.0 %)"
    out = tmp_path / "study"
    shutil.copytree(study, out)
    run = out / "runs/cnn-seed0"
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    summary["budget_error"], config["config"]["budget_s"] = 0.5, 10.0  # 15 s of training for 10 s
    (run / "config.json").write_text(json.dumps(config))
    (run / "summary.json").write_text(json.dumps(summary))  # written last, as a run writes it
    assert main(["report", str(out)]) == 0
    assert "(+50.0 %: **outside the budget's tolerance**)" in (out / "report.md").read_text()


def test_progress_bars_only_on_a_screen_plain_lines_in_a_log(tmp_path, data_dir):
    args = [sys.executable, "-m", "mnistbench", "train", "--data-dir", str(data_dir), "--out", str(tmp_path / "r"),
            *[a for k, v in {**SMALL, "width": 8, "epochs": 2}.items() if k != "budget_s"
              for a in ("--set", f"{k}={v}")]]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "\r" not in log and log.count("val_acc") == 2  # one line per validation
