"""Many fits on a cluster: a grid search through joblib's Dask or Ray backend scores exactly as
the same search run in this process, and an estimator fitted on a worker comes back to the
client predicting as one fitted here, through a pickle as well.

One cluster per module (starting one costs seconds); Ray is an optional extra that CI does not
install, so its test skips without it.
"""

import os
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from sklearn_greedy import GreedyLayerwiseCNNClassifier

GRID = {"k": [1, 2], "width": [8, 16]}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    # enough samples for scores that differ across the grid, few enough for seconds
    return X[:300].reshape(-1, 1, 8, 8) / 16, y[:300]


def _search():
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=2, max_epochs=3, device="cpu", n_threads=1, random_state=0
    )
    # a fit that fails on a worker must fail the test, not turn into a NaN score that
    # would equal a NaN score here
    return GridSearchCV(cnn, GRID, cv=2, error_score="raise")


@pytest.fixture(scope="module")
def local_search(digits):
    return _search().fit(*digits)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            scheduler_port=0,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    yield ray
    ray.shutdown()


def _check_search_and_fit_on_workers(backend, digits, local_search):
    """The search under ``backend`` scores as ``local_search``; an estimator fitted there in
    another process predicts as the local one, before and after a pickle round trip."""
    X, y = digits

    def fit_where(estimator):
        # defined here so that it travels by value: workers cannot import the tests
        return estimator.fit(X, y), os.getpid()

    with joblib.parallel_backend(backend):
        search = _search().fit(X, y)
        # GridSearchCV refits best_estimator_ in this process; the fit below is how a
        # fitted estimator comes back from a worker
        ((fitted, pid),) = joblib.Parallel()(
            [joblib.delayed(fit_where)(clone(local_search.best_estimator_))]
        )

    for key in local_search.cv_results_:
        if key.endswith("test_score"):
            np.testing.assert_array_equal(search.cv_results_[key], local_search.cv_results_[key])
    assert search.best_params_ == local_search.best_params_

    assert pid != os.getpid()
    expected = local_search.best_estimator_.predict_proba(X)
    np.testing.assert_array_equal(fitted.predict_proba(X), expected)
    assert fitted.device_.type == "cpu"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(X), expected)


@pytest.mark.timeout(90)
def test_dask_search_scores_as_local_and_fitted_estimators_come_back(
    dask_client, digits, local_search
):
    from dask.distributed import get_task_stream

    with get_task_stream(dask_client) as tasks:
        _check_search_and_fit_on_workers("dask", digits, local_search)
    # the search's fits ran on the cluster's workers
    assert tasks.data
    assert {task["worker"] for task in tasks.data} <= set(dask_client.scheduler_info()["workers"])


@pytest.mark.timeout(120)
def test_ray_search_scores_as_local_and_fitted_estimators_come_back(
    ray_cluster, digits, local_search
):
    _check_search_and_fit_on_workers("ray", digits, local_search)


def test_a_dead_dask_worker_is_named_by_the_cluster_example(monkeypatch):
    """A worker that dies mid-search reaches joblib as FutureCancelledError ("already
    forgotten"); the example says that a worker died and where to look, not only that."""
    pytest.importorskip("distributed")
    import sys
    from pathlib import Path

    from distributed.client import FutureCancelledError

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import grid_search_cluster as example
    finally:
        sys.path.pop(0)
    assert example.worker_lost(FutureCancelledError("fit-1", "already forgotten"))
    assert not example.worker_lost(ValueError("a bad parameter"))

    def dying_search(self, X, y):
        raise FutureCancelledError("fit-1", "already forgotten")

    # the example imports GridSearchCV when it runs (so that its --help answers at once):
    # the class it will use is scikit-learn's, patched here
    monkeypatch.setattr(GridSearchCV, "fit", dying_search)
    with pytest.raises(SystemExit, match="a Dask worker died during the search.*worker's log"):
        example.main(["--backend", "local", "--n-workers", "1"])


def _gpus_left():
    """The GPU resource its worker has left while this task runs (module level: Dask's
    in-process workers import it by name)."""
    from distributed import get_worker

    return get_worker().state.available_resources.get("GPU")


def _cluster_example():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import grid_search_cluster
    finally:
        sys.path.pop(0)
    return grid_search_cluster


def test_dask_gpu_fits_ask_for_a_gpu_worker_and_a_cluster_without_one_is_refused(dask_client):
    """Issue 25: with --gpus-per-fit, each fit asks Dask for a GPU resource, so that a
    CPU-only worker never trains one; a cluster where no worker declares a GPU is refused
    instead of leaving the search waiting forever."""
    import argparse
    import contextlib

    from dask.distributed import LocalCluster

    example = _cluster_example()
    args = argparse.Namespace(scheduler=dask_client.scheduler.address, n_workers=None)
    args.gpus_per_fit = 1
    with contextlib.ExitStack() as stack, pytest.raises(SystemExit, match="--resources GPU=1"):
        example.dask_backend(args, stack)
    args.gpus_per_fit = 0
    with contextlib.ExitStack() as stack:
        assert example.dask_backend(args, stack) == {"backend": "dask"}

    gpu_worker = dict(n_workers=1, threads_per_worker=2, resources={"GPU": 1})
    with (
        LocalCluster(processes=False, dashboard_address=":0", **gpu_worker) as cluster,
        contextlib.ExitStack() as stack,
    ):
        args.scheduler, args.gpus_per_fit = cluster.scheduler_address, 1
        backend = example.dask_backend(args, stack)
        assert backend == {"backend": "dask", "resources": {"GPU": 1}}
        with joblib.parallel_backend(**backend):
            left = joblib.Parallel()(joblib.delayed(_gpus_left)() for _ in range(2))
    assert left == [0, 0]  # each task held the worker's one GPU while it ran
