"""The training engine: it can fit, it selects on validation, it schedules and logs what it says."""

import pytest
import torch
from helpers import TINY, records

from mnistbench.config import resolve
from mnistbench.run import train


def test_overfits_a_tiny_batch(tmp_path, data_dir):
    # 64 training images, many epochs: a working loop drives the training loss near zero
    cfg = resolve({**TINY, "train_limit": 64, "batch_size": 64, "epochs": 60, "lr": 1e-2, "width": 8,
                   "log_every": 1, "dropout": 0.0, "weight_decay": 0.0, "data_dir": str(data_dir),
                   "out": str(tmp_path / "run"), "precision": "fp32", "label_smoothing": 0.0})
    train(cfg)
    logged = records(tmp_path / "run")
    losses = [r["loss"] for r in logged if r["kind"] == "train"]
    assert len(losses) == 60 and losses[-1] < 0.05 < losses[0]


def test_best_validation_weights_are_kept(tmp_path, data_dir):
    cfg = resolve({**TINY, "epochs": 3, "width": 8, "data_dir": str(data_dir), "out": str(tmp_path / "r")})
    s = train(cfg)
    val = records(tmp_path / "r", "val")
    best = max(range(3), key=lambda i: val[i]["val_accuracy"])
    assert s["best_epoch"] == best + 1 and s["best_val_accuracy"] == val[best]["val_accuracy"]
    saved = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert set(saved) and all(torch.is_tensor(v) for v in saved.values())


@pytest.mark.parametrize("checkpoints", [True, False])
def test_model_pt_is_written_per_new_best_and_not_again_at_the_end(tmp_path, data_dir, monkeypatch, checkpoints):
    from mnistbench import checkpoint

    writes, save = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, obj: (writes.append(path.name), save(path, obj)))
    cfg = resolve({**TINY, "epochs": 2, "width": 8, "data_dir": str(data_dir), "out": str(tmp_path / "r"),
                   "checkpoints": checkpoints})
    train(cfg)
    val = [r["val_accuracy"] for r in records(tmp_path / "r", "val")]
    new_bests = sum(v > max(val[:i], default=0.0) for i, v in enumerate(val))
    # with checkpoints: at each validation that found new best weights (none after training); else once, at the end
    assert writes.count("model.pt") == (new_bests if checkpoints else 1)
    assert writes.count("checkpoint.pt") == (len(val) if checkpoints else 0)


def test_target_accuracy_stops_early(tmp_path, data_dir):
    cfg = resolve({**TINY, "epochs": 5, "width": 8, "target_accuracy": 0.01, "data_dir": str(data_dir),
                   "out": str(tmp_path / "r")})
    s = train(cfg)
    assert s["epochs_completed"] == 1 and s["stopped_early"]


def test_schedules_reach_their_peaks():
    from mnistbench.optim import lr_factor

    for schedule in ("onecycle", "cosine", "constant"):
        lrs = [lr_factor(schedule, 0.2, step, 100) for step in range(100)]
        assert max(lrs) <= 1 + 1e-9 and max(lrs) > 0.9
        if schedule != "constant":
            assert lrs[-1] < 0.01 and lrs[0] <= 0.05
            assert max(range(100), key=lrs.__getitem__) in range(17, 22)  # the peak ends the 20 % warm-up


def test_onecycle_matches_torch():
    """Our pure-function OneCycle is torch's OneCycleLR (cosine annealing, no momentum cycling)."""
    from mnistbench.optim import lr_factor

    for total, warmup in ((100, 0.1), (37, 0.3), (5, 0.1)):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, pct_start=warmup,
                                                    cycle_momentum=False)
        for step in range(total):
            # the same formula in float64 (a cosine and a few products: ~1e-15 relative); rel=1e-9 admits any order
            assert lr_factor("onecycle", warmup, step, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
            opt.step()
            sched.step()


def test_adamw_takes_the_configured_betas():
    from mnistbench.optim import make_optimizer

    net = torch.nn.Linear(2, 2)
    assert make_optimizer(net, resolve({"model": "cnn"})).param_groups[0]["betas"] == (0.7, 0.9)  # its recipe
    assert make_optimizer(net, resolve({"model": "vit"})).param_groups[0]["betas"] == (0.9, 0.999)  # torch's
    assert make_optimizer(net, resolve({"model": "cnn", "beta1": "0.8"})).param_groups[0]["betas"] == (0.8, 0.9)


@pytest.mark.parametrize("subset_winner", [0, 1])  # the first or the last checkpoint leads on the subset
def test_a_validation_subset_while_training_and_a_choice_decided_on_the_whole_split(tmp_path, data_dir, monkeypatch,
                                                                                 subset_winner):
    from mnistbench.tasks.classify import ClassifyTask

    real, calls = ClassifyTask.validate, []

    def rigged(self, model, whole=False):
        out = real(self, model, whole)
        if not whole:  # the subset's verdict is forced: checkpoint `subset_winner` leads
            out["val_accuracy"] = 0.9 if len(calls) == subset_winner else 0.5
        calls.append((whole, out["val_images"]))
        return out

    monkeypatch.setattr(ClassifyTask, "validate", rigged)
    cfg = resolve({**TINY, "epochs": 2, "width": 8, "val_subset": 100, "data_dir": str(data_dir),
                   "out": str(tmp_path / "r")})
    s = train(cfg)
    logged = records(tmp_path / "r")
    select = [r for r in logged if r["kind"] == "select"]
    assert [r["val_images"] for r in logged if r["kind"] == "val"] == [100, 100]
    if subset_winner == 1:  # the last checkpoint leads: nothing to choose, the whole split is never scored
        assert select == [] and calls == [(False, 100), (False, 100)] and s["best_step"] == 16
        return
    assert calls[2:] == [(True, TINY["val_size"])] * 2  # both candidates, on all 256 validation images
    (first, first_acc), (last, last_acc) = ((int(k), v) for k, v in select[0]["candidates"].items())
    assert (first, last) == (8, 16) and select[0]["kept_step"] == (first if first_acc > last_acc else last)
    assert s["best_step"] == select[0]["kept_step"] and s["best_val_accuracy"] == max(first_acc, last_acc)
