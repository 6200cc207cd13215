"""Sec. V-B of Gautam et al.: MNIST and Fashion-MNIST with an implicit model n = 32, L = 16.

    python benchmarks/implicit_mnist.py --data-dir /work/shared/data
    python benchmarks/implicit_mnist.py --data-dir /work/shared/data --max-train 10000

DIR holds ``mnist/`` and ``fashion-mnist/`` with the IDX files (gzipped or not). Pixels
are scaled to [0, 1]. Rows: the blockwise implicit classifier (Adam; ``--max-epochs`` per
block with the estimator's training-loss stopping rule), the end-to-end implicit baseline
(``--e2e-epochs``), and the paper's FFN 784-64-32-16-10 (Adam, step 0.001) as
MLPClassifier (``--mlp-epochs``). The paper trains every model for 200 epochs; fewer are
used here so that each fit stays within a minute on a 2-core CPU. Torch runs on one
thread by default (``--threads``): on a 2-core machine shared with other work, two intra-op
threads were measured 9x slower than one (89 s against 9.6 s on 10,000 samples).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sklearn_greedy import EndToEndImplicitClassifier, SequentialImplicitClassifier
from sklearn_greedy.datasets import load_mnist


def load(data_dir, name, max_train, seed=0):
    X, y = load_mnist(os.path.join(data_dir, name), kind="train")
    X_test, y_test = load_mnist(os.path.join(data_dir, name), kind="test")
    if max_train and max_train < len(X):
        idx = np.random.RandomState(seed).choice(len(X), max_train, replace=False)
        X, y = X[idx], y[idx]
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0  # noqa: E731
    return flat(X), y, flat(X_test), y_test


def models(args):
    return {
        "implicit blockwise (n=32, L=16)": lambda: SequentialImplicitClassifier(
            n_states=32,
            n_blocks=16,
            max_epochs=args.max_epochs,
            lr=args.lr,
            random_state=0,
        ),
        "implicit end-to-end (n=32)": lambda: EndToEndImplicitClassifier(
            n_states=32, max_epochs=args.e2e_epochs, lr=0.001, batch_size=256, random_state=0
        ),
        "FFN 784-64-32-16-10 (MLPClassifier)": lambda: MLPClassifier(
            hidden_layer_sizes=(64, 32, 16),
            learning_rate_init=0.001,
            max_iter=args.mlp_epochs,
            random_state=0,
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=10, help="per block")
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--e2e-epochs", type=int, default=3)
    parser.add_argument("--mlp-epochs", type=int, default=20)
    parser.add_argument("--models", default="all", help="comma-separated name prefixes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    table = models(args)
    names = [
        n
        for n in table
        if args.models == "all" or any(n.startswith(p.strip()) for p in args.models.split(","))
    ]
    rows = []
    for dataset in args.datasets.split(","):
        X, y, X_test, y_test = load(args.data_dir, dataset, args.max_train)
        for name in names:
            model = table[name]()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
            seconds = time.perf_counter() - start
            acc = 100 * model.score(X_test, y_test)
            rows.append((dataset, name, acc, seconds))
            print(f"{dataset} | {name} | {acc:.2f} % | {seconds:.1f} s", flush=True)
    print(f"\ntrain samples: {len(X)}; torch threads: {torch.get_num_threads()}")
    print("| data set | model | test accuracy | fit s |")
    print("|---|---|---|---|")
    for dataset, name, acc, seconds in rows:
        print(f"| {dataset} | {name} | {acc:.2f} % | {seconds:.1f} |")


if __name__ == "__main__":
    main()
