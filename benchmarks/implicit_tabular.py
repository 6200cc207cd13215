"""Implicit regressors with their defaults on small tabular data, against Ridge and
MLPRegressor: does a model of 30 states overfit a few hundred samples?

Data sets (all embedded or synthetic, nothing downloads): scikit-learn's diabetes (442
samples, 10 features), and Friedman #1 (``make_friedman1``, 500 samples, 10 features of
which 5 matter, noise 1.0). Each model is scored by ``cross_val_score(model, X, y, cv=5)``
(R^2 per fold; unshuffled KFold, as scikit-learn does by default), in the same run:

- ``implicit sequential (defaults)``: :class:`SequentialImplicitRegressor(random_state=0)`,
  and with ``solver="adam"`` and ``solver="alternating"``;
- ``implicit end-to-end (defaults)``: :class:`EndToEndImplicitRegressor(random_state=0)`;
- ``Ridge``: ``Ridge()``, the linear reference;
- ``MLPRegressor``: standardised inputs, then ``MLPRegressor(max_iter=2000)``.

    python benchmarks/implicit_tabular.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import datetime, timezone

# numpy, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once


def models() -> dict:
    """``{name: make()}``, every model of the module's docstring, in its order."""
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_greedy import EndToEndImplicitRegressor, SequentialImplicitRegressor

    return {
        "implicit sequential (defaults)": lambda: SequentialImplicitRegressor(random_state=0),
        "implicit sequential (adam)": lambda: SequentialImplicitRegressor(
            solver="adam", random_state=0
        ),
        "implicit sequential (alternating)": lambda: SequentialImplicitRegressor(
            solver="alternating", random_state=0
        ),
        "implicit end-to-end (defaults)": lambda: EndToEndImplicitRegressor(random_state=0),
        "Ridge": Ridge,
        "MLPRegressor": lambda: make_pipeline(
            StandardScaler(), MLPRegressor(max_iter=2000, random_state=0)
        ),
    }


def datasets(n_friedman=500):
    from sklearn.datasets import load_diabetes, make_friedman1

    return {
        "diabetes": load_diabetes(return_X_y=True),
        "friedman1": make_friedman1(n_samples=n_friedman, noise=1.0, random_state=0),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated name prefixes")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument(
        "--n-friedman", type=int, default=500, help="samples of Friedman #1 (default 500)"
    )
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_score
    from threadpoolctl import threadpool_limits

    make = models()
    names = [
        n
        for n in make
        if args.models == "all" or any(n.startswith(p.strip()) for p in args.models.split(","))
    ]
    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for data_name, (X, y) in datasets(args.n_friedman).items():
            for name in names:
                start = time.perf_counter()
                scores = cross_val_score(make[name](), X, y, cv=5)
                seconds = (time.perf_counter() - start) / 5
                rows.append((data_name, name, scores, seconds))
                print(f"{data_name} | {name} | {np.round(scores, 2)}", flush=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nR^2 of cross_val_score(cv=5); {args.threads} thread(s); {date}")
    print("| data set | model | R^2 per fold | mean | min | fit s (mean) |")
    print("|---|---|---|---|---|---|")
    for data_name, name, scores, seconds in rows:
        folds = " ".join(f"{s:.2f}" for s in scores)
        print(
            f"| {data_name} | {name} | {folds} | {scores.mean():.3f} | {scores.min():.2f} "
            f"| {seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
