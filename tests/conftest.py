"""The suite's fixtures: the real data (MNIST from the package, Fashion-MNIST from $MNISTBENCH_TEST_DATA, default
../shared/data), a small real study and the CNN that the predict and serve tests share; and for every test, no
network and a cache folder of its own. Plain helpers (settings, tiny models, image files) are in helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import STUDY_SETS

from mnistbench.config import resolve
from mnistbench.data.datasets import PACKAGED, load_arrays
from mnistbench.record import SUMMARY

REPO = Path(__file__).resolve().parents[1]
# Fashion-MNIST does not ship with mnistbench: the tests read it from here (CI: ../shared/data)
FASHION_DATA = Path(os.environ.get("MNISTBENCH_TEST_DATA", REPO.parent / "shared" / "data"))


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


# --- the test set and the CNN that the predict, serve and browser tests share ------------------
@pytest.fixture(scope="session")
def test_set(data_dir):
    """The official MNIST test images (10000, 28, 28) and labels, as NumPy arrays."""
    _, _, x, y = load_arrays("mnist", data_dir, allow_download=False)
    return np.array(x), np.array(y)


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory, data_dir) -> Path:
    """The default CNN on 15,000 real training digits, fp32 so that every CPU trains the same model
    (precision=auto picks by timing); trained once per test session, by whichever test asks first."""
    from mnistbench.run import train

    out = tmp_path_factory.getbasetemp() / "shared-cnn"
    if not (out / SUMMARY).exists():
        train(resolve({"model": "cnn", "data_dir": str(data_dir), "out": str(out), "train_limit": 15000,
                       "precision": "fp32", "val_size": 1000, "test_limit": 500, "inference_benchmark": False,
                       "checkpoints": False, "quiet": True}))
    return out
