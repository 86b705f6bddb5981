"""Shared fixtures: the real data folder beside the repository (../shared/data), small and fast settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistbench.models import ModelSpec

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MNISTBENCH_TEST_DATA", REPO.parent / "shared" / "data"))

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
def small_study(tmp_path_factory) -> Path:
    """A real study through the command line: cnn and vit, tiny, two seeds each, on slices of the real data."""
    from mnistbench.cli import main

    out = tmp_path_factory.mktemp("compare") / "study"
    sets = [a for k, v in STUDY_SETS.items() for a in ("--set", f"{k}={v}")]
    rc = main(["compare", "--models", "cnn,vit", "--seeds", "2", "--out", str(out), "--data-dir", str(DATA),
               "--quiet", *sets])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MNIST / Fashion-MNIST folder; its absence is a failure, not a skip."""
    assert (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists(), f"real data expected in {DATA}"
    return DATA


@pytest.fixture(autouse=True)
def _no_network_and_small_threads(monkeypatch):
    """Tests never touch the network: any download attempt fails loudly."""
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
