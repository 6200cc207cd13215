"""Plots of greedily trained networks, in scikit-learn's ``*Display`` pattern.

Each display is built from computed values (``__init__``, which only stores them) or from
a fitted estimator (``from_estimator``) and draws with ``plot(ax=None)``, which checks the
values, draws, and returns the display with ``ax_``, ``figure_`` and ``lines_`` set.
Values that cannot be drawn (arrays of different lengths, a malformed history) raise a
ValueError or TypeError that names the argument before matplotlib sees them.
matplotlib is imported only when plotting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._validation import POSITIVE_INT, check_layer
from ._probing import _unwrap, layer_features, n_probe_layers, separability_scores

_AXES = [HasMethods(["plot", "set_xlabel"]), None]


def _pyplot():
    """matplotlib.pyplot, or an ImportError that says how to get it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is installed in the tests
        raise ImportError(
            "Plotting requires matplotlib; install it with `pip install matplotlib`."
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    else:
        _pyplot()
    return ax


def _finish(display, ax, title, **legend_kwargs):
    """Title and legend, then the Display attributes ``ax_`` and ``figure_``."""
    if title:
        ax.set_title(title)
    ax.legend(loc="best", **legend_kwargs)
    display.ax_ = ax
    display.figure_ = ax.figure
    return display


def _check_name(value, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {value!r}.")


def _numbers(values, name: str, *, length: int | None = None, length_of: str = "") -> np.ndarray:
    """``values`` as a 1-D float array, or an error that names ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold numbers, got {values!r}.") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if length is not None and array.shape[0] != length:
        raise ValueError(
            f"{name} has {array.shape[0]} values but {length_of} has {length}; "
            "they must have one value each."
        )
    return array


def _history_stages(history) -> list[list[Mapping]]:
    """``history`` as one list of per-epoch records per stage (layer or block).

    A flat list of records (one stage, as the end-to-end estimators record) becomes a
    single stage.
    """
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
        raise TypeError(
            "history must be a list (one per layer) of lists of per-epoch dicts, or one "
            f"list of per-epoch dicts; got {type(history).__name__}."
        )
    if not history:
        raise ValueError("history is empty: there is nothing to plot.")
    if all(isinstance(record, Mapping) for record in history):
        history = [history]
    stages = []
    for j, stage in enumerate(history):
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence):
            raise TypeError(
                f"history[{j}] must be a list of per-epoch dicts, got {type(stage).__name__}."
            )
        if not stage:
            raise ValueError(f"history[{j}] is empty: that stage recorded no epoch.")
        for e, record in enumerate(stage):
            if not isinstance(record, Mapping) or "train_score" not in record:
                raise ValueError(
                    f"history[{j}][{e}] must be a dict with a 'train_score', got {record!r}."
                )
        stages.append(list(stage))
    return stages


class LayerwiseTrainingDisplay:
    """Per-layer training and validation scores along greedy training (Fig. 2, 4).

    The epochs of all layers are laid end to end on the x axis, with a dotted line where
    a new layer starts, so the jump in score from each added layer is visible.

    Parameters
    ----------
    history : list of list of dict, or list of dict
        For each layer, one record per epoch with ``train_score`` and optionally
        ``valid_score`` (the ``history_`` of a fitted greedy estimator). A flat list of
        records is drawn as one stage.
    score_name : str or None, default=None
        What ``train_score`` and ``valid_score`` are, for the y axis: ``"accuracy"``
        for classifiers, ``"negative MSE (standardised targets)"`` for the regressors;
        None shows ``"score"``. :meth:`from_estimator` sets it from the estimator.
    stage_name : str, default="layer"
        What one entry of ``history`` trained, for the legend (``"block"`` for the
        implicit models).
    estimator_name : str or None, default=None
        Name shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure of ``ax_``.
    lines_ : list of matplotlib Line2D
        The training curve of each layer, then its validation curve when recorded.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_greedy import LayerwiseTrainingDisplay
    >>> history = [[{"train_score": 0.5, "valid_score": 0.4}, {"train_score": 0.6,
    ...              "valid_score": 0.5}], [{"train_score": 0.7, "valid_score": 0.6}]]
    >>> display = LayerwiseTrainingDisplay(history, score_name="accuracy").plot()
    >>> display.ax_.get_xlabel(), display.ax_.get_ylabel()
    ('epoch (layers trained one after the other)', 'accuracy')
    """

    def __init__(self, history, *, score_name=None, stage_name="layer", estimator_name=None):
        self.history = history
        self.score_name = score_name
        self.stage_name = stage_name
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **kwargs):
        """Plot the ``history_`` of a fitted greedy estimator.

        The y axis says what the scores are: accuracy for a classifier, minus the mean
        squared error on standardised targets for a regressor.

        Parameters
        ----------
        estimator : estimator
            A fitted :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` or implicit
            model (or any estimator with a ``history_``), optionally in a
            :class:`~sklearn.frozen.FrozenEstimator`.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerwiseTrainingDisplay
            The display, drawn.
        """
        estimator = _unwrap(estimator)
        check_is_fitted(estimator, "history_")
        score_name = (
            "accuracy" if is_classifier(estimator) else "negative MSE (standardised targets)"
        )
        stage_name = "block" if hasattr(estimator, "block_sizes_") else "layer"
        display = cls(
            estimator.history_,
            score_name=score_name,
            stage_name=stage_name,
            estimator_name=type(estimator).__name__,
        )
        return display.plot(ax=ax, **kwargs)

    @validate_params(
        {"ax": _AXES, "show_validation": ["boolean"]}, prefer_skip_nested_validation=True
    )
    def plot(self, ax=None, *, show_validation=True):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        show_validation : bool, default=True
            Also draw the validation score where it was recorded.

        Returns
        -------
        self : LayerwiseTrainingDisplay
            The display, drawn.
        """
        stages = _history_stages(self.history)
        _check_name(self.score_name, "score_name")
        _check_name(self.estimator_name, "estimator_name")
        if not isinstance(self.stage_name, str):
            raise TypeError(f"stage_name must be a str, got {self.stage_name!r}.")
        curves = []
        for j, records in enumerate(stages):
            train = _numbers([r["train_score"] for r in records], f"history[{j}] train_score")
            valid = [r.get("valid_score") for r in records]
            if all(v is not None for v in valid):
                valid = _numbers(valid, f"history[{j}] valid_score")
            else:
                valid = None
            curves.append((train, valid))

        ax = _axes(ax)
        colors = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
        self.lines_ = []
        start = 0
        for j, (train, valid) in enumerate(curves, start=1):
            epochs = np.arange(start + 1, start + len(train) + 1)
            color = colors[(j - 1) % len(colors)]
            stage = f"{self.stage_name} {j}"
            (line,) = ax.plot(epochs, train, color=color, label=f"{stage} train")
            self.lines_.append(line)
            if show_validation and valid is not None:
                (line,) = ax.plot(
                    epochs, valid, color=color, linestyle="--", label=f"{stage} validation"
                )
                self.lines_.append(line)
            if j > 1:
                ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=0.8)
            start += len(train)
        if len(curves) > 1:
            ax.set_xlabel(f"epoch ({self.stage_name}s trained one after the other)")
        else:
            ax.set_xlabel("epoch")
        ax.set_ylabel(self.score_name or "score")
        return _finish(self, ax, self.estimator_name, fontsize="small")


class SeparabilityDisplay:
    """Probe accuracy as a function of depth: linear and CNN-p separability (Fig. 3).

    Parameters
    ----------
    layers : array-like of int
        The probed layers (1-based numbers).
    scores : dict of str to array-like
        Test accuracy of each probe at each layer (``"linear"``, ``"cnn1"``, ...), one
        value per entry of ``layers``, as returned by
        :func:`~sklearn_greedy.separability_scores` (its ``"layer"`` entry is ignored).
    estimator_name : str or None, default=None
        Name shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure of ``ax_``.
    lines_ : list of matplotlib Line2D
        One line per probe.
    scores_ : dict of ndarray
        What :meth:`from_estimator` computed (absent when built from values).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_greedy import SeparabilityDisplay
    >>> display = SeparabilityDisplay([1, 2, 3], {"linear": [0.5, 0.6, 0.7]}).plot()
    >>> display.ax_.get_ylabel(), len(display.lines_)
    ('test accuracy of the probe', 1)
    """

    def __init__(self, layers, scores, *, estimator_name=None):
        self.layers = layers
        self.scores = scores
        self.estimator_name = estimator_name

    @classmethod
    @validate_params(
        {"ax": _AXES, "plot_kwargs": [dict, None]}, prefer_skip_nested_validation=False
    )
    def from_estimator(
        cls, estimator, X_train, y_train, X_test, y_test, *, ax=None, plot_kwargs=None, **kwargs
    ):
        """Compute :func:`~sklearn_greedy.separability_scores` and plot them.

        Parameters
        ----------
        estimator : estimator
            A fitted greedy network (see :func:`~sklearn_greedy.separability_scores`).
        X_train, y_train, X_test, y_test : array-like
            Data to train and to score the probes.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        plot_kwargs : dict or None, default=None
            Passed to :meth:`plot`.
        **kwargs
            Passed to :func:`~sklearn_greedy.separability_scores` (``probes``,
            ``layers``, ``max_epochs``, ``random_state``...), which checks them.

        Returns
        -------
        display : SeparabilityDisplay
            The display, drawn.
        """
        scores = separability_scores(estimator, X_train, y_train, X_test, y_test, **kwargs)
        display = cls(
            scores["layer"],
            {k: v for k, v in scores.items() if k != "layer"},
            estimator_name=type(_unwrap(estimator)).__name__,
        )
        display.scores_ = scores
        return display.plot(ax=ax, **(plot_kwargs or {}))

    @staticmethod
    def _label(name: str) -> str:
        if name == "linear":
            return "linear separability"
        if name.startswith("cnn") and name[3:].isdigit():
            return f"CNN-{name[3:]} separability"
        return name

    def _curves(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``layers`` and the probes' scores, checked to be drawable together."""
        try:
            layers = np.asarray(self.layers)
        except ValueError:
            raise ValueError(f"layers must be a 1-D array of ints, got {self.layers!r}.") from None
        if layers.ndim != 1 or layers.size == 0 or layers.dtype.kind not in "iu":
            raise ValueError(f"layers must be a non-empty 1-D array of ints, got {self.layers!r}.")
        if not isinstance(self.scores, Mapping):
            raise TypeError(
                f"scores must be a dict of probe name to scores, got {type(self.scores).__name__}."
            )
        curves = {}
        for name, values in self.scores.items():
            if name == "layer":
                continue
            if not isinstance(name, str):
                raise TypeError(f"scores keys must be probe names (str), got {name!r}.")
            curves[name] = _numbers(
                values, f"scores[{name!r}]", length=layers.shape[0], length_of="layers"
            )
        if not curves:
            raise ValueError("scores holds no probe's scores: there is nothing to plot.")
        return layers, curves

    @validate_params({"ax": _AXES}, prefer_skip_nested_validation=True)
    def plot(self, ax=None):
        """Draw one curve per probe.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.

        Returns
        -------
        self : SeparabilityDisplay
            The display, drawn.
        """
        layers, curves = self._curves()
        _check_name(self.estimator_name, "estimator_name")
        ax = _axes(ax)
        self.lines_ = []
        for name, values in curves.items():
            (line,) = ax.plot(layers, values, marker="o", label=self._label(name))
            self.lines_.append(line)
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.set_ylabel("test accuracy of the probe")
        return _finish(self, ax, self.estimator_name)


class LayerPCADisplay:
    """Two principal components of one layer's representation, coloured by class (Fig. 6).

    Parameters
    ----------
    projection : array-like of shape (n_samples, 2)
        The projected representation.
    y : array-like of shape (n_samples,)
        Class of each sample.
    layer : int or None, default=None
        The layer shown (its 1-based number), for the title.
    explained_variance_ratio : array-like of shape (2,) or None, default=None
        Variance explained by each component, shown in the axis labels.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure of ``ax_``.
    lines_ : list of matplotlib PathCollection
        One scatter per class.
    pca_ : sklearn.decomposition.IncrementalPCA
        The fitted PCA (set by :meth:`from_estimator`).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_greedy import LayerPCADisplay
    >>> display = LayerPCADisplay(np.random.RandomState(0).randn(10, 2), [0, 1] * 5).plot()
    >>> len(display.lines_)
    2
    """

    def __init__(self, projection, y, *, layer=None, explained_variance_ratio=None):
        self.projection = projection
        self.y = y
        self.layer = layer
        self.explained_variance_ratio = explained_variance_ratio

    @classmethod
    @validate_params(
        {
            "estimator": [HasMethods(["fit"])],
            "X": ["array-like"],
            "y": ["array-like"],
            "batch_size": [POSITIVE_INT, None],
            "ax": _AXES,
        },
        # plot's own arguments arrive through **kwargs and are validated by plot
        prefer_skip_nested_validation=False,
    )
    def from_estimator(
        cls, estimator, X, y, *, layer=None, pool=2, batch_size=None, ax=None, **kwargs
    ):
        """Project one layer's representation of ``X`` with an incremental PCA.

        :class:`~sklearn.decomposition.IncrementalPCA` fits in batches, so large
        (unpooled) representations need not fit in memory at once for the PCA itself.

        Parameters
        ----------
        estimator : estimator
            A fitted greedy network (see :func:`~sklearn_greedy.layer_features`).
        X : array-like
            Input of the network.
        y : array-like of shape (n_samples,)
            Classes, for the colours.
        layer : int or None, default=None
            The layer, in the package's layer convention: 1-based like the paper's
            ``x_j``, negative counts from the end (-1 is the last), None for the last.
        pool : int or None, default=2
            Spatial averaging before the PCA; None keeps the full resolution.
        batch_size : int or None, default=None
            Batch size of the incremental PCA (None: its default).
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerPCADisplay
            The display, drawn.
        """
        from sklearn.decomposition import IncrementalPCA

        layer = check_layer(layer, n_probe_layers(estimator), name="layer")
        if _num_samples(X) != _num_samples(y):
            raise ValueError(f"X has {_num_samples(X)} samples but y has {_num_samples(y)}.")
        features = layer_features(estimator, X, layer, pool)
        pca = IncrementalPCA(n_components=2, batch_size=batch_size)
        projection = pca.fit_transform(features)
        display = cls(
            projection,
            np.asarray(y),
            layer=layer,
            explained_variance_ratio=pca.explained_variance_ratio_,
        )
        display.pca_ = pca
        return display.plot(ax=ax, **kwargs)

    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``projection``, ``y`` and ``explained_variance_ratio``, checked to be drawable."""
        try:
            projection = np.asarray(self.projection, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("projection must be an array of numbers of shape (n, 2).") from None
        if projection.ndim != 2 or projection.shape[1] < 2:
            raise ValueError(f"projection must have shape (n_samples, 2), got {projection.shape}.")
        y = np.asarray(self.y)
        if y.ndim != 1 or y.shape[0] != projection.shape[0]:
            raise ValueError(
                f"y has shape {y.shape} but projection has {projection.shape[0]} rows; "
                "they must have one label per row."
            )
        ratio = self.explained_variance_ratio
        if ratio is not None:
            ratio = _numbers(ratio, "explained_variance_ratio")
            if ratio.shape[0] < 2:
                raise ValueError(
                    f"explained_variance_ratio needs one value per component (2), got {ratio}."
                )
        layer = self.layer
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, Integral)):
            raise TypeError(f"layer must be an int or None, got {layer!r}.")
        return projection, y, ratio

    @validate_params(
        {
            "ax": _AXES,
            "s": [Interval(Real, 0, None, closed="neither")],
            "alpha": [Interval(Real, 0, 1, closed="both")],
        },
        prefer_skip_nested_validation=True,
    )
    def plot(self, ax=None, *, s=8, alpha=0.7):
        """Draw one scatter per class.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        s : float, default=8
            Marker size (> 0).
        alpha : float, default=0.7
            Marker opacity, in [0, 1].

        Returns
        -------
        self : LayerPCADisplay
            The display, drawn.
        """
        projection, y, ratio = self._points()
        ax = _axes(ax)
        self.lines_ = []
        for cls_ in np.unique(y):
            mask = y == cls_
            self.lines_.append(
                ax.scatter(
                    projection[mask, 0], projection[mask, 1], s=s, alpha=alpha, label=str(cls_)
                )
            )
        for i, set_label in enumerate((ax.set_xlabel, ax.set_ylabel)):
            suffix = "" if ratio is None else f" ({100 * ratio[i]:.1f}% of variance)"
            set_label(f"principal component {i + 1}{suffix}")
        if self.layer is not None:
            ax.set_title(f"layer {self.layer}")
        if len(self.lines_) <= 20:
            ax.legend(fontsize="small", markerscale=2, title="class")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
