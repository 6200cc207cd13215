"""Layerwise compression (prune_to, prune_epochs; Sec. 4.3): Taylor filter pruning right
after each layer, fine-tuning of its head alone, the next layer built on the reduced width."""

import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _images import quadrant_images
from sklearn.base import clone

import sklearn_greedy.cnn._grower as grower_module
from sklearn_greedy import GreedyLayerwiseCNNClassifier, parameter_count
from sklearn_greedy.cnn._compression import prune_stage, prune_targets, taylor_scores
from sklearn_greedy.cnn._vgg import VGGClassifier
from sklearn_greedy.nn import AuxiliaryClassifier, GreedyLayer


def _images(n=96, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=2, width=8, max_epochs=2, batch_size=32, random_state=0,
                    downsample_at=(), prune_epochs=1)  # fmt: skip
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    return _images()


@pytest.fixture(scope="module")
def pruned(data):
    return _small(k=2, prune_to=3).fit(*data)


def test_taylor_criterion_is_molchanovs():
    """Theta(c) = mean over samples of |spatial mean of activation * dLoss/dactivation|."""
    torch.manual_seed(0)
    layer = GreedyLayer(2, 5, None, batch_norm=False).eval()
    head = AuxiliaryClassifier(5, n_classes=3, k=2, width=4, batch_norm=True).eval()
    X, y = torch.randn(10, 2, 6, 6), torch.randint(0, 3, (10,))
    scores = taylor_scores(layer, head, lambda x: x, X, y, batch_size=4)
    expected = torch.zeros(5)
    for i in range(10):
        z = layer(X[i : i + 1]).detach().requires_grad_(True)
        F.cross_entropy(head(z), y[i : i + 1]).backward()
        expected += (z * z.grad).mean(dim=(2, 3)).abs()[0] / 10
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("k, batch_norm", [(1, False), (2, True), (3, False)])
def test_pruning_removes_channels_exactly(k, batch_norm):
    """A pruned stage computes what the unpruned one computes with the removed channels
    silenced: the surgery cuts filters, it does not disturb the ones kept."""
    torch.manual_seed(0)
    layer = GreedyLayer(2, 6, None, batch_norm=batch_norm).eval()
    head = AuxiliaryClassifier(6, n_classes=3, k=k, width=4, batch_norm=False).eval()
    x = torch.randn(4, 2, 6, 6)
    keep = torch.tensor([0, 2, 5])
    mask = torch.zeros(1, 6, 1, 1)
    mask[:, keep] = 1
    with torch.no_grad():
        expected = head(layer(x) * mask)
        small_layer, small_head = copy.deepcopy(layer), copy.deepcopy(head)
        prune_stage(small_layer, small_head, keep)
        torch.testing.assert_close(small_layer(x), layer(x)[:, keep])
        torch.testing.assert_close(small_head(small_layer(x)), expected)
    assert small_layer.conv.weight.shape[0] == 3
    assert sum(p.numel() for p in small_layer.parameters()) < sum(
        p.numel() for p in layer.parameters()
    )


def test_pruning_a_vgg_head_keeps_its_function():
    torch.manual_seed(0)
    head = VGGClassifier(6, n_classes=3, width=8).eval()
    layer = GreedyLayer(2, 6, None, batch_norm=False).eval()
    x, keep = torch.randn(2, 2, 4, 4), torch.tensor([1, 4])
    mask = torch.zeros(1, 6, 1, 1)
    mask[:, keep] = 1
    with torch.no_grad():
        expected = head(layer(x) * mask)
        prune_stage(layer, head, keep)
        torch.testing.assert_close(head(layer(x)), expected)


def test_fitted_model_is_truly_smaller(pruned, data):
    full = _small(k=2).fit(*data)
    assert pruned.layer_widths_ == [3, 3]
    assert [s[0] for s in pruned.layer_shapes_] == [3, 3]
    assert pruned.model_.layers[0].conv.out_channels == 3
    # the next layer was built (and trained) on the reduced width
    assert pruned.model_.layers[1].conv.in_channels == 3
    assert pruned.model_.heads[1].hidden[0].in_channels == 3
    net = pruned.to_torch()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == parameter_count(pruned) < parameter_count(full)
    assert pruned.transform(data[0]).shape == (len(data[0]), 3 * 4)
    assert [spec.out_channels for spec in pruned.layer_specs_] == [3, 3]


def test_kept_filters_are_the_best_by_the_criterion_and_the_layer_stays_frozen(data, monkeypatch):
    """The kept channels are the highest Taylor scores; fine-tuning trains the head
    alone, so the kept filters are exactly the trained ones."""
    trained = {}
    real = grower_module.taylor_scores

    def spy(layer, head, prefix, X, y, **kwargs):
        trained[len(trained)] = layer.conv.weight.detach().clone()
        return real(layer, head, prefix, X, y, **kwargs)

    monkeypatch.setattr(grower_module, "taylor_scores", spy)
    clf = _small(k=2, prune_to=3, prune_epochs=2, augment=True).fit(*data)
    for j, record in enumerate(clf.pruning_):
        keep = record["kept_channels"]
        assert sorted(np.argsort(record["scores"])[-3:]) == list(keep)
        assert record["trained_width"] == 8 and len(record["history"]) == 2
        weight = clf.model_.layers[j].conv.weight.detach()
        torch.testing.assert_close(weight, trained[j][torch.from_numpy(keep)], rtol=0, atol=0)
        assert 0 <= record["score_pruned"] <= 1 and 0 <= record["score_before"] <= 1


def test_fine_tuning_changes_the_head(data):
    """prune_epochs=0 keeps the pruned head as cut; fine-tuning moves it."""
    cut = _small(n_layers=1, k=2, prune_to=3, prune_epochs=0).fit(*data)
    tuned = _small(n_layers=1, k=2, prune_to=3, prune_epochs=2).fit(*data)
    torch.testing.assert_close(cut.model_.layers[0].conv.weight, tuned.model_.layers[0].conv.weight)
    assert cut.pruning_[0]["history"] == []
    assert cut.layer_scores_[0] == pytest.approx(cut.pruning_[0]["score_pruned"])
    assert not torch.equal(cut.model_.heads[0].linear.weight, tuned.model_.heads[0].linear.weight)


def test_fraction_list_and_invertible_downsampling(data):
    clf = _small(n_layers=3, prune_to=0.5, downsample_at=(1,)).fit(*data)
    assert clf.layer_widths_ == [4, 8, 8]  # half of 8, 16, 16
    assert clf.model_.layers[1].conv.in_channels == 4 * 4  # invertible: 4x the reduced width
    clf = _small(n_layers=3, prune_to=[None, 5, 8]).fit(*data)
    assert clf.layer_widths_ == [8, 5, 8]
    assert clf.pruning_[0] is None and clf.pruning_[2] is None  # 8 of 8: nothing removed
    assert clf.pruning_[1]["trained_width"] == 8


@pytest.mark.parametrize(
    "prune_to, message",
    [
        (9, "keep 9 filters, but it is trained with 8"),
        ([4, 0], "keep 0 filters"),
        ([4, -2], "keep -2 filters"),
        ([4, 2.5], "widths must be ints or None"),
        ([4], "prune_to has 1 entries but the network has n_layers=2"),
        (0, "'prune_to' parameter"),
        (-3, "'prune_to' parameter"),
        (1.5, "'prune_to' parameter"),
        (True, "prune_to must be an int, a fraction or a list"),
    ],
)
def test_bad_targets_are_refused_naming_prune_to(data, prune_to, message):
    clf = _small(prune_to=prune_to)
    with pytest.raises(ValueError, match=message):
        clf.fit(*data)
    assert not hasattr(clf, "model_")


def test_bad_prune_epochs_refused(data):
    with pytest.raises(ValueError, match="prune_epochs"):
        _small(prune_to=3, prune_epochs=-1).fit(*data)


def test_prune_targets_helper():
    assert prune_targets(None, [4, 4]) == [None, None]
    assert prune_targets(0.5, [128, 128, 256]) == [64, 64, 128]
    with pytest.raises(ValueError, match="prune_to"):
        prune_targets(0.0, [4])


def test_pickle_clone_and_warm_start_keep_the_compression(pruned, data):
    X, y = data
    restored = pickle.loads(pickle.dumps(pruned))
    np.testing.assert_array_equal(restored.predict_proba(X), pruned.predict_proba(X))
    assert restored.layer_widths_ == [3, 3]
    assert clone(pruned).get_params()["prune_to"] == 3
    grown = clone(pruned).set_params(n_layers=1).fit(X, y)
    grown.set_params(n_layers=2, warm_start=True).fit(X, y)
    assert grown.layer_widths_ == [3, 3] and grown.pruning_[0] is not None
    np.testing.assert_allclose(grown.predict_proba(X), pruned.predict_proba(X), rtol=1e-5)


def test_iterative_pruning_ranks_again_in_rounds_and_keeps_trained_filters(data):
    """prune_rounds=3: three rounds down to the target, each ranking the remaining
    filters; the kept filters are the trained ones; the epochs are shared out."""
    unpruned = _small(n_layers=1, k=2).fit(*data)
    one_shot = _small(n_layers=1, k=2, prune_to=2, prune_epochs=4).fit(*data)
    rounds = _small(n_layers=1, k=2, prune_to=2, prune_epochs=4, prune_rounds=3).fit(*data)
    record = rounds.pruning_[0]
    assert [r["width"] for r in record["rounds"]] == [5, 3, 2]
    assert [len(r["history"]) for r in record["rounds"]] == [1, 1, 2]
    assert len(record["history"]) == 4
    # each round ranks what is left: its scores have the previous round's width
    assert [len(r["scores"]) for r in record["rounds"]] == [8, 5, 3]
    keep = record["kept_channels"]
    assert len(set(keep)) == 2 and set(keep) <= set(range(8))
    torch.testing.assert_close(
        rounds.model_.layers[0].conv.weight,
        unpruned.model_.layers[0].conv.weight[torch.from_numpy(keep)], rtol=0, atol=0,
    )  # fmt: skip
    assert rounds.layer_widths_ == [2]
    # one round is the one-shot pruning
    same = _small(n_layers=1, k=2, prune_to=2, prune_epochs=4, prune_rounds=1).fit(*data)
    np.testing.assert_array_equal(
        same.pruning_[0]["kept_channels"], one_shot.pruning_[0]["kept_channels"]
    )
    torch.testing.assert_close(
        same.model_.heads[0].linear.weight, one_shot.model_.heads[0].linear.weight
    )


def test_taylor_scores_weigh_samples_as_the_training_loss_does(data):
    """Integer weights count as repeated samples (up to the mean's denominator)."""
    X, y = data
    X, y = torch.from_numpy(X[:24]), torch.from_numpy(y[:24]).long()
    torch.manual_seed(0)
    layer, head = (
        GreedyLayer(1, 6, None, False).eval(),
        AuxiliaryClassifier(6, 3, k=1, width=6, batch_norm=False).eval(),
    )
    w = torch.tensor([1, 2, 3, 1, 1, 4] * 4)
    weighted = taylor_scores(layer, head, torch.nn.Identity(), X, y, batch_size=7,
                             sample_weight=w.float())  # fmt: skip
    repeated = taylor_scores(layer, head, torch.nn.Identity(), X.repeat_interleave(w, 0),
                             y.repeat_interleave(w, 0), batch_size=7)  # fmt: skip
    torch.testing.assert_close(weighted * len(X) / w.sum(), repeated, rtol=1e-5, atol=1e-7)
    plain = taylor_scores(layer, head, torch.nn.Identity(), X, y, batch_size=7)
    assert not torch.allclose(weighted * len(X) / w.sum(), plain)


def test_pruned_batchnorm_keeps_the_kept_channels_own_statistics(data):
    """The layer's BatchNorm after pruning: running mean and variance, weight and bias of
    the kept channels, those the layer had when it was trained."""
    trained = _small(n_layers=1, k=2, batch_norm=True).fit(*data)
    pruned = _small(n_layers=1, k=2, batch_norm=True, prune_to=3).fit(*data)
    keep = torch.from_numpy(pruned.pruning_[0]["kept_channels"])
    before, after = trained.model_.layers[0].bn, pruned.model_.layers[0].bn
    for name in ("running_mean", "running_var", "weight", "bias"):
        torch.testing.assert_close(
            getattr(after, name), getattr(before, name)[keep], rtol=0, atol=0
        )
    assert after.num_features == 3
