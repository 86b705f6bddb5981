"""The run folder: every file name of a run, its writers and its readers (nobody else spells them)."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsio import check_writable, read_json, write_bytes, write_json

CONFIG = "config.json"          # the resolved config, library versions, device, git commit
METRICS = "metrics.jsonl"       # one JSON line per logged training step and per validation
SUMMARY = "summary.json"        # test metrics, timings and costs; written last: its presence means "finished"
MODEL = "model.pt"              # the selected (best-validation) weights, a plain state dict
CHECKPOINT = "checkpoint.pt"    # the full training state, for --resume
PREDICTIONS = "predictions.json"  # every scored test image: its index in the official test set, label, prediction
ERROR = "error.txt"             # the traceback of a run that failed inside a study
CURVES, CONFUSION, DETECTIONS = "curves.png", "confusion.png", "detections.png"


def default_run_dir(model: str) -> Path:
    """runs/<timestamp>-<model>."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{model}"


@functools.cache
def versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a result."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("mnistbench", "torch", "torchvision", "torchmetrics", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    """The commit of the mnistbench source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a run folder was made with, as a plain dict."""
    doc = read_json(Path(folder) / CONFIG, "run folder")
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise UserError(f"{Path(folder) / CONFIG}: no 'config' in it; is {folder} a mnistbench run folder?")
    return doc["config"]


def read_summary(folder: str | os.PathLike) -> dict[str, Any]:
    """A finished run's summary.json."""
    return read_json(Path(folder) / SUMMARY, "finished run folder")


def read_metrics(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a run folder's metrics.jsonl; none when it has none."""
    path = Path(folder) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_predictions(folder: str | os.PathLike) -> dict[str, list[int]] | None:
    """A finished run's predictions.json ({"index", "target", "pred"}), or None for a run without one."""
    path = Path(folder) / PREDICTIONS
    return read_json(path, "finished run folder") if path.exists() else None


def status(folder: str | os.PathLike) -> str:
    """'finished' (a summary newer than its config), 'interrupted' (a checkpoint, no summary) or 'none'."""
    folder = Path(folder)
    config, summary = folder / CONFIG, folder / SUMMARY
    if not config.exists():
        return "none"
    if summary.exists():
        # a summary older than config.json belongs to an earlier run in this folder
        return "finished" if summary.stat().st_mtime >= config.stat().st_mtime else "none"
    return "interrupted" if (folder / CHECKPOINT).exists() else "none"


class RunRecord:
    """Writes one run's files; every file but the append-only metrics log is written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            check_writable(self.folder)
        except OSError as e:
            raise UserError(f"cannot write to the output folder {self.folder} ({e.strerror or e}); "
                            "choose another with --out") from None
        self.metrics_path = self.folder / METRICS
        for stale in self.folder.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        """A file inside the run folder (one of this module's names)."""
        return self.folder / name

    def write_config(self, config: dict[str, Any], device: str, plan: dict[str, Any]) -> None:
        """config.json: the resolved config, the run's plan (precision, steps, budget: what was measured to decide
        them) and the versions, device and commit that produced the run."""
        write_json(self.folder / CONFIG, {"config": config, "plan": plan, "versions": versions(), "device": device,
                                          "git_commit": git_commit()})

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, the last file of a finished run."""
        write_json(self.folder / SUMMARY, summary)

    def write_predictions(self, index: list[int], target: list[int], pred: list[int]) -> None:
        """predictions.json: per scored test image, its official test-set index, true and predicted class (-1 =
        none: a detector found no digit). Paired tests between models read these."""
        write_json(self.folder / PREDICTIONS, {"index": index, "target": target, "pred": pred})

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line with a single write(2), so a crash never leaves half a line."""
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def metrics_lines(self) -> int:
        """How many complete lines metrics.jsonl holds."""
        if not self.metrics_path.exists():
            return 0
        return self.metrics_path.read_bytes().count(b"\n")

    def truncate_metrics(self, lines: int) -> None:
        """Keep the first `lines` lines (on resume: drop what came after the checkpoint)."""
        if not self.metrics_path.exists():
            return
        kept = self.metrics_path.read_bytes().split(b"\n")[:lines]
        write_bytes(self.metrics_path, b"".join(k + b"\n" for k in kept))

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl."""
        return read_metrics(self.folder)
