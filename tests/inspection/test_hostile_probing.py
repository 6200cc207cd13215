"""Hostile arguments to the probing functions and the displays: each raises a ValueError or
TypeError that names the argument and the value, before any probe trains or matplotlib
draws, or gives the correct result."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from sklearn_greedy import (  # noqa: E402
    GreedyLayerwiseCNNClassifier,
    LayerFeatures,
    LayerPCADisplay,
    LayerwiseTrainingDisplay,
    SeparabilityDisplay,
    layer_features,
    separability_scores,
)


@pytest.fixture(scope="module")
def fitted():
    """A 2-layer CNN of width 2 fitted for one epoch, and its data."""
    rng = np.random.RandomState(0)
    X = rng.rand(40, 1, 8, 8).astype(np.float32)
    y = np.arange(40) % 2
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=2, width=2, max_epochs=1, batch_size=20, random_state=0, device="cpu"
    )
    return cnn.fit(X[:30], y[:30]), X, y


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _scores(fitted, **kwargs):
    cnn, X, y = fitted
    return separability_scores(cnn, X[:30], y[:30], X[30:], y[30:], **kwargs)


# (keyword arguments, exception type, a regex the message must match)
SEPARABILITY_CASES = {
    "layers=[1.7]": ({"layers": [1.7]}, TypeError, r"layers must be an int .*1\.7"),
    "layers=[1, 1]": ({"layers": [1, 1]}, ValueError, r"layers=\[1, 1\] names a layer more"),
    "layers=[2, -1]": ({"layers": [2, -1]}, ValueError, r"resolved: \[2, 2\]"),
    "layers=[0]": ({"layers": [0]}, ValueError, r"layers=0 is out of range.*0 is not a layer"),
    "layers=[3]": ({"layers": [3]}, ValueError, r"layers=3 is out of range: .*1\.\.2"),
    "layers=[-3]": ({"layers": [-3]}, ValueError, r"layers=-3 is out of range"),
    "layers=[]": ({"layers": []}, ValueError, "layers is empty"),
    "layers=[True]": ({"layers": [True]}, TypeError, "layers must be an int .*True"),
    "layers='12'": ({"layers": "12"}, ValueError, "'layers' parameter of separability_scores"),
    "batch_size=0": ({"batch_size": 0}, ValueError, r"'batch_size' parameter .*\[1, inf\)"),
    "batch_size=2.5": ({"batch_size": 2.5}, ValueError, "'batch_size' parameter"),
    "lr=-1": ({"lr": -1}, ValueError, r"'lr' parameter .*\(0\.0, inf\).*Got -1"),
    "lr=nan": ({"lr": float("nan")}, ValueError, "'lr' parameter"),
    "lr=inf": ({"lr": float("inf")}, ValueError, "'lr' parameter"),
    "max_epochs=0": ({"max_epochs": 0}, ValueError, "'max_epochs' parameter"),
    "max_epochs=True": ({"max_epochs": True}, ValueError, "'max_epochs' parameter"),
    "C=0": ({"C": 0}, ValueError, "'C' parameter"),
    "max_iter=0": ({"max_iter": 0}, ValueError, "'max_iter' parameter"),
    "probe_width=0": ({"probe_width": 0}, ValueError, "'probe_width' parameter"),
    "random_state='x'": ({"random_state": "x"}, ValueError, "'random_state' parameter"),
    "probes='lin'": ({"probes": "lin"}, ValueError, "Unknown probe 'lin'"),
    "probes='cnn0'": ({"probes": "cnn0"}, ValueError, "Unknown probe 'cnn0'"),
    "probes twice": ({"probes": ("linear", "linear")}, ValueError, "names 'linear' twice"),
    "probes=()": ({"probes": ()}, ValueError, "probes is empty"),
    "probes=[1]": ({"probes": [1]}, TypeError, r"probes must hold probe names .* 1"),
    "probes={'linear'}": ({"probes": {"linear"}}, ValueError, "'probes' parameter"),
}


@pytest.mark.parametrize("case", list(SEPARABILITY_CASES))
def test_separability_scores_arguments(fitted, case):
    kwargs, error, message = SEPARABILITY_CASES[case]
    with pytest.raises(error, match=message):
        _scores(fitted, **kwargs)


@pytest.mark.parametrize(
    "slices, message",
    [
        ((slice(0, 30), slice(0, 29), slice(30, 40), slice(30, 40)), "X_train has 30 .* 29"),
        ((slice(0, 30), slice(0, 30), slice(30, 40), slice(31, 40)), "X_test has 10 .* 9"),
    ],
    ids=["train sizes", "test sizes"],
)
def test_separability_scores_data_sizes(fitted, slices, message):
    cnn, X, y = fitted
    a, b, c, d = slices
    with pytest.raises(ValueError, match=message):
        separability_scores(cnn, X[a], y[b], X[c], y[d], probes="linear")


def test_separability_scores_single_name_and_negative_layer_are_correct(fitted):
    by_name = _scores(fitted, probes="linear", layers=-1)
    by_tuple = _scores(fitted, probes=("linear",), layers=[2])
    np.testing.assert_array_equal(by_name["layer"], [2])
    np.testing.assert_array_equal(by_name["linear"], by_tuple["linear"])


def test_separability_scores_refuses_what_it_cannot_probe(fitted):
    _, X, y = fitted
    logistic = LogisticRegression().fit(X.reshape(40, -1), y)
    with pytest.raises(TypeError, match="LogisticRegression is not supported"):
        separability_scores(logistic, X, y, X, y, probes="linear")
    with pytest.raises(ValueError, match="'estimator' parameter of separability_scores"):
        separability_scores("cnn", X, y, X, y)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"pool": 0}, ValueError, r"pool=0 is invalid"),
        ({"pool": -1}, ValueError, r"pool=-1 is invalid"),
        ({"pool": 1.5}, TypeError, r"pool must be a positive int or None, got 1\.5"),
        ({"pool": True}, TypeError, r"pool must be a positive int or None, got True"),
        ({"layer": "2"}, TypeError, r"layer must be an int .*got '2' of type str"),
        ({"layer": 2.0}, TypeError, r"layer must be an int .*got 2\.0"),
        ({"layer": True}, TypeError, r"layer must be an int .*got True"),
        ({"layer": 0}, ValueError, r"layer=0 is out of range"),
        ({"layer": 3}, ValueError, r"layer=3 is out of range"),
        ({"layer": -3}, ValueError, r"layer=-3 is out of range"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_layer_features_arguments(fitted, kwargs, error, message):
    cnn, X, _ = fitted
    with pytest.raises(error, match=message):
        layer_features(cnn, X, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layer": "2"}, "'layer' parameter of LayerFeatures"),
        ({"layer": 0}, "'layer' parameter of LayerFeatures"),
        ({"layer": True}, "'layer' parameter of LayerFeatures"),
        ({"pool": 0}, "'pool' parameter of LayerFeatures"),
        ({"layer": 5}, "layer=5 is out of range"),
    ],
    ids=["layer='2'", "layer=0", "layer=True", "pool=0", "layer=5"],
)
def test_layer_features_transformer_parameters(fitted, kwargs, message):
    cnn, X, _ = fitted
    with pytest.raises(ValueError, match=message):
        LayerFeatures(FrozenEstimator(cnn), **kwargs).fit(X)


DISPLAY_CASES = {
    "separability lengths": (
        lambda: SeparabilityDisplay([1, 2, 3], {"linear": [0.5, 0.6]}).plot(),
        ValueError,
        r"scores\['linear'\] has 2 values but layers has 3",
    ),
    "separability layers floats": (
        lambda: SeparabilityDisplay([1.5, 2.5], {"linear": [0.5, 0.6]}).plot(),
        ValueError,
        "layers must be a non-empty 1-D array of ints",
    ),
    "separability scores not a dict": (
        lambda: SeparabilityDisplay([1, 2], [0.5, 0.6]).plot(),
        TypeError,
        "scores must be a dict",
    ),
    "separability no probe": (
        lambda: SeparabilityDisplay([1, 2], {"layer": [1, 2]}).plot(),
        ValueError,
        "scores holds no probe",
    ),
    "separability text scores": (
        lambda: SeparabilityDisplay([1, 2], {"linear": ["a", "b"]}).plot(),
        TypeError,
        r"scores\['linear'\] must hold numbers",
    ),
    "pca y length": (
        lambda: LayerPCADisplay(np.zeros((10, 2)), [0, 1] * 4).plot(),
        ValueError,
        r"y has shape \(8,\) but projection has 10 rows",
    ),
    "pca one component": (
        lambda: LayerPCADisplay(np.zeros((10, 1)), [0, 1] * 5).plot(),
        ValueError,
        r"projection must have shape \(n_samples, 2\), got \(10, 1\)",
    ),
    "pca ratio length": (
        lambda: LayerPCADisplay(
            np.zeros((4, 2)), [0, 1] * 2, explained_variance_ratio=[0.5]
        ).plot(),
        ValueError,
        "explained_variance_ratio needs one value per component",
    ),
    "pca s=0": (
        lambda: LayerPCADisplay(np.zeros((4, 2)), [0, 1] * 2).plot(s=0),
        ValueError,
        "'s' parameter of LayerPCADisplay.plot",
    ),
    "pca alpha=2": (
        lambda: LayerPCADisplay(np.zeros((4, 2)), [0, 1] * 2).plot(alpha=2),
        ValueError,
        "'alpha' parameter of LayerPCADisplay.plot",
    ),
    "pca layer='2'": (
        lambda: LayerPCADisplay(np.zeros((4, 2)), [0, 1] * 2, layer="2").plot(),
        TypeError,
        "layer must be an int or None, got '2'",
    ),
    "training empty history": (
        lambda: LayerwiseTrainingDisplay([]).plot(),
        ValueError,
        "history is empty",
    ),
    "training history a dict": (
        lambda: LayerwiseTrainingDisplay({"train_score": 1.0}).plot(),
        TypeError,
        "history must be a list",
    ),
    "training record without score": (
        lambda: LayerwiseTrainingDisplay([[{"train_score": 0.5}], [{"loss": 1.0}]]).plot(),
        ValueError,
        r"history\[1\]\[0\] must be a dict with a 'train_score'",
    ),
    "training empty stage": (
        lambda: LayerwiseTrainingDisplay([[{"train_score": 0.5}], []]).plot(),
        ValueError,
        r"history\[1\] is empty",
    ),
    "training score_name=3": (
        lambda: LayerwiseTrainingDisplay([{"train_score": 0.5}], score_name=3).plot(),
        TypeError,
        "score_name must be a str or None, got 3",
    ),
    "training ax='left'": (
        lambda: LayerwiseTrainingDisplay([{"train_score": 0.5}]).plot(ax="left"),
        ValueError,
        "'ax' parameter of LayerwiseTrainingDisplay.plot",
    ),
    "training show_validation='no'": (
        lambda: LayerwiseTrainingDisplay([{"train_score": 0.5}]).plot(show_validation="no"),
        ValueError,
        "'show_validation' parameter",
    ),
}


@pytest.mark.parametrize("case", list(DISPLAY_CASES))
def test_display_arguments(case):
    call, error, message = DISPLAY_CASES[case]
    with pytest.raises(error, match=message):
        call()
    # refused before anything was drawn
    assert all(not fig.axes or not fig.axes[0].lines for fig in map(plt.figure, plt.get_fignums()))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layer": "2"}, TypeError, "layer must be an int"),
        ({"layer": 3}, ValueError, "layer=3 is out of range"),
        ({"pool": 0}, ValueError, "pool=0 is invalid"),
        ({"batch_size": 0}, ValueError, "'batch_size' parameter of LayerPCADisplay"),
        ({"s": -1}, ValueError, "'s' parameter of LayerPCADisplay.plot"),
    ],
    ids=["layer='2'", "layer=3", "pool=0", "batch_size=0", "plot s=-1"],
)
def test_layer_pca_from_estimator_arguments(fitted, kwargs, error, message):
    cnn, X, y = fitted
    with pytest.raises(error, match=message):
        LayerPCADisplay.from_estimator(cnn, X, y, **kwargs)


def test_layer_pca_from_estimator_sizes(fitted):
    cnn, X, y = fitted
    with pytest.raises(ValueError, match="X has 40 samples but y has 39"):
        LayerPCADisplay.from_estimator(cnn, X, y[:-1])
