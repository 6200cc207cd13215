"""Readers for the IDX format of MNIST and Fashion-MNIST (LeCun et al.); nothing downloads.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dimensions>``,
then one big-endian uint32 per dimension, then the values in C order (big-endian).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

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

_GZIP_MAGIC = b"\x1f\x8b"
# deflate cannot expand data more than 1032 times, so a gzip file of n bytes holds at most
# 1032 * n: a header that declares more is refused before anything is decompressed
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 20


@validate_params({"path": [str, os.PathLike]}, prefer_skip_nested_validation=True)
def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    The header is read and checked first, in Python integers (no size arithmetic can
    wrap), against the bytes actually present: the file's size for a plain file; for a
    gzip file, the most its size could decompress to, then the data themselves,
    decompressed in a streaming way and never more than the declared size plus one
    byte. So a small file cannot make the reader allocate more than it holds.

    What is refused (a ValueError that names the file): a magic number that does not
    start with two zero bytes, an unknown dtype code, zero dimensions, a truncated
    header, a data size other than the header declares (too short or too long), a shape
    too large for numpy, and a corrupt or truncated gzip stream.

    Parameters
    ----------
    path : str or path-like
        The file. gzip compression is recognised by the file's content, whatever its
        name.

    Returns
    -------
    ndarray
        With the file's shape and dtype, in native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is refused (see above).

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
    file_size = os.path.getsize(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _read_idx(raw, path, file_size, compressed=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx(stream, path, file_size, compressed=True)
        except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise ValueError(
                f"{path!r} is not a readable gzip file (truncated or corrupt): {exc}."
            ) from exc


def _read_at_most(stream, limit: int) -> bytearray:
    """Up to ``limit`` bytes of ``stream``, read in chunks so that memory follows the data."""
    data = bytearray()
    while len(data) < limit:
        chunk = stream.read(min(_CHUNK, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _read_idx(stream, path: str, file_size: int, *, compressed: bool) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"{path!r} is not an IDX file: its magic number {magic.hex() or 'is empty'} "
            "does not start with two zero bytes."
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path!r} has an unknown IDX dtype code 0x{code:02x}.")
    if ndim == 0:
        raise ValueError(f"{path!r} declares 0 dimensions; an IDX file has at least one.")
    header = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path!r} is truncated: its header needs {header} bytes.")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = _IDX_DTYPES[code]
    # Python ints: a shape of (65536,) * 4 is 2**64 values, not 0
    expected = math.prod(shape) * dtype.itemsize
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise ValueError(f"{path!r} declares a shape {shape} too large for an array.")
    if not compressed and file_size - header != expected:
        raise ValueError(
            f"{path!r} holds {file_size - header} bytes of data, but its header {shape} "
            f"needs {expected}."
        )
    if compressed and expected > _MAX_DEFLATE_RATIO * file_size:
        raise ValueError(
            f"{path!r} declares a shape {shape} ({expected} bytes), more than a gzip file "
            f"of {file_size} bytes can hold."
        )
    # one byte more than declared tells a file with trailing data from an exact one
    data = _read_at_most(stream, expected + 1)
    if len(data) != expected:
        found = f"more than {expected}" if len(data) > expected else str(len(data))
        raise ValueError(
            f"{path!r} holds {found} bytes of data, but its header {shape} needs {expected}."
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.byteorder == ">":
        return array.astype(dtype.newbyteorder("="))
    return array


def _find(data_dir: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"neither {name!r} nor {name + '.gz'!r} is in {data_dir!r}; this loader reads "
        "local MNIST-format files and does not download."
    )


@validate_params(
    {"data_dir": [str, os.PathLike], "kind": [StrOptions(set(_MNIST_FILES))]},
    prefer_skip_nested_validation=True,
)
def load_mnist(data_dir: str | os.PathLike, kind: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST from a directory of IDX files.

    Each file is read by :func:`load_idx` and refused as it refuses. Also refused (a
    ValueError that names the directory): images that are not a 3-D uint8 array, labels
    that are not a 1-D integer array, and a number of labels other than of images.

    Parameters
    ----------
    data_dir : str or path-like
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped
        (with a ``.gz`` suffix).
    kind : {"train", "test"}, default="train"
        Which split to load.

    Returns
    -------
    X : ndarray of shape (n_samples, rows, cols), uint8
        The images.
    y : ndarray of shape (n_samples,), int64
        The labels; labels are int64 in every loader of :mod:`sklearn_greedy.datasets`.

    Examples
    --------
    >>> from sklearn_greedy.datasets import load_mnist
    >>> X, y = load_mnist("data/mnist", kind="test")  # doctest: +SKIP
    >>> X.shape, y.dtype  # doctest: +SKIP
    ((10000, 28, 28), dtype('int64'))
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir!r} is not a directory.")
    images_name, labels_name = _MNIST_FILES[kind]
    X = load_idx(_find(data_dir, images_name))
    y = load_idx(_find(data_dir, labels_name))
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError(
            f"the images file of {data_dir!r} holds a {X.ndim}-D {X.dtype} array, not 3-D uint8."
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"the labels file of {data_dir!r} holds a {y.ndim}-D {y.dtype} array, not 1-D integers."
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{data_dir!r} holds {X.shape[0]} images but labels of shape {y.shape}.")
    return X, y.astype(np.int64)
