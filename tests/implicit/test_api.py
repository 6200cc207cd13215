"""The implicit estimators as scikit-learn users meet them: transformers and feature names,
parameters, validation data, warm start, diagnostics, threads, devices and numerics."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from sklearn_greedy import (
    EndToEndImplicitClassifier,
    EndToEndImplicitRegressor,
    LayerFeatures,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)
from sklearn_greedy.implicit import _sequential as sequential_module
from sklearn_greedy.implicit import _solvers as solvers_module
from sklearn_greedy.implicit._model import fixed_point_iteration, standardise_columns

FAST = dict(max_epochs=15, lr=0.05, random_state=0, device="cpu")
RECORD_KEYS = {"epoch", "train_loss", "train_score", "valid_score", "lr", "seconds"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 3))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2
    return X, y, (y > np.median(y)).astype(int)


ESTIMATORS = {
    "sequential regressor": lambda: SequentialImplicitRegressor(n_states=7, n_blocks=3, **FAST),
    "sequential regressor adam": lambda: SequentialImplicitRegressor(
        n_states=6, n_blocks=2, solver="adam", **FAST
    ),
    "sequential regressor alternating": lambda: SequentialImplicitRegressor(
        n_states=6, n_blocks=2, solver="alternating", n_alternating_iter=2, **FAST
    ),
    "sequential classifier": lambda: SequentialImplicitClassifier(n_states=6, n_blocks=3, **FAST),
    "end-to-end regressor": lambda: EndToEndImplicitRegressor(n_states=5, **FAST),
    "end-to-end classifier": lambda: EndToEndImplicitClassifier(n_states=5, **FAST),
}


def _fit(make):
    est = make()
    X, y_reg, y_clf = _data()
    return est.fit(X, y_clf if hasattr(est, "predict_proba") else y_reg), X


# --- transformers -----------------------------------------------------------------------


@pytest.mark.parametrize("library", ["pandas", "polars"])
@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_set_output_names_the_states(make, library):
    frames = pytest.importorskip(library)
    est, X = _fit(make)
    names = est.get_feature_names_out()
    est.set_output(transform=library)
    out = est.transform(X)
    assert isinstance(out, frames.DataFrame) and list(out.columns) == list(names)
    np.testing.assert_array_equal(out.to_numpy(), est.set_output(transform="default").transform(X))
    y = _data()[2] if hasattr(est, "predict_proba") else _data()[1]
    fitted = make().set_output(transform=library).fit_transform(X, y)
    assert isinstance(fitted, frames.DataFrame) and list(fitted.columns) == list(names)


def test_feature_names_say_which_block_a_state_belongs_to():
    X, y, _ = _data()
    reg = SequentialImplicitRegressor(n_states=7, n_blocks=3, **FAST).fit(X, y)
    assert reg.block_sizes_ == [2, 2, 3]
    # the paper's order [x_3, x_2, x_1], as the columns of A_ and of transform
    expected = ["block3_x0", "block3_x1", "block3_x2", "block2_x0", "block2_x1"]
    expected += ["block1_x0", "block1_x1"]
    assert reg.get_feature_names_out().tolist() == expected
    reg.set_params(transform_blocks=2)
    assert reg.get_feature_names_out().tolist() == expected[3:]
    assert reg.transform(X).shape[1] == 4
    # LayerFeatures probes the same columns through transform_blocks
    probe = LayerFeatures(FrozenEstimator(reg.set_params(transform_blocks=None)), layer=2)
    assert probe.fit(X, y).transform(X).shape[1] == len(expected[3:])
    assert EndToEndImplicitRegressor(n_states=3, **FAST).fit(
        X, y
    ).get_feature_names_out().tolist() == [
        "x0",
        "x1",
        "x2",
    ]


# --- sample weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "Est, weights, match",
    [
        (SequentialImplicitRegressor, -np.ones(120), "Negative values in data passed to"),
        (SequentialImplicitRegressor, np.ones(7), r"sample_weight.shape == \(7,\)"),
        (SequentialImplicitRegressor, np.zeros(120), "at least one non-zero"),
        (EndToEndImplicitRegressor, np.full(120, np.nan), "sample_weight contains NaN"),
        # a classifier trained on the samples of one class only has nothing to separate
        (SequentialImplicitClassifier, "one class", "at least 2 classes with a positive"),
        (EndToEndImplicitClassifier, "one class", "at least 2 classes with a positive"),
    ],
)
def test_bad_sample_weights_are_refused(Est, weights, match):
    X, y_reg, y_clf = _data()
    y = y_clf if hasattr(Est, "predict_proba") else y_reg
    if isinstance(weights, str):
        weights = (y == 1).astype(float)
    with pytest.raises(ValueError, match=match):
        Est(n_states=4, **FAST).fit(X, y, sample_weight=weights)


@pytest.mark.parametrize("Est", [SequentialImplicitRegressor, SequentialImplicitClassifier])
def test_sample_weights_follow_their_rows_through_the_validation_split(Est):
    """The early_stopping split holds out rows with their weights: the training part keeps
    the weights of its rows; a training part of zero weight only is refused."""
    est = Est(early_stopping=True, validation_fraction=0.25)
    n = 40
    U, T = np.arange(n, dtype=float)[:, None], np.arange(n) % 2  # each row knows its number
    info = {"classes": np.array([0, 1])}
    split = est._validation_split(U, T, U[:, 0] + 1.0, 7, (None, None), None, info)
    U_tr, T_tr, w_tr, U_val, _ = split
    assert len(U_val) == 10 and len(U_tr) == 30
    np.testing.assert_array_equal(w_tr, U_tr[:, 0] + 1.0)
    only_validation = np.ones(n)
    only_validation[U_tr[:, 0].astype(int)] = 0.0
    with pytest.raises(ValueError, match="zero on every training sample"):
        est._validation_split(U, T, only_validation, 7, (None, None), None, info)


def test_regression_loss_is_one_value_per_sample_for_weights():
    """The engine weights per-sample losses: with several outputs each sample's loss is
    the mean over its outputs, so that unit weights give the mean loss."""
    out, target = torch.randn(6, 3), torch.randn(6, 3)
    per_sample = SequentialImplicitRegressor._loss_fn(out, target, reduction="none")
    assert per_sample.shape == (6,)
    torch.testing.assert_close(per_sample.mean(), SequentialImplicitRegressor._loss_fn(out, target))


# --- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "Est, name",
    [
        (SequentialImplicitClassifier, "n_alternating_iter"),
        (SequentialImplicitClassifier, "solver"),
        (SequentialImplicitRegressor, "kappa"),
        (EndToEndImplicitRegressor, "n_blocks"),
        (EndToEndImplicitClassifier, "alpha"),
    ],
)
def test_parameters_an_estimator_does_not_use_are_refused(Est, name):
    assert name not in Est().get_params()
    with pytest.raises(TypeError, match=name):
        Est(**{name: 1})


def test_classifier_alpha_is_its_weight_decay():
    X, _, y = _data()
    params = dict(n_states=4, n_blocks=2, **FAST)
    plain = SequentialImplicitClassifier(alpha=0.0, **params).fit(X, y)
    decayed = SequentialImplicitClassifier(alpha=0.5, **params).fit(X, y)
    assert np.abs(decayed.B_).sum() < np.abs(plain.B_).sum()


def test_classifier_validation_split_is_stratified(monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    y = np.r_[np.zeros(180, int), np.ones(20, int)]
    seen = {}
    real = sequential_module.SequentialBase._grow

    def spy(self, growth, sizes, train, U_val, T_val, *args):
        seen["train"], seen["val"] = np.bincount(train[1]), np.bincount(T_val)
        return real(self, growth, sizes, train, U_val, T_val, *args)

    monkeypatch.setattr(sequential_module.SequentialBase, "_grow", spy)
    clf = SequentialImplicitClassifier(n_states=4, n_blocks=2, early_stopping=True, **FAST)
    for seed in range(5):  # an unstratified split of 20 would miss the proportions often
        clf.set_params(random_state=seed).fit(X, y)
        np.testing.assert_array_equal(seen["val"], [18, 2])
        np.testing.assert_array_equal(seen["train"], [162, 18])
    with pytest.warns(UserWarning, match="unstratified"):
        clf.fit(X[:181], y[:181])  # one sample of class 1: it cannot be on both sides


def test_given_validation_data_drives_keep_best_and_block_choice():
    X, y, _ = _data(n=160)
    reg = SequentialImplicitRegressor(n_states=6, n_blocks=3, **FAST)
    reg.fit(X[:120], y[:120], X_val=X[120:], y_val=y[120:])
    assert all(r["valid_score"] is not None for h in reg.history_ for r in h)
    with pytest.raises(ValueError, match="together"):
        reg.fit(X, y, X_val=X)
    clf = SequentialImplicitClassifier(n_states=4, n_blocks=2, **FAST)
    labels = np.array(["a", "b"])[(y > np.median(y)).astype(int)]
    clf.fit(X[:120], labels[:120], X_val=X[120:], y_val=labels[120:])
    with pytest.raises(ValueError, match="absent from y"):
        clf.fit(X[:120], labels[:120], X_val=X[120:], y_val=np.full(40, "c"))


# --- warm start -------------------------------------------------------------------------


def test_warm_start_with_no_block_to_add_warns_and_keeps_the_model():
    X, y, _ = _data()
    reg = SequentialImplicitRegressor(n_states=6, n_blocks=3, warm_start=True, **FAST).fit(X, y)
    A, history = reg.A_.copy(), reg.history_
    with pytest.warns(UserWarning, match="nothing to train, the model is kept"):
        reg.fit(X, y)
    np.testing.assert_array_equal(reg.A_, A)
    assert reg.history_ is history
    with pytest.raises(ValueError, match="cannot change activation"):
        reg.set_params(activation="tanh", n_states=8, n_blocks=4).fit(X, y)


# --- diagnostics ------------------------------------------------------------------------


@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_history_and_diagnostics_have_one_shape(make):
    est, _ = _fit(make)
    stages = est.history_
    n = getattr(est, "n_blocks_fitted_", 1)
    assert isinstance(stages, list) and len(stages) == n
    for records in stages:
        assert isinstance(records, list) and records
        assert all(set(r) == RECORD_KEYS for r in records)
        assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    np.testing.assert_array_equal(est.n_iter_, [len(h) for h in stages])
    assert [len(c) for c in est.loss_curve_] == [len(h) for h in stages]
    assert est.best_epoch_.shape == est.stopped_early_.shape == (n,)
    assert np.all((1 <= est.best_epoch_) & (est.best_epoch_ <= est.n_iter_))


def test_history_plots_for_every_estimator():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_greedy import LayerwiseTrainingDisplay

    for make in (ESTIMATORS["end-to-end regressor"], ESTIMATORS["sequential regressor"]):
        est, _ = _fit(make)
        display = LayerwiseTrainingDisplay.from_estimator(est)
        assert len(display.lines_) >= 1


def test_verbose_levels(capsys):
    X, y, _ = _data()
    SequentialImplicitRegressor(n_states=6, n_blocks=3, verbose=0, **FAST).fit(X, y)
    assert capsys.readouterr().out == ""
    SequentialImplicitRegressor(n_states=6, n_blocks=3, verbose=1, **FAST).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(
        line.startswith(f"block {i + 1}/3") for i, line in enumerate(lines)
    )
    SequentialImplicitRegressor(n_states=4, n_blocks=2, verbose=2, **FAST).fit(X, y)
    out = capsys.readouterr().out
    assert "block 1 iteration 1/" in out and "block 2/2:" in out


# --- threads, devices, state ------------------------------------------------------------


def test_threads_are_restored_and_cuda_without_cuda_is_refused():
    X, y, _ = _data()
    before = torch.get_num_threads()
    SequentialImplicitClassifier(n_states=4, n_blocks=2, n_threads=2, **FAST).fit(X, y > 0)
    assert torch.get_num_threads() == before
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SequentialImplicitRegressor(n_states=4, n_blocks=2, device="cuda").fit(X, y)


@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_predict_and_transform_leave_the_fitted_state_alone(make):
    est, X = _fit(make)
    state = pickle.dumps(est.__dict__)
    est.predict(X)
    est.transform(X)
    est.score(X, est.predict(X))
    if hasattr(est, "staged_predict"):
        list(est.staged_predict(X))
    assert pickle.dumps(est.__dict__) == state


# --- choosing the blocks ----------------------------------------------------------------


def test_noise_targets_use_few_blocks():
    rng = np.random.RandomState(0)
    X, y = rng.randn(150, 5), rng.randn(150)
    reg = SequentialImplicitRegressor(n_states=12, n_blocks=6, random_state=0).fit(X, y)
    assert reg.n_blocks_used_ <= 2
    assert not reg.C_[:, : 12 - 2 * reg.n_blocks_used_].any()
    X_test, y_test = rng.randn(300, 5), rng.randn(300)
    assert reg.score(X_test, y_test) > -0.1  # close to the mean predictor, not overfit
    everything = reg.set_params(select_blocks=False).fit(X, y)
    assert everything.n_blocks_used_ == 6


# --- numerics and sizes -----------------------------------------------------------------


def test_standardising_does_not_overflow():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3)
    X[:, 1] = 1e200 * (1 + 0.1 * X[:, 1])
    X[:, 2] = 7.0  # constant
    mean, scale = standardise_columns(X)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(scale))
    z = X[:, 1] / 1e200
    np.testing.assert_allclose(((X - mean) / scale)[:, 1], (z - z.mean()) / z.std(), atol=1e-9)
    assert scale[2] == 1.0


@pytest.mark.parametrize("Est", [SequentialImplicitRegressor, EndToEndImplicitRegressor])
def test_inputs_and_targets_around_1e200(Est):
    X, y, _ = _data()
    params = dict(n_states=6, **FAST) | (
        {"n_blocks": 3} if Est is SequentialImplicitRegressor else {}
    )
    reference = Est(**params).fit(X, y)
    # y around 1e200: the same model in other units
    big = Est(**params).fit(X, 1e200 + 1e199 * y)
    pred = big.predict(X)
    assert np.all(np.isfinite(pred))
    np.testing.assert_allclose((pred - 1e200) / 1e199, reference.predict(X), rtol=1e-6, atol=1e-6)
    # a column of X around 1e200: the same model, no column of B_ zeroed
    X_big = X.copy()
    X_big[:, 1] = 1e200 * (1 + 0.1 * X[:, 1])
    moved = Est(**params).fit(X_big, y)
    assert np.all(np.abs(moved.B_).sum(axis=0) > 0)
    np.testing.assert_allclose(moved.predict(X_big), reference.predict(X), rtol=1e-5, atol=1e-5)


def test_fixed_point_tolerance_is_relative_per_sample():
    rng = np.random.RandomState(0)
    A = rng.uniform(-1, 1, (5, 5))
    A *= 0.9 / np.abs(A).sum(axis=1, keepdims=True)
    B = rng.randn(5, 2)
    U = rng.randn(20, 2)
    U[3] *= 1e12  # one large row: an absolute tolerance of 1e-10 is below its rounding
    X = fixed_point_iteration(A, B, U, "relu", tol=1e-10, max_iter=2000)
    np.testing.assert_allclose(X, np.maximum(X @ A.T + U @ B.T, 0), rtol=1e-8, atol=1e-12)
    X_, y, _ = _data()
    e2e = EndToEndImplicitRegressor(n_states=5, **FAST).fit(X_, y)
    X_large = X_.copy()
    X_large[0] *= 1e10
    assert np.all(np.isfinite(e2e.predict(X_large)))


def test_sizes_that_cannot_finish_warn_before_training(monkeypatch):
    def stop(*args, **kwargs):
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(sequential_module.SequentialBase, "_grow", stop)
    X, y, _ = _data(n=500)
    with pytest.warns(UserWarning, match="may take about"), pytest.raises(RuntimeError):
        SequentialImplicitRegressor(n_states=1000, n_blocks=1000).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError):
            SequentialImplicitRegressor(n_states=30, n_blocks=10).fit(X, y)
    # the estimate grows with the work: linearly in the blocks at a fixed block size
    small = solvers_module.estimated_fit_seconds(500, 1, [1] * 100, 1, "adam", 200, 512)
    large = solvers_module.estimated_fit_seconds(500, 1, [1] * 200, 1, "adam", 200, 512)
    assert 1.9 < large / small < 3.0


def test_a_copy_predicts_like_the_original():
    est, X = _fit(ESTIMATORS["sequential classifier"])
    np.testing.assert_array_equal(copy.deepcopy(est).predict_proba(X), est.predict_proba(X))


def test_projection_on_principal_directions_is_exported_exactly():
    rng = np.random.RandomState(0)
    latent = rng.randn(150, 3)  # 12 features that vary along 3 directions
    X = latent @ rng.randn(3, 12) + 0.01 * rng.randn(150, 12)
    y = (latent[:, 0] + latent[:, 1] > 0).astype(int)
    clf = SequentialImplicitClassifier(n_states=6, n_blocks=3, n_components=4, **FAST).fit(X, y)
    # the input weights lie in a 4-dimensional subspace of the standardised inputs
    assert np.linalg.matrix_rank(clf.B_ * clf._u_scale, tol=1e-8) == 4
    assert clf.score(X, y) > 0.8
    x = fixed_point_iteration(clf.A_, clf.B_, X, "relu", state_intercept=clf.state_intercept_)
    np.testing.assert_allclose(x, clf.transform(X), rtol=1e-9, atol=1e-9)
    # "auto" projects wide inputs only
    narrow = SequentialImplicitClassifier(n_states=4, n_blocks=2, **FAST).fit(X, y)
    assert narrow._projection is None
    assert "n_components" not in EndToEndImplicitClassifier().get_params()
