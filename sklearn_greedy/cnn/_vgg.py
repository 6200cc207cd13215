"""VGG-11 trained greedily (Belilovsky et al., 2019, Sec. 4.3, "Comparison to end-to-end VGG").

VGG-11's eight convolutions are eight greedy layers ``[max-pool] -> conv 3x3 -> [BN] ->
ReLU``: max-pooling takes the place of the invertible downsampling and the input stays at
full size. All but the last are trained with ``k = 3`` auxiliary problems whose
convolutions run at half the layer's resolution (:class:`PooledAuxiliaryClassifier`); the
last convolution's auxiliary is VGG's own classifier (:class:`VGGClassifier`), so that the
assembled network is VGG-11 and its weights load into torchvision's ``vgg11`` (``vgg11_bn``
when the layers have BatchNorm) through :func:`vgg11_state_dict`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import torch
from torch import nn

from ._modules import AuxiliaryClassifier, GreedyLayer, LayerSpec
from ._presets import fixed_schedule

# torchvision's configuration "A" (VGG-11): widths, "M" for a 2x2 max-pooling
VGG11_CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

AUX_POOLS = ("avg", "max")


def _pool(kind: str) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(2, ceil_mode=True)
    if kind == "max":
        return nn.MaxPool2d(2, ceil_mode=True)
    raise ValueError(f"aux_downsample must be one of {AUX_POOLS} or None, got {kind!r}.")


class PooledAuxiliaryClassifier(AuxiliaryClassifier):
    """An :class:`~sklearn_greedy.nn.AuxiliaryClassifier` that first halves the resolution.

    The VGG-11 experiment of the paper reduces the spatial resolution by 2x before the
    auxiliary convolutions (the reference code averages), which makes the ``k = 3``
    problems of the early, full-resolution layers four times cheaper.

    Parameters
    ----------
    in_channels : int
        Width of the layer output that the classifier reads.
    n_classes : int
        Number of logits.
    k : int
        Depth of the auxiliary problem (``k - 1`` hidden convolutions).
    width : int
        Width of the hidden convolutions.
    batch_norm : bool
        Whether BatchNorm follows each hidden convolution and the 2x2 averaging.
    pool : {"avg", "max"}, default="avg"
        The 2x2 pooling applied first (odd sizes rounded up).

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.cnn._vgg import PooledAuxiliaryClassifier
    >>> head = PooledAuxiliaryClassifier(8, n_classes=10, k=3, width=16, batch_norm=True)
    >>> head.eval()(torch.zeros(2, 8, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int, n_classes: int, k: int, width: int, batch_norm: bool,
        pool: str = "avg",
    ) -> None:  # fmt: skip
        super().__init__(in_channels, n_classes, k, width, batch_norm)
        self.pre_pool = _pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool 2x2, then classify as :class:`AuxiliaryClassifier` does.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, H, W)
            The greedy layer's output.

        Returns
        -------
        torch.Tensor of shape (n, n_classes)
            The logits.
        """
        return super().forward(self.pre_pool(x))


class _VGGLinear(nn.Linear):
    """A linear layer initialised as VGG's classifier is (torchvision, and the paper's
    reference code): weights from N(0, 0.01), zero bias. Re-initialising it
    (``reset_parameters``, ``to_torch(pretrained=False)``) draws the same way."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, 0.0, 0.01)
        nn.init.zeros_(self.bias)


class VGGClassifier(nn.Module):
    """VGG's classifier as a final auxiliary network (the final max-pooling included).

    2x2 max-pooling, averaging to a ``pool_size`` grid (torchvision's ``avgpool``), then
    ``Linear(C * pool_size**2, width) -> ReLU -> Dropout -> Linear(width, width) -> ReLU
    -> Dropout -> Linear(width, n_classes)``, laid out and initialised as torchvision's
    ``classifier`` (linear weights from N(0, 0.01), which lets it train at lr 0.1).

    Parameters
    ----------
    in_channels : int
        Width C of the last convolution's output.
    n_classes : int
        Number of logits.
    width : int, default=4096
        Width of the two hidden fully connected layers (the paper's ``M~_f``).
    dropout : float, default=0.5
        Dropout probability after each hidden layer.
    pool_size : int, default=7
        Side of the averaged grid fed to the first linear layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.cnn._vgg import VGGClassifier
    >>> head = VGGClassifier(16, n_classes=10, width=32)
    >>> head.eval()(torch.zeros(2, 16, 2, 2)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int, n_classes: int, width: int = 4096, dropout: float = 0.5,
        pool_size: int = 7,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            _VGGLinear(in_channels * pool_size**2, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            _VGGLinear(width, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            _VGGLinear(width, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map the last convolution's output to logits.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, H, W)
            The last greedy layer's output.

        Returns
        -------
        torch.Tensor of shape (n, n_classes)
            The logits.
        """
        return self.classifier(self.avgpool(self.pool(x)).flatten(1))


def cap_widths(plan: list[LayerSpec], max_width: int | None, *, fixed_last_aux: bool):
    """The plan with the layers' widths capped at ``max_width`` (VGG stops at 512).

    Each auxiliary width keeps its ratio to its layer's width (the doubling rule of
    :func:`~sklearn_greedy.nn.layer_plan` when nothing is capped); the last one is left
    alone when ``fixed_last_aux`` (an explicit ``final_aux_width``).
    """
    if max_width is None:
        return plan
    capped, in_channels = [], plan[0].in_channels
    for j, spec in enumerate(plan):
        out = min(spec.out_channels, max_width)
        aux = spec.aux_width
        if not (fixed_last_aux and j == len(plan) - 1):
            aux = max(1, spec.aux_width * out // spec.out_channels)
        capped.append(replace(spec, in_channels=in_channels, out_channels=out, aux_width=aux))
        in_channels = out
    return capped


def vgg11_params(batch_norm: bool = True) -> dict:
    """The paper's greedy VGG-11 (Sec. 4.3) as estimator parameters.

    Eight layers of widths 64, 128, 256, 256, 512, 512, 512, 512 with max-pooling before
    layers 2, 3, 5 and 7 (0-based ``downsample_at=(1, 2, 4, 6)``), the input at full
    size; ``k = 3`` auxiliary problems of width twice the layer's (the reference code's),
    after a 2x2 average pooling; VGG's classifier (max-pool, 7x7 average, two hidden
    layers of 4096) as the last auxiliary. The schedule is the reference code's ImageNet
    one: 45 epochs per layer, SGD lr 0.1 divided by 10 every 20 epochs, momentum 0.9,
    weight decay 1e-4, batch 256, crop and flip augmentation.

    Parameters
    ----------
    batch_norm : bool, default=True
        BatchNorm in the layers, as in the reference code: the assembled network is
        torchvision's ``vgg11_bn``. False keeps BatchNorm in the auxiliary problems only
        (``batch_norm="aux"``), so that the network is plain ``vgg11``, and starts at
        VGG's own learning rate, 0.01: without normalisation the deeper layers do not
        train at 0.1.

    Returns
    -------
    params : dict
        Keyword arguments for :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier`; the
        assembled network (``to_torch()``) is VGG-11, and :func:`vgg11_state_dict` maps
        its weights to torchvision's layout.

    Examples
    --------
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
    >>> from sklearn_greedy.cnn._vgg import vgg11_params
    >>> clf = GreedyLayerwiseCNNClassifier(**vgg11_params())
    >>> clf.n_layers, clf.downsample, clf.max_width, clf.final_aux
    (8, 'max', 512, 'vgg')
    """
    return dict(
        n_layers=8,
        k=3,
        width=64,
        max_width=512,
        aux_width=128,
        downsample="max",
        downsample_at=(1, 2, 4, 6),
        input_downsample=False,
        batch_norm=True if batch_norm else "aux",
        aux_downsample="avg",
        final_aux="vgg",
        final_aux_width=4096,
        **fixed_schedule(
            epochs=45, batch_size=256, weight_decay=1e-4, lr_decay=0.1, lr_step=20,
            lr=0.1 if batch_norm else 0.01,
        ),
    )  # fmt: skip


def vgg11_state_dict(network: nn.Module) -> OrderedDict:
    """The weights of a greedy VGG network under torchvision's VGG names.

    ``network`` is :meth:`GreedyLayerwiseCNNClassifier.to_torch`'s module for a model fitted
    with :func:`vgg11_params` (or any max-pooling network ending in a
    :class:`VGGClassifier`); the result loads with ``strict=True`` into the
    ``features`` and ``classifier`` of torchvision's ``vgg11`` (``vgg11_bn`` when the
    layers have BatchNorm) built with the same number of classes. torchvision's VGG
    takes standardised images: feed it ``network.stem(x)``.

    Parameters
    ----------
    network : GreedyCNN
        The assembled greedy network.

    Returns
    -------
    state_dict : collections.OrderedDict
        ``features.{i}.*`` and ``classifier.{0,3,6}.*`` tensors (copies).

    Raises
    ------
    TypeError
        If ``network`` is not a torch module with ``layers`` (an estimator, say).
    ValueError
        If a layer downsamples otherwise than by max-pooling, or the head is not a
        :class:`VGGClassifier`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_greedy.nn import GreedyCNN, GreedyLayer
    >>> from sklearn_greedy.cnn._vgg import VGGClassifier, vgg11_state_dict
    >>> layers = [GreedyLayer(3, 8, None, False), GreedyLayer(8, 16, "max", False)]
    >>> net = GreedyCNN(nn.Identity(), layers, VGGClassifier(16, 10, width=32))
    >>> list(vgg11_state_dict(net))[:4]
    ['features.0.weight', 'features.0.bias', 'features.3.weight', 'features.3.bias']
    """
    if not isinstance(network, nn.Module) or not hasattr(network, "layers"):
        raise TypeError(
            f"vgg11_state_dict takes the assembled network, got {type(network).__name__}; "
            "for a fitted GreedyLayerwiseCNNClassifier pass estimator.to_torch()."
        )
    if not isinstance(network.head, VGGClassifier):
        raise ValueError("vgg11_state_dict needs a network whose head is a VGGClassifier.")
    state, index = OrderedDict(), 0
    for j, layer in enumerate(network.layers):
        if not isinstance(layer, GreedyLayer) or not isinstance(
            layer.downsample, (nn.Identity, nn.MaxPool2d)
        ):
            raise ValueError(f"Layer {j + 1} does not downsample by max-pooling: not a VGG.")
        index += isinstance(layer.downsample, nn.MaxPool2d)  # torchvision's "M" module
        parts = [("conv", layer.conv)]
        if isinstance(layer.bn, nn.BatchNorm2d):
            parts.append(("bn", layer.bn))
        for _, module in parts:
            for name, tensor in module.state_dict().items():
                state[f"features.{index}.{name}"] = tensor.detach().clone()
            index += 1
        index += 1  # the ReLU
    for i in (0, 3, 6):
        for name, tensor in network.head.classifier[i].state_dict().items():
            state[f"classifier.{i}.{name}"] = tensor.detach().clone()
    return state
