"""A full disk or a read-only folder: one line naming the file and why, exit status 74, no traceback, nothing
half-written, no temp file left, what is intact and the command that goes on; checked before any work.

Two ways to make a disk refuse. A real one: a size-limited or read-only tmpfs mounted for the test, where this
machine lets a test mount one (root with CAP_SYS_ADMIN), else that test is skipped. And OSError injected at the
write calls (always run): torch.save writing through a file that fails like a full disk, a refused temp file.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import encode, fresh_run, records

from mnistbench import fsio, storage
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.errors import EXIT_IO, WriteError
from mnistbench.record import CHECKPOINT, ERROR, MODEL, SUMMARY, RunRecord
from mnistbench.study.executor import run_in_a_process
from mnistbench.study.plan import Job

SETS = {"train_limit": 768, "test_limit": 256, "val_size": 256, "width": 8, "log_every": 2, "seed": 1,
        "deterministic": True, "precision": "fp32", "inference_benchmark": False}  # 2 epochs of 12 steps
ARGS = ["--model", "cnn", "--epochs", "2", "--batch-size", "64", "--quiet",
        *[a for k, v in SETS.items() for a in ("--set", f"{k}={str(v).lower()}")]]


def train_args(data_dir, out, *more) -> list[str]:
    return ["train", "--data-dir", str(data_dir), "--out", str(out), *ARGS, *more]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob(".*") if p.name.endswith(".tmp")]


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(autouse=True)
def _restore_determinism():
    """Runs here train in this process with deterministic=true, which switches torch's flag globally."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


# --- a real small disk, and injected failures ---------------------------------------------------------------
@pytest.fixture
def disk(tmp_path):
    """mount(kb, read_only=False): a fresh tmpfs of that size; the test is skipped where mounting is refused."""
    mounted = []

    def mount(kb: int, read_only: bool = False) -> Path:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        options = f"size={kb}k" + (",ro" if read_only else "")
        if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
            pytest.skip("this machine does not let the test mount a tmpfs (needs root with CAP_SYS_ADMIN)")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Another writer takes the free space of `folder`'s disk, all but about `leave` bytes."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        todo = shutil.disk_usage(folder).free - leave
        while todo > 0:
            todo -= os.write(fd, b"\0" * min(todo, 1 << 20))
    except OSError:
        pass
    finally:
        os.close(fd)


class FullDisk:
    """A file that takes `room` more bytes, then fails as a full disk does (OSError ENOSPC)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class CheckpointFails:
    """The n-th checkpoint's torch.save writes through a FullDisk, as on a disk that fills; off(): room again."""

    def __init__(self, monkeypatch):
        self.real, self.count, self.n = torch.save, 0, 0
        monkeypatch.setattr(torch, "save", self.save)

    def __call__(self, n: int) -> None:
        self.n = n

    def off(self) -> None:
        self.n = 0

    def save(self, obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj and self.n:
            self.count += 1
            if self.count == self.n:
                return self.real(obj, FullDisk(f, 1000), *args, **kwargs)
        return self.real(obj, f, *args, **kwargs)


@pytest.fixture
def checkpoint_fails(monkeypatch) -> CheckpointFails:
    return CheckpointFails(monkeypatch)


@pytest.fixture
def refused(monkeypatch):
    """refuse(folder, code): every temp file of an atomic write in `folder` fails with OSError(code)."""
    real = tempfile.mkstemp

    def refuse(folder: Path, code: int) -> None:
        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve().is_relative_to(Path(folder).resolve()):
                raise OSError(code, os.strerror(code), str(dir))
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return refuse


# --- fsio: every write fails the same way ---------------------------------------------------------------
@pytest.mark.parametrize("code, why", [(errno.ENOSPC, "no space left on device (the disk mounted at"),
                                       (errno.EDQUOT, "disk quota exceeded"), (errno.EROFS, "read-only file system"),
                                       (errno.EACCES, "permission denied"), (errno.EIO, "input/output error")])
def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, code, why):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def write(f):
        f.write(b"half of the new")
        raise OSError(code, os.strerror(code))

    with pytest.raises(WriteError) as caught:
        fsio.write_atomic(path, write)
    assert caught.value.errno == code and str(caught.value).startswith(f"cannot write {path}: {why}")
    assert path.read_text() == "old" and temp_files(tmp_path) == []


def test_torch_saves_runtime_error_is_the_disk_full_behind_it(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    fsio.save_torch(path, {"step": 1})
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: real(obj, FullDisk(f, 1000)))
    with pytest.raises(WriteError) as caught:
        fsio.save_torch(path, {"w": torch.zeros(10_000)})
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(caught.value.__cause__, RuntimeError)  # torch's zip writer: "unexpected pos ..."
    assert torch.load(path, weights_only=True) == {"step": 1} and temp_files(tmp_path) == []


def test_torch_save_on_a_real_full_disk(disk):
    small = disk(200)
    with pytest.raises(WriteError) as caught:
        fsio.save_torch(small / CHECKPOINT, {"w": torch.zeros(100_000)})  # 400 kB
    assert caught.value.errno == errno.ENOSPC and f"the disk mounted at {small} is full" in str(caught.value)
    assert os.listdir(small) == []  # no temp file, no half checkpoint


def test_an_append_the_disk_cuts_short_is_undone(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n')
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:5])) if len(data) > 5
                        else (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError, match="no space left on device"):
        fsio.append(path, b'{"step": 2}\n')
    assert path.read_bytes() == b'{"step": 1}\n'


def test_appends_on_a_real_full_disk_leave_whole_lines(disk):
    small = disk(100)
    log = small / "metrics.jsonl"
    fsio.append(log, b'{"step": 0}\n')
    fill(small)
    with pytest.raises(WriteError, match="no space left on device"):
        for step in range(1, 100_000):  # the file's last page takes some lines, then the disk cuts one short
            fsio.append(log, (json.dumps({"step": step, "loss": 0.123456789}) + "\n").encode())
    lines = log.read_text().splitlines()
    assert len(lines) > 1 and [json.loads(line)["step"] for line in lines] == list(range(len(lines)))


def test_a_read_only_disk_is_named_before_anything_is_written(disk):
    folder = disk(100, read_only=True) / "run"
    with pytest.raises(WriteError) as caught:
        fsio.check_writable(folder)
    assert caught.value.errno == errno.EROFS and str(caught.value).startswith(f"cannot write to {folder}")


def test_tensorboards_failed_write_is_a_write_error_without_a_thread_traceback(tmp_path, monkeypatch, capfd):
    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = RunRecord(tmp_path / "run", tensorboard=True)
    monkeypatch.setattr(LocalFileSystem, "write", full)
    monkeypatch.setattr(LocalFileSystem, "append", full)
    with pytest.raises(WriteError, match="events.out.tfevents"):
        for step in range(1, 5):
            run.log({"kind": "train", "step": step, "loss": 1.0, "lr": 0.1, "time": 0.0})
    assert "Traceback" not in capfd.readouterr().err


# --- train: before any work, and mid-run -------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """The run uninterrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(data_dir, out)) == 0
    return out


def same_run(a: Path, b: Path) -> None:
    """The same weights, metrics (times aside) and test results."""
    wa, wb = torch.load(a / MODEL, weights_only=True), torch.load(b / MODEL, weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    logged = [[{k: v for k, v in r.items() if k not in ("time", "train_seconds", "val_seconds")}
               for r in records(run)] for run in (a, b)]
    assert logged[0] == logged[1]
    sa, sb = (json.loads((run / SUMMARY).read_text()) for run in (a, b))
    assert (sa["test_accuracy"], sa["test_loss"]) == (sb["test_accuracy"], sb["test_loss"])


def test_a_disk_full_mid_run_is_one_line_and_resume_finishes_it(tmp_path, data_dir, reference, capsys,
                                                                 checkpoint_fails):
    out = tmp_path / "run"
    checkpoint_fails(2)  # the checkpoint at the end of epoch 2
    assert main(train_args(data_dir, out)) == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert f"cannot write {out / CHECKPOINT}: no space left on device" in err
    assert "the last checkpoint, step 12 of 24, is intact" in err
    assert err.rstrip().endswith(f"once space is freed there, go on with: mnistbench train --resume {out}")
    assert temp_files(out) == []
    checkpoint_fails.off()  # the disk has room again
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    same_run(out, reference)


def test_a_real_disk_that_fills_mid_run_then_resume_on_a_roomier_copy(tmp_path, data_dir, reference, capsys,
                                                                       disk, monkeypatch):
    from mnistbench.engine import Trainer

    small = disk(4096)  # the pre-check passes: the tiny CNN needs about 3.3 MB
    real = Trainer.save_checkpoint

    def then_fill(self):
        real(self)
        fill(small)  # another writer takes the rest of the disk after the first checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", then_fill)
    assert main(train_args(data_dir, small / "run")) == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert "no space left on device" in err and "the last checkpoint, step 12 of 24, is intact" in err
    assert temp_files(small) == []
    monkeypatch.setattr(Trainer, "save_checkpoint", real)
    roomy = shutil.copytree(small / "run", tmp_path / "roomy")
    assert main(["train", "--resume", str(roomy), "--quiet"]) == 0
    same_run(roomy, reference)


def test_train_into_a_read_only_folder_is_one_line_before_any_work(tmp_path, data_dir, capsys, refused, monkeypatch):
    monkeypatch.setattr("mnistbench.run._plan", lambda *a: pytest.fail("work started"))
    refuse_into = tmp_path / "ro"
    refused(refuse_into, errno.EROFS)
    assert main(train_args(data_dir, refuse_into / "run")) == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert f"cannot write to {refuse_into / 'run'}: read-only file system" in err
    assert "nothing of the run was written" in err and "once it is writable, run the same command again" in err
    assert main(["--debug", *train_args(data_dir, refuse_into / "run")]) == EXIT_IO
    assert "Traceback" in capsys.readouterr().err  # with --debug, and only then


def test_train_into_a_real_read_only_disk(data_dir, capsys, disk, monkeypatch):
    monkeypatch.setattr("mnistbench.run._plan", lambda *a: pytest.fail("work started"))
    ro = disk(100, read_only=True)
    assert main(train_args(data_dir, ro / "run")) == EXIT_IO
    assert f"cannot write to {ro / 'run'}: read-only file system (mounted at {ro})" in one_line(capsys.readouterr().err)


def test_a_disk_without_room_for_the_run_refuses_it_before_any_work(data_dir, capsys, disk, monkeypatch):
    monkeypatch.setattr("mnistbench.run._plan", lambda *a: pytest.fail("work started"))
    small = disk(1200)
    assert main(["train", "--model", "cnn", "--data-dir", str(data_dir), "--out", str(small / "run"), "--quiet"]) \
        == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert f"not enough free space on the disk mounted at {small} (1.2 MB free): the run needs about" in err
    assert f"MB in {small / 'run'} (model.pt " in err
    assert os.listdir(small) == []  # nothing started, not even the run folder


def test_the_room_check_uses_the_free_space_and_the_run_sizes(tmp_path, reference, monkeypatch):
    """The estimate covers the real model.pt and checkpoint.pt (without being far above them); the check
    refuses below the need and passes above it."""
    from mnistbench.run import build_model, runtime

    cfg = resolve({"model": "cnn", **SETS})
    model = build_model(cfg, runtime(cfg, "cpu"))
    fp = storage.footprint(model, cfg)
    for name, estimate in ((MODEL, fp.model), (CHECKPOINT, fp.checkpoint)):
        size = (reference / name).stat().st_size
        assert size <= estimate <= size + 150_000, (name, size, estimate)
    need = int(storage.MARGIN * fp.peak)
    for free, refuses in ((need - 1, True), (need, False)):
        monkeypatch.setattr(shutil, "disk_usage", lambda p, free=free: shutil._ntuple_diskusage(10**9, 0, free))
        if refuses:
            with pytest.raises(WriteError, match="not enough free space"):
                storage.check_run(tmp_path / "run", model, cfg)
        else:
            storage.check_run(tmp_path / "run", model, cfg)


# --- a study ------------------------------------------------------------------------------------------------
STUDY = ["compare", "--models", "cnn", "--seeds", "3", "--executor", "inline", "--quiet",
         *[a for k, v in {**SETS, "epochs": 1, "batch_size": 64, "budget_s": 0}.items() if k != "seed"
           for a in ("--set", f"{k}={str(v).lower()}")]]


def rows(study: Path) -> list[tuple[int, str, str]]:
    return [(r["seed"], r["status"], r["error"]) for r in json.loads((study / "results.json").read_text())["rows"]]


def test_a_study_checks_room_for_all_its_runs_once_before_any(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 5_000_000))
    out = tmp_path / "study"
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert "not enough free space on the disk mounted at" in err
    assert "(5.0 MB free): its 3 run(s) still to do and its report need about" in err and f"MB in {out} (" in err
    assert "no run was started" in err and not (out / "runs").exists()


def test_a_study_run_whose_disk_fills_is_a_failed_row_and_the_same_command_finishes_it(
        tmp_path, data_dir, checkpoint_fails):
    out = tmp_path / "study"
    checkpoint_fails(3)  # the third run's only checkpoint
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == 1  # a run failed
    (s0, ok0, _), (s1, ok1, _), (s2, failed, why) = rows(out)
    assert (ok0, ok1, failed) == ("ok", "ok", "failed")
    assert why.startswith(f"cannot write {out / 'runs/cnn-seed2' / CHECKPOINT}: no space left on device (the disk")
    checkpoint_fails.off()  # space freed
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert [status for _, status, _ in rows(out)] == ["ok", "ok", "ok"]


def test_a_study_whose_results_cannot_be_written_stops_with_one_line(tmp_path, data_dir, capsys, monkeypatch):
    from mnistbench.study import compare as study

    out, real_mkstemp, real_said, full = tmp_path / "study", tempfile.mkstemp, study._said, []

    def mkstemp(*args, dir=None, prefix="", **kwargs):  # the study's own results, once the disk is full
        if full and Path(dir) == out and prefix.startswith(".results."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, dir=dir, prefix=prefix, **kwargs)

    def said(row):  # the disk fills once two runs are recorded: the third run's row cannot be
        full.extend([True] * (row["seed"] == 1))
        return real_said(row)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(study, "_said", said)
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == EXIT_IO
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith("[3/3] cnn, seed 2: training") and "Traceback" not in "".join(err)
    assert err[-1].startswith(f"mnistbench: error: cannot write {out / 'results.json'}: no space left on device")
    assert "the finished runs and the last results.json are intact" in err[-1]
    assert "once space is freed there, go on with: mnistbench compare --models cnn" in err[-1]
    assert [status for _, status, _ in rows(out)] == ["ok", "ok"] and temp_files(out) == []
    full.clear()
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert [status for _, status, _ in rows(out)] == ["ok", "ok", "ok"]
    assert "3 of 3 runs already done" in capsys.readouterr().err  # the third run had finished: not trained again


def test_a_real_disk_that_fills_in_the_third_run_of_a_study(tmp_path, data_dir, capsys, disk, monkeypatch):
    from mnistbench.study import compare as study

    small = disk(16 * 1024)
    out, real, filled = small / "study", study._head, []

    def head(jobs, job):  # the third run starts with 100 kB left: its own room check refuses it
        if job.seed == 2 and not filled:
            fill(small, leave=100_000)
            filled.append(True)
        return real(jobs, job)

    monkeypatch.setattr(study, "_head", head)
    code = main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    (_, ok0, _), (_, ok1, _), (_, failed, why) = rows(out)
    assert (ok0, ok1, failed) == ("ok", "ok", "failed")
    assert why.startswith(f"not enough free space on the disk mounted at {small} (0.1 MB free): the run needs")
    # the report does not fit in what is left either: the study stops there, in one line
    assert code == EXIT_IO and "cannot write" in err.splitlines()[-1] and "Traceback" not in err
    (small / "filler").unlink()
    assert main([*STUDY, "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert [status for _, status, _ in rows(out)] == ["ok", "ok", "ok"]


def test_a_failed_runs_reason_reaches_the_study_when_error_txt_cannot_be_written(tmp_path):
    """The local executor's run process tells its reason through a pipe as well as error.txt."""
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / f"{stem}.gz").write_bytes(b"not gzip")  # the run fails reading its data
    folder = tmp_path / "runs" / "cnn-seed0"
    (folder / ERROR / "x").mkdir(parents=True)  # error.txt cannot be written: a folder is in its place
    cfg = resolve({"model": "cnn", "data_dir": str(tmp_path / "data"), "out": str(folder), "quiet": True})
    outcome = run_in_a_process(Job("cnn", 0, cfg, "runs/cnn-seed0", {}), folder, "resume")
    assert outcome.summary is None and "train-images-idx3-ubyte.gz" in outcome.error, outcome.error


# --- the other commands that write ----------------------------------------------------------------------------
def test_predict_save_preprocessed_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    run = fresh_run(tmp_path / "run", "cnn", width=8)
    image = tmp_path / "digit.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255  # a stroke of ink: a "1"
    image.write_bytes(encode(pixels))
    seen, real = tmp_path / "seen", tempfile.mkstemp

    def mkstemp(*args, dir=None, prefix="", **kwargs):  # the folder check passes, then the disk is full
        if dir is not None and Path(dir) == seen and ".write-test" not in prefix:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, dir=dir, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert main(["predict", str(run), str(image), "--save-preprocessed", str(seen), "--device", "cpu"]) == EXIT_IO
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"mnistbench: error: cannot write {seen / 'digit.png'}: no space left on device")
    assert err.rstrip().endswith("once space is freed there, run the same command again") and temp_files(seen) == []


def test_report_into_a_read_only_study_is_one_line(reference, tmp_path, capsys, refused):
    study = tmp_path / "study"
    shutil.copytree(reference, study / "runs" / "cnn-seed1")  # a study folder of one finished run
    refused(study, errno.EROFS)
    assert main(["report", str(study)]) == EXIT_IO
    assert f"cannot write {study / 'results.json'}: read-only file system" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in study.iterdir()) == ["runs"]
