"""A lazy image folder: files listed once, one image decoded per item."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._image_folder import _check_size, _class_folders, _regular_files
from ._images import UnreadableImage, decode_image

# torchvision's list, as users of image folders know it; what else PIL registers includes
# formats it hands to external programs (EPS goes to Ghostscript)
IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)


class ImageFolderDataset(Dataset):
    """Images stored as ``root/<class>/<image>``, decoded one per item (a map-style dataset).

    The lazy counterpart of :func:`load_image_folder` for folders too large to decode at
    once: the files are listed when the dataset is built (no image is decoded), and each
    ``dataset[i]`` decodes one image into the same pixels that :func:`load_image_folder`
    gives for that file and the same ``size`` and ``grayscale``. Three layouts:

    - ``root/<class>/<image>`` (Caltech-101), with ``split=None``;
    - ``root/{train,test}/<class>/<image>``, the CIFAR-10 image folder that
      :func:`load_cifar10` reads, with ``split="train"`` or ``split="test"``;
    - ImageNet's ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (the
      validation images sorted into class folders), with ``split="train"`` or
      ``split="val"``.

    Classes are the sub-folders in sorted order unless ``classes`` gives the order; files
    are listed in sorted order. Only regular files (or links to them) whose name ends with
    one of ``extensions`` are listed: a ``.DS_Store`` or a text file in a class folder is
    not an item. Files directly in ``root`` (or in the split folder) are ignored.

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per class, or the split folders.
    split : str or None, default=None
        Name of the sub-folder of ``root`` that holds the class folders (``"train"``,
        ``"test"``, ``"val"``); None when ``root`` holds them.
    size : int, tuple of int (height, width) or None, default=None
        Size every image is resized to (bilinear interpolation), as
        :func:`load_image_folder` resizes. None keeps each image's own size: items of
        different sizes are then returned as they are, but an estimator needs one shape,
        so give ``size`` for folders of mixed sizes (Caltech-101, ImageNet).
    grayscale : bool, default=False
        Return one grey channel instead of three colour channels.
    classes : sequence of str or None, default=None
        Class names in label order, so that datasets built from different folders share
        labels (pass ``train.classes`` when building a test split, or
        :data:`CIFAR10_CLASSES` to get :func:`load_cifar10`'s labels from a folder that
        lacks some classes). A listed class may have no folder; a folder not listed is an
        error. None: the sub-folders in sorted order.
    extensions : tuple of str, default=(".bmp", ".gif", ".jpeg", ".jpg", ...)
        File name endings listed as images, compared without regard to case
        (``".JPEG"`` matches ``".jpeg"``); the default is torchvision's list: ``.bmp``,
        ``.gif``, ``.jpeg``, ``.jpg``, ``.pgm``, ``.png``, ``.ppm``, ``.tif``, ``.tiff``
        and ``.webp``. ``("",)`` lists every regular file, as :func:`load_image_folder`
        does.
    transform : callable or None, default=None
        Applied to each image, a uint8 tensor of shape (channels, height, width), as the
        ``transform`` of torchvision's datasets; it must be picklable for a
        :class:`~torch.utils.data.DataLoader` with worker processes.
    center_crop : int, tuple of int (height, width) or None, default=None
        After the resize to ``size`` (which it needs), keep the central box of this size:
        ImageNet's test images are resized to 256 and cropped to 224
        (``size=256, center_crop=224``), the counterpart of training on random resized
        crops (``augment="resized-crop"``, which :func:`imagenet_params` sets).

    Attributes
    ----------
    classes : list of str
        The class names; a label ``k`` is the class ``classes[k]``.
    samples : list of (str, int)
        The path and label of each item, in item order.
    targets : ndarray of shape (n_images,), int64
        The label of each item, known without decoding any image.
    image_shape : tuple of int (channels, height, width) or None
        The shape of every image when ``size`` is given, else None.

    Raises
    ------
    FileNotFoundError
        If ``root``, or the ``split`` folder in it, is not a directory.
    ValueError
        If there is no class folder, if a class folder lists no image (the message names
        it), if a folder is not in ``classes``, or if an argument is invalid.

    See Also
    --------
    load_image_folder : The eager loader, which decodes every image at once.
    SliceDataset : Makes a dataset indexable by scikit-learn's model selection tools.

    Notes
    -----
    An unreadable image (truncated, corrupt, not an image, a decompression bomb larger
    than ``PIL.Image.MAX_IMAGE_PIXELS``, a file deleted after listing) is only found when
    its item is read, and then raises a ValueError that names the file: unlike
    :func:`load_image_folder`, a lazy dataset cannot skip it without changing its length
    and the position of every later item.

    The dataset holds the file list and the labels, never decoded images, so it pickles
    quickly (to :class:`~torch.utils.data.DataLoader` workers started with ``spawn``, for
    instance). Paths are made absolute when the dataset is built, so a later change of the
    working directory does not break it.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from sklearn_greedy.datasets import ImageFolderDataset
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for name in ("cat", "dog"):
    ...         os.mkdir(os.path.join(root, name))
    ...         Image.new("L", (20, 30)).save(os.path.join(root, name, "a.png"))
    ...     dataset = ImageFolderDataset(root, size=(16, 16))
    ...     image, label = dataset[1]
    >>> len(dataset), dataset.classes, dataset.targets.tolist(), dataset.image_shape
    (2, ['cat', 'dog'], [0, 1], (3, 16, 16))
    >>> image.shape, image.dtype, label
    (torch.Size([3, 16, 16]), torch.uint8, 1)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str | None = None,
        size: int | tuple[int, int] | None = None,
        grayscale: bool = False,
        classes: Sequence[str] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        transform: Callable | None = None,
        center_crop: int | tuple[int, int] | None = None,
    ):
        self.root = root
        self.split = split
        self.size = size
        self.grayscale = grayscale
        self.extensions = extensions
        self.transform = transform
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or path-like, got {type(root).__name__}.")
        if not isinstance(grayscale, (bool, np.bool_)):
            raise TypeError(f"grayscale must be a bool, got {grayscale!r}.")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}.")
        self.center_crop = center_crop
        self._size = None if size is None else _check_size(size)
        self._crop = None if center_crop is None else _check_size(center_crop)
        if self._crop is not None and (
            self._size is None or any(c > s for c, s in zip(self._crop, self._size))
        ):
            raise ValueError(
                f"center_crop={center_crop!r} needs a size it fits in (the images are resized "
                f"first), got size={size!r}."
            )
        channels = 1 if grayscale else 3
        shape = self._crop if self._crop is not None else self._size
        self.image_shape = None if shape is None else (channels, *shape)
        suffixes = _check_extensions(extensions)
        order = _check_class_names(classes)
        folder = _split_folder(os.fspath(root), split)
        names = _class_folders(folder)
        if order is not None:
            unknown = sorted(set(names) - set(order))
            if unknown:
                raise ValueError(f"Class folders {unknown[:5]} in {folder!r} are not in classes.")
        self.classes = names if order is None else order
        self.samples = _list_samples(folder, names, self.classes, suffixes)
        self.targets = np.fromiter(
            (label for _, label in self.samples), np.int64, len(self.samples)
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index) -> tuple[object, int]:
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be integers, got {type(index).__name__}; "
                "take several items with SliceDataset or torch.utils.data.Subset."
            ) from None
        path, label = self.samples[index]
        try:
            array = decode_image(path, mode="L" if self.grayscale else "RGB", size=self._size)
        except UnreadableImage as exc:
            raise ValueError(
                f"Image {index} of the dataset, {path!r}, cannot be read ({exc}). A lazy dataset "
                "cannot skip it without changing its length: remove or replace the file and "
                "build the dataset again (load_image_folder skips such files)."
            ) from exc
        # the same channels-first layout as load_image_folder; a copy, because the array
        # PIL exposes may be read-only and torch refuses to share read-only memory
        array = array[None] if self.grayscale else array.transpose(2, 0, 1)
        if self._crop is not None:
            (h, w), (ch, cw) = self._size, self._crop
            top, left = (h - ch) // 2, (w - cw) // 2
            array = array[:, top : top + ch, left : left + cw]
        image = torch.from_numpy(np.array(array, copy=True, order="C"))
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        split = "" if self.split is None else f", split={self.split!r}"
        size = "" if self.size is None else f", size={self.size!r}"
        return (
            f"{type(self).__name__}(root={os.fspath(self.root)!r}{split}{size}: "
            f"{len(self)} images, {len(self.classes)} classes)"
        )


def _split_folder(root: str, split: str | None) -> str:
    if split is None:
        return root
    if not isinstance(split, str):
        raise TypeError(f"split must be a str or None, got {type(split).__name__}.")
    if split in ("", ".", "..") or os.path.basename(split) != split:
        raise ValueError(f"split must name a sub-folder of root (train, test, val), got {split!r}.")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root {root!r} is not a directory.")
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"split folder {folder!r} is not a directory (expected root/{split}/<class>/<image>)."
        )
    return folder


def _check_class_names(classes) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise TypeError("classes must be a sequence of class names (str) or None.")
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes holds a name more than once: {classes}.")
    return classes


def _check_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    if not (isinstance(extensions, (tuple, list)) and all(isinstance(e, str) for e in extensions)):
        raise TypeError(f"extensions must be a tuple of str, got {extensions!r}.")
    if not extensions:
        raise ValueError("extensions is empty: no file would be listed; ('',) lists every file.")
    return tuple(e.lower() for e in extensions)


def _list_samples(folder: str, names, classes, extensions) -> list[tuple[str, int]]:
    folder = os.path.abspath(folder)
    label_of = {name: label for label, name in enumerate(classes)}
    samples = []
    for name in names:
        class_folder = os.path.join(folder, name)
        files = [
            entry.path
            for entry in _regular_files(class_folder)
            if entry.name.lower().endswith(extensions)
        ]
        if not files:
            raise ValueError(
                f"Class folder {class_folder!r} holds no image file (names ending with "
                f"{', '.join(extensions)}); remove it or add images."
            )
        samples.extend((path, label_of[name]) for path in files)
    return samples
