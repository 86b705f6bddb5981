"""Training budgets that hold: a plan from measured steps, re-planned from the run's own steps, laid out so the
schedule completes; budgets in training FLOPs planned exactly; precision decided once per machine and setting."""
from __future__ import annotations

import json
import signal

import pytest
import torch
from helpers import TINY, records

from mnistbench import calibrate, engine
from mnistbench.budget import REPLAN_AT, Plan, seconds_plan, within_tolerance
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.optim import lr_factor
from mnistbench.run import train

BUDGETED = {**TINY, "width": 8, "train_limit": 2048, "batch_size": 32, "budget_s": 1.5, "val_points": 3,
            "epochs": 1, "precision": "fp32"}


def _cfg(tmp_path, data_dir, **extra):
    return resolve({**BUDGETED, "data_dir": str(data_dir), "out": str(tmp_path / "run"), **extra})


def step_clock(ms_per_step):
    """A StepClock whose training seconds are ms_per_step(step) summed over the steps done: a machine whose
    step times are known exactly, so that what re-planning does is decided by the test, not by this CPU."""
    class Clock(engine.StepClock):
        def peek(self):
            return sum(ms_per_step(i) for i in range(self.state.global_step)) / 1000

        def stop(self):
            self.state.train_seconds = sum(ms_per_step(i) for i in range(self.state.global_step)) / 1000
            self.since = None
            return self.state.train_seconds

        def discard(self):
            return 0.0
    return Clock


@pytest.fixture
def measured_10ms(monkeypatch):
    monkeypatch.setattr(calibrate, "step_seconds", lambda *a: 0.01)  # the plan's first measurement: 10 ms


def test_a_budget_whose_steps_take_as_measured_keeps_its_plan(tmp_path, data_dir, measured_10ms, monkeypatch):
    monkeypatch.setattr(engine, "StepClock", step_clock(lambda i: 10))
    s = train(_cfg(tmp_path, data_dir))
    assert s["budget"] == {"budget_s": 1.5, "step_seconds": 0.01, "planned_steps": 150, "images_seen": 150 * 32}
    assert s["steps"] == s["planned_steps"] == 150 and s["images_seen"] == 150 * 32
    assert s["train_seconds"] == pytest.approx(1.5) and s["budget_error"] == pytest.approx(0, abs=1e-9)
    assert [r["step"] for r in s["replans"]] == [15, 75, 135]  # at 10 %, 50 % and 90 % of the plan
    assert all(r["planned_before"] == r["planned_after"] == 150 for r in s["replans"])
    assert [v["step"] for v in records(tmp_path / "run", "val")] == [50, 100, 150]
    assert records(tmp_path / "run", "replan") == [{"kind": "replan", **r} for r in s["replans"]]
    # 2048 images / 32 = 64 steps per epoch; summary.json rounds epochs_completed to 4 decimals (within 0.5e-4)
    assert s["epochs_completed"] == pytest.approx(150 / 64, abs=0.5e-4)
    plan = json.loads((tmp_path / "run" / "config.json").read_text())["plan"]
    assert plan["total_steps"] == 150 and plan["budget"] == s["budget"] and plan["precision"] == "fp32"


@pytest.mark.parametrize("ms, label", [(lambda i: 25, "2.5x slower than measured"),
                                       (lambda i: 4, "2.5x faster"),
                                       (lambda i: 8 + 0.15 * i, "slowing down as it learns"),
                                       (lambda i: 4 if i < 40 else 30, "7x slower after the first re-plan")])
def test_a_budget_lands_on_its_seconds_when_steps_differ_from_the_measurement(tmp_path, data_dir, measured_10ms,
                                                                             monkeypatch, ms, label):
    monkeypatch.setattr(engine, "StepClock", step_clock(ms))
    s = train(_cfg(tmp_path, data_dir, budget_s=3.0))
    assert within_tolerance(3.0, s["budget_error"]), (label, s["train_seconds"], s["replans"])
    assert s["steps"] == s["planned_steps"] == s["replans"][-1]["planned_after"]
    # the schedule completed its shape: the last step's learning rate is the schedule's end, not a mid-point
    lrs = [r["lr"] for r in records(tmp_path / "run", "train")]
    assert lrs[-1] < 1e-4 * max(lrs) and max(lrs) == pytest.approx(1e-2, rel=0.05)  # the recipe's peak lr


def test_the_schedule_over_replanned_steps_is_continuous_and_complete():
    plan = seconds_plan(10.0, 0.01, 32, 4, precision="fp32")  # 1,000 steps
    plan = plan.replanned(100, 0.02, 2.0).replanned(300, 0.02, 6.0)  # steps take twice the measurement
    assert [r["planned_after"] for r in plan.replans] == [500, 500] and plan.total_steps == 500
    assert plan.val_steps == (125, 250, 375, 500)  # four validations in all, on an even grid over the new plan
    shrunk = seconds_plan(10.0, 0.01, 32, 4, precision="fp32").replanned(600, 0.04, 9.0)  # 250 and 500 passed
    assert shrunk.val_steps == (250, 500, 612, 625) and shrunk.total_steps == 625
    nearly_spent = seconds_plan(10.0, 0.01, 32, 4, precision="fp32").replanned(600, 0.04, 9.96)  # one step left
    assert nearly_spent.val_steps == (250, 500, 601) and nearly_spent.total_steps == 601  # none at the re-plan
    factor = [lr_factor("onecycle", 0.3, *plan.schedule_step(s)) for s in range(plan.total_steps)]
    jumps = max(abs(a - b) for a, b in zip(factor, factor[1:]))
    assert jumps < 0.02 and factor[-1] < 1e-3 and max(factor) == pytest.approx(1.0, abs=1e-3)
    assert plan.schedule_step(0) == (0, 1000) and plan.schedule_step(499) == (999, 1000)  # ends where it ends
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan  # as recorded in a checkpoint


def test_a_first_plan_made_from_no_timing_grows_at_its_one_step():
    plan = seconds_plan(10.0, float("nan"), 32, 2, precision="fp32")  # no step could be timed: one step
    assert plan.total_steps == 1 and plan.replan_due(1, 0.05)
    grown = plan.replanned(1, 0.05, 0.05)
    assert grown.total_steps == 200 and not grown.replan_due(1, 0.05)


def test_a_budgeted_resume_keeps_the_recorded_plan(tmp_path, data_dir, measured_10ms, monkeypatch):
    monkeypatch.setattr(engine, "StepClock", step_clock(lambda i: 20))  # every re-plan halves the rest
    real_step = engine.Trainer._step

    def stop_at_30(self, batch, window):
        real_step(self, batch, window)
        if self.state.global_step == 30:  # after the first re-plan (step 15), before the second
            signal.raise_signal(signal.SIGTERM)  # checkpoint after this step, then exit 143

    monkeypatch.setattr(engine.Trainer, "_step", stop_at_30)
    with pytest.raises(engine.Interrupted):
        train(_cfg(tmp_path, data_dir))
    monkeypatch.setattr(engine.Trainer, "_step", real_step)
    before = [r["planned_after"] for r in records(tmp_path / "run", "replan")]

    def no_measuring(*a):
        raise AssertionError("a resumed run must not re-measure its plan")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    s = train(_cfg(tmp_path, data_dir), resume_from=tmp_path / "run")
    assert [r["planned_after"] for r in s["replans"]][:len(before)] == before
    assert s["steps"] == s["planned_steps"] and within_tolerance(1.5, s["budget_error"])


def test_a_killed_budgeted_run_resumes_bit_exact_replaying_its_later_replans(tmp_path, data_dir, measured_10ms,
                                                                            monkeypatch):
    """A crash after the last re-plan, whose checkpoint (at the last validation) predates that re-plan: the
    resumed process makes the recorded re-plan again instead of measuring its own, so with deterministic
    kernels it ends exactly where the uninterrupted run does."""
    monkeypatch.setattr(engine, "StepClock", step_clock(lambda i: 13))
    cfg = dict(deterministic=True, val_points=2, log_every=5)
    whole = train(_cfg(tmp_path, data_dir, out=str(tmp_path / "whole"), **cfg))
    last = whole["replans"][-1]["step"]
    real_step = engine.Trainer._step

    def crash_after_the_last_replan(self, batch, window):
        real_step(self, batch, window)
        if self.state.global_step == last + 3:
            raise RuntimeError("killed")

    monkeypatch.setattr(engine.Trainer, "_step", crash_after_the_last_replan)
    with pytest.raises(RuntimeError):
        train(_cfg(tmp_path, data_dir, **cfg))
    monkeypatch.setattr(engine.Trainer, "_step", real_step)
    monkeypatch.setattr(engine, "StepClock", step_clock(lambda i: 40))  # re-measuring would plan other steps
    resumed = train(_cfg(tmp_path, data_dir, **cfg), resume_from=tmp_path / "run")
    assert resumed["replans"] == whole["replans"] and resumed["steps"] == whole["steps"]
    assert resumed["test_loss"] == whole["test_loss"] and resumed["test_accuracy"] == whole["test_accuracy"]


def test_a_flops_budget_plans_exact_steps_without_timing(tmp_path, data_dir, monkeypatch):
    def no_measuring(*a):
        raise AssertionError("a FLOPs budget is not timed")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    runs = [train(_cfg(tmp_path, data_dir, budget_s=0.0, budget_flops=4e10, out=str(tmp_path / f"r{i}"),
                       deterministic=True)) for i in range(2)]
    a, b = runs
    per_step = 3 * a["flops_per_sample"] * 32
    assert a["steps"] == int(4e10 // per_step) and a["replans"] == [] and a["budget"]["budget_flops"] == 4e10
    assert a["train_flops"] == 3 * a["flops_per_sample"] * a["images_seen"]
    assert 0 < 4e10 - a["train_flops"] < per_step and abs(a["budget_error"]) < 0.01
    assert (a["steps"], a["images_seen"], a["test_accuracy"], a["test_loss"]) == \
           (b["steps"], b["images_seen"], b["test_accuracy"], b["test_loss"])
    with pytest.raises(Exception, match="give one budget"):
        resolve({"budget_s": 10, "budget_flops": 1e12})


def test_every_run_counts_its_training_flops_and_names_its_machine(tmp_path, data_dir):
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0))
    assert s["flops_per_sample"] == s["flops_per_image"] > 0 and s["budget_error"] is None
    assert s["train_flops"] == 3 * s["flops_per_sample"] * s["images_seen"]
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    for m in (s["machine"], doc["machine"]):
        assert m["cpu"] and m["threads"] >= 1 and set(m["cpu_flags"]) <= {"avx2", "avx512f", "avx512_bf16",
                                                                          "amx_bf16"}
    assert s["device"].startswith(f"cpu ({s['machine']['cpu']}, ")
    assert doc["git_commit"] is None or len(doc["git_commit"]) == 40
    assert len(doc["source_sha256"]) == 64 and doc["mnistbench_version"]


def test_auto_precision_is_measured_once_per_machine_and_setting(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(calibrate, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(calibrate, "step_seconds", lambda model, task, cfg, rt: 0.02 if rt.amp is None else 0.01)
    auto = dict(precision="auto", budget_s=0.0, epochs=1)
    s = train(_cfg(tmp_path, data_dir, **auto))
    assert s["precision"] == "bf16" and s["precision_step_ms"] == {"fp32": 20.0, "bf16": 10.0}
    assert s["precision_source"] == "measured"

    def no_measuring(*a):
        raise AssertionError("decided once: the cache answers")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    s = train(_cfg(tmp_path, data_dir, **auto, seed=1, out=str(tmp_path / "r2")))  # another seed, same setting
    assert s["precision"] == "bf16" and s["precision_source"] == "cached"
    assert s["precision_step_ms"] == {"fp32": 20.0, "bf16": 10.0}
    s = train(_cfg(tmp_path, data_dir, **auto, deterministic=True, out=str(tmp_path / "r3")))
    assert s["precision"] == "fp32" and s["precision_source"] == "deterministic"  # never timed, always fp32
    # another setting is measured for itself; near-equal times keep fp32, so noise cannot decide
    monkeypatch.setattr(calibrate, "step_seconds", lambda model, task, cfg, rt: 0.010 if rt.amp is None else 0.009)
    s = train(_cfg(tmp_path, data_dir, **auto, batch_size=64, out=str(tmp_path / "r4")))
    assert s["precision"] == "fp32" and s["precision_source"] == "measured"


def test_explicit_precision_and_a_cpu_without_bf16_are_not_timed(tmp_path, data_dir, monkeypatch):
    def no_measuring(*a):
        raise AssertionError("not timed")

    monkeypatch.setattr(calibrate, "step_seconds", no_measuring)
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0, precision="fp32"))
    assert s["precision"] == "fp32" and s["precision_step_ms"] is None and s["budget"] is None
    assert s["precision_source"] == "set"
    monkeypatch.setattr(calibrate, "cpu_has_native_bf16", lambda: False)
    s = train(_cfg(tmp_path, data_dir, budget_s=0.0, precision="auto", out=str(tmp_path / "r2")))
    assert s["precision"] == "fp32" and s["precision_step_ms"] is None and s["precision_source"] == "no native bf16"


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
    assert [v["step"] for v in records(tmp_path / "run", "val")] == [64, 96]
    assert calibrate.epoch_steps(0.001, 64) == (1, (1,))  # never zero steps
    assert calibrate.epoch_steps(2, 64) == (128, (64, 128))
    assert REPLAN_AT == (0.1, 0.5, 0.9)
