"""Image folders (one sub-folder per class, as Caltech-101) and the transfer protocol."""

from __future__ import annotations

import os
from collections.abc import Iterator
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params

from .._validation import POSITIVE_INT
from ._images import UnreadableImage, decode_image, warn_skipped


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


def _is_regular_file(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a regular file or a link to one.

    Pipes and devices are not (opening a pipe blocks; ``/dev/zero`` never ends), nor are
    broken links and link loops (whose ``is_file`` raises instead of answering).
    """
    try:
        return entry.is_file()
    except OSError:
        return False


def _class_folders(root: str) -> list[str]:
    """The sorted names of ``root``'s sub-folders, one per class.

    Raises FileNotFoundError if ``root`` is not a directory and ValueError if it has no
    sub-folder: the checks of :func:`load_image_folder`, shared with the lazy dataset.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root {root!r} is not a directory.")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ValueError(f"root {root!r} has no class sub-folders (expected root/<class>/<image>).")
    return classes


def _regular_files(folder: str) -> Iterator[os.DirEntry]:
    """The regular files of ``folder`` (see :func:`_is_regular_file`) in sorted name order.

    An iterator, so that a caller reading only the first few stats no more than it needs.
    """
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    return (entry for entry in entries if _is_regular_file(entry))


@validate_params(
    {
        "root": [str, os.PathLike],
        "grayscale": ["boolean"],
        "max_per_class": [POSITIVE_INT, None],
        "return_classes": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def load_image_folder(
    root: str | os.PathLike,
    size=(64, 64),
    *,
    grayscale: bool = False,
    max_per_class: int | None = None,
    return_classes: bool = False,
) -> tuple[np.ndarray, ...]:
    """Load images stored as ``root/<class name>/<image file>`` (the Caltech-101 layout).

    Every image is converted to RGB (or to a single grey channel with ``grayscale``), so
    grey and colour images mix freely, and resized to ``size`` with bilinear
    interpolation, whatever its original size and aspect ratio. Classes are the
    sub-folders of ``root`` in sorted order; files are read in sorted order.

    What is skipped: files that are not images PIL can decode (text files,
    ``.DS_Store``, truncated or corrupt images) and images larger than
    ``PIL.Image.MAX_IMAGE_PIXELS`` (decompression bombs, refused before they are
    decoded) are skipped with one :class:`UserWarning` that counts them and names them
    with the reason. Files directly in ``root``, and entries that are not regular files
    (sub-folders, devices, pipes, broken links, link loops), are ignored. Symbolic links
    to regular files are followed.

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per class.
    size : int or tuple of int (height, width), default=(64, 64)
        Size every image is resized to.
    grayscale : bool, default=False
        Return one grey channel instead of three colour channels.
    max_per_class : int or None, default=None
        Read at most this many images per class (the first readable ones in sorted
        order).
    return_classes : bool, default=False
        Also return the class names.

    Returns
    -------
    X : ndarray of shape (n_images, 3, height, width), uint8
        The images, channels first; one channel with ``grayscale=True``.
    y : ndarray of shape (n_images,), int64
        The class of each image, as an index into ``classes`` (the sorted sub-folder
        names): labels are int64 in every loader of :mod:`sklearn_greedy.datasets`.
    classes : ndarray of shape (n_classes,), str
        The class names, so that ``classes[y]`` names each image's class. Only
        returned with ``return_classes=True``.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a directory.
    ValueError
        If ``root`` has no class sub-folder, if a class sub-folder holds no readable
        image (the message names it: a class cannot silently vanish from the labels),
        or if ``size`` is not one or two positive ints.

    Examples
    --------
    >>> import tempfile, os
    >>> from PIL import Image
    >>> from sklearn_greedy.datasets import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, name))
    ...     Image.new("L", (20, 30)).save(os.path.join(root, name, "a.png"))
    >>> X, y, classes = load_image_folder(root, size=(16, 16), return_classes=True)
    >>> X.shape, X.dtype, y.tolist(), classes[y].tolist()
    ((2, 3, 16, 16), dtype('uint8'), [0, 1], ['cat', 'dog'])
    """
    height, width = _check_size(size)
    root = os.fspath(root)
    classes = _class_folders(root)
    mode = "L" if grayscale else "RGB"
    images, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        n_read = 0
        for entry in _regular_files(folder):
            if max_per_class is not None and n_read >= max_per_class:
                break
            try:
                array = decode_image(entry.path, mode=mode, size=(height, width))
            except UnreadableImage as exc:
                skipped.append((os.path.join(name, entry.name), str(exc)))
                continue
            images.append(array[None] if grayscale else array.transpose(2, 0, 1))
            labels.append(label)
            n_read += 1
        if n_read == 0:
            warn_skipped(skipped, stacklevel=4)
            raise ValueError(
                f"Class folder {folder!r} holds no readable image; remove it or add images."
            )
    warn_skipped(skipped, stacklevel=4)
    X, y = np.stack(images), np.asarray(labels, dtype=np.int64)
    return (X, y, np.asarray(classes)) if return_classes else (X, y)


@validate_params(
    {
        "y": ["array-like"],
        "n_per_class": [POSITIVE_INT],
        "n_splits": [POSITIVE_INT],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def per_class_split(
    y, n_per_class: int, *, n_splits: int = 10, random_state=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random splits with ``n_per_class`` training images per class, the rest for testing.

    The transfer protocol of Zeiler and Fergus (2014) used for Caltech-101 in
    Belilovsky et al. (App. C.3): 30 images per class for training, all the others for
    testing, 10 random splits; report the mean per-class accuracy, which is
    :func:`sklearn.metrics.balanced_accuracy_score`. The splits can be passed as ``cv``
    to scikit-learn's model selection tools (``cv=list(per_class_split(...))``).

    The arguments are checked when the function is called, before the first split is
    drawn.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_per_class : int
        Training samples drawn from each class (>= 1).
    n_splits : int, default=10
        Number of random splits (>= 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the draws.

    Returns
    -------
    splits : iterator of (train, test)
        ``train`` holds the sorted indices of the training samples (``n_per_class``
        per class), ``test`` the sorted indices of all the other samples.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or is empty, or if a class has ``n_per_class`` samples or
        fewer: it would have none to test on.

    Examples
    --------
    >>> from sklearn_greedy.datasets import per_class_split
    >>> y = [0, 0, 0, 1, 1, 1, 1]
    >>> [(len(tr), len(te)) for tr, te in per_class_split(y, 2, n_splits=3, random_state=0)]
    [(4, 3), (4, 3), (4, 3)]
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty 1-D array of labels, got shape {y.shape}.")
    classes, counts = np.unique(y, return_counts=True)
    small = classes[counts <= n_per_class]
    if small.size:
        raise ValueError(
            f"n_per_class={n_per_class} leaves no test sample for classes "
            f"{small[:5].tolist()} ({counts[counts <= n_per_class].min()} samples)."
        )
    members = [np.flatnonzero(y == c) for c in classes]
    return _draw_splits(members, y.shape[0], n_per_class, n_splits, random_state)


def _draw_splits(members, n_samples, n_per_class, n_splits, random_state):
    rng = check_random_state(random_state)
    for _ in range(n_splits):
        train = np.sort(
            np.concatenate([rng.choice(idx, n_per_class, replace=False) for idx in members])
        )
        yield train, np.setdiff1d(np.arange(n_samples), train)
