"""sklearn-greedy: deep networks trained greedily, one layer or block at a time.

Two published methods as scikit-learn estimators with torch underneath:

- :class:`GreedyLayerwiseCNNClassifier` (Belilovsky, Eickenberg and Oyallon, ICML 2019);
- the sequentially trained implicit models of Gautam, Anderson, Sojoudi and El Ghaoui,
  with the end-to-end implicit baseline of El Ghaoui et al.
"""

from ._cnn import GreedyLayerwiseCNNClassifier, cifar10_params
from ._implicit import (
    EndToEndImplicitClassifier,
    EndToEndImplicitRegressor,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)

__all__ = [
    "EndToEndImplicitClassifier",
    "EndToEndImplicitRegressor",
    "GreedyLayerwiseCNNClassifier",
    "SequentialImplicitClassifier",
    "SequentialImplicitRegressor",
    "cifar10_params",
]

__version__ = "0.1.0.dev0"
