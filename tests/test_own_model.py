"""A model from the user's own file (`--model path/to/file.py:NAME`): the contract checked before any work, one
line per mistake, a run folder that keeps a copy of the file, and the trust a run's copy needs to be imported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import TINY

from mnistbench.cli import main
from mnistbench.config import model_spec, resolve
from mnistbench.models import files, get_spec
from mnistbench.models.trust import TRUSTED, is_trusted
from mnistbench.record import CONFIG, MODEL_SOURCE, SUMMARY

# A small LeNet-like net: fast on slices of the data; `width` is its option, RECIPES its own default recipe.
TINY_NET = '''
import torch
from torch import nn

RECIPES = {"default": {"epochs": 1, "lr": 5e-3, "batch_size": 64}}


class Tiny(nn.Module):
    """A two-layer convolutional net for tests."""

    def __init__(self, *, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 5, stride=2)
        self.fc = nn.Linear(width * 12 * 12, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def make_tiny(*, width: int = 4):
    return Tiny(width=width)
'''
SLICES = [a for k, v in TINY.items() if k not in ("epochs", "batch_size") for a in ("--set", f"{k}={v}")]
SETS = [*SLICES, "--set", "width=3"]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def net_file(tmp_path_factory) -> Path:
    """The model file, outside the repository, in a folder of its own."""
    return write(tmp_path_factory.mktemp("mine") / "tiny.py", TINY_NET)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, net_file, data_dir) -> Path:
    """A run of the file's Tiny through the command line (a fresh process), trusted by that process's cache."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    cache = out.parent / "cache"
    proc = subprocess.run([sys.executable, "-m", "mnistbench", "train", "--model", f"{net_file}:Tiny", "--out",
                           str(out), "--data-dir", str(data_dir), "--quiet", *SETS], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "MNISTBENCH_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Tiny on mnist: test accuracy")
    return out


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnistbench: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- the contract, before any work -----------------------------------------------------------------
BAD = {
    "syntax": ("Net", "import torch\n\nclass Net(torch.nn.Module)\n    pass\n", ["bad.py:3: SyntaxError"]),
    "five classes": ("Net", """
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(28 * 28, 5)

            def forward(self, x):
                return self.fc(x.flatten(1))
        """, ["bad.py:Net returns shape (2, 5)", "(B, 10)"]),
    "missing NAME": ("LeNet", "from torch import nn\n\nclass Net(nn.Module):\n    pass\n",
                     ["bad.py: no LeNet in it; it defines Net"]),
    "import error": ("Net", "import torch\nimport not_a_package_anyone_has\n",
                     ["bad.py:2: ModuleNotFoundError", "importing the model file"]),
    "not a module": ("Net", "def Net():\n    return 3\n", ["bad.py:Net gave an object of type int, not an nn.Module"]),
    "error in forward": ("Net", """
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(28 * 28, 10)

            def forward(self, x):
                return self.fc(x)  # forgot to flatten
        """, ["bad.py:10: RuntimeError", "running bad.py:Net on a batch of shape (2, 1, 28, 28)"]),
    "a parameter without default": ("Net", "from torch import nn\n\ndef Net(width):\n    return nn.Linear(1, 1)\n",
                                    ["takes width without a default"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_broken_model_file_is_one_line_naming_the_file_and_no_run_folder(case, tmp_path, monkeypatch, capsys):
    name, code, needles = BAD[case]
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.py", code)
    err = one_line_error(capsys, ["train", "--model", f"bad.py:{name}", "--out", "run", *SLICES])
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_compare_checks_a_model_file_before_the_study_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.py", BAD["five classes"][1])
    err = one_line_error(capsys, ["compare", "--models", "cnn,bad.py:Net", "--out", "study"])
    assert "bad.py:Net returns shape (2, 5)" in err and not (tmp_path / "study").exists()
    write(tmp_path / "twice.py", TINY_NET)
    err = one_line_error(capsys, ["compare", "--models", "twice.py:Tiny,tiny.py:Tiny", "--out", "study"])
    assert "model file tiny.py: no such file" in err
    write(tmp_path / "tiny.py", TINY_NET)
    err = one_line_error(capsys, ["compare", "--models", "twice.py:Tiny,tiny.py:Tiny", "--out", "study"])
    assert "--models names Tiny twice" in err and not (tmp_path / "study").exists()


def test_missing_file_and_unknown_option(tmp_path, net_file, capsys):
    err = one_line_error(capsys, ["train", "--model", f"{tmp_path}/nope.py:Net", "--out", str(tmp_path / "r")])
    assert f"model file {tmp_path}/nope.py: no such file" in err
    err = one_line_error(capsys, ["train", "--model", f"{net_file}:Tiny", "--set", "widht=3", "--out", str(tmp_path)])
    assert "unknown config key 'widht' (did you mean 'width'?)" in err and f"{net_file}:Tiny takes ['width']" in err
    assert not any(tmp_path.iterdir())


def test_debug_shows_the_traceback_of_the_users_own_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.py", BAD["error in forward"][1])
    assert main(["--debug", "train", "--model", "bad.py:Net", "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert f'File "{tmp_path / "bad.py"}", line 10, in forward' in err  # the user's frame, with its line
    assert err.strip().splitlines()[-1].startswith("mnistbench: error: ")


# --- a file's options, recipes and code ------------------------------------------------------------
def test_options_recipes_and_the_hash_of_what_was_read(net_file, tmp_path):
    cfg = resolve({"model": f"{net_file}:Tiny", "width": "6"})
    assert dict(cfg.model_args) == {"width": 6} and (cfg.epochs, cfg.lr, cfg.batch_size) == (1, 5e-3, 64)
    assert cfg.model_sha256 == files.read_file(str(net_file)).sha256 and is_trusted(cfg.model_sha256)
    assert model_spec(cfg).create(width=2).conv.out_channels == 2
    assert model_spec(cfg).about == "A two-layer convolutional net for tests."
    builder = resolve({"model": f"{net_file}:make_tiny"})  # a function returning a module is a model too
    assert model_spec(builder).source == str(net_file) and model_spec(builder).task == "classify"
    # without RECIPES: the cnn's default recipe, less the cnn's own options
    plain = write(tmp_path / "plain.py", TINY_NET.replace("RECIPES =", "_UNUSED ="))
    cnn = get_spec("cnn").recipes["default"]
    cfg = resolve({"model": f"{plain}:Tiny"})
    assert (cfg.lr, cfg.label_smoothing, cfg.beta1) == (cnn["lr"], cnn["label_smoothing"], cnn["beta1"])
    # a config names its code by hash: the file changing afterwards does not change what it builds
    frozen = resolve({"model": f"{plain}:Tiny"})
    without_bias = TINY_NET.replace("RECIPES =", "_UNUSED =").replace("width * 12 * 12, 10", "width * 144, 10, False")
    plain.write_text(without_bias)
    assert model_spec(frozen).create().fc.bias is not None
    assert model_spec(resolve({"model": f"{plain}:Tiny"})).create().fc.bias is None


def test_the_run_folder_keeps_a_copy_and_where_it_came_from(trained, net_file):
    doc = json.loads((trained / CONFIG).read_text())
    sha = files.read_file(str(net_file)).sha256
    assert doc["config"]["model"] == f"{net_file}:Tiny" and doc["config"]["model_sha256"] == sha
    assert doc["model_source"] == {"path": str(net_file), "name": "Tiny", "sha256": sha}
    assert (trained / MODEL_SOURCE).read_text() == net_file.read_text()
    summary = json.loads((trained / SUMMARY).read_text())
    assert summary["model"] == "Tiny" and summary["flops_per_sample"] > 0 and summary["params"] == 3 * 25 + 3 + 433 * 10
    # train trusted the file it was given: the hash is in that process's trust list
    assert sha in json.loads((trained.parent / "cache" / TRUSTED).read_text())


# --- loading a run: its copy, and only when trusted ----------------------------------------------
def test_a_run_works_from_its_copy_after_the_file_is_gone(trained, net_file, tmp_path, data_dir, capsys, test_set):
    from PIL import Image

    resolve({"model": f"{net_file}:Tiny"})  # this user trained it: its hash is in their trust list
    run = shutil.copytree(trained, tmp_path / "run")
    gone = tmp_path / "gone.py"  # the original path, now with no file
    doc = json.loads((run / CONFIG).read_text())
    doc["model_source"]["path"] = str(gone)
    (run / CONFIG).write_text(json.dumps(doc))
    Image.fromarray(test_set[0][0]).save(tmp_path / "digit.png")
    assert main(["predict", str(run), str(tmp_path / "digit.png"), "--format", "json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["class"] in "0123456789" and out.err == ""
    assert main(["export", str(run), "--data-dir", str(data_dir)]) == 0
    assert "argmax identical" in capsys.readouterr().out and (run / "model.onnx").is_file()


def test_a_copy_that_is_not_trusted_is_refused_until_trust_code(trained, tmp_path, data_dir, capsys, test_set):
    from PIL import Image

    run = shutil.copytree(trained, tmp_path / "run")  # a run folder received from someone else
    (run / MODEL_SOURCE).write_text((run / MODEL_SOURCE).read_text() + "\n# edited\n")
    edited = files.ModelFile.of("", (run / MODEL_SOURCE).read_text()).sha256
    Image.fromarray(test_set[0][0]).save(tmp_path / "digit.png")
    for argv in (["predict", str(run), str(tmp_path / "digit.png")], ["evaluate", str(run)],
                 ["export", str(run)], ["train", "--resume", str(run)], ["serve", str(run), "--port", "0"]):
        err = one_line_error(capsys, argv)
        assert f"{run / MODEL_SOURCE} (sha256 {edited})" in err and "--trust-code" in err, err
    assert not (run / "model.onnx").exists()
    assert main(["predict", str(run), str(tmp_path / "digit.png"), "--trust-code"]) == 0
    assert not is_trusted(edited)  # --trust-code is for this command, not a lasting trust
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--trust-code"]) == 0


def test_a_run_says_so_when_the_original_file_has_changed(trained, net_file, tmp_path, capsys, test_set):
    from PIL import Image

    run = shutil.copytree(trained, tmp_path / "run")
    changed = write(tmp_path / "changed.py", TINY_NET + "\n# a later edit\n")
    doc = json.loads((run / CONFIG).read_text())
    doc["model_source"]["path"] = str(changed)
    (run / CONFIG).write_text(json.dumps(doc))
    Image.fromarray(test_set[0][0]).save(tmp_path / "digit.png")
    assert main(["predict", str(run), str(tmp_path / "digit.png"), "--trust-code"]) == 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"imports its copy of {changed} ({MODEL_SOURCE}, sha256" in err


def test_resume_imports_the_copy_when_trusted(net_file, tmp_path, data_dir):
    from mnistbench.run import resume_config, train

    out = tmp_path / "run"
    cfg = resolve({"model": f"{net_file}:Tiny", "out": str(out), "data_dir": str(data_dir), **TINY, "width": 3,
                   "epochs": 2})
    first = train(cfg)
    resumed = resume_config(out, {"epochs": "3"})  # trusted: train added the file's hash
    assert resumed.model_sha256 == cfg.model_sha256 and resumed.epochs == 3
    assert train(resumed, resume_from=out)["epochs_completed"] == 3 and first["epochs_completed"] == 2
