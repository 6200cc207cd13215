"""CPU threads: fit time of the greedy CNN at 1 thread and at every core, idle and busy.

Torch runs one intra-op thread per core by default. On a small model each operation is
too short to share out, and on a machine where another process keeps a core busy the
threads wait on each other. This script measures, in one run and against scikit-learn's
``MLPClassifier`` (the peer a CPU figure is a ratio to):

- the README's main job (digits, defaults, ``image_shape=(1, 8, 8)``);
- a larger model (random 3x32x32 images, width 64, one layer), where threads should pay;

each with ``n_threads=1`` and ``n_threads=<all cores>``, first on an idle machine, then
while a busy-loop process keeps one core busy. The estimator's default (``n_threads=None``)
picks one thread below a model size (see
``sklearn_greedy.training._runtime.default_threads``); these figures are what that rule
rests on.

Usage::

    python benchmarks/threads.py [--repeats 3] [--no-busy]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import warnings

from _common import describe

# numpy, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once


def _spin(stop):
    while not stop.is_set():
        pass


def _best_seconds(fit, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return min(times)


def _jobs(n_threads_all: int):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    rng = np.random.RandomState(0)
    X_big = rng.randint(0, 256, size=(512, 3, 32, 32)).astype(np.uint8)
    y_big = rng.randint(0, 10, size=512)
    scores = {}

    def digits(n_threads):
        def fit():
            clf = GreedyLayerwiseCNNClassifier(
                image_shape=(1, 8, 8), random_state=0, n_threads=n_threads
            ).fit(X_train, y_train)
            scores[("digits", n_threads)] = clf.score(X_test, y_test)

        return fit

    def larger(n_threads):
        return lambda: GreedyLayerwiseCNNClassifier(
            n_layers=1, width=64, max_epochs=1, random_state=0, n_threads=n_threads
        ).fit(X_big, y_big)

    def mlp_unscaled():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MLPClassifier(random_state=0).fit(X_train, y_train)

    def mlp_scaled():
        return MLPClassifier(max_iter=500, random_state=0).fit(X_train / 16.0, y_train)

    jobs = {"MLPClassifier (digits / 16, max_iter=500)": mlp_scaled,
            "MLPClassifier (raw pixels, defaults)": mlp_unscaled}  # fmt: skip
    for n in (1, n_threads_all):
        jobs[f"greedy CNN, digits, {n} thread(s)"] = digits(n)
        jobs[f"3x32x32 width 64, {n} thread(s)"] = larger(n)
    return jobs, scores


def _measure(jobs, repeats):
    for fit in jobs.values():
        fit()  # warm-up: lazy imports, allocator, thread pools
    return {name: _best_seconds(fit, repeats) for name, fit in jobs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="fits of each job; the best one counts (default 3)"
    )
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-machine run")
    args = parser.parse_args(argv)
    import torch

    n_all = torch.get_num_threads()
    jobs, scores = _jobs(n_all)
    runs = {"idle": _measure(jobs, args.repeats)}
    if not args.no_busy:
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        try:
            runs["one core busy"] = _measure(jobs, args.repeats)
        finally:
            stop.set()
            spinner.join()
    print(describe(torch.device("cpu")))
    print(f"{os.cpu_count()} cores, torch default {n_all} threads; best of {args.repeats}")
    peer = next(iter(jobs))  # the ratios are to the converged, scaled-input MLP
    print(f"{'job':<44} " + " ".join(f"{run + ' s':>14} {'vs MLP':>7}" for run in runs))
    for name in jobs:
        cells = [
            f"{times[name]:>14.2f} {times[name] / times[peer]:>6.1f}x" for times in runs.values()
        ]
        print(f"{name:<44} " + " ".join(cells))
    for (job, n), score in sorted(scores.items()):
        print(f"{job} test accuracy with {n} thread(s): {score:.4f}")


if __name__ == "__main__":
    main()
