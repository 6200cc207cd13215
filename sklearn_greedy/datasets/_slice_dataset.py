"""A view of a map-style dataset that scikit-learn's model selection tools can index."""

from __future__ import annotations

import operator

import numpy as np
from torch.utils.data import Dataset

from ._image_dataset import ImageFolderDataset


class SliceDataset(Dataset):
    """A view of a map-style dataset that scikit-learn can split, one field of each item.

    scikit-learn's cross-validation, :func:`~sklearn.model_selection.train_test_split` and
    :class:`~sklearn.model_selection.GridSearchCV` count the samples of ``X`` by its
    ``shape`` and take subsets with ``X[indices, ...]``. A torch dataset supports neither;
    this view does, and a subset is another view over the chosen items: no item is read
    until one is indexed with an integer. ``view[i]`` is ``dataset[indices[i]][idx]``, or
    the whole item with ``idx=None``.

    With ``idx=0`` the view is a dataset of images (a
    :class:`~torch.utils.data.DataLoader` over it yields batches of images alone); with
    ``idx=None`` it is a dataset of whole items and exposes the ``targets`` of the items
    it holds when ``dataset`` has ``targets``, so labels are read without decoding images.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style dataset: ``len(dataset)`` and ``dataset[i]`` for an int ``i``, each
        item a tuple such as ``(image, label)``. It may be a ``SliceDataset``.
    idx : int or None, default=0
        Which element of each item the view returns: 0 for the image, 1 for the label,
        None for the whole item.
    indices : array-like of int or None, default=None
        The positions in ``dataset`` of the view's items, in order (negative positions
        count from the end); None: every item.

    Attributes
    ----------
    dataset : torch.utils.data.Dataset
        The dataset the view reads.
    idx : int or None
        The element of each item that the view returns.
    indices : ndarray of shape (n_items,), int64
        The positions in ``dataset`` of the view's items, all non-negative.
    shape : tuple of int
        ``(n_items,)``: what scikit-learn reads to count the samples.
    ndim : int
        1.
    targets : ndarray of shape (n_items,)
        The ``targets`` of ``dataset`` at ``indices``; only with ``idx=None`` and a
        ``dataset`` that has ``targets`` (reading it raises AttributeError otherwise).

    See Also
    --------
    ImageFolderDataset : A lazy map-style dataset of ``(image, label)`` items.

    Notes
    -----
    The keys scikit-learn 1.9 uses: ``_safe_indexing`` sees the ``shape`` attribute and
    indexes ``view[key, ...]``, with ``key`` a 1-D int array (cross-validation splits),
    a slice, a list, a boolean mask or an int; the Ellipsis is dropped and the key
    applied as NumPy would apply it to a 1-D array. An int returns one value; every other
    key returns a new ``SliceDataset`` over the same ``dataset`` with the indices
    composed, so a view of a view reads ``dataset`` directly.

    ``np.asarray(view)`` reads every item and stacks the values (images of one shape, or
    labels). For labels, pass ``dataset.targets`` as ``y`` where the dataset has them.
    A view with ``idx=1`` over an :class:`ImageFolderDataset` (or an ``idx=None`` view
    of one) reads its labels from ``targets`` without decoding any image.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn_greedy.datasets import SliceDataset
    >>> dataset = TensorDataset(torch.zeros(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1]))
    >>> X, y = SliceDataset(dataset), SliceDataset(dataset, idx=1)
    >>> X.shape, X[0].shape, y[1]
    ((6,), torch.Size([1, 2, 2]), tensor(1))
    >>> X_train, X_test = train_test_split(X, test_size=2, shuffle=False)
    >>> type(X_test).__name__, X_test.indices.tolist()
    ('SliceDataset', [4, 5])
    """

    def __init__(self, dataset, idx: int | None = 0, indices=None):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(
                "dataset must be a map-style dataset (len and [int]), got "
                f"{type(dataset).__name__}."
            )
        if idx is not None:
            if isinstance(idx, bool):
                raise TypeError("idx must be an int or None, got a bool.")
            idx = operator.index(idx)
        self.dataset = dataset
        self.idx = idx
        self.indices = _check_indices(indices, len(dataset))
        # labels of the dataset's items known without decoding, for idx=1 views
        self._labels = _labels_without_decoding(dataset) if idx == 1 else None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def ndim(self) -> int:
        return 1

    @property
    def targets(self) -> np.ndarray:
        if self.idx is not None:
            raise AttributeError(
                f"A SliceDataset with idx={self.idx} has no targets: its items are single "
                "elements; targets are exposed by views of whole items (idx=None)."
            )
        return np.asarray(self.dataset.targets)[self.indices]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            key = _drop_ellipsis(key)
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            return self._item(int(key))
        if isinstance(key, slice):
            positions = self.indices[key]
        else:
            positions = self.indices[self._positions(key)]
        return type(self)(self.dataset, idx=self.idx, indices=positions)

    def _item(self, i: int):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a SliceDataset of {n} items.")
        position = int(self.indices[i])
        if self._labels is not None:
            return int(self._labels[position])
        item = self.dataset[position]
        if self.idx is None:
            return item
        try:
            return item[self.idx]
        except (IndexError, KeyError):
            raise IndexError(
                f"SliceDataset reads element {self.idx} of each item, but item {position} of "
                f"the dataset has {len(item) if hasattr(item, '__len__') else 'no'} elements."
            ) from None

    def _positions(self, key) -> np.ndarray:
        """``key`` (int array-like or boolean mask) as positions into ``self.indices``."""
        key = np.asarray(key)
        if key.size == 0 and key.dtype.kind not in "iub":
            key = key.astype(np.int64)  # np.asarray([]) is float
        if key.ndim != 1:
            raise IndexError(f"SliceDataset is 1-D: index it with 1-D keys, got {key.ndim}-D.")
        if key.dtype.kind == "b":
            if key.shape[0] != len(self):
                raise IndexError(
                    f"boolean mask of length {key.shape[0]} for a SliceDataset of "
                    f"{len(self)} items."
                )
            return np.flatnonzero(key)
        if key.dtype.kind not in "iu":
            raise IndexError(
                f"SliceDataset takes ints, slices, int arrays or boolean masks, got {key.dtype}."
            )
        n = len(self)
        if key.size and (key.min() < -n or key.max() >= n):
            raise IndexError(f"index out of range for a SliceDataset of {n} items.")
        return key

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("A SliceDataset cannot become an array without reading its items.")
        if self.idx is None:
            raise TypeError(
                "A SliceDataset of whole items (idx=None) has no array form: take one element "
                "of each item with idx=0 (images) or idx=1 (labels)."
            )
        if self._labels is not None:
            values = self._labels[self.indices]
        elif len(self) == 0:
            values = np.empty(0)
        else:
            try:
                values = np.stack([np.asarray(value) for value in self])
            except ValueError as exc:
                raise ValueError(
                    f"The items of this SliceDataset have different shapes ({exc}); resize the "
                    "images, e.g. with ImageFolderDataset(size=...)."
                ) from exc
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"SliceDataset({self.dataset!r}, idx={self.idx!r}: {len(self)} items)"


def _drop_ellipsis(key: tuple):
    """``key`` of ``view[key, ...]`` (how scikit-learn indexes arrays) or ``view[(key,)]``."""
    if len(key) == 2 and key[1] is Ellipsis:
        return key[0]
    if len(key) == 1:
        return key[0]
    raise IndexError(f"SliceDataset is 1-D: it takes one key (and an Ellipsis), got {key!r}.")


def _check_indices(indices, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    indices = np.asarray(indices)
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise TypeError(
            f"indices must be a 1-D array of ints, got shape {indices.shape} of {indices.dtype}."
        )
    if indices.min() < -n or indices.max() >= n:
        raise IndexError(f"indices out of range for a dataset of {n} items.")
    return np.where(indices < 0, indices + n, indices).astype(np.int64)


def _labels_without_decoding(dataset) -> np.ndarray | None:
    """The label (element 1) of each item of ``dataset`` when known without reading items.

    Known for an :class:`ImageFolderDataset`, whose items are ``(image, targets[i])``, and
    for whole-item views of one; None for any other dataset (or a subclass that changes
    how items are made), whose items must be read.
    """
    if type(dataset).__getitem__ is ImageFolderDataset.__getitem__:
        return dataset.targets
    if type(dataset).__getitem__ is SliceDataset.__getitem__ and dataset.idx is None:
        inner = _labels_without_decoding(dataset.dataset)
        return None if inner is None else inner[dataset.indices]
    return None
