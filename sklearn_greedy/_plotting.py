"""Plots of greedily trained networks, in scikit-learn's ``*Display`` pattern.

Each display is built from computed values (``__init__``) or from a fitted estimator
(``from_estimator``) and draws with ``plot(ax=None)``, which returns the display with
``ax_``, ``figure_`` and ``lines_`` set. matplotlib is imported only when plotting.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._probing import _unwrap, layer_features, separability_scores


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


class LayerwiseTrainingDisplay:
    """Per-layer training and validation accuracy along greedy training (Fig. 2, 4).

    The epochs of all layers are laid end to end on the x axis, with a dotted line where
    a new layer starts, so the jump in accuracy from each added layer is visible.

    Parameters
    ----------
    history : list of list of dict
        For each layer, one record per epoch with ``train_score`` and ``valid_score``
        (the ``history_`` of a fitted greedy estimator).
    estimator_name : str or None, default=None
        Name shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : list of matplotlib Line2D
        The training curve of each layer, then its validation curve when recorded.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_greedy import LayerwiseTrainingDisplay
    >>> history = [[{"train_score": 0.5, "valid_score": 0.4}, {"train_score": 0.6,
    ...              "valid_score": 0.5}], [{"train_score": 0.7, "valid_score": 0.6}]]
    >>> display = LayerwiseTrainingDisplay(history).plot()
    >>> display.ax_.get_xlabel()
    'epoch (layers trained one after the other)'
    """

    def __init__(self, history, *, estimator_name=None):
        self.history = history
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **kwargs):
        """Plot the ``history_`` of a fitted greedy estimator.

        Parameters
        ----------
        estimator : estimator
            A fitted :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` (or any
            estimator with a per-layer ``history_``).
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerwiseTrainingDisplay
        """
        estimator = _unwrap(estimator)
        check_is_fitted(estimator, "history_")
        return cls(estimator.history_, estimator_name=type(estimator).__name__).plot(
            ax=ax, **kwargs
        )

    def plot(self, ax=None, *, show_validation=True):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        show_validation : bool, default=True
            Also draw the validation accuracy where it was recorded.

        Returns
        -------
        self : LayerwiseTrainingDisplay
        """
        ax = _axes(ax)
        colors = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
        self.lines_ = []
        start = 0
        for j, records in enumerate(self.history, start=1):
            epochs = np.arange(start + 1, start + len(records) + 1)
            color = colors[(j - 1) % len(colors)]
            train = [r["train_score"] for r in records]
            (line,) = ax.plot(epochs, train, color=color, label=f"layer {j} train")
            self.lines_.append(line)
            valid = [r.get("valid_score") for r in records]
            if show_validation and all(v is not None for v in valid) and valid:
                (line,) = ax.plot(
                    epochs, valid, color=color, linestyle="--", label=f"layer {j} validation"
                )
                self.lines_.append(line)
            if j > 1:
                ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=0.8)
            start += len(records)
        ax.set_xlabel("epoch (layers trained one after the other)")
        ax.set_ylabel("accuracy")
        return _finish(self, ax, self.estimator_name, fontsize="small")


class SeparabilityDisplay:
    """Probe accuracy as a function of depth: linear and CNN-p separability (Fig. 3).

    Parameters
    ----------
    layers : array-like of int
        The probed layers.
    scores : dict of str to array-like
        Test accuracy of each probe at each layer (``"linear"``, ``"cnn1"``, ...), as
        returned by :func:`~sklearn_greedy.separability_scores` (its ``"layer"`` entry is
        ignored).
    estimator_name : str or None, default=None
        Name shown in the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
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

    _LABELS = {"linear": "linear separability"}

    def __init__(self, layers, scores, *, estimator_name=None):
        self.layers = layers
        self.scores = scores
        self.estimator_name = estimator_name

    @classmethod
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
            ``max_epochs``, ``random_state``...).

        Returns
        -------
        display : SeparabilityDisplay
        """
        scores = separability_scores(estimator, X_train, y_train, X_test, y_test, **kwargs)
        display = cls(
            scores["layer"],
            {k: v for k, v in scores.items() if k != "layer"},
            estimator_name=type(_unwrap(estimator)).__name__,
        )
        display.scores_ = scores
        return display.plot(ax=ax, **(plot_kwargs or {}))

    def plot(self, ax=None):
        """Draw one curve per probe.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.

        Returns
        -------
        self : SeparabilityDisplay
        """
        ax = _axes(ax)
        layers = np.asarray(self.layers)
        self.lines_ = []
        for name, values in self.scores.items():
            if name == "layer":
                continue
            label = self._LABELS.get(name, f"CNN-{name[3:]} separability")
            (line,) = ax.plot(layers, np.asarray(values), marker="o", label=label)
            self.lines_.append(line)
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.set_ylabel("test accuracy of the probe")
        return _finish(self, ax, self.estimator_name)


class LayerPCADisplay:
    """Two principal components of one layer's representation, coloured by class (Fig. 6).

    Parameters
    ----------
    projection : ndarray of shape (n_samples, 2)
        The projected representation.
    y : array-like of shape (n_samples,)
        Class of each sample.
    layer : int or None, default=None
        The layer shown, for the title.
    explained_variance_ratio : array-like of shape (2,) or None, default=None
        Variance explained by each component, shown in the axis labels.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
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
            Layer (1-based); None for the last.
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
        """
        from sklearn.decomposition import IncrementalPCA

        from ._probing import _check_layer

        layer = _check_layer(_unwrap(estimator), layer)
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

    def plot(self, ax=None, *, s=8, alpha=0.7):
        """Draw one scatter per class.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure when None.
        s : float, default=8
            Marker size.
        alpha : float, default=0.7
            Marker opacity.

        Returns
        -------
        self : LayerPCADisplay
        """
        ax = _axes(ax)
        projection = np.asarray(self.projection)
        y = np.asarray(self.y)
        self.lines_ = []
        for cls_ in np.unique(y):
            mask = y == cls_
            self.lines_.append(
                ax.scatter(
                    projection[mask, 0], projection[mask, 1], s=s, alpha=alpha, label=str(cls_)
                )
            )
        ratio = self.explained_variance_ratio
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
