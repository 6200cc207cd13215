"""Grid search on a Dask or Ray cluster
====================================

Grid search over ``k`` and the width on digits, each fit on a worker of a Dask or Ray
cluster.

scikit-learn's searches run their fits through joblib, so a joblib backend is all it takes:
``with joblib.parallel_backend("dask"): search.fit(X, y)``. The scores are the same as a local
search's (CPU training is deterministic under ``random_state``). The best parameters are then
fitted once more on a worker, and the fitted estimator comes back to this process: estimators
pickle their network as CPU tensors (Dask cannot serialise CUDA tensors), so a model fitted on
a worker's GPU loads here without one, and predicts on the CPU.

The documentation's gallery runs it with ``--backend dask --n-workers 2``: a local Dask
cluster of two worker processes on the machine that builds the documentation.

Usage::

    pip install -e ".[dask]"  # or ".[ray]"
    python examples/grid_search_cluster.py --backend dask [--n-workers 2]  # local Dask cluster
    python examples/grid_search_cluster.py --backend dask --scheduler tcp://HOST:8786
    python examples/grid_search_cluster.py --backend ray [--scheduler auto]
    python examples/grid_search_cluster.py --backend local [--n-workers 2]  # loky processes

One worker per GPU with Dask, one thread each, so that each worker trains one model at a time
on a GPU of its own, and each declaring its GPU as a resource::

    dask scheduler  # prints its address, tcp://HOST:8786
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nworkers 1 --nthreads 1 --resources GPU=1
    CUDA_VISIBLE_DEVICES=1 dask worker tcp://HOST:8786 --nworkers 1 --nthreads 1 --resources GPU=1
    python examples/grid_search_cluster.py --backend dask --scheduler tcp://HOST:8786

Each worker then sees its GPU as ``cuda:0``, where the estimator's ``device="auto"`` trains.
With ``--gpus-per-fit 1`` (the default where this machine has a GPU) every fit asks Dask for
one ``GPU`` resource (``parallel_backend("dask", resources={"GPU": 1})``), so a CPU-only
worker that joins the scheduler gets none of them instead of quietly training on its CPU;
a cluster without any GPU worker is refused before the search starts. On one machine,
dask-cuda's ``LocalCUDACluster`` starts the same workers (one process per GPU, each with its
own ``CUDA_VISIBLE_DEVICES`` and here its ``GPU`` resource): this script uses it when
dask-cuda is installed and a GPU is present. With Ray, ``--gpus-per-fit 1`` runs the
search under ``parallel_backend("ray", n_jobs=n_gpus, ray_remote_args={"num_gpus": 1})``:
Ray gives each of its pool's actors one GPU and sets its ``CUDA_VISIBLE_DEVICES``.

Without this, ``GridSearchCV(n_jobs=k)`` on a GPU machine starts k processes that all train
on the same GPU (``cuda:0``), each with its own CUDA context and copy of the data, until it
runs out of memory.
"""

from __future__ import annotations

import argparse
import contextlib
import time

# joblib, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once


def dask_backend(args, stack: contextlib.ExitStack) -> dict:
    """Connect to ``--scheduler`` or start a local cluster; the backend's arguments."""
    import torch
    from dask.distributed import Client, LocalCluster

    if args.scheduler:
        client = stack.enter_context(Client(args.scheduler))
    else:
        cluster = None
        if torch.cuda.is_available():
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                print(
                    "warning: without dask-cuda every local worker trains on the first GPU; "
                    "pip install dask-cuda, or start one worker per GPU (see --help)"
                )
            else:
                # n_workers=None: one worker per visible GPU
                cluster = LocalCUDACluster(
                    n_workers=args.n_workers, threads_per_worker=1, dashboard_address=":0",
                    resources={"GPU": 1},
                )  # fmt: skip
        if cluster is None:
            # one thread per worker: a worker trains one model at a time, on its own core
            cluster = LocalCluster(
                n_workers=args.n_workers or 2, threads_per_worker=1, dashboard_address=":0"
            )
        client = stack.enter_context(Client(stack.enter_context(cluster)))
    workers = client.scheduler_info()["workers"].values()
    print(f"dask: {len(workers)} workers, scheduler {client.scheduler.address}")
    if not args.gpus_per_fit:
        return {"backend": "dask"}
    gpus = [w.get("resources", {}).get("GPU", 0) for w in workers]
    if max(gpus, default=0) < args.gpus_per_fit:
        # a task asking for a resource that no worker has waits forever
        raise SystemExit(
            f"--gpus-per-fit {args.gpus_per_fit:g}: no worker of the Dask cluster declares "
            f"that many GPUs (their GPU resources: {gpus}). Start each GPU's worker with "
            "--resources GPU=1 (see --help), or run on CPUs with --gpus-per-fit 0."
        )
    return {"backend": "dask", "resources": {"GPU": args.gpus_per_fit}}


def ray_backend(args, stack: contextlib.ExitStack) -> dict:
    """Connect to ``--scheduler`` (a Ray address, or "auto") or start Ray here."""
    import ray
    from ray.util.joblib import register_ray

    if args.scheduler:
        ray.init(address=args.scheduler)
    else:
        ray.init(num_cpus=args.n_workers)
    stack.callback(ray.shutdown)
    register_ray()
    kwargs = {"backend": "ray"}
    if args.gpus_per_fit:
        # as many pool actors as can hold a GPU share: an actor that waits for a GPU which
        # never frees up (the pool keeps its actors to the end) would hang the search
        n_gpus = ray.cluster_resources().get("GPU", 0)
        kwargs["n_jobs"] = max(1, int(n_gpus / args.gpus_per_fit))
        kwargs["ray_remote_args"] = {"num_gpus": args.gpus_per_fit}
    print(f"ray: {ray.cluster_resources()}")
    return kwargs


def worker_lost(error: BaseException) -> bool:
    """Whether ``error`` is how Dask reports a worker that died under a task (killed, out
    of memory): ``KilledWorker`` once the task has killed ``allowed-failures`` workers,
    ``FutureCancelledError`` ("... already forgotten") for the fits joblib still waited on."""
    try:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker
    except ImportError:  # no Dask here: no Dask error either
        return False
    return isinstance(error, (KilledWorker, FutureCancelledError))


def fit_on_a_worker(estimator, X, y):
    """``estimator`` fitted by the active joblib backend: on a worker, not in this process
    (where GridSearchCV's refit would train), then sent back here by pickle."""
    import joblib

    return joblib.Parallel()([joblib.delayed(estimator.fit)(X, y)])[0]


def main(argv=None):
    # the paragraph under the title as the description, the rest (usage, one worker per GPU)
    # as the epilog; sphinx-gallery runs the script with an empty __doc__
    _, description, epilog = (__doc__ or "\n\n\n\n").split("\n\n", 2)
    parser = argparse.ArgumentParser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=["dask", "ray", "local"],
        default="dask",
        help="where the fits run: a Dask or Ray cluster, or local loky processes (default dask)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="join this Dask scheduler (tcp://HOST:8786) or Ray cluster (HOST:6379, auto) "
        "instead of starting one here",
    )
    parser.add_argument(
        "--n-workers",
        type=int,
        default=None,
        help="workers (processes) of a cluster started here (default: one per GPU with "
        "dask-cuda, else 2; Ray: every core)",
    )
    parser.add_argument(
        "--gpus-per-fit",
        type=float,
        default=None,
        help="GPUs each fit reserves: a Dask resource, or Ray's num_gpus (default: 1 if this "
        "machine has a GPU, else 0)",
    )
    args = parser.parse_args(argv)
    import joblib
    import torch
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, train_test_split

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    if args.gpus_per_fit is None:
        args.gpus_per_fit = 1 if torch.cuda.is_available() else 0

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    cnn = GreedyLayerwiseCNNClassifier(n_layers=2, max_epochs=8, random_state=0)
    # refit=False: the final fit goes to a worker as well (below). n_jobs is left unset: it
    # comes from the backend (every worker); n_jobs=1 would run every fit here.
    search = GridSearchCV(cnn, {"k": [1, 2], "width": [8, 16]}, cv=3, refit=False)

    with contextlib.ExitStack() as stack:
        if args.backend == "dask":
            backend = dask_backend(args, stack)
        elif args.backend == "ray":
            backend = ray_backend(args, stack)
        else:
            backend = {"backend": "loky", "n_jobs": args.n_workers or 2}
        start = time.perf_counter()
        try:
            with joblib.parallel_backend(**backend):
                search.fit(X_train, y_train)
                params = search.best_params_
                best = fit_on_a_worker(clone(cnn).set_params(**params), X_train, y_train)
        except Exception as error:
            if not worker_lost(error):
                raise
            raise SystemExit(
                f"a Dask worker died during the search ({type(error).__name__}: {error}). "
                "The cause is in that worker's log (killed, or out of memory: one fit needs "
                "the data and the network on its device). Dask retries a task on another "
                "worker up to distributed.scheduler.allowed-failures times; give the workers "
                "more memory or fewer threads, then run the search again."
            ) from error
        seconds = time.perf_counter() - start

    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"{params}: cv accuracy {score:.4f}")
    print(f"best {search.best_params_}: cv accuracy {search.best_score_:.4f}")
    accuracy = best.score(X_test, y_test)
    print(f"refitted on a worker ({best.device_.type}); test accuracy {accuracy:.4f}")
    print(f"{len(search.cv_results_['params']) * 3 + 1} fits in {seconds:.1f} s")
    return search, best


if __name__ == "__main__":
    main()
