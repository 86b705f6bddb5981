"""IDX parsing and verification: good, truncated, corrupt and wrong files."""
import gzip
import struct

import numpy as np
import pytest

from mnistbench.data.idx import load_idx, md5, parse_idx, read_bytes
from mnistbench.errors import UserError


def idx_images(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, 3) + struct.pack(">3I", *arr.shape) + arr.tobytes()


def test_parse_good_images_and_labels():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_images(arr), ndim=3)
    assert out.shape == (2, 3, 4) and (out == arr).all()
    labels = struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 3) + bytes([7, 1, 9])
    assert parse_idx(labels, ndim=1).tolist() == [7, 1, 9]


@pytest.mark.parametrize("content, needle", [
    (idx_images(np.zeros((2, 3, 4), np.uint8))[:-5], "truncated"),
    (idx_images(np.zeros((2, 3, 4), np.uint8)) + b"x", "truncated or corrupt"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03\x00", "too short"),
    (struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 3) + bytes(3), "magic"),  # labels where images expected
    (struct.pack(">HBB", 0, 0x0D, 3) + struct.pack(">3I", 1, 1, 1) + bytes(4), "magic"),  # float type code
])
def test_parse_rejects_bad_content(content, needle):
    with pytest.raises(UserError, match=needle):
        parse_idx(content, ndim=3, name="f")


def test_gzip_and_raw_read_the_same(tmp_path):
    data = idx_images(np.ones((1, 2, 2), np.uint8))
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "a.gz").write_bytes(gzip.compress(data))
    assert read_bytes(tmp_path / "a") == read_bytes(tmp_path / "a.gz") == data


def test_truncated_gzip_is_one_clear_error(tmp_path):
    gz = gzip.compress(idx_images(np.random.randint(0, 255, (50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_idx(path, ndim=3)


def test_md5_checks_uncompressed_content(tmp_path):
    data = idx_images(np.ones((1, 2, 2), np.uint8))
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(data, mtime=0))
    assert load_idx(path, ndim=3, expected_md5=md5(data)).shape == (1, 2, 2)
    with pytest.raises(UserError, match="md5"):
        load_idx(path, ndim=3, expected_md5="0" * 32)


def test_real_mnist_files_verify(data_dir):
    from mnistbench.data.datasets import load_arrays

    train_x, train_y, test_x, test_y = load_arrays("mnist", data_dir, allow_download=False)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert sorted(set(train_y.tolist())) == list(range(10))
