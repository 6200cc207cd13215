"""Data set loaders; they read local files in standard formats and never download.

Every loader returns images as uint8 arrays and labels as int64 arrays. Files are treated
as untrusted: each loader's docstring says what it refuses (a ValueError that names the
file) and what it skips (one warning that names each skipped file).
"""

from ._cifar import CIFAR10_CLASSES, load_cifar10
from ._idx import load_idx, load_mnist
from ._image_folder import load_image_folder, per_class_split

__all__ = [
    "CIFAR10_CLASSES",
    "load_cifar10",
    "load_idx",
    "load_image_folder",
    "load_mnist",
    "per_class_split",
]
