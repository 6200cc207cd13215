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


def test_resized_crop_resamples_a_box_of_the_asked_share_back_to_full_size():
    from sklearn_greedy.nn import augment_resized_crop

    # a horizontal ramp: a box half as wide, stretched to the full width, has half the slope
    ramp = torch.arange(16.0).repeat(4, 1, 16, 1)  # (4, 1, 16, 16), x[..., j] = j
    g = torch.Generator().manual_seed(0)
    out = augment_resized_crop(ramp, g, scale=(0.25, 0.25), ratio=(1.0, 1.0), flip=False)
    steps = out[..., 1:-1].diff(dim=-1)
    torch.testing.assert_close(steps, torch.full_like(steps, 0.5), rtol=0, atol=1e-4)
    # each image's box starts elsewhere (random places), inside the image
    starts = out[:, 0, 0, 0]
    assert len(set(starts.tolist())) == 4 and (starts >= 0).all() and (out <= 15).all()
    # flips mirror the ramp of some images only
    ramps = ramp.repeat(4, 1, 1, 1)  # 16 images
    flipped = augment_resized_crop(ramps, g, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    down = [bool(flipped[i, 0, 0, 0] > flipped[i, 0, 0, -1]) for i in range(16)]
    assert 0 < sum(down) < 16  # some mirrored, some not (seeded)
    for i in range(16):
        expected = ramps[i].flip(-1) if down[i] else ramps[i]
        torch.testing.assert_close(flipped[i], expected, rtol=0, atol=1e-4)


def test_imagenet_recipe_trains_on_resized_crops():
    import numpy as np

    from sklearn_greedy import GreedyLayerwiseCNNClassifier, imagenet_params
    from sklearn_greedy.training._augment import make_augment

    assert imagenet_params(1)["augment"] == imagenet_params(3)["augment"] == "resized-crop"
    assert make_augment("resized-crop", (3, 16, 16)) is not None
    X = np.random.RandomState(0).randint(0, 255, (32, 3, 16, 16)).astype(np.uint8)
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=4, max_epochs=1, augment="resized-crop")
    assert clf.fit(X, np.arange(32) % 2).n_layers_fitted_ == 1


@pytest.mark.parametrize("k", [2, 3])
def test_auxiliary_hidden_layers_each_end_in_their_nonlinearity(k):
    """Eq. 2: each of the k - 1 hidden convolutions of the auxiliary problem is followed by
    its nonlinearity: the hidden part's output is non-negative, and a negative shift of
    any convolution's bias reaches the next convolution as zeros, not as negatives."""
    torch.manual_seed(0)
    head = AuxiliaryClassifier(4, 3, k=k, width=6, batch_norm=False).eval()
    convs = [m for m in head.hidden if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == k - 1
    x = torch.randn(5, 4, 6, 6)
    assert (head.hidden(x) >= 0).all() and (head.hidden(x) == 0).any()
    with torch.no_grad():
        convs[0].bias.fill_(-1e3)  # the first convolution's output all negative...
    out = head.hidden(x)
    if k == 3:  # ...is cut to zero before the second one, whose output is then its bias
        second = convs[1].bias.clamp_min(0).view(1, -1, 1, 1).expand_as(out)
        torch.testing.assert_close(out, second)
    else:
        assert (out == 0).all()


def test_batches_are_shuffled_and_no_sample_is_dropped():
    from sklearn_greedy.training._engine import batch_slices

    g = torch.Generator().manual_seed(0)
    for n, size in [(100, 32), (97, 32), (30, 32), (33, 32)]:
        batches = list(batch_slices(n, size, g, torch.device("cpu")))
        order = torch.cat(batches)
        assert sorted(order.tolist()) == list(range(n))  # every sample, once
        assert order.tolist() != list(range(n))  # shuffled
        # a trailing batch of fewer than half a batch joins the one before it
        assert all(len(b) >= size / 2 or len(batches) == 1 for b in batches)
    first = torch.cat(list(batch_slices(100, 32, g, torch.device("cpu"))))
    second = torch.cat(list(batch_slices(100, 32, g, torch.device("cpu"))))
    assert first.tolist() != second.tolist()  # a new order each epoch
