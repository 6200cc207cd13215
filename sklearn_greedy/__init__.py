"""sklearn-greedy: deep networks trained greedily, one layer or block at a time.

Two published methods as scikit-learn estimators with torch underneath:

- :class:`GreedyLayerwiseCNNClassifier` (Belilovsky, Eickenberg and Oyallon, ICML 2019);
- the sequentially trained implicit models of Gautam, Anderson, Sojoudi and El Ghaoui,
  with the end-to-end implicit baseline of El Ghaoui et al.

Probing tools (per-layer features, separability probes) and plots live beside them.
"""

from ._cnn import GreedyLayerwiseCNNClassifier
from ._cnn_presets import cifar10_params, imagenet_params
from ._cnn_variants import parameter_count
from ._implicit import (
    EndToEndImplicitClassifier,
    EndToEndImplicitRegressor,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)
from ._implicit_presets import implicit_paper_params
from ._onnx import export_onnx
from ._plotting import LayerPCADisplay, LayerwiseTrainingDisplay, SeparabilityDisplay
from ._probing import LayerFeatures, layer_features, separability_scores
from ._vgg import vgg11_params

__all__ = [
    "EndToEndImplicitClassifier",
    "EndToEndImplicitRegressor",
    "GreedyLayerwiseCNNClassifier",
    "LayerFeatures",
    "LayerPCADisplay",
    "LayerwiseTrainingDisplay",
    "SeparabilityDisplay",
    "SequentialImplicitClassifier",
    "SequentialImplicitRegressor",
    "cifar10_params",
    "export_onnx",
    "imagenet_params",
    "implicit_paper_params",
    "layer_features",
    "parameter_count",
    "separability_scores",
    "vgg11_params",
]

__version__ = "0.1.0.dev0"
