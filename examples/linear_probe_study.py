"""Per-layer training curves and linear separability
=================================================

Per-layer separability of a greedily trained CNN on digits (Belilovsky et al., Fig. 3).

Trains a ``k = 1`` network, probes each layer with a linear classifier and a 1-hidden-layer
CNN, prints the table and draws each layer's training curve beside the probes' accuracy,
saved to the given path (without one, as in the documentation's gallery, the figure is
only drawn).

Usage::

    python examples/linear_probe_study.py separability.png
"""

from __future__ import annotations

import argparse
import warnings


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument(
        "output", nargs="?", help="where to save the figure (.png, .pdf...); none: not saved"
    )
    parser.add_argument("--n-layers", type=int, default=4, help="layers of the network (default 4)")
    parser.add_argument(
        "--max-epochs", type=int, default=8, help="training epochs per layer (default 8)"
    )
    args = parser.parse_args(argv)
    # imported after the arguments are read, so that --help answers at once
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from sklearn_greedy import (
        GreedyLayerwiseCNNClassifier,
        LayerwiseTrainingDisplay,
        SeparabilityDisplay,
    )

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=args.n_layers,
        k=1,
        width=32,
        downsample_at=(),
        max_epochs=args.max_epochs,
        early_stopping=True,
        random_state=0,
    )
    # a short budget on purpose: the layers may stop while still improving, which the
    # estimator's ConvergenceWarning says; printed as one line each, without the traceback
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        cnn.fit(X_train, y_train)
    for warning in caught:
        print(f"{warning.category.__name__}: {warning.message}")

    fig, (ax_train, ax_sep) = plt.subplots(1, 2, figsize=(11, 4))
    LayerwiseTrainingDisplay.from_estimator(cnn, ax=ax_train)
    display = SeparabilityDisplay.from_estimator(
        cnn,
        X_train,
        y_train,
        X_test,
        y_test,
        probes=("linear", "cnn1"),
        ax=ax_sep,
        max_epochs=8,
        random_state=0,
    )
    scores = display.scores_
    print("| layer | linear | CNN-1 |\n|---|---|---|")
    for j, lin, c1 in zip(scores["layer"], scores["linear"], scores["cnn1"]):
        print(f"| {j} | {lin:.4f} | {c1:.4f} |")
    print(f"test accuracy of the network: {cnn.score(X_test, y_test):.4f}")
    fig.tight_layout()
    if args.output:
        fig.savefig(args.output, dpi=120)
        print(f"saved {args.output}")
    return scores


if __name__ == "__main__":
    main()
