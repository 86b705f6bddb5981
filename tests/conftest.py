"""Shared fixtures and helpers: the real data (MNIST from the package, Fashion-MNIST from $MNISTBENCH_TEST_DATA,
default ../shared/data), small and fast settings, image files, run folders and the CNN that the predict and serve
tests share."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mnistbench import checkpoint
from mnistbench.config import resolve
from mnistbench.data.datasets import PACKAGED, load_arrays
from mnistbench.fsio import write_json
from mnistbench.models import ModelSpec, get_model
from mnistbench.record import CONFIG, MODEL, SUMMARY

REPO = Path(__file__).resolve().parents[1]
# Fashion-MNIST does not ship with mnistbench: the tests read it from here (CI: ../shared/data)
FASHION_DATA = Path(os.environ.get("MNISTBENCH_TEST_DATA", REPO.parent / "shared" / "data"))

# Small, fast settings for end-to-end runs on slices of the real data.
TINY = {"train_limit": 512, "test_limit": 256, "val_size": 256, "epochs": 1, "batch_size": 64,
        "inference_benchmark": False, "quiet": True, "log_every": 2}


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


# compare sets quiet itself; budget_s=0: train for `epochs`, not for the quick preset's budget
SMALL = {**{k: v for k, v in TINY.items() if k != "quiet"}, "budget_s": 0}
# The models of the small study, shrunk: cnn 8 wide, a one-block ViT
STUDY_SETS = {**SMALL, "width": 8, "dim": 16, "depth": 1, "heads": 2}


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, data_dir) -> Path:
    """A real study through the command line: cnn and vit, tiny, two seeds each, on slices of the real data."""
    from mnistbench.cli import main

    out = tmp_path_factory.mktemp("compare") / "study"
    sets = [a for k, v in STUDY_SETS.items() for a in ("--set", f"{k}={v}")]
    rc = main(["compare", "--models", "cnn,vit", "--seeds", "2", "--out", str(out), "--data-dir", str(data_dir),
               "--quiet", *sets])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding mnist/: the copy inside the package, named explicitly (as `--data-dir`)."""
    assert (PACKAGED / "mnist" / "train-images-idx3-ubyte.gz").exists(), f"MNIST expected in {PACKAGED}"
    return PACKAGED


@pytest.fixture(scope="session")
def fashion_data_dir() -> Path:
    """The folder holding fashion-mnist/ ($MNISTBENCH_TEST_DATA); its absence is a failure, not a skip."""
    found = FASHION_DATA / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    assert found.exists(), f"Fashion-MNIST expected in {FASHION_DATA} (set MNISTBENCH_TEST_DATA)"
    return FASHION_DATA


@pytest.fixture(autouse=True)
def _no_network_and_small_threads(monkeypatch, tmp_path_factory):
    """Tests never touch the network: any download attempt fails loudly. They never write the user's cache
    (precision decisions, trusted files): each test gets its own. A user's $MNISTBENCH_DATA does not reach
    them: where no test names a folder, MNIST comes from the package."""
    monkeypatch.setenv("MNISTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MNISTBENCH_DATA", raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")
    monkeypatch.setattr("torchvision.datasets.utils.download_url", refuse)
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", refuse)
    monkeypatch.setattr("torch.hub.download_url_to_file", refuse)
    torch.manual_seed(0)


def build_mlp(*, hidden: int = 16) -> nn.Module:
    """A tiny MLP: the fast second model of these studies."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


MLP = ModelSpec(name="mlp", build=build_mlp, about="tiny MLP for tests")


# --- image files, run folders, the shared CNN (predict, serve and browser tests) -----------------
@pytest.fixture(scope="session")
def test_set(data_dir):
    """The official MNIST test images (10000, 28, 28) and labels, as NumPy arrays."""
    _, _, x, y = load_arrays("mnist", data_dir, allow_download=False)
    return np.array(x), np.array(y)


def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC))


def fresh_run(folder: Path, model: str, **options) -> Path:
    """A run folder holding a freshly built (untrained) model: enough for plumbing and for ONNX parity."""
    cfg = resolve({"model": model, "out": str(folder), **options})
    folder.mkdir(parents=True)
    write_json(folder / CONFIG, {"config": cfg.to_dict()})
    checkpoint.save(folder / MODEL, get_model(model, **cfg.model_args).state_dict())
    return folder


def trained_cnn(tmp_path_factory, data_dir) -> Path:
    """The default CNN on 15,000 real training digits, fp32 so that every CPU trains the same model
    (precision=auto picks by timing), ~98.5-98.8 % on the test set; trained once per test session, by
    whichever test asks first."""
    from mnistbench.run import train

    out = tmp_path_factory.getbasetemp() / "shared-cnn"
    if not (out / SUMMARY).exists():
        train(resolve({"model": "cnn", "data_dir": str(data_dir), "out": str(out), "train_limit": 15000,
                       "precision": "fp32", "val_size": 1000, "test_limit": 500, "inference_benchmark": False,
                       "checkpoints": False, "quiet": True}))
    return out
