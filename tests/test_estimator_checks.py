"""scikit-learn's own estimator contract, run on small fast configurations."""

import pytest
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_greedy import GreedyLayerwiseCNNClassifier


def _fast_cnn():
    return GreedyLayerwiseCNNClassifier(
        n_layers=2, width=8, max_epochs=10, batch_size=32, device="cpu", random_state=0
    )


# Stochastic minibatch training: weighting a sample by 2 and repeating it twice shuffle
# into different batches, so the two fits differ as any two SGD runs do (scikit-learn's
# SGD-trained estimators fail this check for the same reason).
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": "minibatch SGD: batches differ",
}


@parametrize_with_checks([_fast_cnn()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# scikit-learn runs its set_output checks apart from parametrize_with_checks (its own common
# tests call them on every transformer): here on every public transformer of this package.
def _transformers():
    from sklearn_greedy import (
        EndToEndImplicitClassifier,
        EndToEndImplicitRegressor,
        LayerFeatures,
        SequentialImplicitClassifier,
        SequentialImplicitRegressor,
    )

    fast = dict(max_epochs=2, random_state=0, device="cpu")  # the output's form is checked
    return [
        _fast_cnn().set_params(max_epochs=1),
        SequentialImplicitRegressor(n_states=4, n_blocks=2, **fast),
        SequentialImplicitClassifier(n_states=4, n_blocks=2, **fast),
        EndToEndImplicitRegressor(n_states=4, **fast),
        EndToEndImplicitClassifier(n_states=4, **fast),
        LayerFeatures(_fast_cnn().set_params(max_epochs=1), layer=1),
    ]


SET_OUTPUT_CHECKS = [
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_global_output_transform_pandas",
    "check_set_output_transform_polars",
    "check_global_set_output_transform_polars",
]


@pytest.mark.parametrize("check", SET_OUTPUT_CHECKS)
@pytest.mark.parametrize("estimator", _transformers(), ids=lambda e: type(e).__name__)
def test_set_output_checks(estimator, check):
    library = "polars" if "polars" in check else "pandas"
    pytest.importorskip(library)
    getattr(estimator_checks, check)(type(estimator).__name__, estimator)
