"""Readers for the IDX format of MNIST and Fashion-MNIST (LeCun et al.); nothing downloads.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dimensions>``,
then one big-endian uint32 per dimension, then the values in C order (big-endian).
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

# dtype codes of the IDX format; multi-byte values are big-endian
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
        The file; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    ndarray
        With the file's shape, in native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the magic number, dtype code or size do not describe a valid IDX file.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_greedy.datasets import load_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> load_idx(path)
    array([7, 8, 9], dtype=uint8)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path!r}.")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path!r} is not an IDX file: its magic number {data[:4].hex() or 'is empty'} "
            "does not start with two zero bytes."
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path!r} has an unknown IDX dtype code 0x{code:02x}.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path!r} is truncated: its header needs {header} bytes.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path!r} holds {len(data) - header} bytes of data, but its header {shape} "
            f"needs {expected}."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find(data_dir: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"neither {name!r} nor {name + '.gz'!r} is in {data_dir!r}; this loader reads "
        "local MNIST-format files and does not download."
    )


def load_mnist(data_dir: str | os.PathLike, kind: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST from a directory of IDX files.

    Parameters
    ----------
    data_dir : str or path-like
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped.
    kind : {"train", "test"}, default="train"

    Returns
    -------
    X : ndarray of shape (n_samples, rows, cols), uint8
    y : ndarray of shape (n_samples,), uint8

    Examples
    --------
    >>> from sklearn_greedy.datasets import load_mnist
    >>> X, y = load_mnist("data/mnist", kind="test")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    if kind not in _MNIST_FILES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}.")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir!r} is not a directory.")
    images_name, labels_name = _MNIST_FILES[kind]
    X = load_idx(_find(data_dir, images_name))
    y = load_idx(_find(data_dir, labels_name))
    if X.ndim != 3:
        raise ValueError(f"the images file of {data_dir!r} has {X.ndim} dimensions, not 3.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{data_dir!r} holds {X.shape[0]} images but labels of shape {y.shape}.")
    return X, y
