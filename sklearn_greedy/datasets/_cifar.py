"""CIFAR-10 from a local directory: the official python batches or an image-folder copy."""

from __future__ import annotations

import codecs
import io
import os
import pickle
import pickletools
import tarfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

from .._validation import POSITIVE_INT
from ._images import UnreadableImage, decode_image, warn_skipped

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
_IMAGE_SHAPE = (3, 32, 32)
# a 32x32 image file is a few KB in any format; a larger archive member is not one of them
# and is not read into memory
_MAX_MEMBER_BYTES = 1 << 20


@validate_params(
    {
        "data_dir": [str, os.PathLike],
        "kind": [StrOptions(set(_BATCHES))],
        "max_per_class": [POSITIVE_INT, None],
    },
    prefer_skip_nested_validation=True,
)
def load_cifar10(
    data_dir, kind: str = "train", *, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 images and labels from ``data_dir``; nothing is downloaded.

    Three layouts are recognised, tried in this order:

    - the official python batches (``data_batch_1`` ... ``data_batch_5``, ``test_batch``),
      in ``data_dir`` or in its ``cifar-10-batches-py`` subfolder;
    - an image folder ``data_dir/{train,test}/<class>/<image>`` (PNG or JPEG 32x32);
    - a ``.tar.gz`` of such an image folder (``data_dir`` itself, or the only one inside
      it), read in one streaming pass without extracting anything to disk.

    What is refused (a ValueError that names the file): a python batch that is not a
    pickled dict of a uint8 array ``b"data"`` of shape (n, 3072) and a list of ``n``
    labels ``b"labels"`` in 0..9; a pickle that asks for anything beyond numpy's array
    reconstruction (the batches are read with a restricted unpickler, so a file carrying
    code is refused before any of it runs); an archive that is truncated or not a tar
    file; an image-folder class name not in ``CIFAR10_CLASSES``.

    What is skipped, with one :class:`UserWarning` that names each file and the reason:
    image files PIL cannot decode (truncated, corrupt, not images, decompression bombs
    larger than ``PIL.Image.MAX_IMAGE_PIXELS``), images that are not 32x32, and archive
    members larger than 1 MiB. The load fails only when no image is left.

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
        Labels in the official order, see ``CIFAR10_CLASSES``; labels are int64 in
        every loader of :mod:`sklearn_greedy.datasets`.

    Raises
    ------
    FileNotFoundError
        If ``data_dir`` does not exist or holds none of the layouts above.
    ValueError
        If a file is refused (see above) or no readable image is left.

    Examples
    --------
    >>> import pickle, tempfile, numpy as np
    >>> from sklearn_greedy.datasets import load_cifar10
    >>> d = tempfile.mkdtemp()
    >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 7]}
    >>> with open(f"{d}/test_batch", "wb") as f:
    ...     pickle.dump(batch, f, protocol=2)
    >>> X, y = load_cifar10(d, "test")
    >>> X.shape, y.dtype, y.tolist()
    ((2, 3, 32, 32), dtype('int64'), [3, 7])
    """
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


def _latin1_encode(text, encoding):
    """``_codecs.encode`` as Python 3 pickles bytes in protocol 2, and nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args):
    """``bytes()``, as Python 3 pickles an empty bytes object in protocol 2 (the raw data
    of an empty array); ``bytes(n)`` would allocate n bytes, so arguments are refused."""
    if args:
        raise pickle.UnpicklingError("builtins.bytes with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What a CIFAR-10 batch may ask the unpickler for: numpy arrays, nothing else.

    The official batches (Python 2, protocol 2) name ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``; numpy 2 writes ``numpy._core``; protocol 5
    writes ``_frombuffer``; Python 3 in protocol 2 writes bytes through
    ``_codecs.encode(text, "latin1")``, and an empty one as ``bytes()``.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("_codecs", "encode")] = _latin1_encode
    for module in ("__builtin__", "builtins"):
        allowed[(module, "bytes")] = _empty_bytes
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch; any other global (``os.system``...) is refused."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it asks for the global {module}.{name}, which a CIFAR-10 batch never needs"
            ) from None


# what a corrupt pickle raises; a refused global is an UnpicklingError
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
)


def _load_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = file.read_bytes()
    try:
        # the unpickler allocates a length-prefixed string before reading it, so a few
        # bytes declaring 2**40 would ask for a TB: every opcode's length is first checked
        # against the bytes present (pickletools reads them as they come)
        for _ in pickletools.genops(io.BytesIO(raw)):
            pass
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _PICKLE_ERRORS as exc:
        raise ValueError(
            f"{str(file)!r} is refused as a CIFAR-10 python batch: {exc}. Nothing in it was run."
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{str(file)!r} is not a CIFAR-10 python batch (no b'data' / b'labels').")
    data, labels = batch[b"data"], batch[b"labels"]
    n_values = int(np.prod(_IMAGE_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise ValueError(
            f"{str(file)!r}: b'data' must be a 2-D uint8 array, got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}."
        )
    if data.shape[1] != n_values:
        raise ValueError(
            f"{str(file)!r}: b'data' has {data.shape[1]} values per image, not {n_values}."
        )
    try:
        labels = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except (ValueError, TypeError, RecursionError):  # ragged or too deeply nested
        labels = None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"{str(file)!r}: b'labels' must be a list of ints.")
    if labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"{str(file)!r} holds {data.shape[0]} images but {labels.shape[0]} labels."
        )
    bad = labels[(labels < 0) | (labels >= len(CIFAR10_CLASSES))]
    if bad.size:
        raise ValueError(
            f"{str(file)!r} holds labels outside 0..{len(CIFAR10_CLASSES) - 1}: "
            f"{np.unique(bad)[:5].tolist()}."
        )
    return data.reshape(-1, *_IMAGE_SHAPE), labels.astype(np.int64)


def _read_batches(directory: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        file = directory / name
        if not file.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {str(file)!r} is missing.")
        X, y = _load_batch(file)
        images.append(X)
        labels.append(y)
    X, y = np.concatenate(images), np.concatenate(labels)
    if X.shape[0] == 0:
        raise ValueError(f"The CIFAR-10 batches {names} in {str(directory)!r} hold no image.")
    return X, y


def _decode(source) -> np.ndarray:
    """One 32x32 image, channels first; UnreadableImage when it is not one."""
    array = decode_image(source, mode="RGB")
    if array.shape != (32, 32, 3):
        raise UnreadableImage(f"{array.shape[1]}x{array.shape[0]}, not 32x32")
    return array.transpose(2, 0, 1)


def _label(class_name: str, where: str) -> int:
    try:
        return CIFAR10_CLASSES.index(class_name)
    except ValueError:
        raise ValueError(f"Unknown CIFAR-10 class folder {class_name!r} in {where}.") from None


def _decode_all(items, where: str, max_per_class, skipped=()) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``(name, class name, source)`` items in order, skipping unreadable ones.

    ``skipped`` holds ``(name, reason)`` pairs already skipped, for the one warning.
    """
    images, labels, skipped, counts = [], [], list(skipped), {}
    for name, class_name, source in items:
        label = _label(class_name, where)
        if max_per_class is not None and counts.get(label, 0) >= max_per_class:
            continue
        try:
            images.append(_decode(source()))
        except UnreadableImage as exc:
            skipped.append((name, str(exc)))
            continue
        labels.append(label)
        counts[label] = counts.get(label, 0) + 1
    warn_skipped(skipped, stacklevel=6)
    if not images:
        raise ValueError(f"No readable CIFAR-10 image in {where} ({len(skipped)} skipped).")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _read_folder(directory: Path, max_per_class) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(p for p in directory.glob("*/*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"No <class>/<image> files in {str(directory)!r}.")
    items = ((str(p.relative_to(directory)), p.parent.name, lambda p=p: p) for p in files)
    return _decode_all(items, repr(str(directory)), max_per_class)


def _read_archive(archive: Path, kind: str, max_per_class) -> tuple[np.ndarray, np.ndarray]:
    # one streaming pass: a gzip archive has no index, so random access would re-read it;
    # nothing is extracted to disk, so member names ("../x", absolute paths) and links
    # cannot write anywhere: links and other non-files are ignored
    found, too_big = [], []
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                if not (member.isfile() and _split_of(member.name) == kind):
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    too_big.append((member.name, f"{member.size} bytes, not a 32x32 image"))
                    continue
                found.append((member.name, tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(
            f"{str(archive)!r} is not a readable tar archive (truncated or corrupt): {exc}."
        ) from exc
    if not found and not too_big:
        raise FileNotFoundError(f"No {kind}/<class>/<image> files in {str(archive)!r}.")
    found.sort()
    items = (
        (name, Path(name).parent.name, lambda data=data: io.BytesIO(data)) for name, data in found
    )
    return _decode_all(items, repr(str(archive)), max_per_class, too_big)


def _split_of(name: str) -> str | None:
    parts = [p for p in Path(name).parts if p not in ("", ".")]
    return parts[-3] if len(parts) >= 3 else None


def _limit(X, y, max_per_class):
    if max_per_class is None:
        return X, y
    kept, counts = [], {}
    for i, label in enumerate(y.tolist()):
        if counts.get(label, 0) < max_per_class:
            counts[label] = counts.get(label, 0) + 1
            kept.append(i)
    return X[kept], y[kept]
