"""CIFAR-10 from a local directory: the official python batches or an image-folder copy."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def load_cifar10(
    data_dir, kind: str = "train", *, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 images and labels from ``data_dir``; nothing is downloaded.

    Three layouts are recognised, tried in this order:

    - the official python batches (``data_batch_1`` ... ``data_batch_5``, ``test_batch``),
      in ``data_dir`` or in its ``cifar-10-batches-py`` subfolder;
    - an image folder ``data_dir/{train,test}/<class>/<image>`` (PNG or JPEG 32x32);
    - a ``.tar.gz`` of such an image folder (``data_dir`` itself, or the only one inside
      it), read without extracting it.

    Parameters
    ----------
    data_dir : str or path-like
        The directory (or archive) holding the data.
    kind : {"train", "test"}, default="train"
        Which split to load.
    max_per_class : int or None, default=None
        Keep at most this many images of each class (the first ones in file order), for
        quick runs.

    Returns
    -------
    X : ndarray of shape (n_samples, 3, 32, 32), dtype uint8
        Images, channels first.
    y : ndarray of shape (n_samples,), dtype int64
        Labels in the official order, see ``CIFAR10_CLASSES``.

    Examples
    --------
    >>> import pickle, tempfile, numpy as np
    >>> from sklearn_greedy.datasets import load_cifar10
    >>> d = tempfile.mkdtemp()
    >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 7]}
    >>> with open(f"{d}/test_batch", "wb") as f:
    ...     pickle.dump(batch, f)
    >>> X, y = load_cifar10(d, "test")
    >>> X.shape, y.tolist()
    ((2, 3, 32, 32), [3, 7])
    """
    if kind not in _BATCHES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}.")
    path = Path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"CIFAR-10 data directory {str(path)!r} does not exist.")
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / _BATCHES[kind][0]).is_file():
            X, y = _read_batches(candidate, _BATCHES[kind])
            return _limit(X, y, max_per_class)
    if (path / kind).is_dir():
        return _read_folder(path / kind, max_per_class)
    archives = [path] if path.is_file() else sorted(path.glob("*.tar.gz"))
    if len(archives) == 1:
        return _read_archive(archives[0], kind, max_per_class)
    raise FileNotFoundError(
        f"No CIFAR-10 data found in {str(path)!r}: expected python batches "
        f"({_BATCHES[kind][0]}...), a folder {kind}/<class>/, or one .tar.gz of such folders."
    )


def _read_batches(directory: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        file = directory / name
        if not file.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {str(file)!r} is missing.")
        with open(file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        try:
            data, batch_labels = batch[b"data"], batch[b"labels"]
        except (KeyError, TypeError):
            raise ValueError(
                f"{str(file)!r} is not a CIFAR-10 python batch (no b'data' / b'labels')."
            ) from None
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.shape != (32, 32, 3):
        raise ValueError(f"CIFAR-10 images are 32x32, found one of shape {array.shape[:2]}.")
    return array.transpose(2, 0, 1)


def _label(class_name: str, where: str) -> int:
    try:
        return CIFAR10_CLASSES.index(class_name)
    except ValueError:
        raise ValueError(f"Unknown CIFAR-10 class folder {class_name!r} in {where}.") from None


def _read_folder(directory: Path, max_per_class) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(p for p in directory.glob("*/*") if p.is_file())
    files = _first_per_class(files, lambda p: p.parent.name, max_per_class)
    y = np.array([_label(p.parent.name, str(directory)) for p in files], dtype=np.int64)
    X = np.stack([_decode(p.read_bytes()) for p in files]) if files else _empty()
    return X, y


def _read_archive(archive: Path, kind: str, max_per_class) -> tuple[np.ndarray, np.ndarray]:
    # one streaming pass: a gzip archive has no index, so random access would re-read it
    found = []
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if member.isfile() and _split_of(member.name) == kind:
                found.append((member.name, tar.extractfile(member).read()))
    found.sort()
    found = _first_per_class(found, lambda f: Path(f[0]).parent.name, max_per_class)
    if not found:
        raise FileNotFoundError(f"No {kind}/<class>/<image> files in {str(archive)!r}.")
    y = np.array([_label(Path(name).parent.name, str(archive)) for name, _ in found])
    return np.stack([_decode(data) for _, data in found]), y.astype(np.int64)


def _split_of(name: str) -> str | None:
    parts = [p for p in Path(name).parts if p not in ("", ".")]
    return parts[-3] if len(parts) >= 3 else None


def _first_per_class(items, class_of, max_per_class):
    if max_per_class is None:
        return list(items)
    kept, counts = [], {}
    for item in items:
        c = class_of(item)
        if counts.get(c, 0) < max_per_class:
            counts[c] = counts.get(c, 0) + 1
            kept.append(item)
    return kept


def _limit(X, y, max_per_class):
    if max_per_class is None:
        return X, y
    keep = _first_per_class(range(len(y)), lambda i: y[i], max_per_class)
    return X[keep], y[keep]


def _empty() -> np.ndarray:
    return np.zeros((0, 3, 32, 32), dtype=np.uint8)
