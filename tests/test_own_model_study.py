"""Own models in a study and from Python: compare with a model file, its code travelling with each job, a report
that never imports it, installed models (entry points), notebook classes kept by source, Study and Run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import SMALL, TINY
from test_own_model import TINY_NET

import mnistbench
from mnistbench.cli import main
from mnistbench.config import model_spec, resolve
from mnistbench.errors import UserError
from mnistbench.models import files, get_spec, list_models, plugins
from mnistbench.models.objects import module_source, ref_of
from mnistbench.record import MODEL_SOURCE
from mnistbench.study.notebook import Run, Study


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> Path:
    """compare --models cnn,FILE:Tiny through the command line, on slices of the data (in this process: a job's
    code travelling to a worker process is test_a_jobs_model_code_travels_with_it_not_its_path)."""
    folder = tmp_path_factory.mktemp("own")
    net = folder / "tiny.py"
    net.write_text(TINY_NET)
    sets = [a for k, v in {**SMALL, "width": 4}.items() for a in ("--set", f"{k}={v}")]
    assert main(["compare", "--models", f"cnn,{net}:Tiny", "--out", str(folder / "study"), "--data-dir",
                 str(data_dir), "--quiet", "--executor", "inline", *sets]) == 0
    return folder / "study"


def test_compare_gives_a_model_file_the_rows_verdicts_and_report_of_a_builtin(study):
    doc = json.loads((study / "results.json").read_text())
    assert [(r["model"], r["status"], r["run_dir"]) for r in doc["rows"]] == [
        ("cnn", "ok", "runs/cnn-seed0"), ("Tiny", "ok", "runs/Tiny-seed0")]
    assert all(r["flops_per_sample"] and r["params"] and r["test_accuracy"] is not None for r in doc["rows"])
    assert [(v["model_a"], v["model_b"]) for v in doc["verdicts"]] == [("cnn", "Tiny")]
    assert "Tiny" in (study / "report.md").read_text() and (study / "runs/Tiny-seed0" / MODEL_SOURCE).is_file()
    assert doc["study"]["models"] == ["cnn", "Tiny"] and ":Tiny" in doc["study"]["command"]


def test_the_report_and_the_summaries_never_import_the_model_file(study, tmp_path, capsys):
    """A study received from someone else (an empty trust list): its model file's copy would stop the process if
    imported, and is not trusted; report reads on."""
    import shutil

    received = shutil.copytree(study, tmp_path / "received")
    (received / "runs/Tiny-seed0" / MODEL_SOURCE).write_text("raise SystemExit('the model file was imported')\n")
    assert main(["report", str(received)]) == 0
    assert "2 of 2" in capsys.readouterr().out and "Tiny" in (received / "report.md").read_text()


def test_a_jobs_model_code_travels_with_it_not_its_path(tmp_path, data_dir):
    """The worker (as on another machine) trains from the code in its job, with no file at the path."""
    from mnistbench.study.outcome import CODE, job_config, remote_args
    from mnistbench.study.plan import StudySpec, plan

    net = tmp_path / "tiny.py"
    net.write_text(TINY_NET)
    (job,) = plan(StudySpec((f"{net}:Tiny",), overrides={**SMALL, "width": 2}, out=tmp_path / "study",
                            data_dir=str(data_dir)))
    config = job_config(job)
    assert remote_args(job, tmp_path)[0][CODE] == config[CODE] == {"path": str(net), "code": TINY_NET}  # Ray, Slurm
    net.unlink()
    folder = tmp_path / "study" / job.run_dir
    proc = subprocess.run([sys.executable, "-m", "mnistbench.study.worker"], input=json.dumps(
        {"config": config, "folder": str(folder), "resume": False}), capture_output=True, text=True, timeout=300,
        check=False,
        env={**os.environ, "MNISTBENCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert (folder / MODEL_SOURCE).read_text() == TINY_NET
    assert json.loads((folder / "summary.json").read_text())["model"] == "Tiny"


def test_a_study_trains_a_model_again_when_its_file_changed(study, data_dir):
    from mnistbench.study.plan import StudySpec, plan, run_state

    net = study.parent / "tiny.py"
    spec = StudySpec(("cnn", f"{net}:Tiny"), overrides={**SMALL, "width": 4}, out=study, data_dir=str(data_dir))
    assert [run_state(study / j.run_dir, j.cfg, None) for j in plan(spec)] == ["done", "done"]
    original = net.read_text()
    net.write_text(original + "\n# a later edit\n")
    try:
        assert [run_state(study / j.run_dir, j.cfg, None) for j in plan(spec)] == ["done", "fresh"]
    finally:
        net.write_text(original)


def test_under_torchrun_every_rank_takes_rank_0s_config_and_code(tmp_path, monkeypatch):
    from mnistbench import run as run_module
    from mnistbench.distributed import Group

    net = tmp_path / "tiny.py"
    net.write_text(TINY_NET)
    mine = resolve({"model": f"{net}:Tiny", "width": 2})
    sent: list = []
    monkeypatch.setattr(Group, "broadcast", lambda self, obj: (sent.append(obj), obj)[1] if self.main else sent[-1])
    assert run_module._shared_config(mine, Group(rank=0, world=2, backend="gloo")) == mine
    monkeypatch.setattr(files, "_FILES", {})  # rank 1, another process (perhaps another machine): no code yet
    theirs = run_module._shared_config(resolve({"model": "cnn"}), Group(rank=1, world=2, backend="gloo"))
    assert theirs == mine and files.registered(mine.model_sha256).code == TINY_NET


# --- installed models: the entry-point group mnistbench.models --------------------------------------
@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A package `mynets` installed (a dist-info on sys.path) with entry points `tinynet` and, given a name, one
    more."""
    def install(extra: str = "") -> None:
        (tmp_path / "mynets.py").write_text(TINY_NET)
        info = tmp_path / "mynets-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mynets\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[mnistbench.models]\ntinynet = mynets:Tiny\n{extra}")
        monkeypatch.syspath_prepend(str(tmp_path))
        plugins.refresh()

    yield install
    sys.modules.pop("mynets", None)
    monkeypatch.undo()
    plugins.refresh()


def test_an_installed_model_is_listed_with_its_source_and_trains_like_a_builtin(installed, capsys):
    installed()
    assert list_models()[-1] == "tinynet"
    spec = get_spec("tinynet")
    assert spec.source == "entry point mynets:Tiny (mynets 1.0)" and spec.recipes["default"]["lr"] == 5e-3
    cfg = resolve({"model": "tinynet", "width": "2"})
    assert cfg.model_sha256 == "" and model_spec(cfg).create(**cfg.model_args).conv.out_channels == 2
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "tinynet" in out and "from: entry point mynets:Tiny (mynets 1.0)" in out


def test_an_installed_model_with_a_builtins_name_is_an_error_naming_both(installed, capsys):
    installed("cnn = mynets:Tiny\n")
    with pytest.raises(UserError, match=r"installed model 'cnn' \(entry point mynets:Tiny \(mynets 1.0\).*"
                                        r"built-in model 'cnn'"):
        get_spec("cnn")
    assert main(["models"]) == 2 and "built-in model 'cnn'" in capsys.readouterr().err


# --- classes and functions from a notebook -------------------------------------------------------------
WIDTH = 4


def helper(c_in: int, c_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4))


class Notebooky(torch.nn.Module):
    """Uses a constant, a helper function and a module alias of its module."""

    def __init__(self, *, width: int = WIDTH):
        super().__init__()
        self.body = helper(1, width)
        self.fc = torch.nn.Linear(width * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_a_class_is_written_as_source_with_what_it_uses():
    code = module_source(Notebooky)
    assert "import torch" in code and "WIDTH = 4" in code and code.index("def helper") < code.index("class Notebooky")
    mf = files.register(files.ModelFile.of(files.NOTEBOOK, code))
    files.set_latest(f"{files.NOTEBOOK}:Notebooky", mf.sha256)
    cfg = resolve({"model": f"{files.NOTEBOOK}:Notebooky"})  # imported from the text alone, checked, built
    torch.manual_seed(0)
    built = model_spec(cfg).create(width=3)
    torch.manual_seed(0)
    assert torch.equal(built(torch.ones(2, 1, 28, 28)), Notebooky(width=3)(torch.ones(2, 1, 28, 28)))


def test_what_cannot_be_kept_by_source_is_one_clear_error():
    with pytest.raises(UserError, match="lambda"):
        ref_of(lambda: Notebooky())
    namespace: dict = {"nn": torch.nn}
    exec("class Made(nn.Module):\n    def forward(self, x):\n        return x\n", namespace)  # noqa: S102
    namespace["Made"].__module__ = "__main__"
    with pytest.raises(UserError, match="cannot find the source of Made"):
        ref_of(namespace["Made"])
    with pytest.raises(UserError, match="pass a model name"):
        ref_of(3)


def test_a_class_of_a_scripts_main_becomes_a_model_and_an_unguarded_study_runs_once(tmp_path, data_dir):
    """A class of a script's __main__ is a model, kept by its source. The script has no `if __name__ ==
    "__main__":` and compares that class: each run's process (forked warm, or started cold) does not run the
    script again, so the study runs once and its rows are its own."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f'''
        import torch.nn as nn
        import mnistbench
        from mnistbench.config import resolve
        from mnistbench.models.objects import ref_of

        class Flat(nn.Module):
            def __init__(self, *, hidden: int = 8):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

            def forward(self, x):
                return self.net(x)

        cfg = resolve({{"model": ref_of(Flat)}})
        print(cfg.model, cfg.model_args["hidden"], cfg.model_sha256)
        study = mnistbench.compare([Flat], out={str(tmp_path / "study")!r}, data_dir={str(data_dir)!r},
                                   overrides={SMALL!r}, quiet=True, executor="local", log=None)
        print([(r["model"], r["status"]) for r in study])
        '''))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "MNISTBENCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    first, rows = proc.stdout.splitlines()  # two lines: the script ran once
    ref, hidden, sha = first.split()
    assert (ref, hidden) == ("<notebook>:Flat", "8") and rows == "[('Flat', 'ok')]", proc.stdout
    assert sha in json.loads((tmp_path / "cache" / "trusted-code.json").read_text())  # the user's own code


# --- Study and Run -------------------------------------------------------------------------------------
def test_a_study_shows_its_summary_and_accuracy_table_inline(study):
    s = Study.load(study)
    assert len(s) == 2 and [r["model"] for r in s] == ["cnn", "Tiny"] and s.report == study / "report.html"
    assert [(v["model_a"], v["model_b"]) for v in s.verdicts] == [("cnn", "Tiny")]
    html = s._repr_html_()
    assert "<table>" in html and "test accuracy (%)" in html and "<td>Tiny</td>" in html and "<html" not in html
    run = s.run("Tiny")
    assert isinstance(run, Run) and run["model"] == "Tiny" and run.folder == study / "runs/Tiny-seed0"
    assert "data:image/png;base64," in run._repr_html_() and "Tiny on mnist" in repr(run)
    with pytest.raises(UserError, match="no finished run of vit"):
        s.run("vit")


def test_train_from_python_returns_a_run_that_reads_as_its_summary(tmp_path, data_dir):
    run = mnistbench.train(mnistbench.resolve({"model": "cnn", "width": 4, "out": str(tmp_path / "a"),
                                               "data_dir": str(data_dir), **TINY}))
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert isinstance(run, Run) and run["model"] == "cnn" and run["test_accuracy"] == saved["test_accuracy"]
    assert set(run) == set(saved) and run.folder == tmp_path / "a"
    with pytest.raises(UserError, match="put the settings in resolve"):
        mnistbench.train(mnistbench.resolve({"model": "cnn"}), epochs=2)
