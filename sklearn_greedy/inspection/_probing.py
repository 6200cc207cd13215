"""Probing the representations of greedily trained networks (Belilovsky et al., Sec. 4.2).

- :func:`layer_features`: the representation after any layer of a fitted network;
- :class:`LayerFeatures`: the same as a scikit-learn transformer, so that a fitted network
  (wrapped in :class:`sklearn.frozen.FrozenEstimator`) feeds a Pipeline and a grid search
  over the layer never refits the network;
- :func:`separability_scores`: linear and CNN-p separability of each layer (Fig. 3).

Layers follow the package's one convention everywhere: numbered from 1 like the paper's
``x_j``, a negative index counts from the end (-1 is the last layer), None is the last.

Only public methods and fitted ``*_`` attributes of the probed estimators are used:
``layer_outputs``/``layer_output_shape`` of a CNN, ``transform`` with ``transform_blocks``
of an implicit model.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._validation import POSITIVE_INT, IntInterval, check_layer, check_pool, encode_classes
from ..cnn._modules import AuxiliaryClassifier, layer_feature_names
from ..training._engine import StageData, TrainingConfig, batched_apply, train_stage
from ..training._runtime import (
    base_seed,
    derive_seed,
    inference_device,
    make_generator,
    torch_seeded,
)

_EVAL_BATCH_SIZE = 1024
PROBES = ("linear", "cnn1", "cnn2")


def _as_tensors(arrays: dict) -> dict:
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def _unwrap(estimator):
    """The estimator inside a :class:`~sklearn.frozen.FrozenEstimator` (or itself)."""
    while isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    return estimator


def _is_cnn(estimator) -> bool:
    """Whether the estimator is a layerwise CNN: it exposes its layers' outputs."""
    return callable(getattr(estimator, "layer_outputs", None)) and callable(
        getattr(estimator, "layer_output_shape", None)
    )


def _is_implicit(estimator) -> bool:
    return hasattr(estimator, "block_sizes_") and "transform_blocks" in estimator.get_params()


def n_probe_layers(estimator) -> int:
    """Number of layers (CNN) or blocks (implicit model) a fitted estimator can be probed at."""
    estimator = _unwrap(estimator)
    check_is_fitted(estimator)
    if _is_cnn(estimator):
        return int(estimator.n_layers_fitted_)
    if _is_implicit(estimator):
        return int(estimator.n_blocks_fitted_)
    raise TypeError(
        f"{type(estimator).__name__} is not supported: probing needs a fitted "
        "GreedyLayerwiseCNNClassifier or a sequential implicit model (transform_blocks)."
    )


@validate_params(
    {"estimator": [HasMethods(["fit"])], "X": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def layer_features(estimator, X, layer: int | None = None, pool: int | None = 2) -> np.ndarray:
    """The representation of ``X`` after layer ``layer`` of a fitted network.

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` or sequential
        implicit model, optionally wrapped in :class:`sklearn.frozen.FrozenEstimator`.
    X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        Input, validated as the estimator validates it at predict time.
    layer : int or None, default=None
        The layer, in the package's layer convention: 1-based like the paper's ``x_j``,
        negative counts from the end (-1 is the last), None for the last. For an implicit
        model, blocks play the layers: the states of blocks 1..``layer`` are returned.
    pool : int or None, default=2
        Average each channel to a ``pool`` x ``pool`` grid (2 in the paper's probes);
        None keeps the full spatial resolution. Ignored for implicit models, but
        checked all the same.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features_out), float32
        Channel-major flattened features (channel, row, column).

    Raises
    ------
    TypeError
        If the estimator cannot be probed, or ``layer`` or ``pool`` is not an int (or
        None).
    ValueError
        If ``layer`` is 0 or out of range, or ``pool`` < 1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, layer_features
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.rand(40, 1, 8, 8), np.arange(40) % 2
    >>> cnn = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=1,
    ...                                    random_state=0).fit(X, y)
    >>> layer_features(cnn, X, layer=1).shape, layer_features(cnn, X, -1, pool=None).shape
    ((40, 16), (40, 128))
    """
    estimator = _unwrap(estimator)
    layer = check_layer(layer, n_probe_layers(estimator), name="layer")
    pool = check_pool(pool)
    if _is_cnn(estimator):
        features = estimator.layer_outputs(X, layer, pool=pool)[layer]
        return features.reshape(features.shape[0], -1)
    # a shallow copy shares the fitted blocks; only its transform_blocks differs, so the
    # user's estimator is never modified
    view = copy.copy(estimator)
    view.transform_blocks = layer
    return np.asarray(view.transform(X), dtype=np.float32)


class LayerFeatures(TransformerMixin, BaseEstimator):
    """The representation after one layer of a greedily trained network, as a transformer.

    Wrap a network fitted once in :class:`sklearn.frozen.FrozenEstimator` to use it in
    pipelines and grid searches without refitting it: ``FrozenEstimator`` is not cloned
    and its ``fit`` does nothing, so a search over ``layer`` or ``pool`` only reruns the
    cheap forward pass. Any other estimator, fitted or not, is cloned and the clone is
    fitted in :meth:`fit`, as in every scikit-learn meta-estimator.

    Parameters
    ----------
    estimator : estimator
        A :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` or a sequential implicit
        model (:class:`~sklearn_greedy.SequentialImplicitClassifier`,
        :class:`~sklearn_greedy.SequentialImplicitRegressor`), fitted inside a
        ``FrozenEstimator``, or to be fitted.
    layer : int or None, default=None
        The layer whose output is returned, in the package's layer convention: 1-based
        like the paper's ``x_j``, negative counts from the end (-1 is the last), None for
        the last. For implicit models, blocks play the layers.
    pool : int or None, default=2
        Average each channel to a ``pool`` x ``pool`` grid (the paper's 2x2); None keeps
        the full spatial resolution. Ignored for implicit models.

    Attributes
    ----------
    estimator_ : estimator
        The fitted network (the ``FrozenEstimator`` itself when one was given).
    layer_ : int
        The layer actually used: ``layer`` resolved to its 1-based number.
    feature_shape_ : tuple of int
        Shape of the output of one sample before flattening: (C, pool, pool) or
        (C, H, W) for a CNN, (n_states_used,) for an implicit model.
    n_features_in_ : int
        Number of input features seen by the network.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the input features, when the network saw them.

    See Also
    --------
    layer_features : The same as a function of a fitted estimator.
    separability_scores : Linear and CNN-p separability of every layer.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, LayerFeatures
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.rand(40, 1, 8, 8), np.arange(40) % 2
    >>> cnn = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=1,
    ...                                    random_state=0).fit(X, y)
    >>> pipe = make_pipeline(LayerFeatures(FrozenEstimator(cnn), layer=1),
    ...                      LogisticRegression()).fit(X, y)
    >>> pipe[0].get_feature_names_out()[:2]
    array(['layer1_c0_00', 'layer1_c0_01'], dtype=object)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "transform"])],
        "layer": [
            IntInterval(None, -1, closed="right"),
            IntInterval(1, None, closed="left"),
            None,
        ],
        "pool": [POSITIVE_INT, None],
    }

    def __init__(self, estimator, layer=None, pool=2):
        self.estimator = estimator
        self.layer = layer
        self.pool = pool

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit a clone of the network, or nothing when it is a ``FrozenEstimator``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
            Training input of the network.
        y : array-like of shape (n_samples,) or None
            Targets of the network (ignored by a ``FrozenEstimator``).

        Returns
        -------
        self : LayerFeatures
            The fitted transformer.
        """
        # clone(FrozenEstimator) is the FrozenEstimator itself and its fit is a no-op
        estimator = clone(self.estimator).fit(X, y)
        inner = _unwrap(estimator)
        layer = check_layer(self.layer, n_probe_layers(inner), name="layer")
        if _is_cnn(inner):
            feature_shape = inner.layer_output_shape(layer, pool=self.pool)
        else:
            feature_shape = (int(sum(inner.block_sizes_[:layer])),)
        self.estimator_, self.layer_, self.feature_shape_ = estimator, layer, feature_shape
        self.n_features_in_ = inner.n_features_in_
        if hasattr(inner, "feature_names_in_"):
            self.feature_names_in_ = inner.feature_names_in_
        return self

    def transform(self, X) -> np.ndarray:
        """The representation of ``X`` after layer ``layer_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
            Input of the network.

        Returns
        -------
        features : ndarray of shape (n_samples, prod(``feature_shape_``)), float32
            The flattened representation.
        """
        check_is_fitted(self)
        return layer_features(self.estimator_, X, self.layer_, self.pool)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Feature names: ``layer{j}_c{channel}_{row}{col}`` for a CNN.

        With ``pool=None`` (or a grid wider than 9) row and column are separated by an
        underscore. An implicit model names its states itself, as its own
        ``get_feature_names_out`` with ``transform_blocks=layer_``: ``block{j}_x{i}`` is
        state ``i`` of block ``j``, in the order of :meth:`transform`
        (``[x_k, ..., x_1]``).

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output feature.
        """
        check_is_fitted(self)
        if len(self.feature_shape_) == 1:
            # the same view as transform's: the model's names of the columns it returns
            view = copy.copy(_unwrap(self.estimator_))
            view.transform_blocks = self.layer_
            return np.asarray(view.get_feature_names_out(), dtype=object)
        return np.asarray(layer_feature_names(self.layer_, *self.feature_shape_), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.requires_fit = True
        # the network it fits decides whether y is needed (a classifier's is)
        tags.target_tags.required = get_tags(self.estimator).target_tags.required
        return tags


def _linear_probe(F_train, y_train, F_test, y_test, C, max_iter) -> float:
    """Test accuracy of a multinomial logistic regression on standardised features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return float(probe.fit(F_train, y_train).score(F_test, y_test))


def _cnn_probe(H_train, y_train, H_test, y_test, *, p, n_classes, width, config, seed) -> float:
    """Test accuracy of a p-hidden-layer CNN trained on frozen full-resolution features.

    The probe is the package's auxiliary classifier with ``k = p + 1`` (``p`` conv layers,
    2x2 averaging, linear layer) and BatchNorm, since the raw ReLU features of a frozen
    layer are not standardised; it is trained by the shared engine.
    """
    with torch_seeded(derive_seed(seed, 1, p)):
        net = AuxiliaryClassifier(H_train.shape[1], n_classes, p + 1, width, batch_norm=True)
    train_stage(
        net,
        StageData(H_train, y_train),
        loss_fn=F.cross_entropy,
        config=replace(config, label=f"CNN-{p} probe"),
        generator=make_generator(derive_seed(seed, 2, p), H_train.device),
    )
    logits = batched_apply(net.eval(), H_test, _EVAL_BATCH_SIZE)
    return float((logits.argmax(1) == y_test).float().mean())


def _check_probes(probes) -> dict[str, int | None]:
    """``probes`` as ``{name: p}`` (p None for the linear probe), in the order given."""
    names = (probes,) if isinstance(probes, str) else tuple(probes)
    if not names:
        raise ValueError("probes is empty; give 'linear', 'cnn<p>' or a sequence of them.")
    parsed: dict[str, int | None] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"probes must hold probe names (str), got {name!r}.")
        digits = name[3:]
        if name == "linear":
            p = None
        elif name.startswith("cnn") and digits.isdigit() and int(digits) >= 1:
            p = int(digits)
        else:
            raise ValueError(f"Unknown probe {name!r}; use 'linear' or 'cnn<p>' with p >= 1.")
        if name in parsed:
            raise ValueError(f"probes names {name!r} twice; each probe is run once.")
        parsed[name] = p
    return parsed


def _check_layers(layers, n_layers: int) -> list[int]:
    """``layers`` resolved by the layer convention; duplicates (after resolution) refused."""
    if layers is None:
        return list(range(1, n_layers + 1))
    given = [layers] if isinstance(layers, Integral) else list(layers)
    if not given:
        raise ValueError("layers is empty; give at least one layer, or None for all.")
    resolved = [check_layer(j, n_layers, name="layers") for j in given]
    if len(set(resolved)) < len(resolved):
        raise ValueError(
            f"layers={given!r} names a layer more than once (resolved: {resolved}, with "
            f"{n_layers} layers); each layer is probed once."
        )
    return resolved


def _check_probe_data(X_train, y_train, X_test, y_test):
    """Class codes of ``y_train`` and ``y_test``; sizes and classes checked."""
    for X_name, X, y_name, y in (("X_train", X_train, "y_train", y_train),
                                 ("X_test", X_test, "y_test", y_test)):  # fmt: skip
        if _num_samples(X) != _num_samples(y):
            raise ValueError(
                f"{X_name} has {_num_samples(X)} samples but {y_name} has {_num_samples(y)}."
            )
    classes, y_train_enc = encode_classes(np.asarray(y_train))
    unseen = np.setdiff1d(np.asarray(y_test), classes)
    if unseen.size:
        raise ValueError(f"y_test has classes absent from y_train: {unseen[:5].tolist()}.")
    return classes, y_train_enc, np.searchsorted(classes, np.asarray(y_test))


@validate_params(
    {
        "estimator": [HasMethods(["fit"])],
        "X_train": ["array-like"],
        "y_train": ["array-like"],
        "X_test": ["array-like"],
        "y_test": ["array-like"],
        "probes": [str, list, tuple],
        "layers": [list, tuple, range, np.ndarray, Integral, None],
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [POSITIVE_INT],
        "probe_width": [POSITIVE_INT, None],
        "max_epochs": [POSITIVE_INT],
        "batch_size": [POSITIVE_INT],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def separability_scores(
    estimator,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    probes=PROBES,
    layers=None,
    C: float = 1.0,
    max_iter: int = 1000,
    probe_width: int | None = None,
    max_epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    random_state=None,
    verbose: int = 0,
) -> dict[str, np.ndarray]:
    """Linear and CNN-p separability of each layer's representation (Sec. 4.2, Fig. 3).

    Each probe is trained on the frozen representation of ``X_train`` and scored by its
    accuracy on ``X_test``:

    - ``"linear"``: a multinomial :class:`~sklearn.linear_model.LogisticRegression` on the
      standardised features averaged to 2x2 (the paper's linear separability);
    - ``"cnn1"``, ``"cnn2"`` (any ``"cnn<p>"``): a CNN with ``p`` hidden conv 3x3 layers,
      2x2 averaging and a linear layer, trained with Adam on the full-resolution features
      (CNN-p separability).

    Each layer's features are computed once and shared by all probes.

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier`, optionally in a
        :class:`~sklearn.frozen.FrozenEstimator`. A fitted sequential implicit model is
        accepted for the ``"linear"`` probe (its blocks play the layers).
    X_train, y_train : array-like
        Data to train the probes on; ``y_train`` holds class labels.
    X_test, y_test : array-like
        Data to score the probes on; ``y_test`` holds classes seen in ``y_train``.
    probes : str or sequence of str, default=("linear", "cnn1", "cnn2")
        The probe, or the probes, to run, each at most once.
    layers : int, sequence of int or None, default=None
        Layers to probe, in the package's layer convention: 1-based like the paper's
        ``x_j``, negative counts from the end (-1 is the last); each at most once. None
        probes every fitted layer.
    C : float, default=1.0
        Inverse regularisation strength of the linear probe (> 0).
    max_iter : int, default=1000
        Iterations of the linear probe's solver (>= 1).
    probe_width : int or None, default=None
        Width of the CNN probes' hidden convolutions; None uses the probed layer's width
        (the paper uses 256).
    max_epochs : int, default=15
        Training epochs of the CNN probes (>= 1).
    batch_size : int, default=64
        Minibatch size of the CNN probes (>= 1).
    lr : float, default=1e-3
        Adam learning rate of the CNN probes (> 0).
    random_state : int, RandomState instance or None, default=None
        Seeds the CNN probes' initialisation and shuffling.
    verbose : int, default=0
        Print each layer's scores as they are computed.

    Returns
    -------
    scores : dict of ndarray
        ``"layer"`` (the probed layers, as 1-based numbers, in the order given) and one
        array of test accuracies per probe, all of shape (n_layers,), like
        ``cv_results_``.

    Raises
    ------
    TypeError
        If an argument has the wrong type (``layers=[1.7]``, ``probes=[1]``...) or the
        estimator cannot be probed.
    ValueError
        If an argument is out of range (``layers=[0]``, ``batch_size=0``, ``lr=-1``...),
        a layer or probe is given twice, a probe is unknown, the data sizes disagree, or
        ``y_test`` has classes absent from ``y_train``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, separability_scores
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.rand(60, 1, 8, 8), np.arange(60) % 3
    >>> cnn = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=1,
    ...                                    random_state=0).fit(X[:40], y[:40])
    >>> scores = separability_scores(cnn, X[:40], y[:40], X[40:], y[40:],
    ...                              max_epochs=1, random_state=0)
    >>> sorted(scores), scores["layer"]
    (['cnn1', 'cnn2', 'layer', 'linear'], array([1, 2]))
    >>> separability_scores(cnn, X[:40], y[:40], X[40:], y[40:], probes="linear",
    ...                     layers=-1)["layer"]
    array([2])
    """
    estimator = _unwrap(estimator)
    layers = _check_layers(layers, n_probe_layers(estimator))
    probes = _check_probes(probes)
    cnn_ps = {name: p for name, p in probes.items() if p is not None}
    if cnn_ps and not _is_cnn(estimator):
        raise ValueError(
            f"The CNN-p probes need a convolutional network; {type(estimator).__name__} "
            "supports probes='linear'."
        )
    classes, y_train_enc, y_test_enc = _check_probe_data(X_train, y_train, X_test, y_test)

    results: dict[str, list] = {"layer": layers, **{name: [] for name in probes}}
    if _is_cnn(estimator):
        device = inference_device(estimator.device_)
        seed = base_seed(random_state)
        config = TrainingConfig(
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer="adam",
            n_iter_no_change=max_epochs,
        )
        if not cnn_ps:
            # pooled features are small: all layers from one forward pass
            H_train = _as_tensors(estimator.layer_outputs(X_train, layers, pool=2))
            H_test = _as_tensors(estimator.layer_outputs(X_test, layers, pool=2))
        yt_train = torch.from_numpy(y_train_enc).to(device)
        yt_test = torch.from_numpy(y_test_enc).to(device)
    for j in layers:
        if _is_cnn(estimator):
            if cnn_ps:
                # full-resolution features are large: one layer in memory at a time
                h_train = torch.from_numpy(estimator.layer_outputs(X_train, j, pool=None)[j])
                h_test = torch.from_numpy(estimator.layer_outputs(X_test, j, pool=None)[j])
            else:
                h_train, h_test = H_train.pop(j), H_test.pop(j)
            if "linear" in probes:
                p_train = F.adaptive_avg_pool2d(h_train, 2).flatten(1).numpy()
                p_test = F.adaptive_avg_pool2d(h_test, 2).flatten(1).numpy()
                results["linear"].append(
                    _linear_probe(p_train, y_train, p_test, y_test, C, max_iter)
                )
            h_train, h_test = h_train.to(device), h_test.to(device)
            for name, p in cnn_ps.items():
                results[name].append(
                    _cnn_probe(
                        h_train,
                        yt_train,
                        h_test,
                        yt_test,
                        p=p,
                        n_classes=len(classes),
                        width=probe_width or h_train.shape[1],
                        config=config,
                        seed=derive_seed(seed, j),
                    )
                )
        else:
            f_train = layer_features(estimator, X_train, j)
            f_test = layer_features(estimator, X_test, j)
            results["linear"].append(_linear_probe(f_train, y_train, f_test, y_test, C, max_iter))
        if verbose:
            print(f"layer {j}: " + ", ".join(f"{name}={results[name][-1]:.4f}" for name in probes))
    return {key: np.asarray(value) for key, value in results.items()}
