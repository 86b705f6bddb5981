"""One run on two processes (torchrun DDP, gloo on the CPU): the same training as one process, one run folder."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import TINY, records
from numerics import assert_within_rounding, reduction_length

from mnistbench.config import resolve
from mnistbench.errors import UserError
from mnistbench.models import get_model

# A ViT has no batch norm and, with dropout 0, no random draws in its forward pass: on two ranks its steps are
# the single-process steps (gloo has no SyncBatchNorm, so a CPU CNN's batch statistics would be per rank).
# Affine augmentation is on: each rank's shard gets the draws one process gives those images. SGD, because
# AdamW's division by sqrt(v) magnifies the last-bit differences of another summation order (after these 8
# steps: 1.1e-6 with AdamW, 1.5e-8 with SGD).
PARITY = {**TINY, "model": "vit", "dim": 16, "depth": 1, "heads": 2, "dropout": 0.0, "augment": "affine",
          "precision": "fp32", "epochs": 1, "batch_size": 64, "log_every": 1, "optimizer": "sgd", "lr": 0.05}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, overrides: dict, dump: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then train(); its final weights dumped."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import mnistbench.run as train_module

    real_fit = train_module.fit

    def fit_and_dump(model, *args, **kwargs):
        state = real_fit(model, *args, **kwargs)
        torch.save(model.state_dict(), f"{dump}/rank{rank}.pt")
        return state

    train_module.fit = fit_and_dump
    train_module.train(resolve(overrides))


def test_two_gloo_ranks_train_exactly_what_one_process_trains(tmp_path, data_dir, monkeypatch):
    one = tmp_path / "one"
    overrides = {**PARITY, "data_dir": str(data_dir)}
    import mnistbench.run as run_module

    initial, real_fit = {}, run_module.fit

    def fit_from(model, *args, **kwargs):  # the weights before the first step
        initial.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(run_module, "fit", fit_from)
    single = run_module.train(resolve({**overrides, "out": str(one)}))
    two = tmp_path / "two"
    mp.spawn(_rank, args=(2, _free_port(), {**overrides, "out": str(two)}, str(tmp_path)), nprocs=2)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    steps = 512 // 64  # one epoch of 8 steps; its one validation is the last step, so these are the final weights
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # DDP: both ranks hold the same parameters
    alone = torch.load(one / "checkpoint.pt", weights_only=True)["model"]
    together = torch.load(two / "checkpoint.pt", weights_only=True)["model"]
    # Two ranks sum each half batch's gradient and add the halves; one process sums the whole batch: the same
    # terms in another order. K: the network's sums for a batch of 64 (its layers' fan-ins and weight-gradient
    # sums, attention's 8-wide and 17-token sums). A gradient's rounding gap is at most sqrt(K) * eps times its
    # terms, of the size of the steps it drives; SGD's momentum (0.9, Nesterov) carries each step's gap into
    # at most 1 / (1 - 0.9) = 10 later updates, and the steps add up to at most `steps` times the weights' whole
    # movement. So each tensor's gap is within sqrt(K) * eps * 10 * steps * max |moved|.
    model = get_model("vit", dim=16, depth=1, heads=2, dropout=0.0)
    k = reduction_length(model, torch.zeros(64, 1, 28, 28)) + 8 + 17
    for key in alone:
        moved = (alone[key] - initial[key]).abs().max().item()
        assert_within_rounding(together[key], alone[key], k, magnitude=10 * steps * moved, what=key)
        assert torch.equal(together[key], ranks[0][key])
    # the logged loss is the mean over the ranks' shards: the single process's loss of the whole batch, up to the
    # rounding of the forward's sums (K) on losses of their own size, plus what the weights' gap moves them
    losses = [[r["loss"] for r in records(d, "train")] for d in (one, two)]
    assert len(losses[0]) == steps
    assert_within_rounding(torch.tensor(losses[1]), torch.tensor(losses[0]), k, what="loss")
    summary = json.loads((two / "summary.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "backend": "gloo"} and "2 processes" in summary["device"]
    assert summary["test_accuracy"] == single["test_accuracy"] and summary["steps"] == steps
    assert summary["images_seen"] == single["images_seen"] == steps * 64  # the config's batch is the global batch


def _torchrun(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2",
            "-m", "mnistbench", "train", *args]


def test_torchrun_writes_one_run_folder_and_resumes_after_sigterm(tmp_path, data_dir):
    out = tmp_path / "run"
    sets = {**TINY, "width": 8, "train_limit": 4096, "batch_size": 32, "epochs": 2, "checkpoint_minutes": 0.0001,
            "log_every": 4, "device": "cpu"}
    args = ["--data-dir", str(data_dir), "--out", str(out),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    proc = subprocess.Popen(_torchrun(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks; they agree on a step and checkpoint
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "checkpoint saved. Resume with" in log, log[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2 and not (out / "summary.json").exists()
    stopped_at = ckpt["state"]["global_step"]

    done = subprocess.run(_torchrun("--resume", str(out), "--quiet"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert files == {"config.json", "metrics.jsonl", "summary.json", "predictions.json", "model.pt", "checkpoint.pt",
                     "curves.png", "confusion.png"}, files
    logged = records(out)
    steps = [r["step"] for r in logged if r["kind"] == "train"]
    total = 2 * (4096 // 32)
    assert steps == sorted(set(steps)) and steps[-1] == total and 0 < stopped_at < total
    assert [r["epoch"] for r in logged if r["kind"] == "val"] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2 and summary["steps"] == total


def test_the_global_batch_must_split_evenly(monkeypatch):
    from mnistbench import distributed

    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match="batch_size=64 is the global batch.*3 processes"):
        with distributed.start("cpu", 64):
            pass


def test_other_ranks_write_nothing(tmp_path):
    """Every writer of the run folder is silenced on ranks > 0 (a new writer must be added to SilentRecord)."""
    from mnistbench.record import RunRecord, SilentRecord

    readers = {"path", "metrics_lines", "read_metrics"}
    writers = {n for n in vars(RunRecord) if not n.startswith("_") and callable(getattr(RunRecord, n))} - readers
    assert writers and all(n in vars(SilentRecord) for n in writers), writers - set(vars(SilentRecord))
    silent = SilentRecord(tmp_path / "run")
    silent.write_config({}, "cpu", {})
    silent.log({"kind": "train", "step": 1})
    silent.write_summary({})
    assert not (tmp_path / "run").exists()
