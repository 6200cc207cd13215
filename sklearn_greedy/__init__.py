"""sklearn-greedy: deep networks trained greedily, one layer or block at a time.

Two published methods as scikit-learn estimators with torch underneath:

- :class:`GreedyLayerwiseCNNClassifier` (Belilovsky, Eickenberg and Oyallon, ICML 2019);
- the sequentially trained implicit models of Gautam, Anderson, Sojoudi and El Ghaoui,
  with the end-to-end implicit baseline of El Ghaoui et al.

Probing tools (per-layer features, separability probes) and plots live beside them.
"""

from . import _moved
from ._onnx import export_onnx
from .cnn._classifier import GreedyLayerwiseCNNClassifier, parameter_count
from .cnn._presets import cifar10_params, imagenet_params
from .cnn._vgg import vgg11_params
from .implicit._end_to_end import EndToEndImplicitClassifier, EndToEndImplicitRegressor
from .implicit._presets import implicit_paper_params
from .implicit._sequential import SequentialImplicitClassifier, SequentialImplicitRegressor
from .inspection._plotting import LayerPCADisplay, LayerwiseTrainingDisplay, SeparabilityDisplay
from .inspection._probing import LayerFeatures, layer_features, separability_scores

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

# pickles of the flat layout of 0.1.0.dev0 name modules that have moved into subpackages
_moved.install()
