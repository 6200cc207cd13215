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
    a fixed permutation that matters only when loading its weights.
    """

    def __init__(self) -> None:
        super().__init__(PadToEven(), nn.PixelUnshuffle(2))


class GreedyLayer(nn.Module):
    """One trainable layer ``x_{j+1} = relu(BN(W_j P_j x_j))``.

    Parameters
    ----------
    in_channels, out_channels : int
        Widths before and after the layer.
    downsample : {"invertible", "avg", "max", "strided"} or None
        The operator ``P_j``; None for the identity.
    batch_norm : bool
        Whether a BatchNorm follows the convolution.
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
        return F.relu(self.bn(self.conv(self.downsample(x))))


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one greedy layer and its auxiliary classifier."""

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
        x = self.pool(self.hidden(x)).flatten(1)
        return self.linear(self.bn(x))


class ChannelStandardizer(nn.Module):
    """Fixed per-channel standardisation ``(x - mean) / std`` learned from the training set.

    Buffers, not parameters: it is part of the network (so an exported network takes the
    same raw input as the estimator) but never trained.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class GreedyCNN(nn.Module):
    """The assembled network: input preparation, the trained layers and the last head.

    This is what :meth:`GreedyLayerwiseCNNClassifier.to_torch` hands over for end-to-end
    fine-tuning: ``forward`` maps raw images (n, C, H, W) to logits.
    """

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    def features(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """The representation after ``depth`` layers (all by default)."""
        x = self.stem(x)
        for layer in self.layers[:depth]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


class TrainTimeAugment(nn.Module):
    """:func:`augment_crop_flip` as a layer active in training mode only.

    Puts the estimator's augmentation in front of a network trained by another loop
    (skorch, a plain PyTorch loop), so that baselines see the same data distribution.
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        self.padding = padding
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return augment_crop_flip(x, None, padding=self.padding, flip=self.flip)


def reset_parameters(module: nn.Module) -> nn.Module:
    """Re-initialise every submodule that can be (convolutions, linear layers, BatchNorm)."""
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    return module


def make_augment(augment, image_shape):
    """The batch augmentation that the ``augment`` parameter asks for on these images,
    as ``fn(batch, generator)``, or None.

    The crop pads by an eighth of the image side (4 pixels at 32x32, as in the paper).
    """
    c, h, w = image_shape
    crop, flip = {
        True: (True, True),
        False: (False, False),
        "crop": (True, False),
        "flip": (False, True),
        # translations suit any image; mirror images only natural colour ones
        "auto": (min(h, w) >= 8, c == 3 and min(h, w) >= 16),
    }[augment]
    if not (crop or flip):
        return None
    padding = max(1, min(h, w) // 8) if crop else 0

    def augment_batch(batch, generator):
        return augment_crop_flip(batch, generator, padding=padding, flip=flip)

    return augment_batch


def augment_crop_flip(
    x: torch.Tensor, generator: torch.Generator | None, *, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, on a whole batch.

    Everything happens in batch tensor operations on the batch's device, so augmentation
    costs no host round trip. ``padding=0`` disables the crop and ``flip=False`` the flip.
    """
    n, _, h, w = x.shape
    device = x.device
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device, generator=generator)
        rows = (dy + torch.arange(h, device=device).view(1, h, 1)).expand(n, h, w)
        cols = (dx + torch.arange(w, device=device).view(1, 1, w)).expand(n, h, w)
        flat = rows * (w + 2 * padding) + cols
        x = padded.flatten(2).gather(2, flat.flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1))
        x = x.view(n, -1, h, w)
    if flip:
        mask = torch.rand(n, device=device, generator=generator) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    return x
