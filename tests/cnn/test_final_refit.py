"""refit_final_head (Sec. 4.3, Table 1): the last layer step retrained with another final
auxiliary width M~_f, the earlier layers frozen and not refitted."""

import pickle

import numpy as np
import pytest
import torch
from _images import quadrant_images
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_greedy import GreedyLayerwiseCNNClassifier, parameter_count


def _images(n=96, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=3, width=4, k=3, aux_width=16, max_epochs=2, batch_size=32,
                    random_state=0, augment=True)  # fmt: skip
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    return _images()


def _states(modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def test_refit_changes_only_the_last_layer_and_head(data):
    X, y = data
    clf = _small().fit(X, y)
    layers, heads = _states(clf.model_.layers), _states(clf.model_.heads)
    staged = list(clf.staged_predict_proba(X))
    size = parameter_count(clf)
    clf.refit_final_head(X, y, final_aux_width=4)
    for before, layer in zip(layers[:-1], clf.model_.layers[:-1]):
        for key, value in layer.state_dict().items():
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    for before, head in zip(heads[:-1], clf.model_.heads[:-1]):
        for key, value in head.state_dict().items():
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert any(
        not torch.equal(v, layers[-1][k]) for k, v in clf.model_.layers[-1].state_dict().items()
    )
    assert clf.model_.heads[-1].hidden[0].out_channels == 4  # M~_f
    for old, new in zip(staged[:-1], list(clf.staged_predict_proba(X))[:-1]):
        np.testing.assert_array_equal(old, new)
    report = clf.final_refit_
    assert report["final_aux_width"] == (16 * 2, 4)  # aux width doubled at the downsampling
    assert report["n_params"] == (size, parameter_count(clf)) and size > parameter_count(clf)
    assert report["train_score"][1] == pytest.approx(clf.layer_scores_[-1])
    assert clf.layer_specs_[-1].aux_width == 4 and len(clf.history_[-1]) == 2
    assert clf.final_aux_width is None  # parameters untouched


def test_refit_is_the_fit_with_that_final_width_from_the_start(data):
    """The refit trains the last step as fit would have (same seeds, same batches):
    refitting with M~_f equals fitting with final_aux_width=M~_f."""
    X, y = data
    refit = _small().fit(X, y).refit_final_head(X, y, final_aux_width=6)
    direct = _small(final_aux_width=6).fit(X, y)
    np.testing.assert_allclose(refit.predict_proba(X), direct.predict_proba(X), rtol=1e-5)
    assert list(refit.n_iter_) == list(direct.n_iter_)


def test_validation_scores_are_reported(data):
    X, y = data
    clf = _small(n_layers=2).fit(X, y)
    clf.refit_final_head(X[:64], y[:64], final_aux_width=8, X_val=X[64:], y_val=y[64:])
    before, after = clf.final_refit_["valid_score"]
    assert 0 <= before <= 1 and 0 <= after <= 1
    assert after == pytest.approx(clf.score(X[64:], y[64:]))


@pytest.mark.parametrize("width", [0, -1, 2.5, True, None])
def test_bad_widths_are_refused_and_the_model_kept(data, width):
    X, y = data
    clf = _small(n_layers=2).fit(X, y)
    proba = clf.predict_proba(X)
    with pytest.raises(ValueError, match="final_aux_width"):
        clf.refit_final_head(X, y, final_aux_width=width)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    assert not hasattr(clf, "final_refit_")


def test_unfitted_unknown_labels_and_other_images_are_refused(data):
    X, y = data
    with pytest.raises(NotFittedError):
        _small().refit_final_head(X, y, final_aux_width=4)
    clf = _small(n_layers=2).fit(X, y)
    with pytest.raises(ValueError, match="absent from classes_"):
        clf.refit_final_head(X, y + 5, final_aux_width=4)
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.refit_final_head(X[:, :, :4], y, final_aux_width=4)
    assert not hasattr(clf, "final_refit_")


def test_refit_of_a_compressed_layer_compresses_it_again(data):
    X, y = data
    clf = _small(n_layers=2, prune_to=3, prune_epochs=1, downsample_at=()).fit(X, y)
    clf.refit_final_head(X, y, final_aux_width=5)
    assert clf.layer_widths_ == [3, 3] and clf.model_.layers[-1].conv.out_channels == 3
    assert clf.pruning_[-1]["trained_width"] == 4
    assert clf.model_.heads[-1].hidden[0].out_channels == 5


def test_pickle_and_clone_after_refit(data):
    X, y = data
    clf = _small(n_layers=2).fit(X, y).refit_final_head(X, y, final_aux_width=4)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert restored.final_refit_ == clf.final_refit_
    assert clone(clf).get_params() == _small(n_layers=2).get_params()


def test_architecture_changed_since_fit_is_refused(data):
    X, y = data
    clf = _small(n_layers=2).fit(X, y)
    with pytest.raises(ValueError, match="refit_final_head cannot change k"):
        clf.set_params(k=2).refit_final_head(X, y, final_aux_width=4)
    assert not hasattr(clf, "final_refit_")
