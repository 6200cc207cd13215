"""CIFAR-10 loaders, on tiny files written in each layout."""

import pickle
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


def test_python_batches_in_subfolder_and_subset(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    expected = _write_batches(sub, n=30)
    X, y = load_cifar10(tmp_path, "train", max_per_class=2)
    assert np.all(np.bincount(y) <= 2)
    assert X.shape[0] == y.shape[0] == np.bincount(expected["train"][1]).clip(max=2).sum()


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
    only_archive = tmp_path / "only"
    only_archive.mkdir()
    archive.rename(only_archive / "cifar.tar.gz")
    assert load_cifar10(only_archive, "train", max_per_class=1)[0].shape == (3, 3, 32, 32)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="kind must be"):
        load_cifar10(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="No CIFAR-10 data found"):
        load_cifar10(tmp_path)
    (tmp_path / "test" / "unicorn").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "test" / "unicorn" / "a.png")
    with pytest.raises(ValueError, match="Unknown CIFAR-10 class folder 'unicorn'"):
        load_cifar10(tmp_path, "test")
