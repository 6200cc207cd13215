"""What the greedy CNN reads: image arrays, ``np.memmap`` arrays and map-style data sets.

Plain functions of the estimator, as scikit-learn's ``validate_data(estimator, X)``: each
validates one kind of input against the estimator's parameters (and, once fitted, what it
was fitted on), or builds the data of a fit. Arrays go to the device whole (the fast
path); streams stay where they are and are read batch by batch
(:mod:`sklearn_greedy.training._streaming`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import column_or_1d

from .._validation import (
    as_device_tensor,
    channels_last_input,
    check_image_shape,
    check_min_samples,
    check_normalize,
    encode_validation_targets,
    looks_channels_last,
    split_validation,
    validate_images,
)
from ..training._engine import StageData
from ..training._runtime import derive_seed
from ..training._streaming import (
    ArraySource,
    DatasetSource,
    LoaderOptions,
    check_map_style,
    dataset_labels,
    first_image_shape,
    is_dataset,
    is_stream,
)
from ._network import channel_stats


def fit_input(estimator, X, y):
    """``(X, y, image_shape)`` of a fit: validated arrays, or a stream with its labels
    (resets what ``estimator`` learns of its input: ``n_features_in_``...)."""
    shape = check_image_shape(estimator.image_shape)
    if not is_stream(X):
        return validate_images(estimator, X, y, reset=True, image_shape=shape)
    X, image_shape = stream_images(estimator, X, shape, reset=True)
    return X, stream_labels(X, y), image_shape


def predict_input(estimator, X, image_shape=None):
    """``(X, image_shape)`` of images to predict on (or validation images, whose shape
    must be ``image_shape`` while a fit is running)."""
    if not is_stream(X):
        return validate_images(estimator, X, reset=False, image_shape=image_shape)
    shape = tuple(image_shape if image_shape is not None else estimator.image_shape_)
    return stream_images(estimator, X, shape, reset=False)


def labelled_input(estimator, X, y):
    """``(X, y, image_shape)`` for a fitted estimator: images like those of its fit,
    labels among ``classes_`` (a label it was not fitted on is refused)."""
    if is_stream(X):
        X, image_shape = predict_input(estimator, X)
        y = stream_labels(X, y)
    else:
        X, y, image_shape = validate_images(estimator, X, y, reset=False)
    y = np.asarray(y)
    unseen = np.setdiff1d(y, estimator.classes_)
    if unseen.size:
        raise ValueError(f"y has labels absent from classes_: {unseen[:5].tolist()}.")
    return X, y, image_shape


def stream_images(estimator, X, shape, *, reset: bool):
    """A data set, or a memmap viewed as (n, C, H, W) without reading it."""
    if reset:
        estimator.channels_last_input_ = False
    if is_dataset(X):
        check_map_style(X)
        found = first_image_shape(X)
        layout = getattr(estimator, "channels", "first")
        if layout == "last" or (layout == "auto" and looks_channels_last((0, *found))):
            raise ValueError(
                f"The data set's first image has shape {found}, which reads as "
                "channels-last (height, width, channels); the estimator reads a data "
                "set's items as (channels, height, width). Give the data set a "
                "transform that returns them so (for a tensor image, "
                "image.permute(2, 0, 1)), or pass channels='first' if they already are."
            )
    else:
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must hold numbers; got a memmap of dtype {X.dtype}.")
        if X.ndim == 3:
            X = X[:, None]  # (n, H, W): one channel, as for arrays
        elif X.ndim == 2:
            n_features = X.shape[1]
            image = shape if shape is not None else (n_features, 1, 1)
            if int(np.prod(image)) != n_features:
                raise ValueError(
                    f"X has {n_features} features, which do not form images of image_shape={image}."
                )
            X = X.reshape(X.shape[0], *image)
        elif X.ndim != 4:
            raise ValueError(f"X must be a 2-D, 3-D or 4-D memmap; got {X.ndim}-D.")
        elif channels_last_input(estimator, X.shape, reset=reset):
            X = X.transpose(0, 3, 1, 2)  # a view of the file: still read batch by batch
            if reset:
                estimator.channels_last_input_ = True
        found = tuple(int(s) for s in X.shape[1:])
    if shape is not None and tuple(shape) != found:
        fitted = "" if reset else f", but {type(estimator).__name__} was fitted on {tuple(shape)}"
        raise ValueError(
            f"X has images of shape {found}"
            + (fitted if not reset else f", but image_shape={tuple(shape)}")
            + "."
        )
    if reset:
        estimator.n_features_in_ = int(np.prod(found))
        estimator.__dict__.pop("feature_names_in_", None)
    elif int(np.prod(found)) != estimator.n_features_in_:
        raise ValueError(
            f"X has {int(np.prod(found))} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )
    return X, found


def stream_labels(X, y) -> np.ndarray:
    """The labels of a stream: ``y`` when given, else the data set's own."""
    if y is None:
        if not is_dataset(X):
            raise ValueError("y is required with an array X (only a data set has labels).")
        return column_or_1d(dataset_labels(X))
    if is_dataset(y):  # a SliceDataset of labels, for instance
        y = [y[i] for i in range(len(y))]
    y = column_or_1d(np.asarray(y))
    if y.shape[0] != len(X):
        raise ValueError(f"X has {len(X)} samples but y has {y.shape[0]}.")
    if is_dataset(X) and _has_labels(X):
        # skorch trains on the items' labels: a y that says otherwise is a mistake
        own = column_or_1d(dataset_labels(X))
        differ = np.flatnonzero(own.astype(str) != y.astype(str))
        if differ.size:
            i = int(differ[0])
            raise ValueError(
                f"y disagrees with the data set's own labels on {differ.size} of "
                f"{len(y)} items (item {i}: y={y[i]!r}, the item's label {own[i]!r}). "
                "Pass y=None to train on the data set's labels."
            )
    return y


def as_source(X, device: torch.device, options: LoaderOptions):
    """X on the device (arrays), or a source reading it batch by batch (streams)."""
    # views of a memmap (X[:, None], a reshape) are memmaps too: still read from the file
    if isinstance(X, np.memmap):
        return ArraySource(X, device, check_finite=X.dtype != np.uint8)
    if is_dataset(X):
        return DatasetSource(X, first_image_shape(X), device, options)
    return as_device_tensor(X, device)


def loader_options(estimator) -> LoaderOptions:
    """How ``estimator`` reads a data set: its workers, pinning and prefetching."""
    return LoaderOptions(
        estimator.num_workers, bool(estimator.pin_memory), estimator.prefetch_factor
    )


def prefix_cache_for(prefix_cache, X) -> str | None:
    """Where the frozen prefix's outputs are kept: on the device for arrays; streams
    recompute them unless asked (their features may not fit in memory)."""
    if prefix_cache == "auto":
        return None if is_stream(X) else "device"
    return prefix_cache


def stage_data(estimator, X, y_enc, weights, X_val, y_val, classes, image_shape, device, seed):
    """Training and validation data of a fit on the device (or streaming sources):
    ``X_val, y_val`` when given, else a split of the training data with
    ``early_stopping``."""
    options = loader_options(estimator)
    if X_val is not None or y_val is not None:
        if X_val is None or (y_val is None and not is_dataset(X_val)):
            raise ValueError("X_val and y_val must be given together.")
        try:
            X_val, _ = predict_input(estimator, X_val, image_shape=image_shape)
        except ValueError as exc:
            raise ValueError(f"X_val does not match X: {exc}") from exc
        if y_val is None:  # a data set of (image, label) pairs
            y_val = dataset_labels(X_val)
        y_val = encode_validation_targets(y_val, classes, n_samples=len(X_val))
        X, X_val = as_source(X, device, options), as_source(X_val, device, options)
    elif estimator.early_stopping:
        train, val, y_enc, y_val, weights = split_validation(
            np.arange(len(y_enc)), y_enc, weights, estimator.validation_fraction,
            derive_seed(seed, 0) % (2**31),
        )  # fmt: skip
        check_min_samples(train)
        if is_stream(X):
            source = as_source(X, device, options)
            X, X_val = source.subset(train), source.subset(val)
        else:
            # split on the host: the device never holds X twice
            X, X_val = as_source(X[train], device, options), as_source(X[val], device, options)
    else:
        X = as_source(X, device, options)
    tensors = [None if a is None else as_device_tensor(a, device) for a in (y_enc, y_val)]
    weights = None if weights is None else as_device_tensor(weights, device)
    return StageData(X, tensors[0], X_val, tensors[1], weights)


def input_stats(normalize, X, batch_size: int, *, sharded: bool = False):
    """Channel means and stds for the stem: from ``normalize``, or from every image of
    ``X`` (a tensor, or a stream read once, batch by batch: a stream trains the model its
    array would); ``sharded``: each rank of a data-parallel fit reads its share."""
    if not isinstance(normalize, str):
        mean, std = check_normalize(normalize, X.shape[1])
        return torch.tensor(mean), torch.tensor(std)
    return channel_stats(X, batch_size, sharded=sharded)


def _has_labels(dataset) -> bool:
    """Whether a data set carries labels: ``targets``, or (image, label) items."""
    if getattr(dataset, "targets", None) is not None:
        return True
    if len(dataset) == 0:
        return False
    item = dataset[0]
    return isinstance(item, (tuple, list)) and len(item) == 2
