import functools
import io
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.utils import _safe_indexing, shuffle
from sklearn.utils.validation import _num_samples, check_consistent_length, indexable
from torch.utils.data import DataLoader, TensorDataset

from sklearn_greedy.datasets import (
    CIFAR10_CLASSES,
    ImageFolderDataset,
    SliceDataset,
    _image_dataset,
    load_cifar10,
    load_image_folder,
)


def _write(path, mode="RGB", size=(8, 8), seed=0, fmt=None, value=None):
    """One image of random pixels (or all ``value``) at ``path``; size is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=shape) if value is None else np.full(shape, value)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path, format=fmt)
    return path


@pytest.fixture
def caltech_like(tmp_path):
    """Class folders of mixed modes, sizes and formats, plus files that are not images."""
    root = tmp_path / "caltech"
    _write(root / "airplane" / "img0.jpg", "RGB", (31, 17), seed=1)
    _write(root / "airplane" / "img1.png", "L", (12, 40), seed=2)
    _write(root / "bonsai" / "img0.jpg", "L", (9, 9), seed=3)
    _write(root / "bonsai" / "img1.PNG", "RGB", (64, 48), seed=4)
    _write(root / "bonsai" / "img2.png", "RGB", (5, 7), seed=5)
    (root / "bonsai" / "notes.txt").write_text("not an image")
    (root / "README").write_text("not in a class folder")
    return root


def _stack(dataset):
    return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])


def _cifar_folder(root, classes=("cat", "dog", "truck"), per_class=2):
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                _write(root / split / name / f"{i:04d}.jpg", size=(32, 32), seed=10 * c + i)
    return root


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _scale(image, factor):
    return image.float() * factor


# ----------------------------------------------------------------- ImageFolderDataset
@pytest.mark.parametrize("size, grayscale", [((16, 24), False), (8, True)])
def test_items_equal_the_eager_loader(caltech_like, size, grayscale):
    with pytest.warns(UserWarning, match="notes.txt"):  # the eager loader tries it, skips it
        X, y, classes = load_image_folder(
            caltech_like, size=size, grayscale=grayscale, return_classes=True
        )
    dataset = ImageFolderDataset(caltech_like, size=size, grayscale=grayscale)
    assert len(dataset) == 5 and dataset.classes == classes.tolist() == ["airplane", "bonsai"]
    assert dataset.targets.dtype == np.int64
    np.testing.assert_array_equal(dataset.targets, y)
    assert dataset.image_shape == X.shape[1:]
    image, label = dataset[3]
    assert image.dtype == torch.uint8 and type(label) is int and label == 1
    np.testing.assert_array_equal(_stack(dataset), X)
    assert [label for _, label in dataset.samples] == y.tolist()
    assert all(os.path.isabs(path) for path, _ in dataset.samples)
    # negative indices count from the end, as in a list
    np.testing.assert_array_equal(dataset[-1][0].numpy(), X[-1])


def test_without_size_each_image_keeps_its_own_size(caltech_like):
    dataset = ImageFolderDataset(caltech_like)
    assert dataset.image_shape is None
    shapes = [tuple(dataset[i][0].shape) for i in range(len(dataset))]
    assert shapes == [(3, 17, 31), (3, 40, 12), (3, 9, 9), (3, 48, 64), (3, 7, 5)]
    png = np.asarray(Image.open(caltech_like / "bonsai" / "img2.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(dataset[4][0].numpy(), png)
    assert "5 images, 2 classes" in repr(dataset)


def test_listing_decodes_nothing(caltech_like, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded while listing")

    monkeypatch.setattr(_image_dataset, "decode_image", refuse)
    dataset = ImageFolderDataset(caltech_like, size=4)
    assert dataset.targets.tolist() == [0, 0, 1, 1, 1]
    # labels through a view of the labels are read from targets, not from the images
    assert np.asarray(SliceDataset(dataset, idx=1)).tolist() == [0, 0, 1, 1, 1]
    assert SliceDataset(dataset, idx=None)[[4, 0]].targets.tolist() == [1, 0]
    with pytest.raises(AssertionError, match="decoded"):
        dataset[0]


def test_cifar_split_layout_matches_load_cifar10(tmp_path):
    root = _cifar_folder(tmp_path / "cifar")
    X, y = load_cifar10(root, "test")
    # a folder with 3 of the 10 classes: labels in sorted folder order ...
    dataset = ImageFolderDataset(root, split="test")
    assert dataset.classes == ["cat", "dog", "truck"] and dataset.targets.tolist() == [
        0, 0, 1, 1, 2, 2,
    ]  # fmt: skip
    np.testing.assert_array_equal(_stack(dataset), X)
    # ... or CIFAR-10's labels when the class order is given
    official = ImageFolderDataset(root, split="test", classes=CIFAR10_CLASSES)
    np.testing.assert_array_equal(official.targets, y)
    assert y.tolist() == [3, 3, 5, 5, 9, 9]
    assert ImageFolderDataset(root, split="train", size=32).image_shape == (3, 32, 32)


def test_imagenet_layout_train_and_val(tmp_path):
    root = tmp_path / "imagenet"
    for split, n in (("train", 3), ("val", 1)):
        for c, wnid in enumerate(("n01440764", "n01443537")):
            for i in range(n):
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{c}{i}.JPEG"
                _write(root / split / wnid / name, size=(20 + i, 12), seed=c * 10 + i, fmt="JPEG")
    (root / "train" / "n01440764" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    train = ImageFolderDataset(root, split="train", size=(10, 10))
    val = ImageFolderDataset(root, split="val", size=(10, 10), classes=train.classes)
    assert len(train) == 6 and len(val) == 2  # .DS_Store is not listed
    assert train.classes == val.classes == ["n01440764", "n01443537"]
    assert val.targets.tolist() == [0, 1] and train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert tuple(val[1][0].shape) == (3, 10, 10)
    assert os.path.basename(val.samples[1][0]) == "ILSVRC2012_val_10.JPEG"


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda root: None, {}, FileNotFoundError, r"root '.*missing' is not a directory"),
        (lambda root: root.mkdir(), {}, ValueError, "no class sub-folders"),
        (lambda root: root.mkdir(), {"split": "val"}, FileNotFoundError, r"split folder '.*val'"),
        (
            lambda root: (root / "a").mkdir(parents=True),
            {},
            ValueError,
            r"Class folder '.*/a' holds no image",
        ),
        (
            lambda root: (root / "a").mkdir(parents=True) or (root / "a" / "x.txt").write_text(""),
            {},
            ValueError,
            r"Class folder '.*/a' holds no image",
        ),
        (
            lambda root: _write(root / "a" / "0.png") and _write(root / "b" / "0.png"),
            {"classes": ["b"]},
            ValueError,
            r"Class folders \['a'\] .* not in classes",
        ),
        (lambda root: None, {"split": "../x"}, ValueError, "split must name a sub-folder"),
        (lambda root: None, {"size": (0, 4)}, ValueError, "size"),
        (lambda root: None, {"transform": "flip"}, TypeError, "transform must be callable"),
        (lambda root: None, {"extensions": ()}, ValueError, "extensions is empty"),
        (lambda root: None, {"classes": ["a", "a"]}, ValueError, "more than once"),
        (lambda root: None, {"classes": "ab"}, TypeError, "classes must be a sequence"),
    ],
)
def test_missing_and_empty_folders_and_bad_arguments(tmp_path, make, kwargs, error, message):
    root = tmp_path / "missing"
    make(root)
    with pytest.raises(error, match=message):
        ImageFolderDataset(root, **kwargs)


@pytest.mark.parametrize("damage", ["truncated", "not an image", "deleted after listing"])
def test_unreadable_image_raises_naming_the_file(tmp_path, damage):
    _write(tmp_path / "a" / "0.png")
    bad = tmp_path / "a" / "1_bad.jpg"
    if damage == "truncated":
        _truncated_jpeg(bad)
    else:
        bad.write_text("not an image")
    _write(tmp_path / "b" / "0.png")
    dataset = ImageFolderDataset(tmp_path)
    if damage == "deleted after listing":
        bad.unlink()
    assert len(dataset) == 3
    with pytest.raises(ValueError, match=r"Image 1 of the dataset, '.*1_bad\.jpg', cannot be read"):
        dataset[1]
    assert dataset[2][1] == 1 and dataset[0][0].shape == (3, 8, 8)


def test_every_file_with_empty_extension_and_bad_index(tmp_path):
    _write(tmp_path / "a" / "no_extension", fmt="PNG")
    assert len(ImageFolderDataset(tmp_path, extensions=("",))) == 1
    with pytest.raises(ValueError, match="holds no image"):
        ImageFolderDataset(tmp_path)  # the default extensions do not list it
    dataset = ImageFolderDataset(tmp_path, extensions=("",))
    with pytest.raises(IndexError):
        dataset[1]
    with pytest.raises(TypeError, match="SliceDataset or torch.utils.data.Subset"):
        dataset[0:1]


def test_transform_gets_the_uint8_tensor(caltech_like):
    seen = []

    def transform(image):
        seen.append(image.dtype)
        return image.float() / 255

    dataset = ImageFolderDataset(caltech_like, size=4, transform=transform)
    image, label = dataset[2]
    plain = ImageFolderDataset(caltech_like, size=4)[2][0]
    assert seen == [torch.uint8] and image.dtype == torch.float32 and label == 1
    torch.testing.assert_close(image, plain.float() / 255)


def test_pickle_round_trip_holds_no_pixels(caltech_like):
    dataset = ImageFolderDataset(
        caltech_like, size=(6, 5), transform=functools.partial(_scale, factor=2.0)
    )
    expected = [dataset[i] for i in range(len(dataset))]
    data = pickle.dumps(dataset)
    # the file list and labels only: five decoded images alone would be 450 floats
    assert len(data) < 2000
    copy = pickle.loads(data)
    assert copy.classes == dataset.classes and copy.samples == dataset.samples
    for (image, label), (image2, label2) in zip(expected, [copy[i] for i in range(len(copy))]):
        torch.testing.assert_close(image, image2)
        assert label == label2


def test_data_loader_batches(caltech_like):
    dataset = ImageFolderDataset(caltech_like, size=(8, 8))
    images, labels = next(iter(DataLoader(dataset, batch_size=4, num_workers=0)))
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == dataset.targets[:4].tolist()
    np.testing.assert_array_equal(images.numpy(), _stack(dataset)[:4])


@pytest.mark.timeout(60)
def test_data_loader_with_worker_processes(caltech_like):
    dataset = ImageFolderDataset(caltech_like, size=(8, 8))
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    images = torch.cat([images for images, _ in batches]).numpy()
    labels = torch.cat([labels for _, labels in batches]).tolist()
    assert labels == dataset.targets.tolist()
    np.testing.assert_array_equal(images, _stack(dataset))


# ----------------------------------------------------------------------- SliceDataset
@pytest.fixture
def tensors():
    images = torch.arange(10 * 4, dtype=torch.uint8).reshape(10, 1, 2, 2)
    labels = torch.tensor([0, 1] * 5)
    return TensorDataset(images, labels)


def test_slice_dataset_indexing(tensors):
    view = SliceDataset(tensors)
    assert len(view) == 10 and view.shape == (10,) and view.ndim == 1
    assert torch.equal(view[3], tensors[3][0]) and torch.equal(view[-1], tensors[9][0])
    assert SliceDataset(tensors, idx=1)[3].item() == 1
    whole = SliceDataset(tensors, idx=None)[2]
    assert isinstance(whole, tuple) and torch.equal(whole[0], tensors[2][0])
    cases = {
        "slice": (slice(2, 8, 2), [2, 4, 6]),
        "int array": (np.array([5, -1, 0]), [5, 9, 0]),
        "list": ([7, 1], [7, 1]),
        "boolean mask": (np.arange(10) % 4 == 0, [0, 4, 8]),
        "empty list": ([], []),
    }
    for name, (key, expected) in cases.items():
        sub = view[key]
        assert isinstance(sub, SliceDataset) and sub.dataset is tensors, name
        assert sub.indices.tolist() == expected and sub.indices.dtype == np.int64, name
    # a view of a view composes the indices; so does wrapping a view explicitly
    assert view[1:][::3][[1, 2]].indices.tolist() == [4, 7]
    nested = SliceDataset(SliceDataset(tensors, idx=None, indices=[9, 8, 7, 6]), idx=0)
    assert torch.equal(nested[[1, 3]][1], tensors[6][0])
    with pytest.raises(IndexError, match="out of range"):
        view[10]
    with pytest.raises(IndexError, match="out of range"):
        view[np.array([0, 10])]
    with pytest.raises(IndexError, match="boolean mask of length 3"):
        view[np.array([True, False, True])]
    with pytest.raises(IndexError, match="1-D"):
        view[np.zeros((2, 2), dtype=int)]
    with pytest.raises(IndexError, match="float"):
        view[np.array([0.5])]
    with pytest.raises(IndexError, match="only 2 elements|has 2 elements"):
        SliceDataset(tensors, idx=2)[0]
    with pytest.raises(IndexError, match="out of range"):
        SliceDataset(tensors, indices=[10])
    with pytest.raises(TypeError, match="idx must be an int"):
        SliceDataset(tensors, idx=True)


def test_safe_indexing_keys_sklearn_uses(tensors):
    view = SliceDataset(tensors)
    # _safe_indexing sees a `shape`, so it indexes as an array: view[key, ...]
    assert _num_samples(view) == 10
    check_consistent_length(view, np.zeros(10))
    assert indexable(view)[0] is view
    for key, expected in [
        (np.array([3, 1]), [3, 1]),
        ([3, 1], [3, 1]),
        (slice(7, None), [7, 8, 9]),
        (np.arange(10) >= 8, [8, 9]),
    ]:
        sub = _safe_indexing(view, key)
        assert isinstance(sub, SliceDataset) and sub.indices.tolist() == expected
    assert torch.equal(_safe_indexing(view, 4), tensors[4][0])
    assert torch.equal(view[4, ...], tensors[4][0])
    shuffled = shuffle(view, random_state=0)
    assert sorted(shuffled.indices.tolist()) == list(range(10))
    assert shuffled.indices.tolist() != list(range(10))


def test_labels_through_idx_1_equal_the_originals(tensors, caltech_like):
    labels = SliceDataset(tensors, idx=1)
    assert [int(label) for label in labels] == tensors.tensors[1].tolist()
    np.testing.assert_array_equal(np.asarray(labels), tensors.tensors[1].numpy())
    dataset = ImageFolderDataset(caltech_like, size=4)
    labels = SliceDataset(dataset, idx=1)
    read = [dataset[i][1] for i in range(len(dataset))]
    assert [labels[i] for i in range(len(labels))] == read == dataset.targets.tolist()
    assert all(type(label) is int for label in labels)
    np.testing.assert_array_equal(np.asarray(labels[::-1]), dataset.targets[::-1])


def test_targets_and_array_forms(tensors, caltech_like):
    dataset = ImageFolderDataset(caltech_like, size=4)
    whole = SliceDataset(dataset, idx=None, indices=[4, 1, 3])
    assert whole.targets.tolist() == [1, 0, 1]
    assert whole[np.array([True, False, True])].targets.tolist() == [1, 1]
    assert not hasattr(SliceDataset(dataset), "targets")  # idx=0: the items are images
    assert not hasattr(SliceDataset(tensors, idx=None), "targets")  # no targets to read
    images = np.asarray(SliceDataset(dataset)[[0, 2]])
    assert images.shape == (2, 3, 4, 4) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, _stack(dataset)[[0, 2]])
    with pytest.raises(TypeError, match="idx=None"):
        np.asarray(whole)
    with pytest.raises(ValueError, match="without reading"):
        np.asarray(SliceDataset(tensors), copy=False)
    assert np.asarray(SliceDataset(tensors)[[]]).shape == (0,)
    with pytest.raises(ValueError, match="different shapes"):
        np.asarray(SliceDataset(ImageFolderDataset(caltech_like)))


def test_image_view_is_a_dataset_of_images(caltech_like):
    dataset = ImageFolderDataset(caltech_like, size=(8, 8))
    view = SliceDataset(dataset)[[4, 0, 2]]
    batch = next(iter(DataLoader(view, batch_size=3)))
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(batch.numpy(), _stack(dataset)[[4, 0, 2]])
    copy = pickle.loads(pickle.dumps(view))
    assert copy.indices.tolist() == [4, 0, 2] and torch.equal(copy[0], view[0])


def test_train_test_split_and_kfold(caltech_like):
    dataset = ImageFolderDataset(caltech_like, size=4)
    X, y = SliceDataset(dataset), dataset.targets
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=2, random_state=0)
    assert isinstance(X_train, SliceDataset) and len(X_train) == 3 and len(X_test) == 2
    assert sorted(X_train.indices.tolist() + X_test.indices.tolist()) == list(range(5))
    # each image still goes with its label
    for view, labels in ((X_train, y_train), (X_test, y_test)):
        assert [dataset[i][1] for i in view.indices] == labels.tolist()
    seen = []
    for train, test in KFold(n_splits=5).split(X):
        fold = _safe_indexing(X, test)
        assert isinstance(fold, SliceDataset) and len(_safe_indexing(X, train)) == 4
        seen += fold.indices.tolist()
    assert seen == list(range(5))


class _NearestCentroid(ClassifierMixin, BaseEstimator):
    """Nearest class mean of flattened images, read from a SliceDataset."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y):
        assert isinstance(X, SliceDataset)
        features, y = self._features(X), np.asarray(y)
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([features[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        distances = ((self._features(X)[:, None] - self.centroids_[None]) ** 2).sum(axis=-1)
        return self.classes_[distances.argmin(axis=1)]

    def _features(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1) * self.scale


def test_cross_validation_and_grid_search_on_a_lazy_dataset(tmp_path):
    # dark and bright images: a nearest centroid tells them apart
    for i in range(6):
        _write(tmp_path / "dark" / f"{i}.png", size=(4, 4), value=10 + i)
        _write(tmp_path / "bright" / f"{i}.png", size=(4, 4), value=240 - i)
    dataset = ImageFolderDataset(tmp_path)
    X, y = SliceDataset(dataset), SliceDataset(dataset, idx=1)
    scores = cross_val_score(_NearestCentroid(), X, y, cv=3)
    assert scores.tolist() == [1.0, 1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fit fails quietly
        search = GridSearchCV(_NearestCentroid(), {"scale": [0.5, 2.0]}, cv=3).fit(X, y)
    assert search.best_score_ == 1.0 and len(search.cv_results_["params"]) == 2
    assert search.predict(X[[0, 11]]).tolist() == [0, 1]  # bright is class 0 (sorted)


def test_center_crop_keeps_the_middle_of_the_resized_image(tmp_path):
    from PIL import Image

    from sklearn_greedy.datasets import ImageFolderDataset

    (tmp_path / "a").mkdir()
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(pixels).save(tmp_path / "a" / "x.png")
    dataset = ImageFolderDataset(tmp_path, size=(8, 8), center_crop=4, grayscale=True)
    image, _ = dataset[0]
    assert dataset.image_shape == (1, 4, 4)
    np.testing.assert_array_equal(image[0].numpy(), pixels[2:6, 2:6])
    with pytest.raises(ValueError, match="center_crop=10 needs a size it fits in"):
        ImageFolderDataset(tmp_path, size=(8, 8), center_crop=10)
    with pytest.raises(ValueError, match="center_crop=4 needs a size"):
        ImageFolderDataset(tmp_path, center_crop=4)
