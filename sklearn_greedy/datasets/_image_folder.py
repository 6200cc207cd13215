"""Image folders (one sub-folder per class, as Caltech-101) and the transfer protocol."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a pair (height, width), got {size!r}.") from None
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in (h, w)):
        raise ValueError(f"size must hold positive integers, got {size!r}.")
    return int(h), int(w)


def load_image_folder(
    root: str | os.PathLike,
    size=(64, 64),
    *,
    grayscale: bool = False,
    max_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load images stored as ``root/<class name>/<image file>`` (the Caltech-101 layout).

    Every image is converted to RGB (or to a single grey channel with ``grayscale``), so
    grey and colour images mix freely, and resized to ``size`` with bilinear
    interpolation, whatever its original size and aspect ratio. Classes are the
    sub-folders of ``root`` in sorted order; files are read in sorted order.

    Files that are not images PIL can read (text files, ``.DS_Store``...) are skipped with
    one :class:`UserWarning` that counts them and names a few. Files directly in ``root``
    are ignored.

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per class.
    size : int or tuple of int (height, width), default=(64, 64)
        Size every image is resized to.
    grayscale : bool, default=False
        Return one grey channel instead of three colour channels.
    max_per_class : int or None, default=None
        Read at most this many images per class (the first in sorted order).

    Returns
    -------
    X : ndarray of shape (n_images, 3, height, width), uint8
        The images, channels first; one channel with ``grayscale=True``.
    y : ndarray of shape (n_images,), str
        The class (sub-folder name) of each image. ``np.unique(y)`` gives the classes in
        the order a classifier's ``classes_`` will list them.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a directory.
    ValueError
        If ``root`` has no class sub-folder, or a class sub-folder holds no readable image
        (the message names it).

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sklearn_greedy.datasets import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, name))
    ...     Image.new("L", (20, 30)).save(os.path.join(root, name, "a.png"))
    >>> X, y = load_image_folder(root, size=(16, 16))
    >>> X.shape, X.dtype, y.tolist()
    ((2, 3, 16, 16), dtype('uint8'), ['cat', 'dog'])
    """
    from PIL import Image, UnidentifiedImageError

    height, width = _check_size(size)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root {root!r} is not a directory.")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ValueError(f"root {root!r} has no class sub-folders (expected root/<class>/<image>).")
    mode = "L" if grayscale else "RGB"
    images, labels, skipped = [], [], []
    for name in classes:
        folder = os.path.join(root, name)
        n_read = 0
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file():
                continue
            if max_per_class is not None and n_read >= max_per_class:
                break
            try:
                with Image.open(entry.path) as img:
                    img = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError):
                skipped.append(os.path.join(name, entry.name))
                continue
            images.append(array[None] if grayscale else array.transpose(2, 0, 1))
            labels.append(name)
            n_read += 1
        if n_read == 0:
            raise ValueError(f"Class folder {folder!r} holds no readable image.")
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} files that are not readable images, e.g. "
            f"{', '.join(skipped[:3])}.",
            UserWarning,
            stacklevel=2,
        )
    return np.stack(images), np.asarray(labels)


def per_class_split(
    y, n_per_class: int, *, n_splits: int = 10, random_state=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random splits with ``n_per_class`` training images per class, the rest for testing.

    The transfer protocol of Zeiler and Fergus (2014) used for Caltech-101 in
    Belilovsky et al. (App. C.3): 30 images per class for training, all the others for
    testing, 10 random splits; report the mean per-class accuracy, which is
    :func:`sklearn.metrics.balanced_accuracy_score`. The splits can be passed as ``cv``
    to scikit-learn's model selection tools (``cv=list(per_class_split(...))``).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_per_class : int
        Training samples drawn from each class.
    n_splits : int, default=10
        Number of random splits.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws.

    Yields
    ------
    train : ndarray of int
        Indices of the training samples (``n_per_class`` per class), sorted.
    test : ndarray of int
        Indices of all the other samples, sorted.

    Raises
    ------
    ValueError
        If a class has ``n_per_class`` samples or fewer: it would have none to test on.

    Examples
    --------
    >>> from sklearn_greedy.datasets import per_class_split
    >>> y = [0, 0, 0, 1, 1, 1, 1]
    >>> [(len(tr), len(te)) for tr, te in per_class_split(y, 2, n_splits=3, random_state=0)]
    [(4, 3), (4, 3), (4, 3)]
    """
    y = np.asarray(y)
    if not (isinstance(n_per_class, Integral) and n_per_class >= 1):
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    if not (isinstance(n_splits, Integral) and n_splits >= 1):
        raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}.")
    classes, counts = np.unique(y, return_counts=True)
    small = classes[counts <= n_per_class]
    if small.size:
        raise ValueError(
            f"n_per_class={n_per_class} leaves no test sample for classes "
            f"{small[:5].tolist()} ({counts[counts <= n_per_class].min()} samples)."
        )
    rng = check_random_state(random_state)
    members = [np.flatnonzero(y == c) for c in classes]
    for _ in range(n_splits):
        train = np.sort(
            np.concatenate([rng.choice(idx, n_per_class, replace=False) for idx in members])
        )
        test = np.setdiff1d(np.arange(y.shape[0]), train)
        yield train, test
