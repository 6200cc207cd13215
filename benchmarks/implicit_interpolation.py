"""Sec. V-A of Gautam et al.: interpolating a smooth and a nonsmooth function.

500 training samples u ~ U(-5, 5), y ~ U(f(u) - 1, f(u) + 1); test RMSE against f on 1000
grid points; the mean over ``--draws`` draws (10 in the paper). Models: the implicit model
(n = 30, L = 10) trained blockwise with Adam and with the alternating solver (estimator
defaults otherwise), the end-to-end implicit baseline, and the paper's FFN (1-25-25-25-25-1,
Adam, step 0.01) as scikit-learn's MLPRegressor.

    python benchmarks/implicit_interpolation.py --draws 10

Torch runs single-threaded by default (``--threads``): the matrices are tiny, and on a
machine shared with other work intra-op threads only add synchronisation. A small warm-up
fit runs first so that torch's one-off lazy imports are not timed.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.signal import sawtooth
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from sklearn_greedy import EndToEndImplicitRegressor, SequentialImplicitRegressor


def f1(u):
    return 5 * np.cos(np.pi * u) * np.exp(-np.abs(u) / 2)


def f2(u):
    return 5 * sawtooth(np.pi * u) * np.exp(-np.abs(u) / 2)


MODELS = {
    "implicit blockwise (adam)": lambda seed: SequentialImplicitRegressor(
        n_states=30, n_blocks=10, random_state=seed
    ),
    "implicit blockwise (alternating)": lambda seed: SequentialImplicitRegressor(
        n_states=30, n_blocks=10, solver="alternating", random_state=seed
    ),
    "implicit end-to-end": lambda seed: EndToEndImplicitRegressor(n_states=30, random_state=seed),
    "FFN 25-25-25-25 (MLPRegressor)": lambda seed: MLPRegressor(
        hidden_layer_sizes=(25, 25, 25, 25),
        solver="adam",
        learning_rate_init=0.01,
        max_iter=2000,
        random_state=seed,
    ),
}


def draw(f, seed):
    rng = np.random.RandomState(seed)
    u = rng.uniform(-5, 5, (500, 1))
    return u, rng.uniform(f(u[:, 0]) - 1, f(u[:, 0]) + 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="all", help="comma-separated name prefixes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [
        n
        for n in MODELS
        if args.models == "all" or any(n.startswith(p.strip()) for p in args.models.split(","))
    ]
    u_test = np.linspace(-5, 5, 1000)[:, None]
    SequentialImplicitRegressor(n_states=4, n_blocks=2, max_epochs=2).fit(*draw(f1, 0))
    rows = []
    for name in names:
        row = [name]
        for f in (f1, f2):
            rmse, seconds = [], []
            for seed in range(args.draws):
                u, y = draw(f, seed)
                model = MODELS[name](seed)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(u, y)
                seconds.append(time.perf_counter() - start)
                rmse.append(np.sqrt(np.mean((model.predict(u_test) - f(u_test[:, 0])) ** 2)))
            row += [float(np.mean(rmse)), float(np.mean(seconds)), float(np.max(seconds))]
        rows.append(row)
        print(f"done: {name}", flush=True)
    print(f"\nmean over {args.draws} draws; torch threads = {args.threads}")
    print("| model | f1 RMSE | f1 fit s (mean / max) | f2 RMSE | f2 fit s (mean / max) |")
    print("|---|---|---|---|---|")
    for name, r1, s1, m1, r2, s2, m2 in rows:
        print(f"| {name} | {r1:.3f} | {s1:.2f} / {m1:.2f} | {r2:.3f} | {s2:.2f} / {m2:.2f} |")


if __name__ == "__main__":
    main()
