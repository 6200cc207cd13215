"""Decoupled greedy training (training="decoupled", Belilovsky et al. 2020): every layer at
once, each on its own loss and optimizer, no gradient between layers."""

import pickle

import numpy as np
import pytest
import torch
from _images import quadrant_images
from sklearn.base import clone

import sklearn_greedy.cnn._classifier as cnn_module
from sklearn_greedy import GreedyLayerwiseCNNClassifier
from sklearn_greedy.training._engine import TrainingDivergedError


def _images(n=96, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=2, width=4, max_epochs=2, batch_size=32, random_state=0,
                    training="decoupled")  # fmt: skip
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    return _images()


@pytest.fixture(scope="module")
def fitted(data):
    return _small(n_layers=3, k=2, augment=True, downsample_at=(1,)).fit(*data)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_one_layer_decoupled_is_the_sequential_fit(data):
    """With one layer there is nothing to decouple: the same batches, augmentation,
    optimizer and schedule as the engine's sequential stage, bit for bit."""
    params = dict(n_layers=1, k=2, augment=True, lr_step=1, max_epochs=3)
    decoupled = _small(**params).fit(*data)
    sequential = _small(**params, training="sequential").fit(*data)
    for key, value in _state(sequential.model_).items():
        torch.testing.assert_close(decoupled.model_.state_dict()[key], value, rtol=0, atol=0)
    assert decoupled.history_[0][-1]["train_loss"] == pytest.approx(
        sequential.history_[0][-1]["train_loss"]
    )


def test_no_gradient_flows_between_layers(data):
    """Layer 1 of a 3-layer decoupled fit is the layer a 1-layer fit trains on the same
    batches: the layers above never send it a gradient (their input is detached)."""
    params = dict(k=2, augment=True, keep_best=False, max_epochs=2)
    alone = _small(n_layers=1, **params).fit(*data)
    stacked = _small(n_layers=3, **params).fit(*data)
    for key, value in _state(alone.model_.layers[0]).items():
        torch.testing.assert_close(stacked.model_.layers[0].state_dict()[key], value, msg=key)
    # and the layers above did train (on layer 1's output, at the same time)
    assert len(stacked.history_) == 3
    assert all(len(h) == 2 for h in stacked.history_)


def test_augmentation_runs_once_per_batch_for_all_layers(data, monkeypatch):
    calls = []
    real = cnn_module.make_augment

    def counting(augment, image_shape):
        fn = real(augment, image_shape)

        def wrapped(batch, generator):
            calls.append(batch.shape[0])
            return fn(batch, generator)

        return wrapped

    monkeypatch.setattr(cnn_module, "make_augment", counting)
    _small(n_layers=3, augment=True, max_epochs=2).fit(*data)
    decoupled = len(calls)
    calls.clear()
    _small(n_layers=3, augment=True, max_epochs=2, training="sequential").fit(*data)
    assert decoupled == 2 * 3  # 2 epochs of 3 batches (96 samples, batch 32)
    assert len(calls) == 3 * decoupled  # sequential: once per batch per layer


def test_keep_best_and_plateau_act_on_all_layers_together(data):
    clf = _small(n_layers=3, max_epochs=6, n_iter_no_change=1, tol=10.0).fit(*data)
    # tol=10: no epoch after the first improves, so the plateau rule stops all at epoch 2
    assert list(clf.n_iter_) == [2, 2, 2]
    assert list(clf.stopped_early_) == [True, True, True]
    # the layers are kept at one epoch: each head was trained on the layers below as they
    # were then
    assert len(set(clf.best_epoch_)) == 1 and clf.best_epoch_[0] in (1, 2)


def test_results_work_as_in_sequential_mode(fitted, data):
    X, y = data
    assert fitted.n_layers_fitted_ == 3 and len(fitted.history_) == 3
    assert fitted.layer_widths_ == [4, 8, 8]
    staged = list(fitted.staged_predict(X))
    assert len(staged) == 3 and all(s.shape == (len(X),) for s in staged)
    # training accuracy of each head, un-augmented, in eval mode (one pass for all)
    np.testing.assert_allclose(fitted.layer_scores_, [np.mean(s == y) for s in staged], atol=1e-6)
    assert fitted.transform(X).shape == (len(X), 4 * 8)
    assert fitted.set_params(ensemble=True).predict_proba(X).shape == (len(X), 3)
    fitted.set_params(ensemble=False)
    assert fitted.score(X, y) > 0.6
    assert not any(m.training for m in fitted.model_.modules())
    assert not any(p.requires_grad for p in fitted.model_.parameters())
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert clone(fitted).get_params()["training"] == "decoupled"


def test_warm_start_trains_the_new_layers_together_on_the_frozen_ones(data):
    clf = _small(n_layers=1, warm_start=True).fit(*data)
    first = _state(clf.model_.layers[0])
    clf.set_params(n_layers=3).fit(*data)
    assert clf.n_layers_fitted_ == 3 and len(clf.history_) == 3
    for key, value in first.items():
        torch.testing.assert_close(clf.model_.layers[0].state_dict()[key], value, rtol=0, atol=0)
    # the two new layers trained in one pass: their epochs share one clock
    assert [r["seconds"] for r in clf.history_[1]] == [r["seconds"] for r in clf.history_[2]]
    # and the training mode may change between warm-started fits
    clf.set_params(n_layers=4, training="sequential").fit(*data)
    assert clf.n_layers_fitted_ == 4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_validation_data_scores_every_layer(data):
    X, y = data
    clf = _small(n_layers=2, early_stopping=True, max_epochs=3).fit(X, y)
    for history in clf.history_:
        assert all(0 <= r["valid_score"] <= 1 for r in history)


def test_divergence_is_reported_with_the_layer(data):
    with pytest.raises(TrainingDivergedError, match="layer"):
        _small(lr=1e6, momentum=0.0, lr_step=None).fit(*data)


def test_bad_training_value_and_compression_are_refused(data):
    with pytest.raises(ValueError, match="training"):
        _small(training="parallel").fit(*data)
    with pytest.raises(ValueError, match="prune_to needs training='sequential'"):
        _small(prune_to=2).fit(*data)


def test_keep_best_restores_every_layer_at_the_last_layers_best_epoch(data):
    """Without validation data the network is kept at the epoch of the last layer's lowest
    training loss: refitting with max_epochs cut there and keep_best off gives the same
    model, every layer included."""
    params = dict(n_layers=2, lr=5.0, momentum=0.0, lr_step=None, n_iter_no_change=100,
                  augment=False, max_epochs=6)  # fmt: skip
    kept = _small(**params).fit(*data)
    best = int(kept.best_epoch_[-1])
    assert best == 1 + int(np.argmin(kept.loss_curve_[-1]))
    assert best < 6, "the test needs a run whose last epoch is not the best"
    cut = _small(**{**params, "max_epochs": best, "keep_best": False}).fit(*data)
    X = data[0]
    for a, b in zip(kept.staged_predict_proba(X), cut.staged_predict_proba(X)):
        np.testing.assert_array_equal(a, b)


def test_interrupt_keeps_the_previous_model(data, monkeypatch):
    import sklearn_greedy.training._decoupled as decoupled_module

    clf = _small(n_layers=1, warm_start=True).fit(*data)
    proba = clf.predict_proba(data[0])
    real = decoupled_module.DecoupledTrainer.run_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(decoupled_module.DecoupledTrainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clf.set_params(n_layers=3).fit(*data)
    assert clf.n_layers_fitted_ == 1
    np.testing.assert_array_equal(clf.predict_proba(data[0]), proba)


def test_delay_staggers_the_layers_each_on_its_own_schedule(data):
    clf = _small(n_layers=3, max_epochs=3, lr_step=1, decoupled_delay=1, keep_best=False)
    clf.fit(*data)
    assert list(clf.n_iter_) == [3, 3, 3]
    for history in clf.history_:
        assert [r["epoch"] for r in history] == [1, 2, 3]
        np.testing.assert_allclose([r["lr"] for r in history], [0.1, 0.02, 0.004])
    # one clock: epoch e of layer j + 1 is epoch e + 1 of layer j (a run of 5 epochs)
    seconds = [[r["seconds"] for r in h] for h in clf.history_]
    assert seconds[1][:2] == seconds[0][1:] and seconds[2][:2] == seconds[1][1:]
    assert seconds[2][2] not in seconds[0]


def test_delayed_layer_is_frozen_after_its_epochs(data):
    """Layer 1 of a staggered fit keeps training on its own epochs only: afterwards it runs
    (in eval mode, BatchNorm statistics included) under the layers still training, so it
    is the layer a 1-layer fit trains on the same batches."""
    params = dict(k=2, augment=True, keep_best=False, max_epochs=2)
    alone = _small(n_layers=1, **params).fit(*data)
    staggered = _small(n_layers=3, decoupled_delay=1, **params).fit(*data)
    for key, value in _state(alone.model_.layers[0]).items():
        torch.testing.assert_close(staggered.model_.layers[0].state_dict()[key], value, msg=key)
    assert staggered.score(*data) > 0.6


def test_delay_of_max_epochs_or_more_is_one_layer_after_the_other(data):
    params = dict(n_layers=2, max_epochs=2, keep_best=False)
    at_max = _small(decoupled_delay=2, **params).fit(*data)
    beyond = _small(decoupled_delay=50, **params).fit(*data)
    np.testing.assert_array_equal(at_max.predict_proba(data[0]), beyond.predict_proba(data[0]))
    # layer 2 ran epochs 3-4 of the run: no shared epoch with layer 1
    assert not {r["seconds"] for r in at_max.history_[0]} & {
        r["seconds"] for r in at_max.history_[1]
    }


def test_delay_keep_best_and_stopping_follow_the_last_layer_from_its_start(data):
    clf = _small(max_epochs=4, decoupled_delay=2, n_iter_no_change=1, tol=10.0).fit(*data)
    # layer 2 starts at epoch 3 of the run; its second epoch does not improve by tol=10,
    # so the run stops at epoch 4, layer 1's last
    assert list(clf.n_iter_) == [4, 2]
    assert list(clf.stopped_early_) == [False, True]
    # both kept at one epoch of the run (3 or 4), each counted in its own epochs
    assert clf.best_epoch_[1] in (1, 2) and clf.best_epoch_[0] == clf.best_epoch_[1] + 2


def test_bad_delay_is_refused(data):
    with pytest.raises(ValueError, match="decoupled_delay"):
        _small(decoupled_delay=-1).fit(*data)
    with pytest.raises((TypeError, ValueError), match="decoupled_delay"):
        _small(decoupled_delay=1.5).fit(*data)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_history_has_the_sequential_modes_keys_top5_included():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    params = dict(image_shape=(1, 8, 8), early_stopping=True, max_epochs=1)
    keys = {
        mode: set(_small(training=mode, **params).fit(X[:300], y[:300]).history_[1][0])
        for mode in ("sequential", "decoupled")
    }
    assert keys["decoupled"] == keys["sequential"]
    assert {"train_top5", "valid_top5"} <= keys["decoupled"]


def test_each_layer_receives_its_own_schedule_at_every_step(data, monkeypatch):
    """A spy on the optimizer's steps: at global epoch e, layer j (started at e = j * d)
    is stepped at 0.1 * 0.5 ** ((e - j * d) // lr_step), in its own parameter group; a
    layer not yet started or already finished gets no gradient."""
    steps = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        steps.append(
            [(g["lr"], any(p.grad is not None for p in g["params"]), g["params"][0])
             for g in self.param_groups]
        )  # fmt: skip
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    X, y = data
    clf = _small(n_layers=3, max_epochs=3, lr_step=1, lr_decay=0.5, decoupled_delay=1,
                 keep_best=False, batch_size=len(X) // 2, augment=False)  # fmt: skip
    clf.fit(X, y)
    per_epoch = 2  # two batches an epoch
    assert len(steps) == per_epoch * (3 + 2 * 1)
    for s, groups in enumerate(steps):
        epoch = s // per_epoch
        for j, (lr, stepped, first) in enumerate(groups):
            own = epoch - j  # the layer's own clock, shifted by its delay
            active = 0 <= own < 3
            assert stepped == active, (epoch, j)
            if active:
                assert lr == pytest.approx(0.1 * 0.5**own), (epoch, j, lr)
            # group j holds layer j's parameters (the fitted layer's own tensors)
            assert first is clf.model_.layers[j].conv.weight, (epoch, j)
