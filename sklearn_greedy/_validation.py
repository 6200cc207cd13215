"""Input validation shared by the estimators.

Everything a user can pass wrong is checked here, before any tensor is built, so that
bad input fails with a ValueError or TypeError that names the problem instead of a
torch traceback from deep inside a layer.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data


def as_array_like(X):
    """Torch tensors become numpy arrays; anything else is passed on unchanged."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


def check_image_shape(image_shape) -> tuple[int, int, int] | None:
    """Validate the ``image_shape`` parameter: None or three positive ints (C, H, W)."""
    if image_shape is None:
        return None
    try:
        shape = tuple(image_shape)
    except TypeError:
        raise TypeError(
            f"image_shape must be None or a tuple (channels, height, width), got {image_shape!r}."
        ) from None
    if len(shape) != 3 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            "image_shape must be three positive integers (channels, height, width), "
            f"got {image_shape!r}."
        )
    return tuple(int(s) for s in shape)


def validate_images(estimator, X, y="no_validation", *, reset: bool, image_shape=None):
    """Validate image input and return X as an array (n, C, H, W), float32 or uint8.

    X may be 4-D ``(n, C, H, W)`` (arrays or tensors) or 2-D ``(n, C*H*W)`` with
    ``image_shape``. A 2-D X without ``image_shape`` is read as ``n_features`` channels
    of a 1x1 image, which makes the network a greedily trained MLP; this is what lets any
    tabular data set through.

    ``n_features_in_`` counts the flattened features ``C*H*W``; ``reset=False`` checks X
    against what ``fit`` saw (``image_shape`` is then ignored for the fitted
    ``image_shape_``). Returns ``(X, y, image_shape)`` when ``y`` is given (None
    included, which is refused as in scikit-learn), ``(X, image_shape)`` otherwise.
    """
    # at predict time the images must look like the ones seen in fit
    shape = check_image_shape(image_shape) if reset else tuple(estimator.image_shape_)
    X = as_array_like(X)
    fitting = not (isinstance(y, str) and y == "no_validation")
    if fitting:
        y = as_array_like(y)
    ndim = getattr(X, "ndim", None)
    if ndim is None and not isinstance(X, str):
        # lists and other sequences: let numpy tell us their dimensionality
        try:
            ndim = np.asarray(X, dtype=object).ndim
        except ValueError:
            ndim = None
    if ndim == 4:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must hold numbers; got an array of dtype {X.dtype}.")
        sample_shape = tuple(int(s) for s in X.shape[1:])
        if reset and shape is not None and sample_shape != shape:
            raise ValueError(f"X has images of shape {sample_shape}, but image_shape={shape}.")
        expected_shape, shape = shape, sample_shape
        X = X.reshape(X.shape[0], int(np.prod(sample_shape)))
    elif ndim is not None and ndim not in (1, 2):
        raise ValueError(
            f"X must be 2-D (n_samples, n_features) or 4-D (n_samples, channels, height, "
            f"width); got a {ndim}-D array."
        )
    # uint8 images stay uint8: 4x less memory on the device; the network's stem converts
    keep_uint8 = getattr(X, "dtype", None) == np.uint8
    kwargs = dict(dtype=None if keep_uint8 else [np.float32, np.float64], reset=reset)
    if fitting:
        X, y = validate_data(estimator, X, y, **kwargs)
    else:
        X = validate_data(estimator, X, **kwargs)
    if not keep_uint8:
        X = X.astype(np.float32, copy=False)
    n_features = X.shape[1]
    if shape is None:
        shape = (n_features, 1, 1)
    elif int(np.prod(shape)) != n_features:
        raise ValueError(
            f"X has {n_features} features, which do not form images of image_shape={shape} "
            f"({int(np.prod(shape))} values each)."
        )
    if not reset and ndim == 4 and shape != expected_shape:
        raise ValueError(
            f"X has images of shape {shape}, but {type(estimator).__name__} was "
            f"fitted on images of shape {expected_shape}."
        )
    X = X.reshape((X.shape[0], *shape))
    return (X, y, shape) if fitting else (X, shape)


def encode_classes(y) -> tuple[np.ndarray, np.ndarray]:
    """Check classification targets and return ``(classes, y_encoded)``.

    A single class is refused: there is nothing to learn to separate.
    """
    check_classification_targets(y)
    encoder = LabelEncoder()
    y_enc = encoder.fit_transform(y)
    if encoder.classes_.shape[0] < 2:
        raise ValueError(
            f"y has only one class ({encoder.classes_[0]!r}); a classifier needs at least 2 "
            "classes."
        )
    return encoder.classes_, y_enc.astype(np.int64)


def check_min_samples(X, minimum: int = 2) -> None:
    """Refuse data sets too small to train on (BatchNorm needs two samples)."""
    if X.shape[0] < minimum:
        raise ValueError(
            f"Found n_samples={X.shape[0]}; at least {minimum} samples are required to fit."
        )


def check_layer(layer, n_layers: int, *, name: str = "layer") -> int:
    """Resolve a layer index given by a user into a 1-based layer number.

    One convention for every public entry point that picks a layer (``transform_layer``,
    :class:`~sklearn_greedy.LayerFeatures`, :func:`~sklearn_greedy.separability_scores`,
    the displays): layers are numbered from 1 like the paper's ``x_j``; a negative
    index counts from the end (``-1`` is the last layer, as in Python); None means the
    last layer. Anything else is an error that names ``name``.

    >>> check_layer(None, 3), check_layer(2, 3), check_layer(-1, 3), check_layer(-3, 3)
    (3, 2, 3, 1)
    """
    if layer is None:
        return int(n_layers)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError(
            f"{name} must be an int (1-based, negative counts from the end) or None, "
            f"got {layer!r} of type {type(layer).__name__}."
        )
    layer = int(layer)
    if layer == 0 or not -n_layers <= layer <= n_layers:
        raise ValueError(
            f"{name}={layer} is out of range: layers are numbered 1..{n_layers} "
            f"(or -{n_layers}..-1 from the end); 0 is not a layer."
        )
    return layer if layer > 0 else n_layers + 1 + layer


def check_pool(pool) -> int | None:
    """The spatial averaging grid of a layer's features: None (no averaging) or an int >= 1.

    >>> check_pool(2), check_pool(None)
    (2, None)
    """
    if pool is None:
        return None
    if isinstance(pool, bool) or not isinstance(pool, numbers.Integral):
        raise TypeError(f"pool must be a positive int or None, got {pool!r}.")
    if pool < 1:
        raise ValueError(
            f"pool={pool} is invalid: use a positive grid size (2 in the paper) or None for "
            "the full resolution."
        )
    return int(pool)
