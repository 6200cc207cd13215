"""Inputs that do not fit in one device's memory: data sets and arrays read batch by batch.

The engine indexes its inputs as tensors on the device (``X[idx]``, ``X[a:b]``,
``X.shape``, ``X.device``). The *sources* here answer the same questions for inputs that
stay where they are:

- :class:`DatasetSource`: a map-style :class:`torch.utils.data.Dataset` of images or
  ``(image, label)`` items, decoded per item by a :class:`~torch.utils.data.DataLoader`
  (workers, pinned memory, prefetch) and copied to the device without blocking;
- :class:`ArraySource`: an array on the host (``np.memmap`` included: only the rows of a
  batch are read) or a cache of frozen-prefix features in host memory or on disk.

They also read ahead: :meth:`iter_batches` takes the epoch's index batches and yields the
device batches, so that decoding overlaps training. Labels are never streamed: they are
small and known before training (``targets`` of the data set, or one pass over it).
"""

from __future__ import annotations

import errno
import mmap
import numbers
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

PREFIX_CACHES = ("device", "host", "disk")


@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`DatasetSource` reads its items (the estimator's loader parameters)."""

    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int | None = None


def is_stream(X) -> bool:
    """Whether ``X`` is read batch by batch (a data set or an ``np.memmap``)."""
    return isinstance(X, np.memmap) or is_dataset(X)


def is_dataset(X) -> bool:
    """A map-style data set: a torch Dataset, or any sized, indexable object that is not an
    array, a tensor, a list or a data frame (a ``SliceDataset``, for instance)."""
    if isinstance(X, Dataset):
        return True
    if isinstance(X, (np.ndarray, torch.Tensor, list, tuple, str, bytes, Mapping)):
        return False
    if hasattr(X, "iloc") or hasattr(X, "ndim") or hasattr(X, "__array__"):
        return False
    return hasattr(X, "__getitem__") and hasattr(X, "__len__")


# --------------------------------------------------------------------- items and labels
def _image_of(item):
    """The image of a data set item: the first element of a pair, else the item."""
    return item[0] if isinstance(item, (tuple, list)) else item


def read_item(dataset, i: int):
    """``dataset[i]``, with the user's IndexError inside ``__len__`` named as such."""
    try:
        return dataset[i]
    except IndexError as exc:
        raise ValueError(
            f"Item {i} of the data set raised IndexError ({exc}) although its __len__ is "
            f"{len(dataset)}: __len__ must count the items that can be read."
        ) from exc


def check_map_style(dataset) -> None:
    """Refuse what a fit cannot index: an IterableDataset, or a data set without len()."""
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            f"X is an IterableDataset ({type(dataset).__name__}): the estimator needs a "
            "map-style data set, with __len__ and __getitem__, to shuffle and to read "
            "each layer's epochs. Write the items to an array or a memmap, or give the "
            "data set __getitem__."
        )
    try:
        len(dataset)
    except TypeError as exc:
        raise TypeError(f"X, a {type(dataset).__name__}, has no len(): {exc}.") from exc


def as_image_tensor(image, index: int) -> torch.Tensor:
    """One item's image as a (C, H, W) tensor: uint8 kept (4x less to copy), other numbers
    as float32. PIL images and (H, W, C) arrays of PIL's layout are not guessed at: a PIL
    image is converted from (H, W, C); arrays and tensors must be (C, H, W) or (H, W)."""
    if hasattr(image, "getbands"):  # a PIL image
        array = np.asarray(image)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        image = array
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "biuf":
            raise TypeError(f"Item {index}: the image has dtype {image.dtype}, not numbers.")
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"Item {index}: expected an image (tensor, array or PIL image) or an "
            f"(image, label) pair, got {type(image).__name__}."
        )
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(
            f"Item {index}: images must be (C, H, W) or (H, W); got shape {tuple(image.shape)}."
        )
    if image.dtype == torch.uint8:
        return image
    if image.dtype == torch.bool or image.is_complex():
        raise TypeError(f"Item {index}: the image has dtype {image.dtype}, not real numbers.")
    return image.float()


class _Images(Dataset):
    """The images of a data set, checked against one shape (for batching)."""

    def __init__(self, dataset, image_shape: tuple[int, int, int]):
        self.dataset = dataset
        self.image_shape = tuple(image_shape)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image = as_image_tensor(_image_of(read_item(self.dataset, i)), i)
        if image.is_floating_point() and not torch.isfinite(image).all():
            raise ValueError(
                f"Item {i} has an image with values that are not finite (NaN or inf); "
                "the network cannot train on them. Clean or drop the item."
            )
        if tuple(image.shape) != self.image_shape:
            raise ValueError(
                f"Item {i} has an image of shape {tuple(image.shape)}, the others "
                f"{self.image_shape}: every image must have the same shape (resize them, "
                "e.g. ImageFolderDataset(size=...))."
            )
        return image


def first_image_shape(dataset) -> tuple[int, int, int]:
    """Shape of the first item's image, which every other item must share."""
    if len(dataset) == 0:
        raise ValueError("The data set is empty: it needs at least one item.")
    return tuple(as_image_tensor(_image_of(read_item(dataset, 0)), 0).shape)


def dataset_labels(dataset) -> np.ndarray:
    """The label of every item: the data set's ``targets`` when it has them (no decoding),
    else the second element of each item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        labels = np.asarray(targets)
        if labels.shape != (len(dataset),):
            raise ValueError(
                f"The data set's targets have shape {labels.shape}, but it has "
                f"{len(dataset)} items."
            )
        return labels
    labels = []
    for i in range(len(dataset)):
        item = read_item(dataset, i)
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(
                "With y=None, a data set's items must be (image, label) pairs; item "
                f"{i} is a {type(item).__name__}"
                + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
                + ". Pass y, or a data set of pairs."
            )
        label = item[1]
        if label is None or np.ndim(label) != 0 and np.size(label) != 1:
            raise ValueError(
                f"Item {i}: its label must be one class label, got "
                + ("None" if label is None else f"an array of shape {tuple(np.shape(label))}")
                + ". Items must be (image, label) pairs with a scalar label."
            )
        if isinstance(label, (torch.Tensor, np.ndarray)):
            label = label.item()
        labels.append(label)
    return np.asarray(labels)


# --------------------------------------------------------------------- sources
class _Source:
    """What the engine reads of its inputs: a shape, a device, batches by index."""

    shape: tuple
    device: torch.device

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def dtype(self):
        return self._dtype

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        elif isinstance(key, numbers.Integral):
            return self[np.array([key])][0]
        else:
            idx = key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        return next(iter(self.iter_batches([idx])), None) if len(idx) else self._empty()

    def _empty(self) -> torch.Tensor:
        return torch.empty((0, *self.shape[1:]), dtype=self._dtype, device=self.device)

    def iter_batches(self, index_batches: Iterable) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def sequential(self, batch_size: int, rows: range | None = None) -> Iterator[torch.Tensor]:
        """The source in order (its ``rows``, default all), batch by batch, on the device."""
        rows = range(len(self)) if rows is None else rows
        return self.iter_batches(
            np.arange(start, min(start + batch_size, rows.stop))
            for start in range(rows.start, rows.stop, batch_size)
        )


def _host_indices(idx) -> np.ndarray:
    if isinstance(idx, torch.Tensor):
        return idx.detach().cpu().numpy()
    return np.asarray(idx)


class ArraySource(_Source):
    """Rows of a host array (numpy, ``np.memmap``, CPU tensor) read per batch; the next
    batch is read by a thread while the device works on this one.

    Parameters
    ----------
    array : ndarray, np.memmap or torch.Tensor of shape (n, ...)
        Stays on the host; only the rows of each batch are read.
    device : torch.device
        Where batches go.
    float_on_device : bool, default=False
        Convert batches to float32 on the device (for fp16 feature caches).
    """

    def __init__(
        self, array, device, *, float_on_device=False, check_finite=False, indices=None
    ):  # fmt: skip
        self.array = array
        self._file_rows = FileRows.of(array)
        self.indices = None if indices is None else np.asarray(indices)
        n = array.shape[0] if indices is None else len(self.indices)
        self.shape = (n, *array.shape[1:])
        self.device = torch.device(device)
        self.float_on_device = float_on_device
        self.check_finite = check_finite
        self._dtype = torch.float32 if float_on_device else _torch_dtype(array)
        self._pin = self.device.type == "cuda"

    def subset(self, positions) -> ArraySource:
        """The source of the rows at ``positions`` of this one."""
        rows = np.asarray(positions) if self.indices is None else self.indices[positions]
        return ArraySource(
            self.array, self.device, float_on_device=self.float_on_device,
            check_finite=self.check_finite, indices=rows,
        )  # fmt: skip

    def _read(self, idx) -> torch.Tensor:
        idx = _host_indices(idx)
        if self.indices is not None:
            idx = self.indices[idx]
        # rows in file order: a memmap reads forward instead of seeking back and forth
        order = np.argsort(idx, kind="stable")
        if self._file_rows is not None:
            rows = self._file_rows.read(idx[order])
        else:
            rows = self.array[idx[order]]
        rows = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
        batch = torch.empty_like(rows)
        batch[torch.from_numpy(order)] = rows
        if self.check_finite and batch.is_floating_point():
            # the network computes in float32: a float64 value beyond its range is inf
            big = batch.dtype == torch.float64 and bool(
                (batch.abs() > torch.finfo(torch.float32).max).any()
            )
            if big or not torch.isfinite(batch).all():
                raise ValueError(
                    "X has values that are not finite (NaN or inf) or beyond the float32 "
                    "range (|x| > 3.4e38) that the network computes in; clean or rescale it."
                )
        return batch.pin_memory() if self._pin else batch

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        return batch.float() if self.float_on_device else batch

    def iter_batches(self, index_batches):
        index_batches = iter(index_batches)
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = next(index_batches, None)
            pending = None if first is None else pool.submit(self._read, first)
            while pending is not None:
                batch = pending.result()
                following = next(index_batches, None)
                pending = None if following is None else pool.submit(self._read, following)
                yield self._to_device(batch)


class MemmapView:
    """A ``np.memmap`` (or a view of one: a slice, a reshape, a transpose) described by its
    file: it travels to another process as a few numbers and is mapped there again,
    instead of being pickled with every byte it maps, and :class:`FileRows` reads its rows
    from the file.

    Parameters
    ----------
    filename : str
        The mapped file.
    dtype : numpy dtype
        The array's type.
    position : int
        Byte position in the file of the array's first element.
    shape, strides : tuple of int
        The array's shape and strides in bytes.

    Examples
    --------
    >>> import numpy as np, pickle, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.dat")
    >>> X = np.memmap(path, dtype=np.float32, mode="w+", shape=(100, 3, 4))
    >>> X[:] = np.arange(X.size, dtype=np.float32).reshape(X.shape)
    >>> view = pickle.loads(pickle.dumps(MemmapView.of(X[10:20, None]))).open()
    >>> type(view).__name__, view.shape, bool((view == X[10:20, None]).all())
    ('memmap', (10, 1, 3, 4), True)
    """

    def __init__(self, filename, dtype, position: int, shape, strides):
        self.filename, self.dtype, self.position = filename, np.dtype(dtype), position
        self.shape, self.strides = tuple(shape), tuple(strides)

    @classmethod
    def of(cls, array: np.memmap) -> MemmapView:
        """The description of ``array``, a memmap or a view of one."""
        if array._mmap is None or array.filename is None:
            raise TypeError("this np.memmap maps no file: it cannot travel by name.")
        # numpy maps the file from the allocation boundary below the memmap's offset
        start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
        base = np.frombuffer(array._mmap, dtype=np.uint8).ctypes.data
        position = start + array.ctypes.data - base
        return cls(array.filename, array.dtype, position, array.shape, array.strides)

    def open(self) -> np.memmap:
        """The array, mapped read-only from its file."""
        whole = np.memmap(self.filename, dtype=np.uint8, mode="r")
        view = np.ndarray.__new__(
            np.memmap, self.shape, dtype=self.dtype, buffer=whole, offset=self.position,
            strides=self.strides,
        )  # fmt: skip
        view._mmap, view.filename, view.offset, view.mode = whole._mmap, whole.filename, 0, "r"
        return view


class FileRows:
    """Rows of a memmap read from its file with ``preadv`` instead of through the mapping.

    Pages touched through a mapping stay mapped, and count in the process's resident
    memory (what Slurm and Kubernetes limit), until the whole file is: a 2 GiB memmap fit
    peaked at 4.2 GiB. And the kernel maps whole large folios around each faulting row,
    so one shuffled batch of 1,024 rows mapped 1.3 GiB. Read with ``preadv``, the rows
    pass through the page cache only, and resident memory stays that of the batches.

    Parameters
    ----------
    view : MemmapView
        The memmap's file, position, shape, strides and type (rows positive and apart,
        elements within a row at non-negative strides).
    """

    def __init__(self, view: MemmapView):
        self.view = view
        # the bytes of one row, from its first element to the end of its last
        self.span = view.dtype.itemsize + sum(
            (n - 1) * s for n, s in zip(view.shape[1:], view.strides[1:])
        )
        self._fd = None

    @classmethod
    def of(cls, array) -> FileRows | None:
        """The reader of ``array``'s rows; None where the mapping must be read: anything
        but a memmap of a file, a copy-on-write memmap (its changes live in the mapping
        only), rows in reverse or overlapping, or a system without ``preadv``."""
        if (
            not isinstance(array, np.memmap)
            or getattr(array, "_mmap", None) is None
            or not getattr(array, "filename", None)
            or getattr(array, "mode", None) not in ("r", "r+", "w+")
            or array.ndim == 0
            or array.size == 0
            or not hasattr(os, "preadv")
            or min(array.strides[1:], default=0) < 0
        ):
            return None
        rows = cls(MemmapView.of(array))
        return rows if array.strides[0] >= rows.span else None

    def __getstate__(self) -> dict:
        # a file descriptor means nothing in another process: it opens its own
        return {**self.__dict__, "_fd": None}

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows`` (ascending), as a new C-contiguous array."""
        view = self.view
        if self._fd is None:
            self._fd = os.open(view.filename, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
        rows = np.asarray(rows, dtype=np.int64)
        raw = np.empty((len(rows), self.span), dtype=np.uint8)
        contiguous = view.strides[0] == self.span
        start = 0
        while start < len(rows):
            stop = start + 1
            if contiguous:  # consecutive rows: one read
                while stop < len(rows) and rows[stop] == rows[stop - 1] + 1:
                    stop += 1
            self._read_into(raw[start:stop].reshape(-1), int(rows[start]))
            start = stop
        read = np.ndarray(
            (len(rows), *view.shape[1:]), dtype=view.dtype, buffer=raw,
            strides=(self.span, *view.strides[1:]),
        )  # fmt: skip
        return np.ascontiguousarray(read)

    def _read_into(self, buffer: np.ndarray, row: int) -> None:
        where, done = self.view.position + row * self.view.strides[0], 0
        while done < buffer.size:  # a read may return less than asked (2 GiB at most)
            got = os.preadv(self._fd, [buffer[done:]], where + done)
            if got == 0:
                raise OSError(f"{self.view.filename} ended while reading rows of X: was it cut?")
            done += got


def _torch_dtype(array) -> torch.dtype:
    if isinstance(array, torch.Tensor):
        return array.dtype
    return torch.from_numpy(np.zeros(0, dtype=array.dtype)).dtype


class DatasetSource(_Source):
    """Images of a map-style data set, decoded per item by a DataLoader.

    Parameters
    ----------
    dataset : Dataset
        Items are images or ``(image, label)`` pairs (the label is not read here).
    image_shape : tuple of int
        (C, H, W) that every image must have.
    device : torch.device
        Where batches go.
    options : LoaderOptions
        Workers, pinned memory and prefetching of the DataLoader.
    indices : array of int, optional
        The items of ``dataset`` this source reads, in order (a validation split).
    """

    def __init__(self, dataset, image_shape, device, options: LoaderOptions, indices=None):
        self.dataset = dataset
        self.image_shape = tuple(image_shape)
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        self.shape = (len(self.indices), *self.image_shape)
        self.device = torch.device(device)
        self.options = options
        self._dtype = None

    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = as_image_tensor(_image_of(self.dataset[int(self.indices[0])]), 0).dtype
        return self._dtype

    def subset(self, positions) -> DatasetSource:
        """The source of the items at ``positions`` of this one."""
        return DatasetSource(
            self.dataset, self.image_shape, self.device, self.options, self.indices[positions]
        )

    def _empty(self) -> torch.Tensor:
        return torch.empty((0, *self.shape[1:]), dtype=self.dtype, device=self.device)

    def iter_batches(self, index_batches):
        batches = [self.indices[_host_indices(idx)].tolist() for idx in index_batches]
        options = self.options
        loader = DataLoader(
            _Images(self.dataset, self.image_shape),
            batch_sampler=batches,
            num_workers=options.num_workers,
            pin_memory=options.pin_memory and self.device.type == "cuda",
            prefetch_factor=options.prefetch_factor if options.num_workers else None,
        )
        iterator = iter(loader)
        try:
            for batch in iterator:
                yield batch.to(self.device, non_blocking=True)
        except RuntimeError as exc:
            if "DataLoader worker" in str(exc):
                raise RuntimeError(
                    f"A data loading worker failed while reading the data set: {exc}"
                ) from exc
            raise
        finally:
            # on an error (or an early stop) the workers go now, not when the traceback
            # that holds the loader is garbage collected
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


# --------------------------------------------------------------------- caches
def iter_sequential(X, batch_size: int, rows: range | None = None) -> Iterator[torch.Tensor]:
    """``X`` in order (its ``rows``, a range of step 1, default all), batch by batch:
    slices of a tensor, or a source's batches."""
    if isinstance(X, torch.Tensor):
        rows = range(X.shape[0]) if rows is None else rows
        return (
            X[start : min(start + batch_size, rows.stop)]
            for start in range(rows.start, rows.stop, batch_size)
        )
    return X.sequential(batch_size, rows)


def cache_outputs(fn, X, batch_size: int, where: str, rows: range | None = None):
    """``fn`` over every batch of ``X``, kept on the device (``"device"``), in host memory
    (``"host"``, float16) or in a float16 memmap in a temporary directory (``"disk"``),
    removed with the returned source. Returns a tensor or an :class:`ArraySource`; with
    ``rows`` (a range of step 1), or for a :class:`RowShard` ``X``, ``fn`` runs over those
    rows only and a :class:`RowShard` of them is returned."""
    if isinstance(X, RowShard):
        return RowShard(cache_outputs(fn, X.local, batch_size, where), X.rows, len(X))
    if rows is not None:
        if isinstance(X, torch.Tensor):
            local = X[rows.start : rows.stop]
        else:
            local = X.subset(np.arange(rows.start, rows.stop))
        return RowShard(cache_outputs(fn, local, batch_size, where), rows, X.shape[0])
    device = X.device
    outputs = None
    start = 0
    n = X.shape[0]
    with torch.no_grad():
        for batch in iter_sequential(X, batch_size):
            out = fn(batch)
            if where == "device":
                outputs = [] if outputs is None else outputs
                # float32 whatever autocast computed in: read later inside or outside it
                outputs.append(out.float())
                continue
            if outputs is None:
                outputs = _host_buffer(where, (n, *out.shape[1:]), device)
            outputs[start : start + out.shape[0]] = _as_host_half(out, where)
            start += out.shape[0]
    if where == "device":
        return torch.cat(outputs) if outputs else fn(X[:0])
    if outputs is None:
        raise ValueError("Cannot cache the features of an empty input.")
    return ArraySource(outputs, device, float_on_device=True)


class RowShard(_Source):
    """The rows ``rows`` of a set of ``n``, held here and read by their indices in the
    whole set: what one rank keeps of a feature cache when the ranks of a process group
    share a fit out (each keeps the features of its share of the rows, and trains and
    scores on those alone).

    Parameters
    ----------
    local : torch.Tensor or ArraySource
        The rows held, in order: ``local[i]`` is row ``rows[i]`` of the whole set.
    rows : range
        Their indices in the whole set (step 1).
    n : int
        The size of the whole set: ``shape[0]``, as the engine counts its samples.

    Reading a row outside ``rows`` raises IndexError: a caller that does is reading
    another rank's share, which this process does not have.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.training._streaming import RowShard
    >>> shard = RowShard(torch.arange(10.0, 14.0), range(10, 14), n=20)
    >>> shard.shape, shard[torch.tensor([12, 10])].tolist()
    ((20,), [12.0, 10.0])
    """

    def __init__(self, local, rows: range, n: int) -> None:
        if len(local) != len(rows) or rows.step != 1 or rows.stop > n:
            raise ValueError(f"{len(local)} rows held for the rows {rows} of {n}.")
        self.local = local
        self.rows = rows
        self.shape = (n, *local.shape[1:])
        self.device = local.device
        self._dtype = local.dtype

    def _positions(self, idx):
        """Positions in ``local`` of the rows ``idx`` (a tensor on the device, or an
        array on the host for a source)."""
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        if idx.numel():
            # one read of both bounds: on CUDA each read waits for the device
            low, high = torch.stack(torch.aminmax(idx)).tolist()
            if low < self.rows.start or high >= self.rows.stop:
                raise IndexError(
                    f"Rows {low}..{high} asked of a shard that holds the rows "
                    f"{self.rows.start}..{self.rows.stop - 1} of {len(self)}."
                )
        positions = idx - self.rows.start
        if isinstance(self.local, torch.Tensor):
            return positions.to(self.local.device)
        return positions.cpu().numpy()

    def iter_batches(self, index_batches):
        if isinstance(self.local, torch.Tensor):
            return (self.local[self._positions(idx)] for idx in index_batches)
        return self.local.iter_batches(self._positions(idx) for idx in index_batches)

    def sequential(self, batch_size: int, rows: range | None = None):
        """Its rows in order (``rows``, default all it holds), batch by batch."""
        return super().sequential(batch_size, self.rows if rows is None else rows)


def _as_host_half(out: torch.Tensor, where: str):
    out = out.detach().to("cpu", torch.float16)
    return out.numpy() if where == "disk" else out


def _reserve(path: str) -> None:
    """Allocate the file's blocks now: a sparse file on a disk that fills up would kill the
    process with SIGBUS when a page is written, where this raises ENOSPC. File systems
    (and systems) that cannot reserve are left to the free-space check alone."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.path.getsize(path))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise


def _host_buffer(where: str, shape, device):
    if where == "host":
        buffer = torch.empty(shape, dtype=torch.float16)
        return buffer.pin_memory() if device.type == "cuda" else buffer
    directory = tempfile.mkdtemp(prefix="sklearn_greedy_cache_")
    path = os.path.join(directory, "features.npy")
    needed = 2 * int(np.prod(shape))
    try:
        free = shutil.disk_usage(directory).free
        if needed > free:
            raise OSError(errno.ENOSPC, "not enough free space")
        buffer = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        _reserve(path)
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        if exc.errno != errno.ENOSPC:
            raise
        where = tempfile.gettempdir()
        free = shutil.disk_usage(where).free
        raise OSError(
            errno.ENOSPC,
            f"prefix_cache='disk' needs {needed / 2**30:.2f} GiB for the kept features in "
            f"{where!r}, which has {free / 2**30:.2f} GiB free: free some space, point "
            "TMPDIR at a larger disk, or use prefix_cache='host' or None",
        ) from exc
    # the file lives as long as the array: removed when the cache is dropped
    weakref.finalize(buffer, shutil.rmtree, directory, ignore_errors=True)
    return buffer
