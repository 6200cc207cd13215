"""Batch augmentation of the greedy CNN: random crop with zero padding and horizontal
flip (CIFAR-10), or random resized crops and flips (ImageNet), done on whole batches on
their device (no per-sample Python, no host round trip).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def make_augment(augment, image_shape):
    """The batch augmentation that the ``augment`` parameter asks for on these images,
    as ``fn(batch, generator)``, or None.

    The crop pads by an eighth of the image side (4 pixels at 32x32, as in the paper);
    ``"resized-crop"`` is the ImageNet recipe (:func:`augment_resized_crop`) with flips.
    """
    c, h, w = image_shape
    crop, flip = {
        True: (True, True),
        False: (False, False),
        "crop": (True, False),
        "flip": (False, True),
        # small images (digits, tabular 1x1) lose too much to a shifted crop: on 8x8
        # digits it cost accuracy (benchmarks/RESULTS.md); mirror images suit only
        # natural colour ones
        "auto": (min(h, w) >= 16, c == 3 and min(h, w) >= 16),
        "resized-crop": (None, True),
    }[augment]
    if crop is None:

        def resized_crop_batch(batch, generator):
            return augment_resized_crop(batch, generator, flip=flip)

        return resized_crop_batch
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

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        A batch of images.
    generator : torch.Generator or None
        Source of randomness, on the batch's device; None for torch's global generator.
    padding : int, default=4
        Zero padding on each side before cropping back to (H, W): each image is shifted
        by up to ``padding`` pixels in each direction.
    flip : bool, default=True
        Whether to mirror each image left-right with probability 1/2.

    Returns
    -------
    torch.Tensor of shape (n, C, H, W)
        The augmented batch; ``x`` itself is never modified (and is returned as is
        when both ``padding=0`` and ``flip=False``).

    See Also
    --------
    TrainTimeAugment : The same augmentation as a layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import augment_crop_flip
    >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
    >>> augment_crop_flip(x, torch.Generator().manual_seed(0), padding=4).shape
    torch.Size([1, 1, 1, 4])
    >>> augment_crop_flip(x, None, padding=0, flip=False).tolist()
    [[[[0.0, 1.0, 2.0, 3.0]]]]
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


class TrainTimeAugment(nn.Module):
    """:func:`augment_crop_flip` as a layer active in training mode only.

    Puts the estimator's augmentation in front of a network trained by another loop
    (skorch, a plain PyTorch loop), so that baselines see the same data distribution.
    In eval mode it returns its input unchanged.

    Parameters
    ----------
    padding : int, default=4
        Zero padding of the random crop, in pixels; 0 disables the crop.
    flip : bool, default=True
        Whether to flip half of the images horizontally.

    See Also
    --------
    augment_crop_flip : The augmentation as a function.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_greedy.nn import TrainTimeAugment
    >>> net = nn.Sequential(TrainTimeAugment(padding=4), nn.Conv2d(3, 8, 3, padding=1))
    >>> x = torch.zeros(2, 3, 32, 32)
    >>> net.train()(x).shape
    torch.Size([2, 8, 32, 32])
    >>> augment = net[0]
    >>> augment.eval()(x) is x
    True
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        self.padding = padding
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment the batch in training mode; return it unchanged otherwise.

        Parameters
        ----------
        x : torch.Tensor of shape (n, C, H, W)
            A batch of images.

        Returns
        -------
        torch.Tensor of shape (n, C, H, W)
            The augmented batch (training mode) or ``x`` itself (eval mode).
        """
        if not self.training:
            return x
        return augment_crop_flip(x, None, padding=self.padding, flip=self.flip)


def augment_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator | None,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Random resized crops and horizontal flips of a whole batch (the ImageNet recipe).

    Each image gets a box of a random share ``scale`` of its area and a random aspect
    ratio in ``ratio`` (log-uniform), at a random place, resized back to the image's own
    size by bilinear interpolation, as torchvision's ``RandomResizedCrop`` does; a box
    larger than the image is shrunk to fit in it (torchvision redraws it up to ten times
    before falling back to a centre crop). All in batch tensor operations on the
    batch's device. Give the network images already resized (for ImageNet, 224x224);
    at test time, resize to 256 and crop the centre 224x224
    (``ImageFolderDataset(size=256, center_crop=224)``).

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        A batch of images (uint8 batches come back as float32).
    generator : torch.Generator or None
        Source of randomness, on the batch's device; None for torch's global generator.
    scale : tuple of float, default=(0.08, 1.0)
        Range of the box's share of the image's area.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the box's width / height.
    flip : bool, default=True
        Whether to mirror each image left-right with probability 1/2.

    Returns
    -------
    torch.Tensor of shape (n, C, H, W)
        The augmented batch, float32.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.nn import augment_resized_crop
    >>> x = torch.rand(4, 3, 16, 16)
    >>> augment_resized_crop(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    >>> whole = augment_resized_crop(x, None, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    >>> torch.allclose(whole, x, atol=1e-5)
    True
    """
    n, _, h, w = x.shape
    device = x.device

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, device=device, generator=generator)

    area = uniform(*scale) * (h * w)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    box_w = torch.sqrt(area * aspect).clamp(max=w)
    box_h = torch.sqrt(area / aspect).clamp(max=h)
    left = uniform(0.0, 1.0) * (w - box_w)
    top = uniform(0.0, 1.0) * (h - box_h)
    # the affine map from the output's [-1, 1] grid to the box in the input's coordinates
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = box_w / w
    theta[:, 0, 2] = (2 * left + box_w) / w - 1
    theta[:, 1, 1] = box_h / h
    theta[:, 1, 2] = (2 * top + box_h) / h - 1
    if flip:
        mirror = torch.rand(n, device=device, generator=generator) < 0.5
        theta[:, 0, 0] = torch.where(mirror, -theta[:, 0, 0], theta[:, 0, 0])
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
