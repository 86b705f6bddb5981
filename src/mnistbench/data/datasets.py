"""Find, download, verify and load MNIST-like data sets as uint8 tensors on the training device."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .idx import load_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class DatasetInfo:
    """One MNIST-like data set: its md5s of the *uncompressed* files, its mirrors and class names."""

    name: str
    md5s: tuple[str, str, str, str]  # in FILES order
    classes: tuple[str, ...]
    torchvision_class: str  # whose `mirrors` and `resources` (gz md5s) we download with


DATASETS = {
    "mnist": DatasetInfo(
        "mnist",
        ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
         "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
        tuple(str(i) for i in range(10)), "MNIST"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
         "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "FashionMNIST"),
}


def get_info(name: str) -> DatasetInfo:
    """The DatasetInfo for `name`, or a UserError listing the known names."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


# MNIST ships inside the package (mnistbench/data/mnist/, with its attribution); Fashion-MNIST is downloaded.
PACKAGED = Path(__file__).resolve().parent
PACKAGED_SETS = ("mnist",)


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir`, else $MNISTBENCH_DATA, else ~/.cache/mnistbench: where data sets are read or downloaded."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("MNISTBENCH_DATA"):
        return Path(os.environ["MNISTBENCH_DATA"]).expanduser()
    return Path.home() / ".cache" / "mnistbench"


def dataset_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder data set `name` is read from: `data_dir`/name, else $MNISTBENCH_DATA/name, else the copy
    inside the package (MNIST), else ~/.cache/mnistbench/name (downloaded there on first use)."""
    packaged = PACKAGED / name
    if data_dir or os.environ.get("MNISTBENCH_DATA") or name not in PACKAGED_SETS:
        return data_root(data_dir) / name
    if all(find_file(packaged, s) for s in FILES):
        return packaged
    return data_root() / name  # an installation without the package data: download as for any other set


def find_file(folder: Path, stem: str) -> Path | None:
    """The gzipped or raw copy of `stem` in `folder`, if any."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def download(info: DatasetInfo, folder: Path) -> None:
    """Fetch the missing files from torchvision's mirrors (gz md5-checked), moving each in atomically."""
    from torchvision import datasets as tvd
    from torchvision.datasets.utils import download_url

    tv = getattr(tvd, info.torchvision_class)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        for filename, gz_md5 in tv.resources:
            if find_file(folder, filename.removesuffix(".gz")):
                continue
            for mirror in tv.mirrors:
                try:
                    download_url(mirror + filename, tmp, filename, gz_md5)
                    os.replace(Path(tmp) / filename, folder / filename)
                    break
                except Exception:  # noqa: BLE001 - any network failure means: try the next mirror
                    continue


def _missing_message(info: DatasetInfo, folder: Path) -> str:
    names = ", ".join(f"{s}.gz" for s in FILES)
    return (f"{info.name} data not found in {folder} and could not be downloaded (offline?); "
            f"put the four files {names} there, or pass --data-dir DIR holding {info.name}/")


def resolve_files(name: str, data_dir=None, *, allow_download: bool = True) -> list[Path]:
    """Paths of the four files of data set `name`, downloading them if absent and allowed."""
    info = get_info(name)
    folder = dataset_folder(name, data_dir)
    if allow_download and not all(find_file(folder, s) for s in FILES):
        try:
            download(info, folder)
        except OSError:
            pass  # read-only folder and the like: reported below as missing files
    paths = [find_file(folder, s) for s in FILES]
    if not all(paths):
        raise UserError(_missing_message(info, folder))
    return paths


# The seed of the test sample a test_limit takes: fixed, so every model and seed of a study is scored on
# the same test images, and independent of the run seed.
TEST_SAMPLE_SEED = 20_251_129


@dataclass(frozen=True)
class Splits:
    """uint8 images (N, 28, 28) and int64 labels (N,), all on one device.

    test_index (N_test,) holds the position of each test image in the official test set (all of them,
    in order, unless a test_limit drew a sample).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: DatasetInfo
    test_index: torch.Tensor | None = None


def load_arrays(name: str, data_dir=None, *, allow_download: bool = True) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) as verified numpy arrays."""
    info = get_info(name)
    paths = resolve_files(name, data_dir, allow_download=allow_download)
    arrays = [load_idx(p, ndim=3 if "images" in p.name else 1, expected_md5=m) for p, m in zip(paths, info.md5s)]
    return tuple(arrays)


def load_test_images(name: str, data_dir=None) -> np.ndarray:
    """The verified test images (10000, 28, 28) of a data set already on disk (no download, one file read)."""
    info = get_info(name)
    folder = dataset_folder(name, data_dir)
    path = find_file(folder, FILES[2])
    if path is None:
        raise UserError(_missing_message(info, folder))
    return load_idx(path, ndim=3, expected_md5=info.md5s[2])


def load_splits(name: str, data_dir=None, *, device="cpu", val_size: int = 5000, seed: int = 0,
                train_limit: int = 0, test_limit: int = 0, allow_download: bool = True) -> Splits:
    """Load a data set, hold out a seeded validation split of the training set, move all to `device`.

    `train_limit` (0 = all) keeps the first images of the seeded training order; `test_limit` (0 = all)
    takes a random sample of the official test set drawn with TEST_SAMPLE_SEED, the same for every run.
    """
    train_x, train_y, test_x, test_y = load_arrays(name, data_dir, allow_download=allow_download)
    info = get_info(name)
    n = len(train_x)
    if not 0 <= val_size < n:
        raise UserError(f"val_size={val_size} must be between 0 and {n - 1}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_limit:
        train_idx = train_idx[:train_limit]
    test_idx = np.arange(len(test_x))
    if test_limit:
        sample = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(TEST_SAMPLE_SEED))
        test_idx = np.sort(sample[:test_limit].numpy())
        test_x, test_y = test_x[test_idx], test_y[test_idx]

    def to(a: np.ndarray, dtype=torch.uint8) -> torch.Tensor:
        return torch.from_numpy(np.array(a)).to(device=device, dtype=dtype)

    return Splits(to(train_x[train_idx]), to(train_y[train_idx], torch.int64),
                  to(train_x[val_idx]), to(train_y[val_idx], torch.int64),
                  to(test_x), to(test_y, torch.int64), info, torch.from_numpy(test_idx))

