"""Separability of each layer of a k=1 greedy CNN (Belilovsky et al., Sec. 4.2, Fig. 3).

Trains a ``k = 1`` GreedyLayerwiseCNNClassifier, then measures the test accuracy of a
linear probe (multinomial logistic regression on the 2x2-averaged, standardised layer
output) and, with ``--probes``, of CNN-p probes trained on the frozen representation. The
paper's finding to reproduce: for ``k = 1``, linear separability rises with depth.

Data, smallest first:

- default: scikit-learn's digits (8x8, 1,797 images; 1,200 to train), no downsampling so
  that every layer keeps the 8x8 grid; runs in about a minute on 2 CPU cores;
- ``--data-dir DIR``: a Fashion-MNIST subset (IDX files in DIR; ``--n-train`` /
  ``--n-test`` images), downsampling once at layer 3;
- ``--full``: the paper's setting, CIFAR-10 with ``cifar10_params(k=1)`` (5 layers of
  width 256, 50 epochs per layer, probes with 256 channels); a GPU job of several hours,
  reading CIFAR-10 from ``--data-dir`` with ``sklearn_greedy.datasets.load_cifar10``.

Usage::

    python benchmarks/separability.py [--seeds 2] [--probes linear cnn1]
    python benchmarks/separability.py --data-dir /path/to/fashion-mnist --n-train 6000
    python benchmarks/separability.py --full --data-dir /path/to/cifar-10 --probes linear cnn1 cnn2
"""

from __future__ import annotations

import argparse
import platform
import time

# numpy, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once


def load_data(args):
    """(X_train, y_train, X_test, y_test, estimator params, description)."""
    import numpy as np
    from sklearn.datasets import load_digits

    if args.full:
        from sklearn_greedy import cifar10_params
        from sklearn_greedy.datasets import load_cifar10

        X, y = load_cifar10(args.data_dir, kind="train")
        X_test, y_test = load_cifar10(args.data_dir, kind="test")
        return X, y, X_test, y_test, cifar10_params(k=1), "CIFAR-10 (50k/10k)"
    if args.data_dir:
        from sklearn_greedy.datasets import load_mnist

        rng = np.random.RandomState(0)
        X, y = load_mnist(args.data_dir, kind="train")
        X_test, y_test = load_mnist(args.data_dir, kind="test")
        train = rng.choice(len(y), args.n_train, replace=False)
        test = rng.choice(len(y_test), args.n_test, replace=False)
        params = dict(n_layers=4, width=32, downsample_at=(2,), max_epochs=8, lr_step=3)
        return (
            X[train, None].astype(np.float32) / 255,
            y[train],
            X_test[test, None].astype(np.float32) / 255,
            y_test[test],
            params,
            f"Fashion-MNIST subset ({args.n_train}/{args.n_test})",
        )
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32) / 16
    params = dict(n_layers=4, width=32, downsample_at=(), max_epochs=10, lr_step=4)
    return X[:1200], y[:1200], X[1200:], y[1200:], params, "digits (1200/597)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", default=None,
        help="Fashion-MNIST's IDX files, or CIFAR-10 with --full (default: digits)",
    )  # fmt: skip
    parser.add_argument("--full", action="store_true", help="the paper's CIFAR-10 setting")
    parser.add_argument(
        "--n-train", type=int, default=2000, help="Fashion-MNIST training images (default 2000)"
    )
    parser.add_argument(
        "--n-test", type=int, default=1000, help="Fashion-MNIST test images (default 1000)"
    )
    parser.add_argument(
        "--seeds", type=int, default=2, help="fits, with random_state 0..seeds-1 (default 2)"
    )
    parser.add_argument(
        "--probes", nargs="+", default=["linear"],
        help="probes of each layer: linear, cnn1, cnn2... (default linear)",
    )  # fmt: skip
    parser.add_argument(
        "--probe-epochs", type=int, default=10, help="epochs of each CNN probe (default 10)"
    )
    args = parser.parse_args(argv)
    if args.full and not args.data_dir:
        parser.error("--full needs --data-dir with CIFAR-10")
    import numpy as np
    import torch

    from sklearn_greedy import GreedyLayerwiseCNNClassifier, separability_scores

    X, y, X_test, y_test, params, description = load_data(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    probe_width = 256 if args.full else None
    rows = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        cnn = GreedyLayerwiseCNNClassifier(**params, k=1, random_state=seed, device=device)
        cnn.fit(X, y)
        scores = separability_scores(
            cnn,
            X,
            y,
            X_test,
            y_test,
            probes=args.probes,
            max_epochs=args.probe_epochs,
            probe_width=probe_width,
            random_state=seed,
        )
        aux = [float(np.mean(p == y_test)) for p in cnn.staged_predict(X_test)]
        rows.append({**scores, "aux": np.asarray(aux)})
        print(
            f"seed {seed}: "
            + ", ".join(f"{k}={np.round(v, 4).tolist()}" for k, v in rows[-1].items())
        )
    elapsed = time.perf_counter() - start

    print(
        f"\n{description}; k=1, {params}; {args.seeds} seeds; device {device} "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads); {elapsed:.0f} s in all\n"
    )
    columns = [*args.probes, "aux"]
    print(
        "| layer | "
        + " | ".join("aux. classifier (k=1 head)" if c == "aux" else f"{c} probe" for c in columns)
        + " |"
    )
    print("|---" * (len(columns) + 1) + "|")
    for i, layer in enumerate(rows[0]["layer"]):
        cells = []
        for c in columns:
            values = np.array([r[c][i] for r in rows])
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}")
        print(f"| {layer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
