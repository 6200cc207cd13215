"""The greedy CNN's mechanisms pinned by their behaviour (issue 15): each test fails when
the mechanism it names is broken, whatever the accuracy still looks like."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _images import quadrant_images

import sklearn_greedy.cnn._grower as cnn_module
from sklearn_greedy import GreedyLayerwiseCNNClassifier
from sklearn_greedy.nn import AuxiliaryClassifier, GreedyLayer


def _images(n=96, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=2, width=4, max_epochs=2, batch_size=32, random_state=0)
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


def test_frozen_layers_and_their_batchnorm_statistics_do_not_move():
    """Layer 1 and its BatchNorm running statistics are the same after layer 2 trained
    (frozen: no gradient, and eval mode so the statistics are not updated)."""
    X, y = _images()
    clf = _small(n_layers=1, k=2).fit(X, y)  # k=2: BatchNorm on
    before = {k: v.clone() for k, v in clf.model_.layers[0].state_dict().items()}
    assert any("running_mean" in k for k in before)
    clf.set_params(warm_start=True, n_layers=2, augment=True).fit(X, y)
    for key, value in clf.model_.layers[0].state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_estimator_passes_its_schedule_to_the_engine(monkeypatch):
    configs = []
    real = cnn_module.train_stage

    def spy(*args, config, **kwargs):
        configs.append(config)
        return real(*args, config=config, **kwargs)

    monkeypatch.setattr(cnn_module, "train_stage", spy)
    params = dict(
        lr=0.03, lr_decay=0.5, lr_step=1, momentum=0.7, weight_decay=1e-3, keep_best=False,
        n_iter_no_change=3, tol=0.01, batch_size=16, max_epochs=3,
    )  # fmt: skip
    clf = _small(**params).fit(*_images())
    for config in configs:
        for name, value in params.items():
            assert getattr(config, name) == value, name
    # and the decayed rate is what each epoch ran with
    assert [r["lr"] for r in clf.history_[0]] == [0.03, 0.015, 0.0075]


def test_head_is_a_linear_map_of_the_2x2_average():
    """k=1: the auxiliary classifier averages each channel over the four quadrants (not
    the whole map) and applies one linear layer."""
    head = AuxiliaryClassifier(3, n_classes=5, k=1, width=3, batch_norm=False).eval()
    x = torch.randn(4, 3, 6, 6)
    quadrants = x.reshape(4, 3, 2, 3, 2, 3).mean(dim=(3, 5))  # (n, C, 2, 2)
    expected = F.linear(quadrants.flatten(1), head.linear.weight, head.linear.bias)
    torch.testing.assert_close(head(x), expected)


def test_transform_is_the_2x2_average_of_the_layer_output():
    X, y = _images()
    clf = _small().fit(X, y)
    full = clf.layer_outputs(X, 1, pool=None)[1]  # (n, C, 8, 8)
    manual = full.reshape(len(X), -1, 2, 4, 2, 4).mean(axis=(3, 5)).reshape(len(X), -1)
    np.testing.assert_allclose(clf.set_params(transform_layer=1).transform(X), manual, rtol=1e-5)


def test_invertible_downsampling_feeds_the_convolution_pixel_unshuffle():
    layer = GreedyLayer(2, 3, "invertible", batch_norm=False)
    x = torch.randn(1, 2, 5, 7)  # odd sides: padded at the bottom/right first
    padded = F.pad(x, (0, 1, 0, 1))
    seen = {}
    layer.conv.register_forward_hook(lambda mod, inputs, out: seen.update(x=inputs[0]))
    layer(x)
    torch.testing.assert_close(seen["x"], F.pixel_unshuffle(padded, 2), rtol=0, atol=0)
    assert layer.conv.in_channels == 8


def test_keep_best_restores_the_lowest_loss_epoch_at_the_estimator_level():
    """Without validation data each layer keeps the epoch of its lowest training loss:
    refitting with max_epochs cut at that epoch and keep_best off gives the same model."""
    X, y = _images()
    params = dict(n_layers=1, lr=20.0, momentum=0.0, lr_step=None, n_iter_no_change=100,
                  augment=False, max_epochs=6)  # fmt: skip
    kept = _small(**params).fit(X, y)
    best = int(kept.best_epoch_[0])
    losses = kept.loss_curve_[0]
    assert best == 1 + int(np.argmin(losses))
    assert best < len(losses), "the test needs a run whose last epoch is not the best"
    cut = _small(**{**params, "max_epochs": best, "keep_best": False}).fit(X, y)
    np.testing.assert_array_equal(kept.predict_proba(X), cut.predict_proba(X))


def test_ensemble_weights_deeper_layers_by_powers_of_two():
    X, y = _images()
    clf = _small(n_layers=3, downsample_at=(1,)).fit(X, y)
    logits = [torch.log(torch.from_numpy(p)) for p in clf.staged_predict_proba(X)]
    # log-probabilities differ from logits by a per-row constant, which softmax ignores
    combined = (2 * logits[0] + 4 * logits[1] + 8 * logits[2]) / 14
    expected = torch.softmax(combined, dim=1).numpy()
    np.testing.assert_allclose(clf.set_params(ensemble=True).predict_proba(X), expected, atol=1e-6)


@pytest.mark.parametrize("augment", [False, True])
def test_each_stage_trains_on_the_frozen_prefix_output(monkeypatch, augment):
    """Stage j sees layers 1..j-1's output: without augmentation as kept features (layer
    j-1 applied to the features kept for it, no prefix to rerun), recomputed through the
    frozen prefix on every augmented batch otherwise."""
    X, y = _images()
    x = torch.from_numpy(X[:4])
    seen = []
    real = cnn_module.train_stage

    def spy(model, data, *, prefix, augment, **kwargs):
        with torch.no_grad():  # what the stage is given, as it starts
            first = data.X[:4]
            seen.append((first if prefix is None else prefix(first), augment, prefix))
        return real(model, data, prefix=prefix, augment=augment, **kwargs)

    monkeypatch.setattr(cnn_module, "train_stage", spy)
    clf = _small(augment=augment).fit(X, y)
    assert (seen[1][1] is None) == (not augment)
    assert (seen[1][2] is None) == (not augment)
    with torch.no_grad():
        torch.testing.assert_close(seen[0][0], clf.model_.stem(x))
        torch.testing.assert_close(seen[1][0], clf.model_.layers[0](clf.model_.stem(x)))


def test_a_layer_is_the_same_whatever_trains_after_it():
    """Layer 1 (weights and BatchNorm statistics) of a 2-layer fit equals the 1-layer fit
    with the same seed: training layer 2 neither updates nor re-normalises it, and every
    fitted module is left frozen in eval mode."""
    X, y = _images()
    one = _small(n_layers=1, k=2, augment=True).fit(X, y)
    two = _small(n_layers=2, k=2, augment=True).fit(X, y)
    for key, value in two.model_.layers[0].state_dict().items():
        torch.testing.assert_close(value, one.model_.layers[0].state_dict()[key], msg=key)
    assert not any(m.training for m in two.model_.modules())
    assert not any(p.requires_grad for p in two.model_.parameters())
