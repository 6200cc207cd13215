"""The CNN estimator's contract with its users: warm start, diagnostics, validation data,
threads and precision, weights, and exports (issue 13)."""

import warnings

import numpy as np
import pytest
import torch
from _images import quadrant_images
from sklearn.exceptions import ConvergenceWarning

from sklearn_greedy import GreedyLayerwiseCNNClassifier


def _images(n=120, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=2, width=4, max_epochs=2, batch_size=32, random_state=0)
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def data():
    return _images()


@pytest.fixture(scope="module")
def fitted(data):
    return _small().fit(*data)


def _state(clf):
    return {k: v.clone() for k, v in clf.model_.state_dict().items()}


# ---------------------------------------------------------------------- warm start
def test_warm_start_with_nothing_to_fit_warns_and_keeps_the_model(data, fitted):
    clf = _small().fit(*data)
    before = _state(clf)
    with pytest.warns(UserWarning, match="nothing to train"):
        clf.set_params(warm_start=True).fit(*data)
    assert clf.n_layers_fitted_ == 2
    for key, value in _state(clf).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "change",
    [
        {"width": 8},
        {"k": 2},
        {"batch_norm": True},
        {"aux_width": 8},
        {"downsample": "max"},
        {"input_downsample": True},
        {"normalize": (0.0, 1.0)},
    ],
)
def test_warm_start_refuses_architecture_changes(data, change):
    clf = _small(n_layers=1).fit(*data)
    (name,) = change
    with pytest.raises(ValueError, match=f"cannot change {name}"):
        clf.set_params(warm_start=True, n_layers=2, **change).fit(*data)
    assert clf.n_layers_fitted_ == 1  # the failed fit left the model as it was


def test_warm_start_refuses_a_plan_that_changes_fitted_layers(data):
    clf = _small(n_layers=2, downsample_at=(1,)).fit(*data)
    with pytest.raises(ValueError, match="fitted layer 2"):
        clf.set_params(warm_start=True, n_layers=3, downsample_at=(2,)).fit(*data)
    # a downsampling for the new layer only is a legitimate plan for growth
    clf.set_params(downsample_at=(1, 2)).fit(*data)
    assert clf.n_layers_fitted_ == 3 and clf.layer_widths_ == [4, 8, 16]


def test_warm_start_refuses_fewer_layers(data):
    clf = _small(n_layers=2).fit(*data)
    with pytest.raises(ValueError, match="at least the number of layers already fitted"):
        clf.set_params(warm_start=True, n_layers=1).fit(*data)


def test_warm_start_reproduces_one_long_fit_and_follows_a_new_random_state(data):
    long = _small(n_layers=2).fit(*data)
    grown = _small(n_layers=1).fit(*data)
    grown.set_params(warm_start=True, n_layers=2).fit(*data)
    np.testing.assert_array_equal(grown.predict_proba(data[0]), long.predict_proba(data[0]))
    reseeded = _small(n_layers=1).fit(*data)
    reseeded.set_params(warm_start=True, n_layers=2, random_state=1).fit(*data)
    assert not np.array_equal(reseeded.predict_proba(data[0]), long.predict_proba(data[0]))
    # the first layer was kept: its head answers as before
    first = [next(c.staged_predict_proba(data[0])) for c in (reseeded, long)]
    np.testing.assert_array_equal(*first)


def test_warm_start_may_change_training_settings(data):
    clf = _small(n_layers=1).fit(*data)
    clf.set_params(warm_start=True, n_layers=2, max_epochs=3, lr=0.05, batch_size=16).fit(*data)
    assert [len(h) for h in clf.history_] == [2, 3]
    assert clf.history_[1][0]["lr"] == 0.05


# ---------------------------------------------------------------------- diagnostics
def test_per_layer_diagnostics_match_the_history(fitted):
    assert fitted.n_iter_.tolist() == [len(h) for h in fitted.history_]
    assert fitted.loss_curve_ == [[r["train_loss"] for r in h] for h in fitted.history_]
    assert all(1 <= b <= n for b, n in zip(fitted.best_epoch_, fitted.n_iter_))
    assert fitted.stopped_early_.dtype == bool and fitted.stopped_early_.shape == (2,)


def test_convergence_warning_when_early_stopping_runs_out_of_epochs(data):
    with pytest.warns(ConvergenceWarning, match="Layer 1 reached max_epochs=2"):
        _small(early_stopping=True, validation_fraction=0.25).fit(*data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # stopped by its plateau rule: converged, nothing to say
        clf = _small(early_stopping=True, validation_fraction=0.25, max_epochs=20,
                     n_iter_no_change=1, tol=1.0).fit(*data)  # fmt: skip
    assert clf.stopped_early_.all()


# ---------------------------------------------------------------------- validation data
def test_predefined_validation_set_drives_keep_best(data):
    X, y = data
    X_val, y_val = _images(n=60, seed=1)
    clf = _small(max_epochs=4, lr=0.5).fit(X, y, X_val=X_val, y_val=y_val)
    for j, (history, proba) in enumerate(zip(clf.history_, clf.staged_predict_proba(X_val))):
        best = max(r["valid_score"] for r in history)
        # the layer kept the epoch of its best validation accuracy, on exactly this set
        assert np.mean(clf.classes_[proba.argmax(1)] == y_val) == pytest.approx(best), j
        assert history[clf.best_epoch_[j] - 1]["valid_score"] == best


def test_validation_set_errors_name_their_cause(data):
    X, y = data
    with pytest.raises(ValueError, match="given together"):
        _small().fit(X, y, X_val=X[:10])
    with pytest.raises(ValueError, match="y_val has labels absent from y"):
        _small().fit(X, y, X_val=X[:3], y_val=[0, 1, 7])
    with pytest.raises(ValueError, match="X_val does not match X.*64 features"):
        _small().fit(X, y, X_val=X[:3, :, :4], y_val=y[:3])


def test_small_data_split_falls_back_to_unstratified_with_a_message():
    X, y = _images(n=12)
    y[0] = 9  # a class with one sample cannot be on both sides of a stratified split
    with pytest.warns(UserWarning, match="drawn unstratified"):
        _small(early_stopping=True, validation_fraction=0.25).fit(X, y)
    with pytest.raises(ValueError, match="pass X_val and y_val"):
        _small(early_stopping=True, validation_fraction=0.01).fit(X[:2], y[:2])


# ---------------------------------------------------------------------- threads, precision
def test_threads_are_the_estimators_and_restored(data, monkeypatch):
    import sklearn_greedy.cnn._grower as cnn_module

    seen = []
    real = cnn_module.train_stage

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(cnn_module, "train_stage", spy)
    before = torch.get_num_threads()
    _small(n_threads=1).fit(*data)
    assert seen == [1, 1] and torch.get_num_threads() == before
    seen.clear()
    _small().fit(*data)  # a small model: one thread by default
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_bf16_precision_trains_and_leaves_process_flags_alone(data):
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    deterministic = torch.are_deterministic_algorithms_enabled()
    clf = _small(precision="bf16", deterministic=True, max_epochs=4).fit(*data)
    assert clf.score(*data) > 0.8
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert torch.are_deterministic_algorithms_enabled() == deterministic


@pytest.mark.parametrize("training", ["sequential", "decoupled"])
def test_fp16_trains_with_loss_scaling_like_float32(data, training, monkeypatch):
    """precision="fp16" (issue 25: GPUs without bf16): float16 autocast, and every step
    through an enabled GradScaler; the other precisions step without scaling."""
    enabled = []
    scale = torch.amp.GradScaler.scale

    def spy(self, outputs):
        enabled.append(self.is_enabled())
        return scale(self, outputs)

    monkeypatch.setattr(torch.amp.GradScaler, "scale", spy)
    half = _small(precision="fp16", training=training, max_epochs=4).fit(*data)
    assert enabled and all(enabled)
    enabled.clear()
    full = _small(precision="float32", training=training, max_epochs=4).fit(*data)
    assert enabled and not any(enabled)
    assert half.score(*data) > 0.8
    for a, b in zip(half.loss_curve_, full.loss_curve_):
        np.testing.assert_allclose(a, b, rtol=0.05)  # float16 rounding, not another model


@pytest.mark.parametrize("device", ["meta", "cuda:7", "tpu"])
def test_devices_that_cannot_train_are_refused_at_fit(data, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    with pytest.raises(ValueError, match="device="):
        _small(device=device).fit(*data)


def test_predict_does_not_move_the_fitted_model(fitted, data):
    device = next(fitted.model_.parameters()).device
    fitted.predict(data[0])
    fitted.transform(data[0])
    assert next(fitted.model_.parameters()).device == device


# ---------------------------------------------------------------------- weights, scores
def test_sample_weight_zero_removes_samples(data):
    X, y = data
    keep = y != 2
    weighted = _small(max_epochs=3).fit(X, y, sample_weight=keep.astype(float))
    # class 2 carries no weight: the loss never asks for it, so it is (almost) never predicted
    assert np.mean(weighted.predict(X) == 2) < np.mean(
        _small(max_epochs=3).fit(X, y).predict(X) == 2
    )


def test_class_weight_balanced_and_bad_weights(data):
    X, y = data
    assert _small(class_weight="balanced").fit(X, y).score(X, y) > 0.5
    with pytest.raises(ValueError, match="class_weight names classes"):
        _small(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="non-zero|sums to zero"):
        _small().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        _small().fit(X, y, sample_weight=-np.ones(len(y)))


def test_decision_function_agrees_with_predict(fitted, data):
    scores = fitted.decision_function(data[0])
    assert scores.shape == (len(data[1]), 3)
    np.testing.assert_array_equal(fitted.classes_[scores.argmax(1)], fitted.predict(data[0]))
    X, y = data
    binary = _small().fit(X[y < 2], y[y < 2])
    margin = binary.decision_function(X[y < 2])
    assert margin.shape == ((y < 2).sum(),)
    np.testing.assert_array_equal(
        binary.classes_[(margin > 0).astype(int)], binary.predict(X[y < 2])
    )


# ---------------------------------------------------------------------- verbose, exports
def test_verbose_one_line_per_layer_two_per_epoch(data, capsys):
    _small(verbose=1).fit(*data)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["layer 1/2", "layer 2/2"]


def test_to_skorch_trains_on_the_flat_X_of_fit():
    pytest.importorskip("skorch")
    X, y = _images()
    flat = X.reshape(len(X), -1)
    clf = _small(image_shape=(1, 8, 8)).fit(flat, y)
    net = clf.to_skorch(max_epochs=1, batch_size=32)
    net.partial_fit(flat, np.searchsorted(clf.classes_, y))
    assert net.predict_proba(flat).shape == (len(y), 3)


def test_a_read_only_array_fits_and_predicts_without_torch_warning():
    """A read-only array (a memmap opened "r" and made an array, a broadcast) is used as
    it is: no copy, and no torch warning about non-writable arrays reaches the user."""
    X, y = quadrant_images(n=40)
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=2, max_epochs=1).fit(X, y)
        clf.predict(X)
