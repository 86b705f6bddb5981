"""The command line on a small slice of the real data: every artifact, clear errors, evaluate."""
import json
import os
import subprocess
import sys

import pytest
from helpers import records

from mnistbench.cli import main

ARTIFACTS = ("config.json", "metrics.jsonl", "summary.json", "predictions.json", "model.pt", "checkpoint.pt",
             "curves.png", "confusion.png")
SUMMARY_KEYS = ("model", "dataset", "test_accuracy", "test_macro_f1", "test_loss", "per_class", "confusion_matrix",
                "train_seconds", "time_to_accuracy", "epochs_completed", "params", "device",
                "inference_ms_per_image", "inference_images_per_second", "flops_per_image", "peak_memory_mb")


def tiny_args(data_dir, out, *extra):
    where = ["--data-dir", str(data_dir)] if data_dir else []
    return ["train", "--model", "cnn", *where, "--out", str(out), "--epochs", "2",
            "--batch-size", "64", "--quiet", "--set", "train_limit=640", "--set", "test_limit=300",
            "--set", "val_size=300", "--set", "width=8", "--set", "log_every=3", *extra]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    # through the real console entry point, as a new user runs it: an empty HOME, no --data-dir and no
    # $MNISTBENCH_DATA, so MNIST comes from the package and nothing is downloaded
    home = tmp_path_factory.mktemp("empty-home")
    env = {k: v for k, v in os.environ.items() if k != "MNISTBENCH_DATA"} | {"HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "mnistbench", *tiny_args(None, out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "(2 epochs, " in proc.stdout
    cache = home / ".cache" / "mnistbench"  # the user's cache: the model's FLOP count, no data
    assert not (cache / "mnist").exists() and sorted(p.name for p in cache.iterdir()) == ["flops.json"]
    return out


def test_run_writes_every_artifact(run_dir):
    for name in ARTIFACTS:
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((run_dir / "summary.json").read_text())
    missing = [k for k in SUMMARY_KEYS if k not in s]
    assert not missing
    assert s["epochs_completed"] == 2 and 0.0 <= s["test_accuracy"] <= 1.0
    assert sum(map(sum, s["confusion_matrix"])) == 300
    assert set(s["time_to_accuracy"]) == {"0.98", "0.99", "0.995"}
    assert s["inference_ms_per_image"] > 0 and s["inference_images_per_second"] > 0
    # every scored test image's prediction, in its own file, consistent with the summary
    p = json.loads((run_dir / "predictions.json").read_text())
    assert len(p["index"]) == len(p["target"]) == len(p["pred"]) == 300 and "predictions" not in s
    correct = sum(t == q for t, q in zip(p["target"], p["pred"]))
    # a count over 300 images divided once (fp32 or float64: within 6e-8 relative); approx's default rel=1e-6
    # admits that and no other count (one image is 1/300)
    assert correct / 300 == pytest.approx(s["test_accuracy"]) and 300 - correct == s["misclassified_count"]
    assert {m["index"] for m in s["misclassified"]} <= set(p["index"])


def test_config_and_metrics_records(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    # the resolved config: every builder option, the one set and the defaults
    assert cfg["config"]["model_args"] == {"width": 8, "dropout": 0.0} and cfg["config"]["epochs"] == 2
    assert {"torch", "torchvision", "python"} <= set(cfg["versions"]) and cfg["device"].startswith("cpu")
    logged = records(run_dir)
    val = [r for r in logged if r["kind"] == "val"]
    train = [r for r in logged if r["kind"] == "train"]
    assert [r["epoch"] for r in val] == [1, 2]
    assert train and all({"step", "loss", "train_seconds", "time"} <= set(r) for r in train)
    assert all({"val_loss", "val_accuracy", "train_seconds"} <= set(r) for r in val)


def test_a_trained_runs_runtime_uses_the_precision_its_plan_chose(run_dir, tmp_path):
    """precision=auto is re-decided by timing at training; evaluate and predict must use that decision."""
    from mnistbench.run import load_run_config, runtime

    cfg = load_run_config(run_dir)
    doc = json.loads((run_dir / "config.json").read_text())
    assert cfg.precision == "auto" and doc["plan"]["precision"] in ("fp32", "bf16")
    for chosen in ("fp32", "bf16"):
        folder = tmp_path / chosen
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**doc, "plan": {**doc["plan"], "precision": chosen}}))
        assert runtime(cfg, "cpu", run_dir=folder).precision == chosen


def test_evaluate_reproduces_test_metrics(run_dir, data_dir, capsys):
    assert main(["evaluate", str(run_dir), "--data-dir", str(data_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    s = json.loads((run_dir / "summary.json").read_text())
    assert shown["test_accuracy"] == pytest.approx(s["test_accuracy"])


@pytest.mark.parametrize("extra, needle", [
    (["--set", "lables=1"], "unknown config key 'lables'"),
    (["--set", "epohcs=1"], "did you mean 'epochs'"),
    (["--set", "batch_size=big"], "batch_size='big'"),
    (["--device", "tpu"], "device='tpu'"),
])
def test_bad_config_is_one_line_before_work(tmp_path, data_dir, capsys, extra, needle):
    out = tmp_path / "never"
    assert main(tiny_args(data_dir, out, *extra)) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # rejected before any work


def test_missing_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(tiny_args(tmp_path / "empty", tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_evaluate_unreadable_checkpoint(run_dir, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "Traceback" not in err


def test_models_and_help(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cnn" in out and "params" in out
    proc = subprocess.run([sys.executable, "-m", "mnistbench", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout


def test_epochs_are_printed_short_and_singular_for_one():
    from mnistbench.cli import epochs_text

    assert [epochs_text(e) for e in (1.0, 1.5012, 2.0, 0.8512, 12.0)] == \
        ["1 epoch", "1.5 epochs", "2 epochs", "0.85 epochs", "12 epochs"]


def test_config_names_each_values_source_and_the_keys_a_preset_leaves_out(capsys):
    from mnistbench.config import FIELDS, resolve

    assert main(["config", "--model", "vit", "--preset", "quick", "--set", "lr=0.01", "--set", "depth=2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[-2:] for line in out.splitlines() if line.startswith("  ") and
            "(none)" not in line}
    cfg = resolve({"model": "vit"})
    assert set(rows) == set(FIELDS) | set(cfg.model_args) | set(cfg.task_args)  # every value, once
    for key, source in rows.items():  # "default", "recipe NAME", "preset NAME" or "flag"
        assert source[-1] in ("default", "flag") or source[0] in ("recipe", "preset"), (key, source)
    assert rows["lr"][-1] == rows["depth"][-1] == rows["model"][-1] == "flag"
    assert rows["budget_s"] == ["preset", "quick"] and rows["weight_decay"] == ["recipe", "default"]
    assert rows["momentum"][-1] == "default"
    for section in ("data", "model", "optimiser", "schedule", "augmentation", "precision and device", "evaluation",
                    "run bookkeeping", "model options (vit)", "task options (classify)"):
        assert f"\n{section}\n" in out
    assert "keys vit does not take (left out): pretrained=false" in out
    # no preset: the values `train` would use, recipe and flags only
    assert main(["config", "--model", "frcnn"]) == 0
    out = capsys.readouterr().out
    assert "left out" not in out and "task options (detect)" in out
    assert not [line for line in out.splitlines() if line.startswith("  ") and "preset" in line]
    assert main(["config", "--model", "cnn", "--set", "widht=8"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'width'" in err and err.count("\n") == 1
