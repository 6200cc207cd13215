"""Sec. V-B of Gautam et al.: MNIST and Fashion-MNIST with an implicit model n = 32, L = 16.

    python benchmarks/implicit_mnist.py --data-dir ../shared/data
    python benchmarks/implicit_mnist.py --data-dir ../shared/data --paper --seeds 0

DIR holds ``mnist/`` and ``fashion-mnist/`` with the IDX files (gzipped or not); pixels are
scaled to [0, 1], 60,000 training and 10,000 test images. Rows, in the same run:

- ``implicit blockwise (defaults)``: ``SequentialImplicitClassifier(n_states=32,
  n_blocks=16)`` with every other parameter at its default, as a user would call it;
- ``FFN 784-64-32-16-10``: the paper's FFN as scikit-learn's MLPClassifier (Adam, step
  0.001), for the paper's 200 epochs (``--mlp-epochs``; every epoch runs: no stop on a
  plateau), batches of 200 (scikit-learn's default; the paper does not give a size);
- with ``--end-to-end``, the end-to-end implicit baseline with its defaults;
- with ``--paper``, the paper's method, ``implicit_paper_params(1,
  task="classification", lr=0.001)``: 200 epochs per block on the raw 784 pixels, Adam at
  a constant step, no penalty, every block kept and read. The paper gives no step size
  for the implicit model; it trains the blocks "for 200 epochs to keep consistency with
  the FFN baseline", and in Sec. V-A the blocks use the FFN's optimizer settings, so we
  take the FFN's 0.001 here. Batches of 512 (the estimator's default; the paper gives no
  size). Slow: many times the defaults (``--max-train`` shortens it).

With ``--validation`` the test set is not read: every model is fitted on 50,000 of the
training images and scored on the other 10,000 (a fixed random split), as settings should
be compared; ``--variants`` adds rows of the defaults with some parameters changed (a JSON
object of ``{name: params}``), each fitted once per seed::

    python benchmarks/implicit_mnist.py --data-dir ../shared/data --validation \\
        --variants '{"max_epochs=20": {"max_epochs": 20}}'

The table gives the test (or validation) accuracy, the fit time and its ratio to the
FFN's on the same data set. The defaults row is fitted once per seed of ``--seeds``
(``random_state``; 0, 1 and 2 unless told) and its mean over them follows. Torch threads
follow the estimators' automatic choice unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from datetime import datetime, timezone
from functools import partial

# numpy, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once

FFN = "FFN 784-64-32-16-10 (MLPClassifier)"
DEFAULTS = "implicit blockwise (defaults)"
PAPER = "implicit blockwise (paper: Algorithm 1, 200 epochs/block, Adam 0.001)"


VALIDATION_SIZE, VALIDATION_SEED = 10_000, 123


def load(data_dir, name, max_train=None, seed=0, validation=False):
    """Flat float32 pixels in [0, 1]: ``X, y, X_test, y_test``; with ``validation``, the
    last two are ``VALIDATION_SIZE`` training images held out (the test set unread)."""
    import numpy as np

    from sklearn_greedy.datasets import load_mnist

    X, y = load_mnist(os.path.join(data_dir, name), kind="train")
    if validation:
        order = np.random.RandomState(VALIDATION_SEED).permutation(len(X))
        held, kept = order[-VALIDATION_SIZE:], order[:-VALIDATION_SIZE]
        X, y, X_test, y_test = X[kept], y[kept], X[held], y[held]
    else:
        X_test, y_test = load_mnist(os.path.join(data_dir, name), kind="test")
    if max_train and max_train < len(X):
        idx = np.random.RandomState(seed).choice(len(X), max_train, replace=False)
        X, y = X[idx], y[idx]

    def flat(a):
        return a.reshape(len(a), -1).astype(np.float32) / 255.0

    return flat(X), y, flat(X_test), y_test


def models(args):
    """``{name: make()}``: the rows that ``args`` asks for."""
    from sklearn.neural_network import MLPClassifier

    from sklearn_greedy import (
        EndToEndImplicitClassifier,
        SequentialImplicitClassifier,
        implicit_paper_params,
    )

    def blockwise(**params):  # the paper's n = 32, L = 16, every other parameter as given
        return SequentialImplicitClassifier(n_states=32, n_blocks=16, random_state=0, **params)

    table = {
        DEFAULTS: blockwise,
        FFN: lambda: MLPClassifier(
            hidden_layer_sizes=(64, 32, 16),
            learning_rate_init=0.001,
            max_iter=args.mlp_epochs,
            n_iter_no_change=args.mlp_epochs + 1,  # every epoch runs, as in the paper
            random_state=0,
        ),
    }
    if args.end_to_end:
        table["implicit end-to-end (defaults)"] = lambda: EndToEndImplicitClassifier(
            n_states=32, random_state=0
        )
    for name, params in json.loads(args.variants).items():
        table[f"{DEFAULTS}, {name}"] = partial(blockwise, **params)
    if args.paper:
        params = implicit_paper_params(1, task="classification", lr=0.001)
        table[PAPER] = partial(blockwise, **params)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", required=True,
        help="folder holding mnist/ and fashion-mnist/ with the IDX files",
    )  # fmt: skip
    parser.add_argument(
        "--datasets", default="mnist,fashion-mnist",
        help="comma-separated subfolders of --data-dir (default mnist,fashion-mnist)",
    )  # fmt: skip
    parser.add_argument(
        "--max-train", type=int, default=None,
        help="random training subset of this size (default: all 60,000 images)",
    )  # fmt: skip
    parser.add_argument(
        "--mlp-epochs", type=int, default=200, help="epochs of the FFN (default 200, the paper's)"
    )
    parser.add_argument(
        "--end-to-end", action="store_true", help="add the end-to-end implicit baseline"
    )
    parser.add_argument("--paper", action="store_true", help="add the paper's method")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads (default: the estimators' automatic choice)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", default="0,1,2", help="random_state of the defaults rows (and variants)"
    )
    parser.add_argument(
        "--validation", action="store_true",
        help="score on 10,000 held-out training images, never on the test set",
    )  # fmt: skip
    parser.add_argument(
        "--variants", default="{}",
        help="JSON {name: params}: rows of the defaults with these parameters changed",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from sklearn.exceptions import ConvergenceWarning

    seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    table = models(args)
    rows = []
    for dataset in args.datasets.split(","):
        X, y, X_test, y_test = load(
            args.data_dir, dataset, args.max_train, validation=args.validation
        )
        for name, make in table.items():
            runs = [(name, make())]
            if name.startswith(DEFAULTS):
                runs = [(f"{name}, seed {s}", make().set_params(random_state=s)) for s in seeds]
            for label, model in runs:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X, y)
                seconds = time.perf_counter() - start
                accuracy = 100 * model.score(X_test, y_test)
                rows.append((dataset, label, accuracy, seconds))
                print(f"{dataset} | {label} | {accuracy:.2f} % | {seconds:.1f} s", flush=True)
            if len(runs) > 1:
                mean = rows[-len(runs) :]
                accuracy = float(np.mean([r[2] for r in mean]))
                seconds = float(np.mean([r[3] for r in mean]))
                rows.append((dataset, f"{name}, mean of {len(runs)} seeds", accuracy, seconds))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scored_on = "validation (held-out training images)" if args.validation else "test"
    print(f"\ntrain samples: {len(X)}; scored on {len(X_test)} {scored_on} images; {date}")
    print(f"| data set | model | {scored_on.split()[0]} accuracy | fit s | fit time / FFN |")
    print("|---|---|---|---|---|")
    ffn = {d: s for d, n, _, s in rows if n == FFN}
    for dataset, name, accuracy, seconds in rows:
        ratio = seconds / ffn[dataset]
        print(f"| {dataset} | {name} | {accuracy:.2f} % | {seconds:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
