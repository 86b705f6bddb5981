"""mnistbench: train, evaluate and compare deep-learning architectures on MNIST-like data.

The library's face, imported lazily so that `import mnistbench` (and `mnistbench --help`) stays instant:

    from mnistbench import resolve, train
    summary = train(resolve({"model": "cnn", "epochs": 1}))       # a Run: a mapping of summary.json

    import mnistbench                                                # in a notebook (docs/tutorial.ipynb)
    study = mnistbench.compare(models=["cnn", "vit", LeNet], budget=30)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_FACE = {"resolve": "config", "Config": "config", "train": "study.notebook", "evaluate_run": "run",
         "compare": "study.notebook", "Study": "study.notebook", "Run": "study.notebook", "get_model": "models",
         "list_models": "models", "UserError": "errors"}
__all__ = list(_FACE)


def __getattr__(name: str) -> Any:
    if name in _FACE:
        return getattr(importlib.import_module(f".{_FACE[name]}", __name__), name)
    raise AttributeError(f"module 'mnistbench' has no attribute {name!r}")
