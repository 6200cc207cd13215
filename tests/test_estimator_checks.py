"""scikit-learn's own estimator contract, run on small fast configurations."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_greedy import GreedyLayerwiseCNNClassifier


def _fast_cnn():
    return GreedyLayerwiseCNNClassifier(
        n_layers=2, width=8, max_epochs=10, batch_size=32, device="cpu", random_state=0
    )


@parametrize_with_checks([_fast_cnn()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
