"""PCA views of each layer's features
==================================

The digits as each layer of a greedy CNN sees them: two principal components of every
layer's test-set representation, coloured by class (Belilovsky et al., Fig. 6).

The network is trained on the training split; the test images then go through it, each
layer's output is averaged to 2x2 per channel and projected by an incremental PCA. Two
components show only part of a representation, so the picture is a rough one: the first
layer (one convolution) looks no tidier than the pixels, while the deeper layers gather
the classes into clusters, in step with the per-layer test accuracies the script prints.

Usage::

    python examples/layer_pca.py [--n-layers 3] [--output pca.png]
"""

from __future__ import annotations

import argparse


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument("--n-layers", type=int, default=3, help="layers of the network (default 3)")
    parser.add_argument(
        "--max-epochs", type=int, default=6, help="training epochs per layer (default 6)"
    )
    parser.add_argument("--output", help="where to save the figure (default: not saved)")
    args = parser.parse_args(argv)
    # imported after the arguments are read, so that --help answers at once
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split

    from sklearn_greedy import GreedyLayerwiseCNNClassifier, LayerPCADisplay

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=args.n_layers, width=32, max_epochs=args.max_epochs, random_state=0
    ).fit(X_train, y_train)

    n_rows = (args.n_layers + 2) // 2
    fig, axes = plt.subplots(n_rows, 2, figsize=(9, 4.2 * n_rows), squeeze=False)
    axes = axes.ravel()
    # the raw pixels, for comparison: the same projection, on the input
    pixels = PCA(2, random_state=0).fit(X_test.reshape(len(X_test), -1))
    LayerPCADisplay(
        pixels.transform(X_test.reshape(len(X_test), -1)),
        y_test,
        explained_variance_ratio=pixels.explained_variance_ratio_,
    ).plot(ax=axes[0])
    axes[0].set_title("pixels")
    print("layer  test accuracy  variance explained by 2 components")
    for layer, (ax, y_pred) in enumerate(zip(axes[1:], cnn.staged_predict(X_test)), start=1):
        display = LayerPCADisplay.from_estimator(cnn, X_test, y_test, layer=layer, ax=ax)
        explained = display.pca_.explained_variance_ratio_.sum()
        print(f"{layer:>5}  {np.mean(y_pred == y_test):>13.4f}  {explained:>34.3f}")
        # one legend, on the pixels' panel, is enough for all
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in axes[args.n_layers + 1 :]:
        ax.set_axis_off()
    fig.tight_layout()
    if args.output:
        fig.savefig(args.output, dpi=120)
        print(f"saved {args.output}")
    return cnn


if __name__ == "__main__":
    main()
