"""Quickstart: a greedy layerwise CNN on digits
============================================

A greedy layerwise CNN on scikit-learn's digits: the main job of ``python3 dev.py
quickstart``.

Fits ``GreedyLayerwiseCNNClassifier`` with its defaults, prints each layer's accuracy
(training accuracy of its auxiliary classifier, and test accuracy) and the test score.

Usage::

    python examples/quickstart.py [--random-state 0]
"""

import argparse
import time


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument("--random-state", type=int, default=0, help="split and model seed")
    args = parser.parse_args(argv)
    # imported after the arguments are read, so that --help answers at once
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)  # 8x8 grey images, flattened to 64 features
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state
    )
    clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), random_state=args.random_state)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start

    print(f"fitted {clf.n_layers_fitted_} layers on {clf.device_} in {seconds:.1f} s")
    print("layer  width  train accuracy  test accuracy")
    for j, (width, train_acc, y_pred) in enumerate(
        zip(clf.layer_widths_, clf.layer_scores_, clf.staged_predict(X_test)), start=1
    ):
        print(f"{j:>5}  {width:>5}  {train_acc:>14.4f}  {np.mean(y_pred == y_test):>13.4f}")
    print(f"test accuracy: {clf.score(X_test, y_test):.4f}")
    return clf


if __name__ == "__main__":
    main()
