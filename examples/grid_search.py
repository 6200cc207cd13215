"""Grid search over the network and over its layers
================================================

Grid search over the auxiliary depth ``k`` and the width on digits, then over the layer
fed to a linear model with the network fitted once.

Usage::

    python examples/grid_search.py [--n-jobs 1]
"""

from __future__ import annotations

import argparse


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel fits of the search")
    args = parser.parse_args(argv)
    # imported after the arguments are read, so that --help answers at once
    from sklearn.datasets import load_digits
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_greedy import GreedyLayerwiseCNNClassifier, LayerFeatures

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

    # 1. the network's own hyper-parameters: each grid point trains a network
    cnn = GreedyLayerwiseCNNClassifier(n_layers=2, max_epochs=8, random_state=0)
    search = GridSearchCV(cnn, {"k": [1, 2], "width": [8, 16]}, cv=3, n_jobs=args.n_jobs)
    search.fit(X_train, y_train)
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"{params}: cv accuracy {score:.4f}")
    print(f"best {search.best_params_}: test accuracy {search.score(X_test, y_test):.4f}")

    # 2. which layer feeds a linear model best: the best network is frozen, so the
    #    search only reruns forward passes and logistic regressions
    frozen = FrozenEstimator(search.best_estimator_)
    pipe = make_pipeline(LayerFeatures(frozen), StandardScaler(), LogisticRegression(max_iter=1000))
    layers = list(range(1, search.best_estimator_.n_layers_fitted_ + 1))
    layer_search = GridSearchCV(pipe, {"layerfeatures__layer": layers}, cv=3).fit(X_train, y_train)
    for layer, score in zip(layers, layer_search.cv_results_["mean_test_score"]):
        print(f"linear model on layer {layer}: cv accuracy {score:.4f}")
    print(f"test accuracy: {layer_search.score(X_test, y_test):.4f}")
    return search, layer_search


if __name__ == "__main__":
    main()
