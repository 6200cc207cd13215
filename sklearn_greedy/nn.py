"""The torch building blocks of the greedy CNN, for use outside the estimator.

Everything here is a plain :class:`torch.nn.Module` or function: to train the paper's
layers in your own loop, rebuild a fitted network, or give a baseline the estimator's
augmentation. :meth:`GreedyLayerwiseCNNClassifier.to_torch` returns a :class:`GreedyCNN`.

Examples
--------
>>> import torch
>>> from sklearn_greedy.nn import AuxiliaryClassifier, GreedyLayer
>>> layer = GreedyLayer(3, 16, downsample="invertible", batch_norm=False)
>>> head = AuxiliaryClassifier(16, n_classes=10, k=2, width=16, batch_norm=True)
>>> head(layer(torch.zeros(2, 3, 32, 32))).shape
torch.Size([2, 10])
"""

from .cnn._modules import (
    DOWNSAMPLE_KINDS,
    AuxiliaryClassifier,
    ChannelStandardizer,
    GreedyCNN,
    GreedyLayer,
    InvertibleDownsample,
    LayerSpec,
    layer_plan,
    reset_parameters,
)
from .cnn._vgg import PooledAuxiliaryClassifier, VGGClassifier, vgg11_state_dict
from .training._augment import TrainTimeAugment, augment_crop_flip, augment_resized_crop

__all__ = [
    "DOWNSAMPLE_KINDS",
    "AuxiliaryClassifier",
    "ChannelStandardizer",
    "GreedyCNN",
    "GreedyLayer",
    "InvertibleDownsample",
    "LayerSpec",
    "PooledAuxiliaryClassifier",
    "TrainTimeAugment",
    "VGGClassifier",
    "augment_crop_flip",
    "augment_resized_crop",
    "layer_plan",
    "reset_parameters",
    "vgg11_state_dict",
]
