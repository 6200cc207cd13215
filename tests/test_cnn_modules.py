"""The torch building blocks of the greedy CNN."""

import pytest
import torch

from sklearn_greedy.nn import (
    AuxiliaryClassifier,
    GreedyLayer,
    InvertibleDownsample,
    augment_crop_flip,
)


def test_invertible_downsample_is_invertible():
    x = torch.randn(2, 3, 8, 6)
    y = InvertibleDownsample()(x)
    assert y.shape == (2, 12, 4, 3)
    torch.testing.assert_close(torch.nn.PixelShuffle(2)(y), x, rtol=0, atol=0)


def test_invertible_downsample_pads_odd_sizes():
    x = torch.randn(2, 1, 5, 1)
    y = InvertibleDownsample()(x)
    assert y.shape == (2, 4, 3, 1)
    restored = torch.nn.PixelShuffle(2)(y)
    torch.testing.assert_close(restored[:, :, :5, :1], x, rtol=0, atol=0)
    assert torch.count_nonzero(restored[:, :, 5:, :]) == 0


@pytest.mark.parametrize(
    "downsample, conv_in", [(None, 4), ("invertible", 16), ("avg", 4), ("max", 4), ("strided", 4)]
)
def test_greedy_layer_shapes(downsample, conv_in):
    layer = GreedyLayer(4, 8, downsample, batch_norm=True)
    assert layer.conv.in_channels == conv_in
    out = layer(torch.randn(3, 4, 10, 10))
    side = 10 if downsample is None else 5
    assert out.shape == (3, 8, side, side)
    assert torch.all(out >= 0)


def test_greedy_layer_rejects_unknown_downsampling():
    with pytest.raises(ValueError, match="downsample must be one of"):
        GreedyLayer(4, 8, "bilinear", batch_norm=False)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_auxiliary_classifier_depth(k):
    head = AuxiliaryClassifier(6, 5, k=k, width=7, batch_norm=False)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == k - 1
    assert head(torch.randn(2, 6, 9, 9)).shape == (2, 5)
    # averaging to 2x2 happens before the linear layer whatever the input size
    assert head.linear.in_features == 4 * (7 if k > 1 else 6)


def test_augment_flip_only_mirrors_some_samples():
    x = torch.randn(64, 2, 5, 5)
    gen = torch.Generator().manual_seed(0)
    out = augment_crop_flip(x, gen, padding=0, flip=True)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 0 < mirrored.sum() < 64


def test_augment_crop_takes_windows_of_the_padded_image():
    x = torch.arange(1, 1 + 16, dtype=torch.float32).view(1, 1, 4, 4).repeat(32, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    out = augment_crop_flip(x, gen, padding=1, flip=False)
    padded = torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))
    windows = {
        tuple(padded[i : i + 4, j : j + 4].flatten().tolist()) for i in range(3) for j in range(3)
    }
    seen = {tuple(o[0].flatten().tolist()) for o in out}
    assert seen <= windows
    assert len(seen) > 1
