"""Data set loaders; they read local files in standard formats and never download.

Every loader returns images as uint8 arrays and labels as int64 arrays. The lazy
:class:`ImageFolderDataset` decodes one image per item instead, as a uint8 tensor with an
int label (its ``targets`` are int64), and :class:`SliceDataset` lets scikit-learn's
model selection tools split such a dataset without reading it. Files are treated as
untrusted: each loader's docstring says what it refuses (a ValueError that names the
file) and what it skips (one warning that names each skipped file); the lazy dataset
cannot skip an unreadable image, so reading its item raises a ValueError that names it.
"""

from ._cifar import CIFAR10_CLASSES, load_cifar10
from ._idx import load_idx, load_mnist
from ._image_dataset import ImageFolderDataset
from ._image_folder import load_image_folder, per_class_split
from ._slice_dataset import SliceDataset

__all__ = [
    "CIFAR10_CLASSES",
    "ImageFolderDataset",
    "SliceDataset",
    "load_cifar10",
    "load_idx",
    "load_image_folder",
    "load_mnist",
    "per_class_split",
]
