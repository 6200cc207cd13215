"""Torch building blocks of the greedy layerwise CNN (Belilovsky et al., 2019).

A layer is ``[P_j] -> conv 3x3 with bias -> [BatchNorm] -> ReLU`` (Eq. 1) where ``P_j`` is
a downsampling operator or the identity; its auxiliary classifier (Eq. 2) is ``k - 1``
conv 3x3 layers of constant width, then spatial averaging to a 2x2 grid, then a linear
layer to the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLE_KINDS = ("invertible", "avg", "max", "strided")


class PadToEven(nn.Module):
    """Zero-pad the bottom/right edge so that height and width are even.

    Lets every downsampling operator accept odd sizes (a 1x1 "image" included), which is
    how tabular data passes through the network.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x


class InvertibleDownsample(nn.Sequential):
    """Invertible 2x2 downsampling (Dinh et al., 2017): space-to-depth, 4x the channels.

    Channels are ordered channel-major (``c * 4 + di * 2 + dj``) as in
    :class:`torch.nn.PixelUnshuffle`; the paper's reference code orders them offset-major,
    a fixed permutation that matters only when loading its weights. Odd heights and widths
    are zero-padded at the bottom/right first, so an (n, C, H, W) input becomes
    (n, 4C, ceil(H/2), ceil(W/2)).

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import InvertibleDownsample
    >>> InvertibleDownsample()(torch.zeros(2, 3, 5, 5)).shape
    torch.Size([2, 12, 3, 3])
    """

    def __init__(self) -> None:
        super().__init__(PadToEven(), nn.PixelUnshuffle(2))


class GreedyLayer(nn.Module):
    """One trainable layer ``x_{j+1} = relu(BN(W_j P_j x_j))``.

    Parameters
    ----------
    in_channels : int
        Width (number of channels) of the layer's input.
    out_channels : int
        Width of the layer's output.
    downsample : {"invertible", "avg", "max", "strided"} or None
        The operator ``P_j``; None for the identity. "invertible" quadruples the channels
        the convolution sees, "avg" and "max" pool 2x2 (rounding odd sizes up) and
        "strided" gives the convolution a stride of 2.
    batch_norm : bool
        Whether a BatchNorm follows the convolution.

    Raises
    ------
    ValueError
        If ``downsample`` is not one of the kinds above.

    See Also
    --------
    AuxiliaryClassifier : The auxiliary classifier trained on the layer's output.
    layer_plan : The widths and downsamplings of a whole network.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import GreedyLayer
    >>> layer = GreedyLayer(3, 16, downsample="max", batch_norm=True)
    >>> layer(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 16, 16, 16])

    A 1x1 "image" (a tabular row) passes through every downsampling:

    >>> GreedyLayer(5, 8, "invertible", batch_norm=False)(torch.zeros(2, 5, 1, 1)).shape
    torch.Size([2, 8, 1, 1])
    """

    def __init__(
        self, in_channels: int, out_channels: int, downsample: str | None, batch_norm: bool
    ) -> None:
        super().__init__()
        stride = 1
        conv_in = in_channels
        if downsample is None:
            self.downsample = nn.Identity()
        elif downsample == "invertible":
            self.downsample = InvertibleDownsample()
            conv_in = 4 * in_channels
        elif downsample == "avg":
            self.downsample = nn.AvgPool2d(2, ceil_mode=True)
        elif downsample == "max":
            self.downsample = nn.MaxPool2d(2, ceil_mode=True)
        elif downsample == "strided":
            self.downsample = nn.Identity()
            stride = 2
        else:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_KINDS}, got {downsample!r}.")
        self.conv = nn.Conv2d(conv_in, out_channels, 3, stride=stride, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``P_j``, the convolution, the optional BatchNorm and the ReLU.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, H, W)
            The previous layer's output.

        Returns
        -------
        torch.Tensor of shape (n, out_channels, H', W')
            The layer's output; ``H' = ceil(H / 2)`` (likewise ``W'``) when the layer
            downsamples, ``H`` otherwise.
        """
        return F.relu(self.bn(self.conv(self.downsample(x))))


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one greedy layer and its auxiliary classifier.

    Parameters
    ----------
    in_channels : int
        Width of the layer's input.
    out_channels : int
        Width of the layer's output.
    downsample : {"invertible", "avg", "max", "strided"} or None
        The layer's downsampling operator, None for the identity.
    aux_width : int
        Width of the hidden convolutions of the layer's auxiliary classifier.

    See Also
    --------
    layer_plan : Builds the specs of a whole network.

    Examples
    --------
    >>> from sklearn_greedy.nn import LayerSpec
    >>> LayerSpec(in_channels=3, out_channels=64, downsample=None, aux_width=64)
    LayerSpec(in_channels=3, out_channels=64, downsample=None, aux_width=64)
    """

    in_channels: int
    out_channels: int
    downsample: str | None
    aux_width: int


def layer_plan(
    in_channels: int,
    n_layers: int,
    width: int,
    downsample: str,
    downsample_at,
    aux_width: int | None = None,
    final_aux_width: int | None = None,
) -> list[LayerSpec]:
    """The widths of a greedy CNN (Sec. 4, "Naming Conventions").

    The first layer has ``width`` maps (M); a layer that begins with a downsampling
    doubles the width, and the auxiliary width (M~, ``aux_width``, default ``width``)
    doubles with it; the last auxiliary classifier has ``final_aux_width`` (M~_f) when
    given.

    Parameters
    ----------
    in_channels : int
        Channels of the network's input (after any input downsampling).
    n_layers : int
        Number of greedy layers.
    width : int
        Width M of the first layer.
    downsample : {"invertible", "avg", "max", "strided"}
        Downsampling operator of the layers listed in ``downsample_at``.
    downsample_at : container of int
        Indices (0-based) of the layers that begin with a downsampling; anything that
        supports ``in`` (tuple, set, range...).
    aux_width : int or None, default=None
        Auxiliary width M~ at the first layer; None for ``width``.
    final_aux_width : int or None, default=None
        Auxiliary width M~_f of the last layer's classifier; None to follow the doubling.

    Returns
    -------
    list of LayerSpec
        One spec per layer, in order; each layer's ``in_channels`` is the previous
        layer's ``out_channels``.

    See Also
    --------
    GreedyLayer : The layer that a spec describes.
    AuxiliaryClassifier : The auxiliary classifier that ``aux_width`` sizes.

    Examples
    --------
    >>> from sklearn_greedy.nn import layer_plan
    >>> for spec in layer_plan(3, 3, 64, "invertible", downsample_at=(1,)):
    ...     print(spec.out_channels, spec.downsample, spec.aux_width)
    64 None 64
    128 invertible 128
    128 None 128
    """
    plan, n_down = [], 0
    for j in range(n_layers):
        is_down = j in downsample_at
        n_down += is_down
        head_width = (aux_width or width) * 2**n_down
        if j == n_layers - 1 and final_aux_width is not None:
            head_width = final_aux_width
        out_channels = width * 2**n_down
        plan.append(
            LayerSpec(in_channels, out_channels, downsample if is_down else None, head_width)
        )
        in_channels = out_channels
    return plan


class AuxiliaryClassifier(nn.Module):
    """The auxiliary problem's classifier ``C_gamma`` (Eq. 2).

    ``k - 1`` conv 3x3 + [BN] + ReLU layers of width ``width``, then averaging to a 2x2
    grid, [BN], flatten and a linear layer to ``n_classes`` logits. With ``k = 1`` it is a
    linear model on the 2x2-averaged features.

    Parameters
    ----------
    in_channels : int
        Width of the greedy layer's output that the classifier reads.
    n_classes : int
        Number of logits.
    k : int
        Depth of the auxiliary problem: ``k - 1`` hidden convolutions plus the linear
        layer; ``k >= 1``.
    width : int
        Width M~ of the hidden convolutions (unused when ``k = 1``).
    batch_norm : bool
        Whether BatchNorm follows each hidden convolution and the 2x2 averaging.

    See Also
    --------
    GreedyLayer : The layer whose output the classifier reads.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import AuxiliaryClassifier
    >>> head = AuxiliaryClassifier(16, n_classes=10, k=3, width=32, batch_norm=False)
    >>> head(torch.zeros(2, 16, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int, n_classes: int, k: int, width: int, batch_norm: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(k - 1):
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        self.hidden = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.bn = nn.BatchNorm1d(4 * channels) if batch_norm else nn.Identity()
        self.linear = nn.Linear(4 * channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a layer's output to class logits.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, H, W)
            The greedy layer's output.

        Returns
        -------
        torch.Tensor of shape (n, n_classes)
            The logits.
        """
        x = self.pool(self.hidden(x)).flatten(1)
        return self.linear(self.bn(x))


class ChannelStandardizer(nn.Module):
    """Fixed per-channel standardisation ``(x - mean) / std`` learned from the training set.

    Buffers, not parameters: it is part of the network (so an exported network takes the
    same raw input as the estimator) but never trained.

    Parameters
    ----------
    mean : torch.Tensor of shape (C,)
        Per-channel mean (copied).
    std : torch.Tensor of shape (C,)
        Per-channel standard deviation (copied); must be non-zero.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import ChannelStandardizer
    >>> standardize = ChannelStandardizer(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]))
    >>> standardize(torch.ones(1, 2, 1, 1)).flatten().tolist()
    [0.0, 2.0]
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise each channel.

        Parameters
        ----------
        x : torch.Tensor of shape (n, C, H, W)
            Raw images, of any numeric dtype.

        Returns
        -------
        torch.Tensor of shape (n, C, H, W)
            ``(x - mean) / std`` as floats.
        """
        return (x.float() - self.mean) / self.std


class GreedyCNN(nn.Module):
    """The assembled network: input preparation, the trained layers and the last head.

    This is what :meth:`GreedyLayerwiseCNNClassifier.to_torch` hands over for end-to-end
    fine-tuning: ``forward`` maps raw images (n, C, H, W) to logits.

    Parameters
    ----------
    stem : torch.nn.Module
        Input preparation applied before the first layer (in an exported network:
        layout, :class:`ChannelStandardizer` and the optional input
        :class:`InvertibleDownsample`).
    layers : list of torch.nn.Module
        The greedy layers, in order (kept as a :class:`torch.nn.ModuleList`).
    head : torch.nn.Module
        Classifier on the last layer's output (the last auxiliary classifier).

    See Also
    --------
    GreedyLayer : The layers.
    AuxiliaryClassifier : The head.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_greedy.nn import AuxiliaryClassifier, GreedyCNN, GreedyLayer
    >>> layers = [GreedyLayer(3, 8, None, False), GreedyLayer(8, 16, "avg", False)]
    >>> head = AuxiliaryClassifier(16, n_classes=10, k=1, width=16, batch_norm=False)
    >>> net = GreedyCNN(nn.Identity(), layers, head)
    >>> x = torch.zeros(2, 3, 32, 32)
    >>> net(x).shape
    torch.Size([2, 10])
    >>> net.features(x, depth=1).shape
    torch.Size([2, 8, 32, 32])
    """

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    def features(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """The representation after ``depth`` layers (all by default).

        Parameters
        ----------
        x : torch.Tensor of shape (n, C, H, W)
            Raw input, as ``forward`` takes it.
        depth : int or None, default=None
            Number of layers to apply after the stem (``0`` gives the stem's output);
            None for all of them.

        Returns
        -------
        torch.Tensor of shape (n, C', H', W')
            The output of the first ``depth`` layers.
        """
        x = self.stem(x)
        for layer in self.layers[:depth]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map raw images to the head's logits.

        Parameters
        ----------
        x : torch.Tensor of shape (n, C, H, W)
            Raw input.

        Returns
        -------
        torch.Tensor of shape (n, n_classes)
            The logits.
        """
        return self.head(self.features(x))


def layer_feature_names(layer: int, channels: int, height: int, width: int) -> list[str]:
    """Names of a layer's flattened (channel, row, column) features:
    ``layer{j}_c{channel}_{row}{col}``, with an underscore between row and column once
    either index can take two digits."""
    sep = "" if max(height, width) <= 10 else "_"
    return [
        f"layer{layer}_c{c}_{r}{sep}{q}"
        for c in range(channels)
        for r in range(height)
        for q in range(width)
    ]


class ImageView(nn.Module):
    """Read flat rows ``(n, C*H*W)`` or one-channel images ``(n, H, W)`` as ``(n, C, H, W)``.

    The estimator accepts these layouts; with this first in the network, so does the
    network it exports (to skorch or a plain loop), fed the same X.
    """

    def __init__(self, image_shape) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.dim() == 4 else x.reshape(x.shape[0], *self.image_shape)


def make_stem(
    mean: torch.Tensor, std: torch.Tensor, input_downsample: bool, image_shape=None
) -> nn.Sequential:
    """Input layout (when ``image_shape`` is given), standardisation, then the optional
    invertible downsampling of the input (Fig. 1)."""
    modules: list[nn.Module] = [] if image_shape is None else [ImageView(image_shape)]
    modules.append(ChannelStandardizer(mean, std))
    if input_downsample:
        modules.append(InvertibleDownsample())
    return nn.Sequential(*modules)


def reset_parameters(module: nn.Module) -> nn.Module:
    """Re-initialise every submodule that can be (convolutions, linear layers, BatchNorm).

    Uses each submodule's own ``reset_parameters``, hence torch's default initialisation;
    seed torch's global generator first for a reproducible draw.

    Parameters
    ----------
    module : torch.nn.Module
        The network, modified in place (its own ``reset_parameters``, if any, is not
        called).

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import GreedyLayer, reset_parameters
    >>> layer = GreedyLayer(3, 8, None, batch_norm=True)
    >>> before = layer.conv.weight.detach().clone()
    >>> reset_parameters(layer) is layer
    True
    >>> torch.equal(before, layer.conv.weight)
    False
    """
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    return module
