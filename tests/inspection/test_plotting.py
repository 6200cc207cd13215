import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402

from sklearn_greedy import (  # noqa: E402
    EndToEndImplicitRegressor,
    GreedyLayerwiseCNNClassifier,
    LayerPCADisplay,
    LayerwiseTrainingDisplay,
    SeparabilityDisplay,
    SequentialImplicitRegressor,
)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    y = np.arange(90) % 3
    X = rng.rand(90, 1, 8, 8).astype(np.float32)
    X[y == 0, 0, 2, :] += 1.0
    X[y == 1, 0, :, 2] += 1.0
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=2,
        width=8,
        max_epochs=3,
        batch_size=32,
        early_stopping=True,
        validation_fraction=0.2,
        random_state=0,
        device="cpu",
    )
    with warnings.catch_warnings():
        # three epochs are enough for curves to plot; the layers are not meant to converge
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cnn.fit(X, y), X, y


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_layerwise_training_display(fitted):
    cnn, _, _ = fitted
    display = LayerwiseTrainingDisplay.from_estimator(cnn)
    # a training and a validation curve per layer, epochs laid end to end
    assert len(display.lines_) == 4
    assert display.lines_[2].get_xdata()[0] == len(cnn.history_[0]) + 1
    assert display.ax_.get_xlabel() and display.ax_.get_ylabel() == "accuracy"
    assert display.figure_ is display.ax_.figure
    _, ax = plt.subplots()
    display = LayerwiseTrainingDisplay(cnn.history_).plot(ax=ax, show_validation=False)
    assert display.ax_ is ax and len(display.lines_) == 2


def test_separability_display(fitted):
    cnn, X, y = fitted
    display = SeparabilityDisplay.from_estimator(
        FrozenEstimator(cnn),
        X[:60],
        y[:60],
        X[60:],
        y[60:],
        probes=("linear", "cnn1"),
        max_epochs=1,
        random_state=0,
    )
    assert [line.get_label() for line in display.lines_] == [
        "linear separability",
        "CNN-1 separability",
    ]
    np.testing.assert_array_equal(display.lines_[0].get_xdata(), [1, 2])
    assert display.ax_.get_xlabel() == "layer" and display.ax_.get_ylabel()
    assert set(display.scores_) == {"layer", "linear", "cnn1"}


def test_layer_pca_display(fitted):
    cnn, X, y = fitted
    display = LayerPCADisplay.from_estimator(cnn, X, y, layer=1, batch_size=40)
    assert len(display.lines_) == 3
    assert display.projection.shape == (90, 2)
    assert display.ax_.get_title() == "layer 1"
    assert display.ax_.get_xlabel().startswith("principal component 1")
    assert display.ax_.get_ylabel().startswith("principal component 2")
    assert display.pca_.n_components_ == 2


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.RandomState(0)
    u = rng.uniform(-2, 2, (60, 1))
    return u, np.sin(u[:, 0])


def test_regressor_history_is_labelled_negative_mse(regression_data):
    u, y = regression_data
    reg = SequentialImplicitRegressor(n_states=4, n_blocks=2, max_epochs=2, random_state=0)
    display = LayerwiseTrainingDisplay.from_estimator(reg.fit(u, y))
    # a regressor's train_score is minus the MSE on standardised targets, not an accuracy
    assert display.ax_.get_ylabel() == "negative MSE (standardised targets)"
    assert display.lines_[0].get_label() == "block 1 train"
    assert display.ax_.get_xlabel() == "epoch (blocks trained one after the other)"


def test_flat_history_is_one_stage(regression_data):
    u, y = regression_data
    reg = EndToEndImplicitRegressor(n_states=4, max_epochs=2, random_state=0).fit(u, y)
    display = LayerwiseTrainingDisplay.from_estimator(reg, show_validation=False)
    assert len(display.lines_) == 1 and display.ax_.get_xlabel() == "epoch"
    assert display.ax_.get_ylabel().startswith("negative MSE")
    flat = [{"train_score": 0.1}, {"train_score": 0.3}, {"train_score": 0.2}]
    display = LayerwiseTrainingDisplay(flat).plot()
    np.testing.assert_array_equal(display.lines_[0].get_ydata(), [0.1, 0.3, 0.2])
    np.testing.assert_array_equal(display.lines_[0].get_xdata(), [1, 2, 3])
    assert display.ax_.get_ylabel() == "score"


def test_layer_pca_display_negative_layer(fitted):
    cnn, X, y = fitted
    display = LayerPCADisplay.from_estimator(cnn, X, y, layer=-1)
    assert display.layer == 2 and display.ax_.get_title() == "layer 2"
