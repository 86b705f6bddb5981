"""Equal training budgets and measured precision: a plan made once from timed steps, recorded, reused on resume."""
from __future__ import annotations

import json
import signal

import pytest
import torch
from conftest import TINY

from mnistbench import calibrate, engine
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.run import train

BUDGETED = {**TINY, "width": 8, "train_limit": 2048, "batch_size": 32, "budget_s": 1.5, "val_points": 3,
            "epochs": 1, "precision": "fp32"}


def _cfg(tmp_path, data_dir, **extra):
    return resolve({**BUDGETED, "data_dir": str(data_dir), "out": str(tmp_path / "run"), **extra})


def _vals(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "val"]


def test_budget_plans_the_steps_once_and_validates_at_even_points(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(calibrate, "step_seconds", lambda *a: 0.01)  # a measured 10 ms per step
    s = train(_cfg(tmp_path, data_dir))
    b = s["budget"]
    assert b == {"budget_s": 1.5, "step_seconds": 0.01, "planned_steps": 150, "images_seen": 150 * 32}
    assert s["steps"] == s["planned_steps"] == 150 and s["images_seen"] == 150 * 32
    # 2048 images / 32 = 64 steps per epoch; summary.json rounds epochs_completed to 4 decimals (within 0.5e-4)
    assert s["epochs_completed"] == pytest.approx(150 / 64, abs=0.5e-4)
    assert [v["step"] for v in _vals(tmp_path / "run")] == [50, 100, 150]
    plan = json.loads((tmp_path / "run" / "config.json").read_text())["plan"]
    assert plan["total_steps"] == 150 and plan["budget"] == b and plan["precision"] == "fp32"


def test_a_real_calibration_fits_the_budget(tmp_path, data_dir):
    s = train(_cfg(tmp_path, data_dir, budget_s=3.0))
    b = s["budget"]
    assert b["planned_steps"] == int(3.0 / b["step_seconds"]) == s["steps"] > 0 and b["step_seconds"] > 0
    # how near the training time lands to the budget is measured in docs/BENCHMARKS.md, not asserted here
    # (a timed assertion on 2 shared cores would be flaky)


def test_budgeted_resume_uses_the_recorded_plan(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(calibrate, "step_seconds", lambda *a: 0.01)
    real_step = engine.Trainer._step

    def stop_at_70(self, batch, window):
        real_step(self, batch, window)
        if self.state.global_step == 70:
            signal.raise_signal(signal.SIGTERM)  # checkpoint after this step, then exit 143

    monkeypatch.setattr(engine.Trainer, "_step", stop_at_70)
    with pytest.raises(engine.Interrupted):
        train(_cfg(tmp_path, data_dir))
    monkeypatch.setattr(engine.Trainer, "_step", real_step)

    def no_measuring(*a):
        raise AssertionError("a resumed run must not re-measure")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    s = train(_cfg(tmp_path, data_dir), resume_from=tmp_path / "run")
    assert s["steps"] == 150 and s["budget"]["planned_steps"] == 150
    assert [v["step"] for v in _vals(tmp_path / "run")] == [50, 100, 150]


def test_auto_precision_keeps_the_faster_on_a_bf16_cpu(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(calibrate, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(calibrate, "step_seconds", lambda model, task, cfg, rt: 0.02 if rt.amp is None else 0.01)
    s = train(_cfg(tmp_path, data_dir, precision="auto", budget_s=0.0, epochs=1))
    assert s["precision"] == "bf16" and s["precision_step_ms"] == {"fp32": 20.0, "bf16": 10.0}
    monkeypatch.setattr(calibrate, "step_seconds", lambda model, task, cfg, rt: 0.01 if rt.amp is None else 0.05)
    s = train(_cfg(tmp_path, data_dir, precision="auto", budget_s=0.0, epochs=1, out=str(tmp_path / "r2")))
    assert s["precision"] == "fp32" and s["precision_step_ms"] == {"fp32": 10.0, "bf16": 50.0}
    # nearly equal: fp32, the exact one, so that noise cannot flip a model's precision between seeds
    monkeypatch.setattr(calibrate, "step_seconds", lambda model, task, cfg, rt: 0.010 if rt.amp is None else 0.009)
    s = train(_cfg(tmp_path, data_dir, precision="auto", budget_s=0.0, epochs=1, out=str(tmp_path / "r3")))
    assert s["precision"] == "fp32"


def test_explicit_precision_and_a_cpu_without_bf16_are_not_timed(tmp_path, data_dir, monkeypatch):
    def no_measuring(*a):
        raise AssertionError("not timed")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0, precision="fp32"))
    assert s["precision"] == "fp32" and s["precision_step_ms"] is None and s["budget"] is None
    monkeypatch.setattr(calibrate, "cpu_has_native_bf16", lambda: False)
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0, precision="auto", out=str(tmp_path / "r2")))
    assert s["precision"] == "fp32" and s["precision_step_ms"] is None


def test_calibration_leaves_the_model_and_rng_as_they_were(data_dir):
    from mnistbench.data.datasets import load_splits
    from mnistbench.device import Runtime
    from mnistbench.models import get_model
    from mnistbench.tasks.classify import ClassifyTask

    cfg = resolve({**BUDGETED, "dropout": 0.5})
    rt = Runtime(torch.device("cpu"))
    splits = load_splits("mnist", data_dir, val_size=100, train_limit=256)
    model = get_model("cnn", width=8, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert calibrate.step_seconds(model, ClassifyTask(splits, cfg, rt), cfg, rt) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # incl. batch-norm statistics
    assert torch.equal(rng, torch.get_rng_state())


def test_resume_of_a_run_stopped_before_its_first_checkpoint_restarts_it(tmp_path, data_dir, monkeypatch, capsys):
    def stop_at_once(self, *a, **kw):
        raise engine.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(engine.Trainer, "fit", stop_at_once)
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(data_dir), "--out", str(out), "--set", "width=8", "--set", "train_limit=256",
            "--set", "val_size=64", "--set", "test_limit=64", "--set", "inference_benchmark=false", "--quiet"]
    assert main(args) == 143
    assert (out / "config.json").exists() and not (out / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] > 0


def test_fractional_epochs_stop_part_way_through_the_last_epoch(tmp_path, data_dir):
    # 2048 training images at batch 32: 64 steps per epoch; 1.5 epochs = 96 steps, validated at 64 and 96
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0, epochs="1.5"))
    assert s["steps"] == s["planned_steps"] == 96 and s["epochs_completed"] == 1.5
    assert [v["step"] for v in _vals(tmp_path / "run")] == [64, 96]
    assert calibrate.epoch_steps(0.001, 64) == (1, (1,))  # never zero steps
    assert calibrate.epoch_steps(2, 64) == (128, (64, 128))
