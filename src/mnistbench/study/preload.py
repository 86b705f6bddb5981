"""What the server that forks a study's run processes (warm.py) imports once: what every run imports. A module
that fails to import here, whatever the error, is left for the run itself to import, and to say why it failed."""
from __future__ import annotations

import importlib

for _name in ("torch", "torch._dynamo", "torchvision", "matplotlib.figure", "matplotlib.backends.backend_agg"):
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001, S112 - a broken install is reported by the run that needs the module
        continue
