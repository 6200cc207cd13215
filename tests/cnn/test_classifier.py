"""Behaviour of GreedyLayerwiseCNNClassifier on small synthetic data and digits."""

import functools
import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
import torch
from _images import quadrant_images
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import sklearn_greedy.cnn._grower as cnn_module
from sklearn_greedy import GreedyLayerwiseCNNClassifier, cifar10_params


def _images(n=120, **kwargs):
    return quadrant_images(n, **kwargs)


def _small(**params):
    defaults = dict(n_layers=2, width=8, max_epochs=4, batch_size=32, random_state=0)
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def digits_fitted(digits_split):
    """The defaults' network, shortly trained: the defaults' accuracy is tested on README's
    example (tests/test_readme.py), which fits them in full."""
    X_train, _, y_train, _ = digits_split
    clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), max_epochs=2, random_state=0)
    return clf.fit(X_train, y_train)


def test_fitted_attributes(digits_fitted):
    clf = digits_fitted
    assert clf.n_features_in_ == 64
    assert clf.image_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    # width doubles at the downsampling at j=1
    assert clf.layer_widths_ == [64, 128, 128]
    assert clf.layer_scores_.shape == (3,)


def test_four_d_numpy_and_tensor_input_agree():
    X, y = _images()
    clf = _small().fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), clf.predict(torch.from_numpy(X)))
    np.testing.assert_array_equal(clf.predict(X), clf.predict(X.reshape(len(X), -1)))
    assert clf.image_shape_ == (1, 8, 8)


def test_predict_proba_and_staged(digits_fitted, digits_split):
    _, X_test, _, _ = digits_split
    proba = digits_fitted.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    staged = list(digits_fitted.staged_predict_proba(X_test))
    assert len(staged) == 3
    np.testing.assert_allclose(staged[-1], proba)
    np.testing.assert_array_equal(
        digits_fitted.predict(X_test), digits_fitted.classes_[proba.argmax(1)]
    )


def test_ensemble_weights_logits_by_powers_of_two(digits_fitted, digits_split):
    _, X_test, _, _ = digits_split
    ens = clone(digits_fitted).set_params(ensemble=True)
    ens.__dict__.update({k: v for k, v in digits_fitted.__dict__.items() if k.endswith("_")})
    logits = ens._all_logits(X_test[:20])
    expected = (2 * logits[0] + 4 * logits[1] + 8 * logits[2]) / 14
    np.testing.assert_allclose(
        ens.predict_proba(X_test[:20]), torch.softmax(expected, 1).numpy(), rtol=1e-10
    )


@pytest.mark.parametrize("layer, width", [(1, 64), (2, 128), (None, 128)])
def test_transform_shapes(digits_fitted, digits_split, layer, width):
    _, X_test, _, _ = digits_split
    clf = clone(digits_fitted).set_params(transform_layer=layer)
    clf.__dict__.update({k: v for k, v in digits_fitted.__dict__.items() if k.endswith("_")})
    Z = clf.transform(X_test[:7])
    assert Z.shape == (7, 4 * width)
    assert Z.dtype == np.float32
    assert np.all(Z >= 0)  # after a ReLU


def test_feature_names_follow_transform_layer():
    X, y = _images()
    clf = _small(transform_layer=1).fit(X, y)
    names = clf.get_feature_names_out()
    assert names.shape == (clf.transform(X).shape[1],)
    assert names[0] == "layer1_c0_00" and names[5] == "layer1_c1_01"


def test_transform_layer_validated_at_fit():
    X, y = _images()
    with pytest.raises(ValueError, match="transform_layer=3 is out of range"):
        _small(transform_layer=3).fit(X, y)
    with pytest.raises(ValueError, match="transform_layer=0"):
        _small(transform_layer=0).fit(X, y)


def test_transform_layer_set_after_fit_checked_by_transform_and_names():
    X, y = _images()
    clf = _small().fit(X, y)
    clf.set_params(transform_layer=3)
    for method in (lambda: clf.transform(X), clf.get_feature_names_out):
        with pytest.raises(ValueError, match="transform_layer=3 is out of range"):
            method()


def test_transform_layer_negative_counts_from_the_end():
    X, y = _images()
    clf = _small().fit(X, y)
    last = clf.transform(X)
    first = clf.set_params(transform_layer=-2).transform(X)
    np.testing.assert_array_equal(first, clf.set_params(transform_layer=1).transform(X))
    assert first.shape[1] == 4 * clf.layer_widths_[0] and last.shape[1] == 4 * clf.layer_widths_[1]
    assert clf.set_params(transform_layer=-2).get_feature_names_out()[0].startswith("layer1_")


@pytest.mark.parametrize("downsample", ["invertible", "avg", "max", "strided"])
def test_downsampling_kinds_fit(downsample):
    X, y = _images(shape=(2, 9, 7))  # odd sizes on purpose
    clf = _small(downsample=downsample, downsample_at=(0, 1), input_downsample=True)
    clf.fit(X, y)
    assert clf.score(X, y) > 0.6
    assert clf.transform(X).shape == (len(X), 4 * 8 * 4)


def test_k3_batch_norm_and_final_aux_width():
    X, y = _images()
    clf = _small(k=3, aux_width=6, final_aux_width=5).fit(X, y)
    heads = clf.model_.heads
    assert isinstance(heads[0].bn, torch.nn.BatchNorm1d)  # "auto": on for k > 1
    assert heads[0].linear.in_features == 4 * 6
    assert heads[1].linear.in_features == 4 * 5
    assert not isinstance(_small(k=1).fit(X, y).model_.layers[0].bn, torch.nn.BatchNorm2d)


def test_same_random_state_same_predictions():
    X, y = _images()
    a = _small(augment=True).fit(X, y).predict_proba(X)
    b = _small(augment=True).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = _small(augment=True, random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_fit_does_not_touch_global_torch_rng():
    X, y = _images()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _small().fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickle_round_trip(tmp_path, dump):
    X, y = _images()
    clf = _small(k=2).fit(X, y)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(clf))
    else:
        joblib.dump(clf, tmp_path / "clf.joblib")
        loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))


def test_model_fitted_on_gpu_predicts_on_cpu_only_machine():
    X, y = _images()
    clf = _small().fit(X, y)
    expected = clf.predict_proba(X)
    # what a CUDA fit leaves behind; the pickle must hold CPU tensors regardless
    clf.device_ = torch.device("cuda", 0)
    state = clf.__getstate__()
    assert all(t.device.type == "cpu" for t in state["model_"].state_dict().values())
    loaded = pickle.loads(pickle.dumps(clf))
    if not torch.cuda.is_available():
        np.testing.assert_allclose(loaded.predict_proba(X), expected)


def test_grid_search_over_k_and_width_parallel():
    """Fits in two worker processes score exactly as the same fits run here."""
    from sklearn.model_selection import cross_val_score

    X, y = _images(n=90)
    flat = X.reshape(len(X), -1)
    grid = GridSearchCV(_small(max_epochs=2), {"k": [1, 2], "width": [4, 8]}, cv=2, n_jobs=2)
    grid.fit(flat, y)
    for params, score in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"]):
        local = cross_val_score(_small(max_epochs=2, **params), flat, y, cv=2).mean()
        assert score == pytest.approx(local), params
    assert grid.score(flat, y) > 0.5


def test_pipeline_with_image_shape_and_linear_probe():
    X, y = _images()
    flat = X.reshape(len(X), -1)
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z / Z.std()), _small(image_shape=(1, 8, 8)))
    assert pipe.fit(flat, y).score(flat, y) > 0.6
    # the estimator as a feature extractor in front of a linear probe
    probe = make_pipeline(_small(image_shape=(1, 8, 8)), PCA(5), LogisticRegression())
    assert probe.fit(flat, y).score(flat, y) > 0.6


def test_string_labels():
    X, y = _images()
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = _small().fit(X, labels)
    assert set(clf.predict(X)) <= set(labels)
    assert clf.score(X, labels) > 0.6


def test_warm_start_trains_only_new_layers():
    X, y = _images()
    clf = _small(warm_start=True).fit(X, y)
    first = {k: v.clone() for k, v in clf.model_.layers[0].state_dict().items()}
    clf.set_params(n_layers=3).fit(X, y)
    assert clf.n_layers_fitted_ == 3 and len(clf.history_) == 3
    for key, value in clf.model_.layers[0].state_dict().items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)
    # a warm-started model is the one a single long fit produces
    long = _small(n_layers=3).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), long.predict_proba(X), rtol=1e-5)
    with pytest.raises(ValueError, match="n_layers=2 must be at least"):
        clf.set_params(n_layers=2).fit(X, y)


def test_warm_start_refuses_other_classes():
    X, y = _images()
    clf = _small(warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="classes of the previous fit"):
        clf.set_params(n_layers=3).fit(X, (y + 1) % 4)


def test_keyboard_interrupt_keeps_finished_layers(monkeypatch):
    X, y = _images()
    real = cnn_module.train_stage
    calls = []

    def interrupted_in_second_layer(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cnn_module, "train_stage", interrupted_in_second_layer)
    clf = _small(n_layers=3, warm_start=True)
    with pytest.warns(UserWarning, match="interrupted during layer 2"):
        clf.fit(X, y)
    assert clf.n_layers_fitted_ == 1
    assert clf.predict(X).shape == (len(X),)
    monkeypatch.setattr(cnn_module, "train_stage", real)
    clf.fit(X, y)
    assert clf.n_layers_fitted_ == 3


def test_interrupt_in_first_layer_leaves_estimator_unfitted(monkeypatch):
    X, y = _images()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cnn_module, "train_stage", interrupt)
    clf = _small()
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    assert not hasattr(clf, "model_") and not hasattr(clf, "n_features_in_")


def test_failed_refit_keeps_previous_model():
    X, y = _images()
    clf = _small().fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError):
        clf.fit(X[:, :, :4, :4].reshape(len(X), -1)[:, :3], y[:1])
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_early_stopping_records_validation_scores():
    X, y = _images(n=200)
    clf = _small(early_stopping=True, n_iter_no_change=2, max_epochs=30, tol=0.5).fit(X, y)
    history = clf.history_[0]
    # accuracies on the 20 held-out samples (validation_fraction=0.1 of 200)
    assert all(float(r["valid_score"] * 20).is_integer() for r in history)
    assert len(history) == 3  # tol=0.5 cannot be met: stops after 1 + n_iter_no_change epochs
    assert clf.stopped_early_.all()


def test_verbose_prints_progress(capsys):
    X, y = _images()
    _small(verbose=1, max_epochs=1).fit(X, y)
    captured = capsys.readouterr()
    assert "layer 2/2" in captured.out + captured.err


def test_to_torch_matches_estimator_and_skorch_fine_tunes():
    X, y = _images()
    clf = _small(k=2).fit(X, y)
    net = clf.to_torch().eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(X)).double()
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), clf.predict_proba(X), rtol=1e-5)
    assert all(p.requires_grad for p in net.parameters())
    skorch_net = clf.to_skorch(max_epochs=1, lr=0.01, batch_size=32)
    skorch_net.partial_fit(X, np.searchsorted(clf.classes_, y).astype(np.int64))
    assert skorch_net.predict_proba(X).shape == (len(X), 3)


def test_cifar10_params_are_valid_estimator_params():
    for k in (1, 2, 3):
        params = cifar10_params(k)
        clf = GreedyLayerwiseCNNClassifier(**params)
        assert clf.get_params()["lr_step"] == 15
    assert cifar10_params(1)["downsample_at"] == (2, 3)
    with pytest.raises(ValueError, match="k in"):
        cifar10_params(4)


@pytest.mark.parametrize("k", [2, 3])
def test_cifar10_params_follow_the_papers_text_and_offer_the_authors_script(k):
    # Sec. 4.3: "widths of M = 128 and M~ = 256 for both CIFAR-10 and ImageNet"
    params = cifar10_params(k)
    assert (params["width"], params["aux_width"], params["n_layers"]) == (128, 256, 4)
    # the authors' public script defaults to 128
    assert cifar10_params(k, aux_width=128)["aux_width"] == 128
    # Sec. 4.3 compression: "fine-tune the auxiliary network ... over 20 epochs"
    assert params["prune_epochs"] == 20
    # M~ doubles with the layer width at the downsampling at j=2
    X = np.zeros((4, 3, 32, 32), dtype=np.uint8)
    clf = GreedyLayerwiseCNNClassifier(**dict(params, max_epochs=1, width=4, aux_width=8))
    clf.fit(X, np.arange(4) % 2)
    assert [s.aux_width for s in clf.layer_specs_] == [8, 8, 16, 16]


def test_channels_last_gives_the_same_model_up_to_rounding():
    X, y = quadrant_images(n=96, shape=(3, 16, 16))
    params = dict(n_layers=3, width=8, max_epochs=2, downsample_at=(1,), random_state=0)
    plain = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    fast = GreedyLayerwiseCNNClassifier(**params, channels_last=True).fit(X, y)
    np.testing.assert_allclose(fast.predict_proba(X), plain.predict_proba(X), atol=1e-4)
    for a, b in zip(fast.loss_curve_, plain.loss_curve_):
        np.testing.assert_allclose(a, b, rtol=1e-4)
    # the layers run on channels-last tensors, and the stored weights keep their layout
    h = fast.model_.standardized(torch.from_numpy(X[:2]))
    assert h.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in fast.model_.parameters())


@pytest.mark.parametrize("training, per_layer", [("sequential", 1), ("decoupled", 2)])
def test_compile_trains_each_stage_through_torch_compile_with_its_options(
    monkeypatch, training, per_layer
):
    calls = []
    real_compile = torch.compile

    @functools.wraps(real_compile)
    def spy(module, **options):
        calls.append(options)
        return real_compile(module, **options)

    monkeypatch.setattr(torch, "compile", spy)
    X, y = quadrant_images(n=64, shape=(3, 8, 8))
    params = dict(n_layers=2, width=4, max_epochs=2, training=training, random_state=0)
    plain = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    assert calls == []
    # the "eager" backend traces the steps with TorchDynamo and runs the same operations
    options = {"backend": "eager", "dynamic": False}
    compiled = GreedyLayerwiseCNNClassifier(**params, compile=options).fit(X, y)
    # once per stage (sequential: layer and head as one module; decoupled: each apart)
    assert calls == [options] * (2 * per_layer)
    assert compiled.compile is options  # stored as given
    np.testing.assert_allclose(compiled.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(compiled.loss_curve_[-1], plain.loss_curve_[-1], rtol=1e-6)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.nan, "NaN"),
        (np.inf, "infinity"),
    ],
)
def test_non_finite_input_raises(bad, message):
    X, y = _images()
    X[3, 0, 2, 2] = bad
    with pytest.raises(ValueError, match=message):
        _small().fit(X, y)


def test_wrong_dimensions_raise():
    X, y = _images()
    with pytest.raises(ValueError, match="5-D array"):
        _small().fit(X[:, None], y)
    with pytest.raises(ValueError, match="1-D array|Expected 2D"):
        _small().fit(X[:, 0, 0, 0], y)


def test_three_d_images_are_one_channel():
    """(n, H, W), as load_mnist returns it, is read as one-channel images."""
    X, y = _images()
    three_d = _small().fit(X[:, 0], y)
    four_d = _small().fit(X, y)
    assert three_d.image_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(three_d.predict_proba(X[:, 0]), four_d.predict_proba(X))


def test_wrong_image_shape_raises():
    X, y = _images()
    with pytest.raises(ValueError, match=re.escape("do not form images of image_shape=(1, 7, 7)")):
        _small(image_shape=(1, 7, 7)).fit(X.reshape(len(X), -1), y)
    with pytest.raises(ValueError, match=re.escape("image_shape=(1, 4, 4)")):
        _small(image_shape=(1, 4, 4)).fit(X, y)
    with pytest.raises(ValueError, match="three positive integers"):
        _small(image_shape=(1, 8)).fit(X, y)


def test_predict_with_other_feature_count_raises():
    X, y = _images()
    clf = _small().fit(X, y)
    with pytest.raises(ValueError, match="X has 36 features, but GreedyLayerwiseCNNClassifier"):
        clf.predict(X[:, :, :6, :6])


def test_one_class_raises():
    X, y = _images()
    with pytest.raises(ValueError, match="only one class"):
        _small().fit(X, np.zeros(len(X)))


def test_empty_input_raises():
    X, y = _images()
    with pytest.raises(ValueError, match="0 sample"):
        _small().fit(X[:0], y[:0])


def test_non_numeric_input_raises():
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"]])
    with pytest.raises(ValueError, match="could not convert|string"):
        _small().fit(X, [0, 1, 0])
    with pytest.raises(TypeError, match="dtype"):
        _small().fit(np.full((3, 1, 2, 2), "x"), [0, 1, 0])


def test_length_mismatch_raises():
    X, y = _images()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _small().fit(X, y[:-1])


@pytest.mark.parametrize(
    "params, name",
    [
        ({"n_layers": 0}, "n_layers"),
        ({"k": 0}, "'k'"),
        ({"width": -3}, "width"),
        ({"downsample": "pool"}, "downsample"),
        ({"batch_norm": "yes"}, "batch_norm"),
        ({"lr": 0.0}, "lr"),
        ({"augment": "rotate"}, "augment"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"device": 3}, "device"),
    ],
)
def test_invalid_parameters_raise(params, name):
    X, y = _images()
    with pytest.raises(ValueError, match=name):
        _small(**params).fit(X, y)


def test_invalid_downsample_at_and_device_strings():
    X, y = _images()
    with pytest.raises(ValueError, match="downsample_at"):
        _small(downsample_at=(0.5,)).fit(X, y)
    with pytest.raises(ValueError, match="not a valid torch device"):
        _small(device="tpu-ish").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            _small(device="cuda").fit(X, y)


def test_tabular_data_is_a_greedy_mlp():
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = _small(max_epochs=8).fit(X, y)
    assert clf.image_shape_ == (6, 1, 1)
    assert clf.score(X, y) > 0.8


def test_uint8_images_stay_uint8_and_predict_like_floats():
    X, y = _images()
    X8 = np.clip(X * 60 + 100, 0, 255).astype(np.uint8)
    clf8 = _small(augment=True).fit(X8, y)
    clf32 = _small(augment=True).fit(X8.astype(np.float32), y)
    np.testing.assert_allclose(clf8.predict_proba(X8), clf32.predict_proba(X8), rtol=1e-5)
    np.testing.assert_allclose(
        clf8.model_.stem[-1].mean.flatten(), [X8.astype(np.float64).mean()], rtol=1e-5
    )
