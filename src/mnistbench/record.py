"""The run folder: every file name of a run, its writers and its readers (nobody else spells them)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsio import append, check_writable, read_json, write_bytes, write_json, writing

CONFIG = "config.json"          # the resolved config, library versions, device, git commit
METRICS = "metrics.jsonl"       # one JSON line per logged training step and per validation
SUMMARY = "summary.json"        # test metrics, timings and costs; written last: its presence means "finished"
MODEL = "model.pt"              # the selected (best-validation) weights, a plain state dict
CHECKPOINT = "checkpoint.pt"    # the full training state, for --resume
ONNX = "model.onnx"             # `mnistbench export`'s default output, beside model.pt
PREDICTIONS = "predictions.json"  # every scored test image: its index in the official test set, label, prediction
ERROR = "error.txt"             # the traceback of a run that failed inside a study
MODEL_SOURCE = "model_source.py"  # a model file's copy (runs of path/to/file.py:NAME): what loading the run imports
# with tensorboard=true, TensorBoard's own event files (events.out.tfevents.*) sit beside these
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


@functools.cache
def git_commit() -> str | None:
    """The commit of the mnistbench source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.cache
def source_sha256() -> str:
    """sha256 over the package's Python source files (paths and contents): names the exact code, git or not."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_identity() -> dict[str, Any]:
    """What code made a run: the mnistbench version, its git commit (None outside a checkout) and source hash."""
    return {"mnistbench_version": versions()["mnistbench"], "git_commit": git_commit(),
            "source_sha256": source_sha256()}


def read_code_identity(folder: str | os.PathLike) -> dict[str, Any]:
    """code_identity() as a run folder recorded it (values None where an older version did not record them)."""
    doc = read_json(Path(folder) / CONFIG, "run folder")
    return {"mnistbench_version": doc.get("mnistbench_version", (doc.get("versions") or {}).get("mnistbench")),
            "git_commit": doc.get("git_commit"), "source_sha256": doc.get("source_sha256")}


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a run folder was made with, as a plain dict."""
    doc = read_json(Path(folder) / CONFIG, "run folder")
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise UserError(f"{Path(folder) / CONFIG}: no 'config' in it; is {folder} a mnistbench run folder?")
    return doc["config"]


def read_plan(folder: str | os.PathLike) -> dict[str, Any]:
    """The training plan a run recorded in its config.json (precision chosen, steps), or {} if none."""
    plan = read_json(Path(folder) / CONFIG, "run folder").get("plan")
    return plan if isinstance(plan, dict) else {}


def read_model_source(folder: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """A file model's record in config.json ({"path": the original file, "name", "sha256"}) and the text of its
    copy in the run folder."""
    origin = read_json(Path(folder) / CONFIG, "run folder").get("model_source") or {}
    try:
        return origin, (Path(folder) / MODEL_SOURCE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{Path(folder) / MODEL_SOURCE}: cannot read the run's copy of its model file ({e})") from None


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
    """Writes one run's files; every file but the append-only metrics log is written atomically.

    With `tensorboard`, every logged record also goes to TensorBoard event files in the folder (train loss and
    lr, the validation metrics, and the final metrics as hparams); metrics.jsonl stays the source of truth.
    """

    def __init__(self, folder: str | os.PathLike, *, tensorboard: bool = False):
        self.folder = Path(folder)
        check_writable(self.folder)
        self.metrics_path = self.folder / METRICS
        for stale in self.folder.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        self.board = _Board(self.folder) if tensorboard else None

    def path(self, name: str) -> Path:
        """A file inside the run folder (one of this module's names)."""
        return self.folder / name

    def write_config(self, config: dict[str, Any], device: str, plan: dict[str, Any],
                     machine: dict[str, Any] | None = None, model_source: dict[str, Any] | None = None) -> None:
        """config.json: the resolved config, the run's first plan (precision, steps, budget: what was measured to
        decide them), and what produced the run: versions, code (commit and source hash), device and machine; for
        a model file, where it came from (`model_source`, beside its copy written by write_model_source)."""
        write_json(self.folder / CONFIG, {"config": config, "plan": plan, "versions": versions(), "device": device,
                                          "machine": machine, **code_identity(),
                                          **({"model_source": model_source} if model_source else {})})
        if self.board:
            self.board.config = config

    def write_model_source(self, code: str) -> None:
        """model_source.py: the copy of the model file that loading this run imports."""
        write_bytes(self.folder / MODEL_SOURCE, code.encode("utf-8"))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, the last file of a finished run (and the final metrics as TensorBoard hparams)."""
        if self.board:
            self.board.close(summary)
        write_json(self.folder / SUMMARY, summary)

    def write_predictions(self, index: list[int], target: list[int], pred: list[int]) -> None:
        """predictions.json: per scored test image, its official test-set index, true and predicted class (-1 =
        none: a detector found no digit). Paired tests between models read these."""
        write_json(self.folder / PREDICTIONS, {"index": index, "target": target, "pred": pred})

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line with a single write(2), so a crash never leaves half a line."""
        append(self.metrics_path, (json.dumps(record) + "\n").encode())
        if self.board:
            self.board.log(record)

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


class SilentRecord(RunRecord):
    """The record of a torchrun rank other than 0: the run's folder and file names, nothing written (rank 0
    writes the run folder)."""

    def __init__(self, folder: str | os.PathLike, *, tensorboard: bool = False):
        self.folder, self.board = Path(folder), None
        self.metrics_path = self.folder / METRICS

    def write_config(self, *args: Any, **kwargs: Any) -> None:
        pass

    def write_model_source(self, code: str) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_predictions(self, index: list[int], target: list[int], pred: list[int]) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        pass

    def truncate_metrics(self, lines: int) -> None:
        pass


# Summary keys shown as TensorBoard hparams metrics, where the run has them.
FINAL_METRICS = ("test_accuracy", "test_macro_f1", "test_loss", "test_detection_loss", "map", "map_50",
                 "best_val_accuracy", "train_seconds", "train_images_per_second")


class _Board:
    """TensorBoard event files, written by torch.utils.tensorboard (the `tensorboard` package).

    A resumed run logs again from its checkpoint: the first record's step is the writer's purge_step, so
    TensorBoard drops the events an interrupted process wrote after that checkpoint.
    """

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("tensorboard=true needs the tensorboard package: pip install 'mnistbench[tensorboard]'"
                            ) from None
        self.folder, self.make, self.writer, self.config = folder, SummaryWriter, None, {}
        self.events = folder / "events.out.tfevents.*"  # what a failed write names
        _quiet_event_threads()

    def log(self, record: dict[str, Any]) -> None:
        with writing(self.events):
            self._log(record)

    def _log(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self.make(str(self.folder), purge_step=record["step"])
        kind, step, at = record["kind"], record["step"], record.get("time")
        if kind == "train":
            self.writer.add_scalar("train/loss", record["loss"], step, walltime=at)
            self.writer.add_scalar("train/lr", record["lr"], step, walltime=at)
        elif kind == "val":
            for key, value in record.items():
                if key.startswith("val_") and key != "val_seconds" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"val/{key[4:]}", value, step, walltime=at)
        self.writer.flush()  # a killed run keeps what it logged

    def close(self, summary: dict[str, Any]) -> None:
        """The final metrics against the run's settings (hparams), then close the files."""
        hparams = {k: v for k, v in self.config.items() if isinstance(v, (int, float, str, bool))}
        hparams.update({k: v for k, v in self.config.get("model_args", {}).items()
                        if isinstance(v, (int, float, str, bool))})
        metrics = {f"final/{k}": summary[k] for k in FINAL_METRICS if isinstance(summary.get(k), (int, float))}
        with writing(self.events):
            if self.writer is None:
                self.writer = self.make(str(self.folder))
            self.writer.add_hparams(hparams, metrics, run_name=".")
            self.writer.close()


def _quiet_event_threads() -> None:
    """TensorBoard writes events in a thread that re-raises a failed write (disk full), which Python would print
    as a traceback; the same error reaches the next log() or close(), told there in one line."""
    previous = threading.excepthook
    if getattr(previous, "quiet_event_threads", False):
        return

    def hook(args) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    hook.quiet_event_threads = True
    threading.excepthook = hook
