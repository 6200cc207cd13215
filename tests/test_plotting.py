import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402

from sklearn_greedy import (  # noqa: E402
    GreedyLayerwiseCNNClassifier,
    LayerPCADisplay,
    LayerwiseTrainingDisplay,
    SeparabilityDisplay,
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
