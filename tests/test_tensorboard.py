"""--set tensorboard=true: event files in the run folder that say what metrics.jsonl says, resumes included."""
from __future__ import annotations

import pytest
from helpers import TINY, records

from mnistbench.config import resolve
from mnistbench.run import resume_config, train

pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install 'mnistbench[tensorboard]'")


def test_event_files_hold_the_metrics_of_metrics_jsonl_after_a_crash_and_resume(tmp_path, data_dir, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mnistbench import engine

    real_step = engine.Trainer._step

    def crash_in_epoch_2(self, batch, window):
        real_step(self, batch, window)
        if self.state.global_step == 14:  # logged up to step 12; the last checkpoint is epoch 1's (step 8)
            raise RuntimeError("simulated crash")

    out = tmp_path / "run"
    cfg = resolve({**TINY, "width": 8, "epochs": 2, "data_dir": str(data_dir), "out": str(out), "tensorboard": True})
    monkeypatch.setattr(engine.Trainer, "_step", crash_in_epoch_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    monkeypatch.setattr(engine.Trainer, "_step", real_step)
    summary = train(resume_config(out, {}), resume_from=out)  # logs steps 10 and 12 again

    logged = records(out)
    acc = EventAccumulator(str(out))
    acc.Reload()
    expected = {"train/loss": [(r["step"], r["loss"]) for r in logged if r["kind"] == "train"],
                "train/lr": [(r["step"], r["lr"]) for r in logged if r["kind"] == "train"],
                "val/loss": [(r["step"], r["val_loss"]) for r in logged if r["kind"] == "val"],
                "val/accuracy": [(r["step"], r["val_accuracy"]) for r in logged if r["kind"] == "val"]}
    assert [s for s, _ in expected["train/loss"]] == [2, 4, 6, 8, 10, 12, 14, 16]
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag  # the crashed process's 10 and 12 are purged
        # the events store float32: each value within one rounding (6e-8 relative) of the float64 logged
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
    final = acc.Scalars("final/test_accuracy")
    assert len(final) == 1 and final[0].value == pytest.approx(summary["test_accuracy"], rel=1e-6)
