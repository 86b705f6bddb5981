"""One study run in the process it is given.

The local executor forks the run's process warm (forked(), warm.py) or, where it cannot,
starts `python -m mnistbench.study.worker`, which reads {"config", "folder", "resume", "reason_fd"} as JSON on
stdin; either trains; a model file's code comes in the config (outcome.CODE), never from its path. Exit 0:
finished (summary.json written); 1: failed (error.txt: the one-line reason, a blank line, the traceback, where
the disk takes it; the reason also goes to the pipe `reason_fd`, when given); 130 / 143: interrupted after a
checkpoint, like `mnistbench train`.

attempt() is the same run as a function, for the executors that start the run's process themselves (Ray,
Slurm) and may start it again after that process was killed: it resumes whatever the folder holds.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any


def run(config: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    """Train one run in this process: {"summary": ...} when it finished, {"error": the one-line reason} when it
    failed (error.txt written), {"interrupted": exit status} when a signal stopped it after a checkpoint."""
    from ..config import from_dict
    from ..engine import Interrupted
    from ..models import files
    from ..run import train
    from .outcome import CODE, failed

    try:
        config = dict(config)
        if config.get(CODE):  # the code the study read, kept under its hash before the config names it
            files.register(files.ModelFile.from_dict(config.pop(CODE)))
        cfg = from_dict(config)
        return {"summary": train(cfg, resume_from=folder if resume else None)}
    except Interrupted as e:
        return {"interrupted": e.code}
    except KeyboardInterrupt:  # a forwarded Ctrl-C outside training (loading, testing): nothing to checkpoint
        return {"interrupted": 130}
    except Exception as e:  # noqa: BLE001 - any failure becomes the run's failed row, told in one line
        return {"error": failed(folder, e, traceback.format_exc())}


def attempt(config: dict[str, Any], folder: str) -> dict[str, Any]:
    """One attempt at a study run, perhaps after a killed one: a finished run gives its summary; a started one
    (config.json written) resumes from its checkpoint, or restarts when it had none; else it starts fresh."""
    from ..record import CONFIG, read_summary, status

    path = Path(folder)
    if status(path) == "finished":
        return {"summary": read_summary(path)}
    return run(config, path, resume=(path / CONFIG).exists())


def finish(spec: dict[str, Any]) -> int:
    """Run `spec` ({"config", "folder", "resume", "reason_fd"}); the process's exit status."""
    result = run(spec["config"], Path(spec["folder"]), spec["resume"])
    if "error" in result and spec.get("reason_fd") is not None:  # the reason, even where error.txt could not be written
        with open(spec["reason_fd"], "w", encoding="utf-8") as f:
            f.write(result["error"])
    return 0 if "summary" in result else result.get("interrupted", 1)


def forked(spec: dict[str, Any], env: dict[str, str], stdout: int, stderr: int, reason_fd: int | None) -> None:
    """The run's process when forked warm (warm.py): the study's environment and streams, then the run."""
    from .warm import enter

    enter(env, stdout, stderr)
    sys.exit(finish({**spec, "reason_fd": reason_fd}))


def main() -> int:
    return finish(json.loads(sys.stdin.read()))


if __name__ == "__main__":
    sys.exit(main())
