"""sklearn-greedy: deep networks trained greedily, one layer or block at a time.

Two published methods as scikit-learn estimators with torch underneath:

- :class:`GreedyLayerwiseCNNClassifier` (Belilovsky, Eickenberg and Oyallon, ICML 2019);
- the sequentially trained implicit models of Gautam, Anderson, Sojoudi and El Ghaoui.
"""

from ._cnn import GreedyLayerwiseCNNClassifier, cifar10_params

__all__ = [
    "GreedyLayerwiseCNNClassifier",
    "cifar10_params",
]

# implicit models (issue 3)

__version__ = "0.1.0.dev0"
