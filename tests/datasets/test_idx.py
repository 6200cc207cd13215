"""Tests of the IDX loaders on tiny files written in tmp_path."""

import gzip
import struct

import numpy as np
import pytest

from sklearn_greedy.datasets import load_idx, load_mnist


def _write_idx(path, array, code=0x08, compress=False):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x-idx3-ubyte" + (".gz" if compress else ""))
    _write_idx(path, images, compress=compress)
    loaded = load_idx(path)
    np.testing.assert_array_equal(loaded, images)
    assert loaded.dtype == np.uint8


def test_load_idx_big_endian_types(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=np.float32)
    _write_idx(tmp_path / "f", values, code=0x0D)
    np.testing.assert_array_equal(load_idx(tmp_path / "f"), values)
    ints = np.array([1, -70000, 123456], dtype=np.int32)
    _write_idx(tmp_path / "i", ints, code=0x0C)
    loaded = load_idx(tmp_path / "i")
    np.testing.assert_array_equal(loaded, ints)
    assert loaded.dtype.byteorder in ("=", "<", "|")


def test_load_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        load_idx(tmp_path / "missing")
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic number 12340801"):
        load_idx(tmp_path / "bad")
    (tmp_path / "code").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="unknown IDX dtype code 0x07"):
        load_idx(tmp_path / "code")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")
    with pytest.raises(ValueError, match="holds 2 bytes of data"):
        load_idx(tmp_path / "short")


def test_load_mnist_train_and_test(tmp_path):
    rng = np.random.RandomState(0)
    for kind, prefix, n in [("train", "train", 5), ("test", "t10k", 3)]:
        images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, n).astype(np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
        X, y = load_mnist(tmp_path, kind=kind)
        assert X.shape == (n, 28, 28) and X.dtype == np.uint8
        np.testing.assert_array_equal(X, images)
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int64


def test_load_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match="'kind' parameter of load_mnist must be a str among"):
        load_mnist(tmp_path, kind="valid")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="holds 4 images but labels of shape"):
        load_mnist(tmp_path)
