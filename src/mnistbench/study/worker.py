"""One study run in its own process: `python -m mnistbench.study.worker` reads {"config", "folder", "resume"}
as JSON on stdin and trains. Exit 0: finished (summary.json written); 1: failed (error.txt: the one-line
reason, a blank line, the traceback); 130 / 143: interrupted after a checkpoint, like `mnistbench train`."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main() -> int:
    from ..config import Config
    from ..engine import Interrupted
    from ..fsio import write_bytes
    from ..record import ERROR
    from ..train import train
    from .executor import one_line

    spec = json.loads(sys.stdin.read())
    folder = Path(spec["folder"])
    try:
        cfg = Config.from_dict(spec["config"])
        train(cfg, resume_from=folder if spec["resume"] else None)
        return 0
    except Interrupted as e:
        return e.code
    except KeyboardInterrupt:  # a forwarded Ctrl-C outside training (loading, testing): nothing to checkpoint
        return 130
    except Exception as e:  # noqa: BLE001 - any failure becomes the run's failed row, told in one line
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / ERROR, f"{one_line(e)}\n\n{traceback.format_exc()}".encode())
        return 1


if __name__ == "__main__":
    sys.exit(main())
