"""How the pickles beside this file were made: at commit cf218a2 (release 0.1.0.dev0,
before the package moved into subpackages), with ``python3 make.py`` in this folder.

They pin that a fitted estimator pickled by that release still loads and predicts the
same (tests/test_pickles.py). Rerunning this script today writes pickles of the current
layout instead, so it is kept as a record, not rerun.
"""

import pickle

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits

from sklearn_greedy import (
    EndToEndImplicitRegressor,
    GreedyLayerwiseCNNClassifier,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)


def main():
    torch.set_num_threads(1)
    digits = load_digits()
    X, y = digits.data[:300] / 16.0, digits.target[:300]
    Xr, yr = load_diabetes(return_X_y=True)
    fits = {
        "cnn": (
            GreedyLayerwiseCNNClassifier(
                n_layers=2,
                k=2,
                width=4,
                max_epochs=2,
                image_shape=(1, 8, 8),
                ensemble=True,
                random_state=0,
            ),
            X,
            y,
        ),
        "cnn_pruned": (
            GreedyLayerwiseCNNClassifier(
                n_layers=2,
                width=6,
                prune_to=0.5,
                max_epochs=1,
                prune_epochs=1,
                image_shape=(1, 8, 8),
                random_state=0,
            ),
            X,
            y,
        ),
        "sequential_regressor": (
            SequentialImplicitRegressor(n_states=8, n_blocks=2, max_epochs=5, random_state=0),
            Xr[:200],
            yr[:200],
        ),
        "sequential_classifier": (
            SequentialImplicitClassifier(n_states=8, n_blocks=2, max_epochs=5, random_state=0),
            X,
            y,
        ),
        "end_to_end_regressor": (
            EndToEndImplicitRegressor(n_states=8, max_epochs=3, random_state=0),
            Xr[:200],
            yr[:200],
        ),
    }
    expected = {}
    for name, (est, Xf, yf) in fits.items():
        est.fit(Xf, yf)
        with open(f"{name}.pkl", "wb") as f:
            pickle.dump(est, f)
        expected[name] = est.predict(Xf[:20])
        if name.startswith("cnn"):
            expected[name + "_proba"] = est.predict_proba(Xf[:20])
            expected[name + "_transform"] = est.transform(Xf[:20])
    np.savez("expected.npz", **expected)


if __name__ == "__main__":
    main()
