"""compare on Ray and on Slurm (submitit's local executor): the local executor's rows, and a killed run's
process is started again and its run resumes from its checkpoint."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from helpers import STUDY_SETS, records

from mnistbench.errors import UserError
from mnistbench.record import PREDICTIONS
from mnistbench.study import worker
from mnistbench.study.compare import compare

SAME = ("model", "seed", "status", "error", "test_accuracy", "test_macro_f1", "test_loss", "params",
        "flops_per_image", "images_seen", "epochs", "run_dir")
# fp32: precision=auto times fp32 against bf16 on a bf16 CPU, and a busy machine may pick either; a checkpoint
# after every step, so the killed run resumes mid-epoch
SETS = {**STUDY_SETS, "precision": "fp32", "checkpoint_minutes": 1e-6}


@pytest.fixture(scope="module")
def local_study(tmp_path_factory, data_dir) -> Path:
    """The two runs with the default executor: each in its own process, one after the other."""
    out = tmp_path_factory.mktemp("local") / "study"
    compare(["cnn", "vit"], out=out, data_dir=str(data_dir), overrides=SETS, quiet=True, log=None,
            build_report=False)
    return out


def killing_once(model: str, marker: str):
    """worker.attempt, except that the first `model` run SIGKILLs its own process at step 3 (after the
    checkpoint of step 2). A closure: Ray and submitit pickle it by value into the run's process."""
    def attempt(config, folder):
        import os
        import signal

        from mnistbench import engine
        from mnistbench.study import worker as real

        if config["model"] == model and not os.path.exists(marker):
            step = engine.Trainer._step

            def step_then_die(self, batch, window):
                step(self, batch, window)
                if self.state.global_step == 3:
                    open(marker, "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)

            engine.Trainer._step = step_then_die
        return real.attempt(config, folder)
    return attempt


def _check_against_local(rows: list[dict], out: Path, reference: Path, marker: Path, executor: str) -> None:
    local = {r["run_dir"]: r for r in json.loads((reference / "results.json").read_text())["rows"]}
    assert [(r["model"], r["status"]) for r in rows] == [("cnn", "ok"), ("vit", "ok")], rows
    for r in rows:
        assert {k: r[k] for k in SAME} == {k: local[r["run_dir"]][k] for k in SAME}
        assert (out / r["run_dir"] / PREDICTIONS).read_text() == (reference / r["run_dir"] / PREDICTIONS).read_text()
    assert marker.exists()  # the cnn run's process was killed at step 3 ...
    logged = records(out / "runs/cnn-seed0")
    steps = [r["step"] for r in logged if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == STUDY_SETS["train_limit"] // STUDY_SETS["batch_size"]
    # ... and its rerun resumed from the step-2 checkpoint: the same records as the uninterrupted local run
    ref = records(reference / "runs/cnn-seed0")
    assert [r.get("loss") for r in logged] == [r.get("loss") for r in ref]
    assert json.loads((out / "results.json").read_text())["study"]["executor"] == executor


def test_ray_rows_are_the_local_rows_and_a_killed_run_resumes(tmp_path, data_dir, local_study, monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'mnistbench[ray]'")
    marker = tmp_path / "killed"
    monkeypatch.setattr(worker, "attempt", killing_once("cnn", str(marker)))
    out = tmp_path / "study"
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20)
    try:
        rows = compare(["cnn", "vit"], out=out, data_dir=str(data_dir), overrides=SETS, quiet=True, log=None,
                       executor="ray", build_report=False)
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)  # ray.init sets its own in the driver
    _check_against_local(rows, out, local_study, marker, "ray")


def test_slurm_rows_are_the_local_rows_and_a_killed_job_is_resubmitted(tmp_path, data_dir, local_study, monkeypatch):
    pytest.importorskip("submitit", reason="the slurm extra: pip install 'mnistbench[slurm]'")
    from mnistbench.study import slurm_executor

    marker = tmp_path / "killed"
    monkeypatch.setattr(worker, "attempt", killing_once("cnn", str(marker)))
    monkeypatch.setattr(slurm_executor, "CLUSTER", "local")
    monkeypatch.setattr(slurm_executor, "POLL_S", 0.5)
    out = tmp_path / "study"
    rows = compare(["cnn", "vit"], out=out, data_dir=str(data_dir), overrides=SETS, quiet=True, log=None,
                   executor="slurm", build_report=False)
    _check_against_local(rows, out, local_study, marker, "slurm")
    assert list((out / "submitit").glob("*_log.out"))  # the jobs' logs beside the runs


def test_without_slurm_or_its_package_the_error_is_one_line(tmp_path, data_dir, monkeypatch):
    import importlib.util

    from mnistbench.study import executor

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'mnistbench\[ray\]'"):
        executor.check_executor("ray")
    with pytest.raises(UserError, match="choose one of local, inline, ray, slurm"):
        executor.check_executor("dask")
    pytest.importorskip("submitit")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UserError, match="no Slurm on this machine"):
        compare(["cnn", "vit"], out=tmp_path / "s", data_dir=str(data_dir), overrides=SETS, log=None,
                executor="slurm")
    assert not (tmp_path / "s").exists()  # refused before any work
