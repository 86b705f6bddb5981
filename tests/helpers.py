"""What the tests share that is not a fixture: small settings, tiny models, synthetic digits, image files, run
folders, and a run's records read the way the library reads them (record.read_metrics)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnistbench import checkpoint
from mnistbench.config import resolve
from mnistbench.fsio import write_json
from mnistbench.models import ModelSpec, get_model
from mnistbench.record import CONFIG, MODEL, read_metrics

# Small, fast settings for end-to-end runs on slices of the real data.
TINY = {"train_limit": 512, "test_limit": 256, "val_size": 256, "epochs": 1, "batch_size": 64,
        "inference_benchmark": False, "quiet": True, "log_every": 2}
# compare sets quiet itself; budget_s=0: train for `epochs`, not for the quick preset's budget
SMALL = {**{k: v for k, v in TINY.items() if k != "quiet"}, "budget_s": 0}
# The models of the small study, shrunk: cnn 8 wide, a one-block ViT
STUDY_SETS = {**SMALL, "width": 8, "dim": 16, "depth": 1, "heads": 2}


def records(run: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """A run folder's metrics.jsonl records (of one `kind`: "train", "val", "replan", "select"), as the library
    reads them."""
    return [r for r in read_metrics(run) if kind is None or r["kind"] == kind]


def fake_digits(n: int, classes=range(10), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 28, 28) uint8 images each holding one random solid rectangle of ink, and random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    corner = torch.randint(2, 12, (n, 2), generator=g)
    size = torch.randint(4, 14, (n, 2), generator=g)
    for i in range(n):  # test data only
        (r, c), (h, w) = corner[i].tolist(), size[i].tolist()
        x[i, r:r + h, c:c + w] = 255
    y = torch.tensor(list(classes))[torch.randint(0, len(classes), (n,), generator=g)]
    return x, y


def build_mlp(*, hidden: int = 16) -> nn.Module:
    """A tiny MLP: the fast second model of these studies."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


MLP = ModelSpec(name="mlp", build=build_mlp, about="tiny MLP for tests")


def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    """An image file's bytes holding `pixels`."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    """A digit resized to side x side (bicubic), as a photo of it would be larger."""
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC))


def fresh_run(folder: Path, model: str, **options) -> Path:
    """A run folder holding a freshly built (untrained) model: enough for plumbing and for ONNX parity."""
    cfg = resolve({"model": model, "out": str(folder), **options})
    folder.mkdir(parents=True)
    write_json(folder / CONFIG, {"config": cfg.to_dict()})
    checkpoint.save(folder / MODEL, get_model(model, **cfg.model_args).state_dict())
    return folder
