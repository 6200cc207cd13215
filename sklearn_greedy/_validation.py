"""Input validation shared by the estimators.

Everything a user can pass wrong is checked here, before any tensor is built, so that
bad input fails with a ValueError or TypeError that names the problem instead of a
torch traceback from deep inside a layer.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval
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


CHANNEL_LAYOUTS = ("auto", "first", "last")


def looks_channels_last(shape) -> bool:
    """Whether a 4-D batch shape ``(n, a, b, c)`` reads as ``(n, H, W, C)``: a last axis
    of 1, 3 or 4 (grey, RGB, RGBA) after two image axes larger than 4, as PIL, OpenCV,
    TensorFlow data sets and most image folders give."""
    return len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] > 4 and shape[2] > 4


def channels_last_input(estimator, shape, *, reset: bool) -> bool:
    """Whether 4-D input of batch ``shape`` is channels-last and must be transposed, by
    the estimator's ``channels`` (``"auto"``: detected, with a warning at fit; at predict,
    the layout fit saw)."""
    layout = getattr(estimator, "channels", "first")
    if layout == "first" or len(shape) != 4:
        return False
    if layout == "last":
        return True
    if not looks_channels_last(shape):
        return False
    if not reset:  # predict: channels-last when that is what fit read
        return bool(getattr(estimator, "channels_last_input_", False))
    warnings.warn(
        f"X has images of shape {tuple(shape[1:])}, read as channels-last (height, width, "
        f"channels) and transposed to {(shape[3], shape[1], shape[2])}. Pass "
        "channels='last' to say so, or channels='first' if they are (channels, height, "
        "width).",
        UserWarning,
        stacklevel=5,
    )
    return True


def warn_if_flat_images(n_features: int) -> None:
    """Warn when 2-D X without ``image_shape`` has as many features as square images
    (8x8 and larger, grey or colour): each row is then read as ``n_features`` channels
    of one pixel, which trains a quietly worse model if the rows are images."""
    for channels in (1, 3):
        side = int(round((n_features / channels) ** 0.5))
        if side >= 8 and channels * side * side == n_features:
            warnings.warn(
                f"X is 2-D with {n_features} features and no image_shape: each row is read "
                f"as {n_features} channels of a 1x1 image (a greedily trained MLP). If the "
                f"rows are {side}x{side} images, pass image_shape=({channels}, {side}, "
                f"{side}); image_shape=({n_features}, 1, 1) keeps this reading without "
                "this warning.",
                UserWarning,
                stacklevel=5,
            )
            return


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
    # at predict time the images must look like the ones seen in fit (``image_shape``
    # stands in for ``image_shape_`` while fit is still running, for validation data)
    if reset:
        shape = check_image_shape(image_shape)
        estimator.channels_last_input_ = False
    else:
        shape = tuple(image_shape if image_shape is not None else estimator.image_shape_)
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
    if ndim == 3:
        # (n, H, W): one-channel images, as the MNIST loaders return them
        X = np.asarray(X)[:, None]
        ndim = 4
    if ndim == 4:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must hold numbers; got an array of dtype {X.dtype}.")
        last = channels_last_input(estimator, X.shape, reset=reset)
        if reset:
            estimator.channels_last_input_ = last
        if last:
            X = np.ascontiguousarray(X.transpose(0, 3, 1, 2))
        sample_shape = tuple(int(s) for s in X.shape[1:])
        if reset and shape is not None and sample_shape != shape:
            raise ValueError(f"X has images of shape {sample_shape}, but image_shape={shape}.")
        expected_shape, shape = shape, sample_shape
        X = X.reshape(X.shape[0], int(np.prod(sample_shape)))
    elif ndim is not None and ndim not in (1, 2):
        raise ValueError(
            f"X must be 2-D (n_samples, n_features), 3-D (n_samples, height, width) or 4-D "
            f"(n_samples, channels, height, width); got a {ndim}-D array."
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
        # validate what the network sees: a float64 value beyond float32's range is inf
        if not np.isfinite(X).all():
            raise ValueError(
                "X has values beyond the float32 range (|x| > 3.4e38) that the network "
                "computes in; rescale the input."
            )
    n_features = X.shape[1]
    if shape is None:
        if reset and ndim == 2:
            warn_if_flat_images(n_features)
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


def partial_classes(previous: dict | None, classes, y) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, y_encoded)`` of a ``partial_fit`` call: the fitted classes after the
    first call; at the first, ``classes`` when given (``y`` may hold only some), else
    ``y``'s."""
    if previous is None and classes is None:
        return encode_classes(y)
    known = previous["classes_"] if previous is not None else np.unique(np.asarray(classes))
    if previous is not None and classes is not None:
        if not np.array_equal(np.unique(np.asarray(classes)), known):
            raise ValueError(
                f"classes={list(classes)} differs from the classes of the first partial_fit "
                f"({known.tolist()})."
            )
    y = np.asarray(y)
    check_classification_targets(y)
    unseen = np.setdiff1d(y, known)
    if unseen.size:
        raise ValueError(f"y has labels absent from classes: {unseen[:5].tolist()}.")
    return known, np.searchsorted(known, y).astype(np.int64)


def check_min_samples(X, minimum: int = 2) -> None:
    """Refuse data sets too small to train on (BatchNorm needs two samples)."""
    n = len(X)
    if n < minimum:
        raise ValueError(f"Found n_samples={n}; at least {minimum} samples are required to fit.")


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


def check_normalize(normalize, n_channels: int) -> tuple[list[float], list[float]]:
    """The ``normalize`` parameter's fixed (mean, std): one value or one per channel each,
    finite, std positive."""
    try:
        mean, std = normalize
        mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n_channels,))
        std = np.broadcast_to(np.asarray(std, dtype=np.float64), (n_channels,))
    except (TypeError, ValueError):
        raise ValueError(
            f"normalize must be 'data' or a pair (mean, std) of one value or {n_channels} "
            f"values each (one per channel), got {normalize!r}."
        ) from None
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"normalize needs finite means and positive stds, got {normalize!r}.")
    return mean.astype(np.float32).tolist(), std.astype(np.float32).tolist()


def check_training_weights(sample_weight, class_weight, X, y_enc, classes):
    """Per-sample loss weights from ``sample_weight`` and ``class_weight`` (float32), or
    None when both are None."""
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.validation import _check_sample_weight

    if sample_weight is None and class_weight is None:
        return None
    weights = _check_sample_weight(
        as_array_like(sample_weight), X, dtype=np.float64, ensure_non_negative=True
    )
    if class_weight is not None:
        if isinstance(class_weight, dict):
            unknown = set(class_weight) - set(classes.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight names classes {sorted(unknown, key=str)} absent from y."
                )
        weights = weights * compute_sample_weight(class_weight, classes[y_enc])
    if not weights.sum() > 0:
        raise ValueError("sample_weight sums to zero: no sample would be trained on.")
    return weights.astype(np.float32)


def validate_validation_set(estimator, X_val, y_val, classes, image_shape):
    """``fit``'s ``X_val, y_val``: given together, images like X's, labels among ``classes``.

    Returns ``X_val`` as validated images and ``y_val`` as class codes.
    """
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val must be given together.")
    try:
        X_val, _ = validate_images(estimator, X_val, reset=False, image_shape=image_shape)
    except ValueError as exc:
        raise ValueError(f"X_val does not match X: {exc}") from exc
    return X_val, encode_validation_targets(y_val, classes, n_samples=X_val.shape[0])


def as_device_tensor(array, device) -> torch.Tensor:
    """A (contiguous) numpy array as a tensor on ``device``, sharing a CPU array's memory
    (a read-only one too: the estimators never write to their input)."""
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.from_numpy(array).to(device)


def encode_validation_targets(y_val, classes, *, n_samples: int) -> np.ndarray:
    """``y_val`` as codes of the training ``classes``; unseen labels are refused."""
    y_val = np.asarray(as_array_like(y_val))
    if y_val.ndim != 1 or y_val.shape[0] != n_samples:
        raise ValueError(
            f"y_val must be 1-D with one label per row of X_val ({n_samples}), "
            f"got shape {y_val.shape}."
        )
    unseen = np.setdiff1d(y_val, classes)
    if unseen.size:
        raise ValueError(f"y_val has labels absent from y: {unseen[:5].tolist()}.")
    return np.searchsorted(classes, y_val).astype(np.int64)


def split_validation(X, y_enc, weights, fraction: float, seed: int):
    """Hold out ``fraction`` of the data for early stopping, stratified when every class
    can be split (two samples or more each, room for every class on both sides).

    Returns ``X_train, X_val, y_train, y_val, weights_train``.
    """
    from sklearn.model_selection import train_test_split

    n = X.shape[0]
    n_val = int(np.ceil(fraction * n))
    n_classes = int(y_enc.max()) + 1 if n else 0
    if n_val < 1 or n - n_val < 2:
        raise ValueError(
            f"early_stopping with validation_fraction={fraction} leaves {n_val} validation "
            f"and {n - n_val} training samples out of {n}; pass X_val and y_val to fit, "
            "raise validation_fraction, or set early_stopping=False."
        )
    counts = np.bincount(y_enc, minlength=n_classes)
    stratify = y_enc
    if counts.min() < 2 or n_val < n_classes or n - n_val < n_classes:
        warnings.warn(
            f"early_stopping: the validation split of {n_val} samples cannot hold every one "
            f"of the {n_classes} classes (smallest class: {counts.min()} samples); it is "
            "drawn unstratified. Pass X_val and y_val to fit to choose it.",
            UserWarning,
            stacklevel=4,
        )
        stratify = None
    arrays = [X, y_enc] + ([] if weights is None else [weights])
    parts = train_test_split(*arrays, test_size=n_val, stratify=stratify, random_state=seed)
    X_tr, X_val, y_tr, y_val = parts[:4]
    return X_tr, X_val, y_tr, y_val, (parts[4] if weights is not None else None)


def check_compile(compile) -> dict | None:
    """``torch.compile``'s keyword arguments for a ``compile`` parameter (False: None, no
    compiling; True: torch's defaults; a dict: its items), refusing names torch.compile
    does not take here rather than at the first training step."""
    if compile is False:
        return None
    options = {} if compile is True else dict(compile)
    accepted = set(inspect.signature(torch.compile).parameters) - {"model"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"compile={compile!r} names {unknown}, which torch.compile does not take; "
            f"its options are {sorted(accepted)}."
        )
    return options


def check_downsample_at(downsample_at, n_layers: int) -> set[int]:
    """The ``downsample_at`` parameter as a set of 0-based layer indices below ``n_layers``.

    "auto" downsamples at the second layer when there is one.

    >>> sorted(check_downsample_at((1, 3), 4)), check_downsample_at("auto", 1)
    ([1, 3], set())
    """
    if isinstance(downsample_at, str):  # "auto", the only string the constraints admit
        return {1} if n_layers > 1 else set()
    try:
        indices = [int(j) for j in downsample_at]
        valid = all(float(j) == int(j) >= 0 for j in downsample_at)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "downsample_at must be a sequence of non-negative integer layer indices, "
            f"got {downsample_at!r}."
        )
    beyond = sorted(j for j in indices if j >= n_layers)
    if beyond:
        raise ValueError(
            f"downsample_at={tuple(downsample_at)!r} names layer indices {beyond} but the "
            f"network has n_layers={n_layers} (indices 0..{n_layers - 1})."
        )
    return set(indices)


class IntInterval(Interval):
    """An interval of ints that refuses bools.

    scikit-learn's ``Interval(Integral, ...)`` admits ``True`` as 1, so a flag passed
    where a count belongs (``n_per_class=True``) would run as a count of one.

    >>> IntInterval(1, None, closed="left").is_satisfied_by(True)
    False
    >>> str(IntInterval(1, None, closed="left"))
    'an int in the range [1, inf)'
    """

    def __init__(self, left, right, *, closed):
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


POSITIVE_INT = IntInterval(1, None, closed="left")
