"""Nothing lost: exact resume after SIGKILL, SIGTERM, NaN, config changes, bad checkpoints, bad folders."""
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import records

from mnistbench.cli import main

# 3 epochs of 128 steps; a checkpoint after (almost) every step; deterministic kernels.
RUN = ["--epochs", "3", "--batch-size", "32", "--seed", "5", "--quiet",
       "--set", "train_limit=4096", "--set", "test_limit=200", "--set", "val_size=200", "--set", "width=8",
       "--set", "deterministic=true", "--set", "checkpoint_minutes=0.0001", "--set", "log_every=4",
       "--set", "inference_benchmark=false", "--set", "augment=affine", "--set", "dropout=0.2",
       "--set", "precision=fp32"]  # auto would time both precisions: a busy machine could pick differently


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnistbench", *args]


def train_cmd(data_dir, out) -> list[str]:
    return cli("train", "--data-dir", str(data_dir), "--out", str(out), *RUN)


def outcome(run: Path) -> tuple[dict, list]:
    """Final weights and the metric values (times left out: they differ between runs by nature)."""
    weights = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    logged = records(run)
    values = [{k: v for k, v in r.items() if k not in ("time", "train_seconds", "val_seconds")} for r in logged]
    return weights, values


def wait_for(path: Path, proc: subprocess.Popen, newer_than: float = 0.0, timeout: float = 120) -> None:
    """Until `path` exists with a modification time after `newer_than` (the process made progress)."""
    end = time.time() + timeout
    while not (path.exists() and path.stat().st_mtime_ns > newer_than):
        assert proc.poll() is None and time.time() < end, "training ended before writing a checkpoint"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(train_cmd(data_dir, out), check=True, capture_output=True, timeout=300)
    return outcome(out)


def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path, data_dir, reference):
    out = tmp_path / "run"
    rng = random.Random(0)
    proc = subprocess.Popen(train_cmd(data_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kills, mid_epoch = 0, 0
    last = 0.0
    while kills < 4:
        wait_for(out / "checkpoint.pt", proc, newer_than=last)  # this process has trained and checkpointed
        time.sleep(rng.uniform(0.0, 0.1))
        if proc.poll() is not None:  # finished before the kill: nothing to resume
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        last = (out / "checkpoint.pt").stat().st_mtime_ns
        state = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
        mid_epoch += state["step_in_epoch"] > 0
        proc = subprocess.Popen(cli("train", "--resume", str(out), "--quiet"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=300) == 0
    assert kills >= 3 and mid_epoch >= 1, (kills, mid_epoch)
    weights, values = outcome(out)
    ref_weights, ref_values = reference
    assert values == ref_values
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), k
    assert not list(out.glob(".*.tmp"))  # no temp file left behind


def test_sigterm_checkpoints_and_exits_143(tmp_path, data_dir, reference):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(data_dir, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err
    done = subprocess.run(cli("train", "--resume", str(out), "--quiet"), capture_output=True, timeout=300)
    assert done.returncode == 0
    assert outcome(out)[1] == reference[1]


def test_resume_refuses_a_changed_config(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(data_dir), "--out", str(out), *RUN]
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    assert main(["train", "--resume", str(out), "--lr", "0.5", "--set", "width=16"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "model_args" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0  # epochs may change
    assert json.loads((out / "summary.json").read_text())["epochs_completed"] == 2


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path, data_dir, capsys, monkeypatch):
    from mnistbench.tasks import classify

    real_loss = classify.ClassifyTask.loss

    def poisoned(self, net, idx, step):
        loss = real_loss(self, net, idx, step)
        return loss * float("nan") if step >= 140 else loss  # in epoch 2 (128 steps per epoch)

    monkeypatch.setattr(classify.ClassifyTask, "loss", poisoned)
    out = tmp_path / "run"
    rc = main(["train", "--data-dir", str(data_dir), "--out", str(out), *RUN, "--set", "checkpoint_minutes=0"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "nan" in err.lower() and "step 144" in err and "learning rate" in err and err.count("\n") == 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 1  # the good end-of-epoch-1 checkpoint survived
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


def test_truncated_checkpoint_is_one_line(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(data_dir), "--out", str(out), *RUN]
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "truncated or corrupt" in err and "Traceback" not in err


class Payload:
    """Anything that is not a tensor or plain container needs full unpickling."""


def test_pickle_needing_arbitrary_code_is_refused(tmp_path):
    from mnistbench import checkpoint
    from mnistbench.errors import UserError

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(UserError, match="weights_only"):
        checkpoint.load(path)


def test_unwritable_output_folder_before_training(tmp_path, data_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    args = ["train", "--data-dir", str(data_dir), "--out", str(blocker / "run"), *RUN]
    assert main(args) == 74  # EX_IOERR: a folder or file that cannot be written
    err = capsys.readouterr().err
    assert f"cannot write to {blocker / 'run'}: not a directory" in err and err.count("\n") == 1
