"""Data folder resolution, MNIST inside the package, the offline message, and the seeded validation split."""
import re
import shutil

import pytest
import torch

from mnistbench.data import datasets
from mnistbench.data.datasets import DATASETS, FILES, PACKAGED, data_root, load_splits, resolve_files
from mnistbench.data.idx import load_idx
from mnistbench.errors import UserError


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTBENCH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("MNISTBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(None) == tmp_path / "home" / ".cache" / "mnistbench"


def test_the_packaged_mnist_verifies_and_has_its_attribution():
    folder = PACKAGED / "mnist"
    shapes = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))
    for stem, md5, shape in zip(FILES, DATASETS["mnist"].md5s, shapes):
        path = folder / f"{stem}.gz"
        assert load_idx(path, ndim=len(shape), expected_md5=md5).shape == shape
    about = (folder / "README.md").read_text()
    assert all(name in about for name in ("LeCun", "Cortes", "Burges", "NIST", "CC BY-SA 3.0"))


def test_without_a_folder_or_env_mnist_comes_from_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))  # no ~/.cache/mnistbench
    monkeypatch.delenv("MNISTBENCH_DATA", raising=False)
    assert resolve_files("mnist", allow_download=False) == [PACKAGED / "mnist" / f"{s}.gz" for s in FILES]
    s = load_splits("mnist", None, allow_download=False, val_size=100, test_limit=10)
    assert len(s.train_x) == 59900 and len(s.test_x) == 10
    assert not (tmp_path / "empty-home").exists()  # nothing downloaded or cached
    # an explicit folder or $MNISTBENCH_DATA still wins; Fashion-MNIST never comes from the package
    monkeypatch.setenv("MNISTBENCH_DATA", str(tmp_path / "env"))
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "env" / "mnist"))):
        resolve_files("mnist")
    monkeypatch.delenv("MNISTBENCH_DATA")
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "empty-home" / ".cache" / "mnistbench"))):
        resolve_files("fashion-mnist")


def test_offline_and_absent_names_folder_and_files(tmp_path):
    # conftest makes every download fail, as offline
    with pytest.raises(UserError) as e:
        resolve_files("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "mnist") in msg and "\n" not in msg
    for stem in FILES:
        assert f"{stem}.gz" in msg


def test_download_is_used_when_files_are_absent(tmp_path, monkeypatch, data_dir):
    calls = []

    def fake_download(info, folder):
        calls.append(folder)
        shutil.copytree(data_dir / info.name, folder, dirs_exist_ok=True)

    monkeypatch.setattr(datasets, "download", fake_download)
    paths = resolve_files("mnist", tmp_path)
    assert calls == [tmp_path / "mnist"] and all(p.exists() for p in paths)


def test_corrupt_file_names_the_file(tmp_path, data_dir):
    shutil.copytree(data_dir / "mnist", tmp_path / "mnist")
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz"):
        load_splits("mnist", tmp_path, allow_download=False)


def test_unknown_dataset():
    with pytest.raises(UserError, match="fashion-mnist"):
        load_splits("kmnist")


def test_validation_split_is_seeded_and_disjoint(data_dir):
    a = load_splits("mnist", data_dir, val_size=1000, seed=3)
    b = load_splits("mnist", data_dir, val_size=1000, seed=3)
    c = load_splits("mnist", data_dir, val_size=1000, seed=4)
    assert len(a.val_x) == 1000 and len(a.train_x) == 59000 and len(a.test_x) == 10000
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    # val and train partition the official training set: their images together are exactly its images
    def keys(x):
        return sorted(x.flatten(1).to(torch.int64).mul(torch.arange(784)).sum(1).tolist())
    full = torch.from_numpy(datasets.load_arrays("mnist", data_dir)[0].copy())
    assert keys(torch.cat([a.val_x, a.train_x])) == keys(full)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64


def test_fashion_mnist_loads(fashion_data_dir):
    s = load_splits("fashion-mnist", fashion_data_dir, test_limit=100)
    assert s.info.classes[9] == "Ankle boot" and len(s.test_x) == 100


def test_test_limit_is_a_fixed_random_sample_the_same_for_every_seed(data_dir):
    a = load_splits("mnist", data_dir, val_size=100, seed=0, test_limit=500)
    b = load_splits("mnist", data_dir, val_size=100, seed=7, test_limit=500)
    full = load_splits("mnist", data_dir, val_size=100, seed=0)
    assert torch.equal(a.test_index, b.test_index) and torch.equal(a.test_x, b.test_x)
    assert len(a.test_index) == 500 and a.test_index.unique().numel() == 500
    assert a.test_index.max() > 5000  # not the first images: those are harder than the rest
    assert torch.equal(a.test_x, full.test_x[a.test_index]) and torch.equal(a.test_y, full.test_y[a.test_index])
    assert torch.equal(full.test_index, torch.arange(10_000))
