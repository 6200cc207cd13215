"""Digits: the greedy layerwise CNN beside MLPClassifier and an end-to-end skorch CNN.

scikit-learn's digits (8x8), a 75/25 stratified split; seed ``s`` draws both the split and
the models' ``random_state``, so the spread covers data draws as well as initialisations.
Rows:

- GreedyLayerwiseCNNClassifier with its defaults and ``image_shape=(1, 8, 8)``, predicting
  with its last layer and with the ensemble of all layers (the same fit);
- MLPClassifier (defaults, ``max_iter=500``) on pixels scaled to [0, 1];
- the same final network as the greedy model, freshly initialised and trained end to
  end through skorch (what users would otherwise pick), with the same optimiser, the same
  augmentation (none on 8x8 images, as the greedy default) and as many epochs as all the
  greedy stages together.

Each row reports the mean, min and max over the seeds, and the fit time as a ratio to
MLPClassifier's in the same seed (the median over seeds): on a shared CPU only ratios
measured side by side mean anything.

Usage::

    python benchmarks/digits.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn_greedy import GreedyLayerwiseCNNClassifier

# torch, scikit-learn and the package are imported where they are used, so that --help
# answers at once


def timed_fit(estimator, X, y):
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start


def skorch_end_to_end(greedy: GreedyLayerwiseCNNClassifier, seed: int):
    """The greedy model's final network, re-initialised, as a skorch classifier."""
    import torch
    from skorch import NeuralNetClassifier
    from skorch.callbacks import LRScheduler

    epochs = greedy.max_epochs * greedy.n_layers
    network = greedy.to_torch(pretrained=False, random_state=seed)
    torch.manual_seed(seed)
    return NeuralNetClassifier(
        network,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=greedy.momentum,
        optimizer__weight_decay=greedy.weight_decay,
        lr=greedy.lr,
        batch_size=greedy.batch_size,
        max_epochs=epochs,
        train_split=None,
        iterator_train__shuffle=True,
        callbacks=[
            LRScheduler(
                policy=torch.optim.lr_scheduler.StepLR,
                step_size=greedy.lr_step * greedy.n_layers,
                gamma=greedy.lr_decay,
            )
        ],
        verbose=0,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds 0..seeds-1 of the splits and models"
    )
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)
    print(
        f"digits: 1347 train / 450 test per seed; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads by default, "
        f"{platform.processor() or platform.machine()}"
    )
    rows = []
    for seed in range(args.seeds):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=seed
        )
        greedy = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), random_state=seed)
        seconds = timed_fit(greedy, X_train, y_train)
        per_layer = [np.mean(p == y_test) for p in greedy.staged_predict(X_test)]
        rows.append(("greedy CNN (defaults)", seed, greedy.score(X_test, y_test), seconds))
        # the paper's ensemble of the per-layer classifiers, from the same fitted layers
        ensemble_accuracy = greedy.set_params(ensemble=True).score(X_test, y_test)
        rows.append(("greedy CNN (defaults), ensemble", seed, ensemble_accuracy, seconds))
        greedy.set_params(ensemble=False)
        print(
            f"  seed {seed}: greedy per-layer test accuracy "
            + " ".join(f"{a:.4f}" for a in per_layer)
        )

        mlp = MLPClassifier(max_iter=500, random_state=seed)
        seconds = timed_fit(mlp, X_train / 16.0, y_train)
        rows.append(("MLPClassifier", seed, mlp.score(X_test / 16.0, y_test), seconds))

        net = skorch_end_to_end(greedy, seed)
        X_img = X_train.reshape(-1, 1, 8, 8).astype(np.float32)
        seconds = timed_fit(net, X_img, y_train.astype(np.int64))
        accuracy = np.mean(net.predict(X_test.reshape(-1, 1, 8, 8).astype(np.float32)) == y_test)
        rows.append(("same CNN end-to-end (skorch)", seed, accuracy, seconds))

    mlp_seconds = np.array([r[3] for r in rows if r[0] == "MLPClassifier"])
    print(f"\n{'model':<34} {'test accuracy mean [min, max]':>30} {'fit s':>7} {'vs MLP':>7}")
    for name in dict.fromkeys(r[0] for r in rows):
        acc = np.array([r[2] for r in rows if r[0] == name])
        sec = np.array([r[3] for r in rows if r[0] == name])
        print(
            f"{name:<34} {acc.mean():>14.4f} [{acc.min():.4f}, {acc.max():.4f}] "
            f"{sec.mean():>7.2f} {np.median(sec / mlp_seconds):>6.1f}x"
        )


if __name__ == "__main__":
    main()
