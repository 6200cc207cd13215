import copy

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_greedy import (
    GreedyLayerwiseCNNClassifier,
    LayerFeatures,
    SequentialImplicitClassifier,
    layer_features,
    separability_scores,
)


def _images(n, seed):
    """Three classes of 8x8 images: a bright row, column or diagonal, plus noise."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    X = rng.rand(n, 1, 8, 8).astype(np.float32) * 0.5
    X[y == 0, 0, 3, :] += 1.0
    X[y == 1, 0, :, 3] += 1.0
    X[y == 2, 0] += np.eye(8, dtype=np.float32)
    return X, y


@pytest.fixture(scope="module")
def data():
    X, y = _images(150, 0)
    return X[:90], y[:90], X[90:], y[90:]


def _cnn(**params):
    defaults = dict(n_layers=2, width=8, max_epochs=3, batch_size=32, random_state=0)
    params = {**defaults, "device": "cpu", **params}
    return GreedyLayerwiseCNNClassifier(**params)


@pytest.fixture(scope="module")
def cnn(data):
    X, y, _, _ = data
    return _cnn().fit(X, y)


class CountingCNN(GreedyLayerwiseCNNClassifier):
    """Counts its fits, to prove that a grid search never refits a frozen network."""

    n_fits = 0

    def fit(self, X, y):
        type(self).n_fits += 1
        return super().fit(X, y)


@pytest.mark.parametrize("pool, shape", [(2, (16, 2, 2)), (1, (16, 1, 1)), (None, (16, 4, 4))])
def test_layer_features_shapes(cnn, data, pool, shape):
    X = data[0]
    # layer 1 is at full 8x8 resolution; layer 2 downsamples (j=1) and doubles the width
    assert layer_features(cnn, X, layer=1, pool=None).shape == (90, 8 * 8 * 8)
    out = layer_features(cnn, X, layer=2, pool=pool)
    assert out.shape == (90, int(np.prod(shape)))
    assert out.dtype == np.float32


def test_layer_features_match_transform(cnn, data):
    X = data[0]
    np.testing.assert_allclose(layer_features(cnn, X), cnn.transform(X), rtol=1e-6)
    # a shallow copy shares the fitted network; only transform_layer differs
    view = copy.copy(cnn)
    view.transform_layer = 1
    np.testing.assert_allclose(
        layer_features(FrozenEstimator(cnn), X, layer=1), view.transform(X), rtol=1e-6
    )
    assert cnn.transform_layer is None


def test_layer_features_errors(cnn, data):
    with pytest.raises(ValueError, match="layer=3 is out of range"):
        layer_features(cnn, data[0], layer=3)
    with pytest.raises(NotFittedError):
        layer_features(_cnn(), data[0])
    with pytest.raises(ValueError, match="features"):
        layer_features(cnn, np.zeros((3, 5)))


def test_pipeline_and_feature_names(cnn, data):
    X, y, X_test, y_test = data
    pipe = make_pipeline(
        LayerFeatures(FrozenEstimator(cnn), layer=2), PCA(5), LogisticRegression(max_iter=500)
    )
    pipe.fit(X, y)
    assert 0.0 <= pipe.score(X_test, y_test) <= 1.0
    lf = pipe[0]
    assert lf.layer_ == 2 and lf.feature_shape_ == (16, 2, 2)
    assert lf.n_features_in_ == 64
    names = lf.get_feature_names_out()
    assert names.shape == (64,) and names[0] == "layer2_c0_00" and names[-1] == "layer2_c15_11"
    assert lf.transform(X_test).shape == (60, 64)
    full = LayerFeatures(FrozenEstimator(cnn), layer=1, pool=None).fit(X)
    assert full.get_feature_names_out().shape == (8 * 8 * 8,)
    assert full.set_output(transform="default").transform(X).shape == (90, 512)


def test_grid_search_fits_the_network_once(data):
    X, y, _, _ = data
    CountingCNN.n_fits = 0
    cnn = CountingCNN(n_layers=2, width=8, max_epochs=2, random_state=0, device="cpu").fit(X, y)
    history = cnn.history_
    pipe = make_pipeline(LayerFeatures(FrozenEstimator(cnn)), LogisticRegression(max_iter=200))
    search = GridSearchCV(pipe, {"layerfeatures__layer": [1, 2], "layerfeatures__pool": [1, 2]})
    search.fit(X, y)
    assert CountingCNN.n_fits == 1
    assert cnn.history_ is history
    assert search.cv_results_["mean_test_score"].shape == (4,)
    assert search.best_estimator_[0].estimator_.estimator is cnn


def test_clone_keeps_frozen_network(cnn):
    lf = LayerFeatures(FrozenEstimator(cnn), layer=1, pool=None)
    cloned = clone(lf)
    assert cloned.estimator is lf.estimator
    assert cloned.get_params()["layer"] == 1 and cloned.get_params()["pool"] is None


def test_unfitted_estimator_is_cloned_and_fitted(data):
    X, y, _, _ = data
    est = _cnn(n_layers=1, max_epochs=1)
    lf = LayerFeatures(est).fit(X, y)
    assert not hasattr(est, "model_")
    assert lf.estimator_.n_layers_fitted_ == 1
    assert lf.fit_transform(X, y).shape == (90, 32)


def test_invalid_parameters(cnn, data):
    X = data[0]
    with pytest.raises(InvalidParameterError, match="layer"):
        LayerFeatures(FrozenEstimator(cnn), layer=0).fit(X)
    with pytest.raises(InvalidParameterError, match="pool"):
        LayerFeatures(FrozenEstimator(cnn), pool=0).fit(X)
    with pytest.raises(ValueError, match="out of range"):
        LayerFeatures(FrozenEstimator(cnn), layer=3).fit(X)
    with pytest.raises(NotFittedError):
        LayerFeatures(FrozenEstimator(cnn)).transform(X)


@pytest.fixture(scope="module")
def implicit(data):
    X, y, _, _ = data
    est = SequentialImplicitClassifier(n_states=6, n_blocks=3, random_state=0)
    return est.fit(X.reshape(90, -1), y)


def test_implicit_models_through_transform_blocks(implicit, data):
    X, y, X_test, y_test = data
    X2, X2_test = X.reshape(90, -1), X_test.reshape(60, -1)
    lf = LayerFeatures(FrozenEstimator(implicit), layer=2).fit(X2, y)
    sizes = implicit.block_sizes_
    assert lf.transform(X2).shape == (90, sizes[0] + sizes[1])
    assert lf.get_feature_names_out()[0] == "block2_x0"
    assert implicit.transform_blocks is None
    scores = separability_scores(implicit, X2, y, X2_test, y_test, probes=("linear",))
    np.testing.assert_array_equal(scores["layer"], [1, 2, 3])
    with pytest.raises(ValueError, match="CNN-p probes need a convolutional"):
        separability_scores(implicit, X2, y, X2_test, y_test)


def test_implicit_feature_names_are_the_models_own(implicit, data):
    """Each column is named by the block it belongs to, as the model names it: blocks 2
    and 1 of sizes 2 and 2 are ``block2_x0, block2_x1, block1_x0, block1_x1``."""
    X2, y = data[0].reshape(90, -1), data[1]
    assert implicit.block_sizes_ == [2, 2, 2]
    lf = LayerFeatures(FrozenEstimator(implicit), layer=2).fit(X2, y)
    names = lf.get_feature_names_out()
    assert names.tolist() == ["block2_x0", "block2_x1", "block1_x0", "block1_x1"]
    view = copy.copy(implicit)
    view.transform_blocks = 2
    assert names.tolist() == view.get_feature_names_out().tolist()
    assert names.shape == (lf.transform(X2).shape[1],)
    assert implicit.transform_blocks is None
    every = LayerFeatures(FrozenEstimator(implicit)).fit(X2, y).get_feature_names_out()
    np.testing.assert_array_equal(every, implicit.get_feature_names_out())


def test_separability_scores_one_row_per_layer(cnn, data):
    scores = separability_scores(cnn, *data, max_epochs=2, random_state=0)
    assert sorted(scores) == ["cnn1", "cnn2", "layer", "linear"]
    np.testing.assert_array_equal(scores["layer"], [1, 2])
    for name in ("linear", "cnn1", "cnn2"):
        assert scores[name].shape == (2,)
        assert np.all((scores[name] >= 0) & (scores[name] <= 1))
    # the synthetic classes are easy: a linear probe on any layer beats chance by far
    assert scores["linear"].min() > 0.6


def test_separability_scores_options(cnn, data):
    scores = separability_scores(
        FrozenEstimator(cnn), *data, probes=("cnn3",), layers=[2], max_epochs=1, probe_width=4
    )
    assert sorted(scores) == ["cnn3", "layer"] and scores["cnn3"].shape == (1,)
    a = separability_scores(cnn, *data, probes=("cnn1",), max_epochs=1, random_state=3)
    b = separability_scores(cnn, *data, probes=("cnn1",), max_epochs=1, random_state=3)
    np.testing.assert_array_equal(a["cnn1"], b["cnn1"])
    with pytest.raises(ValueError, match="Unknown probe 'mlp'"):
        separability_scores(cnn, *data, probes=("mlp",))
    with pytest.raises(ValueError, match="out of range"):
        separability_scores(cnn, *data, layers=[4])
    X, y, X_test, y_test = data
    with pytest.raises(ValueError, match=r"absent from y_train: \[7\]"):
        separability_scores(cnn, X, y, X_test, np.full_like(y_test, 7), probes=("cnn1",))


def test_one_layer_convention_everywhere(cnn, data):
    X, y, X_test, y_test = data
    # 1-based like the paper's x_j; -1 is the last layer; None is the last layer
    np.testing.assert_array_equal(layer_features(cnn, X, -1), layer_features(cnn, X, 2))
    np.testing.assert_array_equal(layer_features(cnn, X, -2), layer_features(cnn, X, 1))
    np.testing.assert_array_equal(layer_features(cnn, X, None), layer_features(cnn, X, 2))
    lf = LayerFeatures(FrozenEstimator(cnn), layer=-2).fit(X)
    assert lf.layer_ == 1 and lf.get_feature_names_out()[0] == "layer1_c0_00"
    scores = separability_scores(cnn, X, y, X_test, y_test, probes="linear", layers=[-1, 1])
    np.testing.assert_array_equal(scores["layer"], [2, 1])
    single = separability_scores(cnn, X, y, X_test, y_test, probes="linear", layers=-2)
    np.testing.assert_array_equal(single["layer"], [1])
    assert single["linear"][0] == scores["linear"][1]


def test_a_single_probe_name_is_one_probe(cnn, data):
    scores = separability_scores(cnn, *data, probes="linear")
    assert sorted(scores) == ["layer", "linear"] and scores["linear"].shape == (2,)
    scores = separability_scores(cnn, *data, probes="cnn1", layers=[2], max_epochs=1)
    assert sorted(scores) == ["cnn1", "layer"]


class _LayerOutputsOnly(BaseEstimator):
    """A fitted network seen only through the public methods probing may use."""

    def __init__(self, cnn=None):
        self.cnn = cnn
        self.n_layers_fitted_ = cnn.n_layers_fitted_
        self.n_features_in_ = cnn.n_features_in_
        self.device_ = cnn.device_

    def fit(self, X, y=None):
        return self

    def layer_outputs(self, X, layers=None, *, pool=2):
        return self.cnn.layer_outputs(X, layers, pool=pool)

    def layer_output_shape(self, layer=None, *, pool=2):
        return self.cnn.layer_output_shape(layer, pool=pool)


def test_probing_needs_only_public_methods(cnn, data):
    X, y, X_test, y_test = data
    public = _LayerOutputsOnly(cnn)
    np.testing.assert_array_equal(layer_features(public, X, 1), layer_features(cnn, X, 1))
    a = separability_scores(public, *data, probes=("linear", "cnn1"), max_epochs=1, random_state=0)
    b = separability_scores(cnn, *data, probes=("linear", "cnn1"), max_epochs=1, random_state=0)
    np.testing.assert_array_equal(a["linear"], b["linear"])
    np.testing.assert_array_equal(a["cnn1"], b["cnn1"])


def _small_unfitted_cnn():
    return GreedyLayerwiseCNNClassifier(
        n_layers=1, width=2, max_epochs=1, batch_size=16, random_state=0, device="cpu"
    )


@parametrize_with_checks([LayerFeatures(_small_unfitted_cnn())])
def test_layer_features_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_fitted_but_not_frozen_estimator_is_refitted_as_a_clone(cnn, data):
    X, y, _, _ = data
    CountingCNN.n_fits = 0
    inner = CountingCNN(n_layers=1, width=2, max_epochs=1, random_state=0, device="cpu")
    inner.fit(X, y)
    lf = LayerFeatures(inner).fit(X, y)
    assert CountingCNN.n_fits == 2 and lf.estimator_ is not inner
    LayerFeatures(FrozenEstimator(inner)).fit(X, y)
    assert CountingCNN.n_fits == 2
