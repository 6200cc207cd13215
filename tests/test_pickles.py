"""Pickles of release 0.1.0.dev0 (the flat layout, before the subpackages) load into the
current classes and predict exactly as they did; pickles made today name the new modules.

The files in tests/data/release_0.1.0.dev0 were written by its make.py at that release.
"""

import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

import sklearn_greedy

RELEASE = Path(__file__).parent / "data" / "release_0.1.0.dev0"
CLASSES = {
    "cnn": sklearn_greedy.GreedyLayerwiseCNNClassifier,
    "cnn_pruned": sklearn_greedy.GreedyLayerwiseCNNClassifier,
    "sequential_regressor": sklearn_greedy.SequentialImplicitRegressor,
    "sequential_classifier": sklearn_greedy.SequentialImplicitClassifier,
    "end_to_end_regressor": sklearn_greedy.EndToEndImplicitRegressor,
}


def _inputs(name):
    if name.startswith("cnn") or name == "sequential_classifier":
        return load_digits().data[:20] / 16.0
    return load_diabetes(return_X_y=True)[0][:20]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_pickle_of_the_flat_release_loads_and_predicts_as_it_did(name):
    blob = (RELEASE / f"{name}.pkl").read_bytes()
    assert b"sklearn_greedy._" in blob  # written by the flat layout, as the test assumes
    est = pickle.loads(blob)
    assert type(est) is CLASSES[name]
    expected = np.load(RELEASE / "expected.npz")
    X = _inputs(name)
    np.testing.assert_array_equal(est.predict(X), expected[name])
    if name.startswith("cnn"):
        np.testing.assert_allclose(est.predict_proba(X), expected[name + "_proba"], rtol=1e-6)
        np.testing.assert_allclose(est.transform(X), expected[name + "_transform"], rtol=1e-6)
    # pickled again, it names today's modules only (sklearn_greedy.cnn._modules...)
    again = pickle.dumps(est)
    assert b"sklearn_greedy._" not in again
    assert b"sklearn_greedy." in again


def test_an_old_name_that_no_longer_exists_is_refused_with_a_message():
    import sklearn_greedy._cnn_variants as old

    assert old.parameter_count is sklearn_greedy.parameter_count
    with pytest.raises(AttributeError, match="0.1.0.dev0.*Refit the estimator"):
        old.CNNVariantsMixin  # noqa: B018
