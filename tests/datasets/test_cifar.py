"""CIFAR-10 loaders, on tiny files written in each layout."""

import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from sklearn_greedy.datasets import CIFAR10_CLASSES, load_cifar10


def _write_batches(directory, n=4):
    rng = np.random.RandomState(0)
    expected = {}
    for kind, names in {
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
    }.items():
        images, labels = [], []
        for name in names:
            data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
            batch_labels = rng.randint(0, 10, size=n).tolist()
            with open(directory / name, "wb") as f:
                pickle.dump({b"data": data, b"labels": batch_labels}, f)
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        expected[kind] = (np.concatenate(images), np.concatenate(labels))
    return expected


def test_python_batches(tmp_path):
    expected = _write_batches(tmp_path)
    for kind in ("train", "test"):
        X, y = load_cifar10(tmp_path, kind)
        assert X.dtype == np.uint8 and X.shape == expected[kind][0].shape
        np.testing.assert_array_equal(X, expected[kind][0])
        np.testing.assert_array_equal(y, expected[kind][1])
        assert y.dtype == np.int64


def test_python_batches_in_subfolder_and_subset(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    expected = _write_batches(sub, n=30)
    X, y = load_cifar10(tmp_path, "train", max_per_class=2)
    assert np.all(np.bincount(y) <= 2)
    assert X.shape[0] == y.shape[0] == np.bincount(expected["train"][1]).clip(max=2).sum()


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official batches: protocol 2, byte
    strings as BINSTRING, numpy globals under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)


def test_official_python2_batch_format(tmp_path):
    rng = np.random.RandomState(0)
    data = rng.randint(0, 256, size=(3, 3072)).astype(np.uint8)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [6, 9, 9],
        b"data": data,
        b"filenames": [b"leptodactylus_pentadactylus_s_000004.png"] * 3,
    }
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(batch)
    stream = buffer.getvalue()
    # what the official files look like: no _codecs, numpy.core, byte strings
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in stream and b"_codecs" not in stream
    (tmp_path / "test_batch").write_bytes(stream)
    X, y = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(X, data.reshape(3, 3, 32, 32))
    assert y.dtype == np.int64 and y.tolist() == [6, 9, 9]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_batches_written_by_python3_in_every_protocol(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": np.array([1, 2])}, f, protocol=protocol)
    X, y = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(X.reshape(2, -1), data)
    assert y.dtype == np.int64 and y.tolist() == [1, 2]


def _write_folder(root, per_class=2):
    rng = np.random.RandomState(0)
    for kind in ("train", "test"):
        for name in CIFAR10_CLASSES[:3]:
            (root / kind / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.randint(0, 256, size=(32, 32, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(root / kind / name / f"{i:04d}.png")


def test_image_folder_and_archive_agree(tmp_path):
    folder = tmp_path / "folder"
    _write_folder(folder)
    X, y = load_cifar10(folder, "test")
    assert X.shape == (6, 3, 32, 32) and X.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
    first = np.asarray(Image.open(folder / "test" / "airplane" / "0000.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(X[0], first)

    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "train", arcname="train")
        tar.add(folder / "test", arcname="test")
    X_tar, y_tar = load_cifar10(archive, "test")
    np.testing.assert_array_equal(X_tar, X)
    np.testing.assert_array_equal(y_tar, y)
    assert y.dtype == y_tar.dtype == np.int64
    only_archive = tmp_path / "only"
    only_archive.mkdir()
    archive.rename(only_archive / "cifar.tar.gz")
    assert load_cifar10(only_archive, "train", max_per_class=1)[0].shape == (3, 3, 32, 32)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="'kind' parameter of load_cifar10 must be"):
        load_cifar10(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="No CIFAR-10 data found"):
        load_cifar10(tmp_path)
    (tmp_path / "test" / "unicorn").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "test" / "unicorn" / "a.png")
    with pytest.raises(ValueError, match="Unknown CIFAR-10 class folder 'unicorn'"):
        load_cifar10(tmp_path, "test")
